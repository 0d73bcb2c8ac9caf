"""The TTFT scorecard (benchmarks/ttft_accuracy.py): how it reads the public CSV (closed loops,
request-rate runs, mean or median TTFT), its bad-input errors, and which profile prices a
point when the op-DB tables have none for its engine."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scorecards import point_pricing beside them
import ttft_accuracy as tta  # noqa: E402

HEADER = ["source_id", "engine", "engine_version", "model", "gpu", "n_gpu", "tp", "batch", "input_len",
          "output_len", "weight_format", "weight_bits", "kv_bits", "metric", "value", "source_url", "notes"]


def _write(path: Path, rows: list[dict], extra: tuple[str, ...] = ()) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=HEADER + list(extra))
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def _row(**kw) -> dict:
    base = dict(source_id="s", engine="vllm", engine_version="0.6.0", model="llama-3-8b", gpu="h100-sxm", n_gpu=1,
                tp=1, batch=4, input_len=1024, output_len=128, weight_format="bf16", weight_bits=16, kv_bits=16,
                metric="ttft_ms_mean", value=50.0, source_url="https://example.org/x", notes="")
    base.update(kw)
    return base


def test_public_csv_points_are_sourced_and_complete():
    with open(tta.DEFAULT_CSV, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["source_url"].startswith("https://") for r in rows)
    points = tta.load_points(tta.DEFAULT_CSV)
    assert len(points) >= 79  # the NIM 1.8.0 points at least
    assert all(p.ttft_ms is not None and p.ttft_ms > 0 for p in points)
    for p in points:  # a closed loop has its clients, a rate run its rate
        assert (p.concurrency is not None and p.concurrency >= 1) if p.closed_loop else p.request_rate_per_s > 0


def test_file_without_request_rate_column_reads_as_closed_loops(tmp_path):
    path = _write(tmp_path / "a.csv", [_row(), _row(metric="itl_ms_mean", value=7.0)])
    (p,) = tta.load_points(path)
    assert p.closed_loop and p.concurrency == 4 and p.ttft_ms == 50.0 and p.itl_ms == 7.0 and p.row == 0


def test_request_rate_row_and_median_only_ttft(tmp_path):
    rows = [_row(batch="", request_rate="2.5", metric="ttft_ms_median", value=80.0),
            _row(batch="", request_rate="2.5", metric="tpot_ms_median", value=9.0),
            _row(batch="", request_rate="2.5", metric="tpot_ms_mean", value=10.0)]
    (p,) = tta.load_points(_write(tmp_path / "r.csv", rows, ("request_rate",)))
    assert not p.closed_loop and p.request_rate_per_s == 2.5 and p.concurrency is None
    assert p.ttft_ms == 80.0 and p.ttft_mean_ms is None
    assert p.itl_ms == 10.0 and p.itl_metric == "tpot_ms_mean"  # the mean wins over the median


@pytest.mark.parametrize("row, message", [
    (_row(batch="", request_rate="fast"), "request_rate must be requests per second"),
    (_row(batch="", request_rate="0"), "request_rate must be positive"),
    (_row(batch=""), "needs its concurrency"),
    (_row(metric="ttft_p99"), "unknown metric"),
])
def test_bad_rows_exit_2_with_one_line(tmp_path, capsys, row, message):
    path = _write(tmp_path / "bad.csv", [row], ("request_rate",))
    assert tta.main(["--csv", str(path), "--published", "--no-sim"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_file_of_another_shape_exits_2_with_one_line(tmp_path, capsys):
    # A JSON or a header alone read as a CSV header and no rows: they scored "no points", exit 0.
    js = tmp_path / "profile.json"
    js.write_text('{"schema_version": 1\n')
    assert tta.main(["--csv", str(js), "--published", "--no-sim"]) == 2
    err = capsys.readouterr().err
    assert "missing column(s) source_id" in err and err.count("\n") == 1
    header = _write(tmp_path / "empty.csv", [])
    assert tta.main(["--csv", str(header), "--published", "--no-sim"]) == 2
    err = capsys.readouterr().err
    assert "no points (a header and no rows)" in err and err.count("\n") == 1


def test_engine_without_tables_falls_back_to_published_with_reason(tmp_path):
    path = _write(tmp_path / "a.csv", [_row(engine="ctranslate2")])
    points = tta.load_points(path)
    (pr,) = tta.pricings(points, published=False, hardware=None)
    assert pr.label == "published h100-sxm" and pr.engine is None and "ctranslate2" in pr.why
    (pub,) = tta.pricings(points, published=True, hardware=None)
    assert pub.label == "published h100-sxm" and pub.why == ""


def test_load_buckets():
    assert [tta.load_bucket(dict(request_rate=None, concurrency=c)) for c in (1, 2, 25, 26, 100, 101)] == \
        ["C = 1", "C 2-25", "C 2-25", "C 26-100", "C 26-100", "C > 100"]
    assert tta.load_bucket(dict(request_rate=4.0, concurrency=None)) == "rate"


def test_kv_sensitivity_touches_only_points_whose_source_does_not_state_it():
    assert tta.kv_unstated("fp8 TP1; KV precision not stated by the page (16-bit kept)")
    assert not tta.kv_unstated("H100 engines built with --enable_fp8 --fp8_kv_cache (FP8 weights and KV)")
    assert not tta.kv_unstated("")


@pytest.mark.parametrize("source_id, input_len, output_len, concurrency, out_tok_s, layers, hbm_gb, weights_gb", [
    # NVIDIA's NIM 1.8.0 benchmark page (public_ttft.csv's source_url), its saturated rows: output
    # tokens/s as the page gives them; FP8 weights 8.0 GB (8.03e9 parameters) and 70.6 GB (70.6e9).
    ("nim-bench-llama31-8b", 20000, 2000, 250, 1337.66, 32, 80.0, 8.03),
    ("nim-bench-llama31-8b", 5000, 500, 250, 3372.0, 32, 80.0, 8.03),
    ("nim-bench-llama33-70b", 20000, 2000, 250, 427.06, 80, 160.0, 70.6),
    ("nim-bench-llama33-70b", 5000, 500, 250, 920.12, 80, 160.0, 70.6),
])
def test_nim_kv_cache_is_8_bit_by_its_own_saturated_rows(source_id, input_len, output_len, concurrency, out_tok_s,
                                                         layers, hbm_gb, weights_gb):
    # The page does not state NIM's KV precision; public_ttft.csv and public_decode.csv take 8 bits
    # because 16 bits cannot hold what the page measured. Little's law: each decoding request emits
    # one token per ITL, so out_tok_s x ITL requests decode at once, each holding >= its prompt.
    with open(tta.DEFAULT_CSV, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["source_id"] == source_id and int(r["input_len"]) == input_len
                and int(r["output_len"]) == output_len and int(r["batch"]) == concurrency]
    itl_s = next(float(r["value"]) for r in rows if r["metric"] == "itl_ms_mean") / 1e3
    assert {int(r["kv_bits"]) for r in rows} == {8}
    decoding = out_tok_s * itl_s
    kv16_bytes_per_token = 2 * layers * 8 * 128 * 2  # K and V, 8 KV heads of 128, 2 bytes
    kv16_gb = decoding * input_len * kv16_bytes_per_token / 1e9
    assert kv16_gb + weights_gb > hbm_gb  # 16-bit: does not fit (111-141 GB of cache alone)
    assert kv16_gb / 2 + weights_gb < hbm_gb  # 8-bit: fits


def test_nim_decode_rows_take_the_same_kv_precision_as_the_ttft_rows():
    # The decode scorecard reads the same NIM page: one engine build, one KV precision.
    with open(tta.DEFAULT_CSV.parent / "public_decode.csv", newline="") as fh:
        nim = [r for r in csv.DictReader(fh) if r["engine"] == "nim"]
    assert nim and {int(r["kv_bits"]) for r in nim} == {8}


def test_chunk_size_sensitivity_prices_only_the_named_engine(tmp_path, capsys):
    # A 5000-token prompt from one client: under a 1024-token budget per step it needs 5 steps
    # (1024 x 4 + 904), under the default (8192 on an H100) one; at 1024 tokens a chunk's GEMMs
    # are compute-bound, so the 4 more steps add their fixed costs and attention over the prompt
    # already cached, not 4 more weight reads: the TTFT rises, by less than 4 weight passes
    # (4 x 16.06 GB / the profile's bandwidth). Another engine's point is priced as before.
    rows = [_row(source_id="a", engine="vllm", batch=1, input_len=5000, output_len=100, value=400.0),
            _row(source_id="b", engine="sglang", batch=1, input_len=5000, output_len=100, value=400.0)]
    path = _write(tmp_path / "p.csv", rows)

    def ttfts(*extra):
        out = tmp_path / "o.csv"
        assert tta.main(["--csv", str(path), "--published", "--no-sim", "--out", str(out), *extra]) == 0
        with open(out) as fh:
            return {r["source_id"]: float(r["pred_ttft_ms"]) for r in csv.DictReader(fh)}

    base, small = ttfts(), ttfts("--chunk-size", "vllm=1024")
    assert "sensitivity: token budget per step vllm=1024" in capsys.readouterr().out
    from inferecon.model.published import get_profile
    four_weight_passes_ms = 4 * 16.06e9 / (get_profile("h100-sxm").memory.achieved_gbps * 1e9) * 1e3
    assert 0 < small["a"] - base["a"] < four_weight_passes_ms
    assert small["b"] == pytest.approx(base["b"], rel=1e-12)


@pytest.mark.parametrize("value", ["vllm", "vllm=", "=2048", "vllm=1", "vllm=2k"])
def test_a_malformed_chunk_size_exits_2_with_one_line(tmp_path, capsys, value):
    path = _write(tmp_path / "p.csv", [_row()])
    assert tta.main(["--csv", str(path), "--published", "--no-sim", "--chunk-size", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--chunk-size" in err[0]
