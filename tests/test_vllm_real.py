"""Real vLLM result files (tests/fixtures/engines/vllm_real/: written by vLLM's CPU build in a
run of scripts/vllm_cpu_loop.sh, see the README there) still read, and still predict as they
did when they were committed.

Where the expected values come from (none is the code under test restated):
- measured ms per output token: vLLM's own `median_tpot_ms` field, read here with `json`;
- the run's shape (concurrency, prompts, lengths): the bench command in the README, and the
  same fields of vLLM's JSON;
- predicted ms per output token: the table `inferecon validate --engine-results` wrote at
  the time (engine_validation-<dtype>.csv, committed beside the files). A change of the cost
  model moves these on purpose; the test then names every run that moved and by how much, so
  the table is regenerated deliberately (the README's command), never silently.
- the model's parameter count: a hand count of the tiny Llama's shapes (below).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from inferecon.core.errors import UserError

REAL = Path(__file__).parent / "fixtures" / "engines" / "vllm_real"
# Each committed loop: the folder of its real files, model, profile and tables (README there).
# 20261201: run 1, an AVX2-only EPYC, the profile of that day's calibration (GEMM fit only);
# 20261202: run 3, an AVX-512-BF16 EPYC, the profile `vllm_cpu_loop.sh --reuse` calibrated
# with op-level fits (kernels/cpu_ops.py), so its predictions go through model/ops.py.
RUNS = {"20261201": REAL, "20261202": REAL / "20261202"}
RESULTS = Path(__file__).parent.parent / "results"
DTYPES = {"bf16": (16, 16), "fp32": (32, 32)}  # (weight bits, KV bits) vLLM ran with
CONCURRENCY = (1, 2, 4, 8)
# A prediction may move this much (relative) before the committed table counts as stale:
# float summation order and numpy versions move the 4th digit, a model change moves the 2nd.
PREDICTED_TOLERANCE = 0.01


def _files(dtype: str, run: str = "20261201") -> list[Path]:
    return sorted((RUNS[run] / dtype).glob("*.json"))


def _committed_table(dtype: str, run: str = "20261201") -> dict[str, dict]:
    with open(RUNS[run] / f"engine_validation-{dtype}.csv", newline="") as f:
        return {Path(r["source"]).name: r for r in csv.DictReader(f)}


def _cases(dtype: str, run: str = "20261201"):
    from inferecon.calibration.engine_fit import load_cases

    wb, kb = DTYPES[dtype]
    return load_cases([str(p) for p in _files(dtype, run)], model=str(RUNS[run] / "model"),
                      hardware_path=str(RUNS[run] / "profile.json"), tp=1, weight_bits=wb, kv_bits=kb)


@pytest.mark.parametrize("run", sorted(RUNS))
def test_every_real_file_is_there(run):
    for dtype in DTYPES:
        names = sorted(p.name for p in _files(dtype, run))
        assert names == sorted(f"vllm-{dtype}-c{c}.json" for c in CONCURRENCY), (dtype, names)


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_reader_takes_what_vllm_wrote(dtype, run):
    from inferecon.ingest.engine_results import read_engine_results

    for path in _files(dtype, run):
        raw = json.loads(path.read_text())
        runs = read_engine_results(path)
        assert len(runs) == 1, path
        run = runs[0]
        assert run.engine == "vllm"
        # The bench command ran --max-concurrency c with 2 c prompts of 128 in, 64 out.
        c = int(path.stem.rsplit("-c", 1)[1])
        assert run.concurrency == c == raw["max_concurrency"]
        assert raw["num_prompts"] == 2 * c and raw["completed"] == 2 * c
        assert run.input_len == 128 and run.output_len == 64
        # The reader takes vLLM's median TPOT (the mean is pulled by the first, prefill-laden step).
        assert run.tpot_metric == "median_tpot_ms"
        assert run.tpot_ms == pytest.approx(raw["median_tpot_ms"], rel=1e-12), path.name


def test_model_folder_is_a_model():
    from inferecon.model.catalog import resolve_model

    spec = resolve_model(str(REAL / "model"))  # a folder holding config.json
    # Hand count without norms (inferecon leaves them out): per layer q 1024x1024 + k, v
    # 2 x 256x1024 + o 1024x1024 = 2,621,440 and MLP 3 x 1024x4096 = 12,582,912, so
    # 15,204,352 x 8 layers = 121,634,816; embeddings and lm head 2 x 16384x1024 = 33,554,432.
    assert spec.total_params == 155_189_248
    assert (spec.n_layers, spec.d_model, spec.n_heads, spec.n_kv_heads, spec.d_ff) == (8, 1024, 8, 2, 4096)


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_predictions_match_the_committed_table(dtype, run):
    from inferecon.calibration.engine_fit import score_engine_runs

    table = _committed_table(dtype, run)
    rows = score_engine_runs(_cases(dtype, run))
    assert sorted(Path(r["source"]).name for r in rows) == sorted(table)
    moved = []
    for r in rows:
        was = table[Path(r["source"]).name]
        assert r["measured_ms"] == pytest.approx(float(was["measured_ms"]), rel=1e-9)
        then, now = float(was["predicted_ms"]), r["predicted_ms"]
        if abs(now - then) > PREDICTED_TOLERANCE * then:
            moved.append(f"{Path(r['source']).name}: predicted {then:.3f} ms then, {now:.3f} ms now "
                         f"({100 * (now - then) / then:+.1f}%)")
    assert not moved, (f"{dtype}: the model's predictions of the real vLLM runs moved more than "
                       f"{100 * PREDICTED_TOLERANCE:g}% since the table was committed (regenerate "
                       f"{RUNS[run] / f'engine_validation-{dtype}.csv'} with the README's "
                       "command if the change is meant):\n" + "\n".join(moved))


def test_run3_fixtures_are_the_committed_results():
    """The run-3 fixtures are byte copies of results/vllm-cpu-20261202/ (the real files vLLM
    wrote, the model config, the re-run's profile and tables): what the results README quotes is
    what this test recomputes."""
    res = RESULTS / "vllm-cpu-20261202"
    reruns = sorted(res.glob("rerun-*/calibrate/profile.json"))
    if not reruns:
        pytest.skip("results/vllm-cpu-20261202/ not in this checkout")
    fix = RUNS["20261202"]
    for dtype in DTYPES:
        for path in _files(dtype, "20261202"):
            assert path.read_bytes() == (res / "vllm" / dtype / path.name).read_bytes(), path.name
    assert (fix / "model" / "config.json").read_bytes() == (res / "model" / "config.json").read_bytes()
    rerun = reruns[-1].parent.parent
    assert (fix / "profile.json").read_bytes() == (rerun / "calibrate" / "profile.json").read_bytes()
    for dtype in DTYPES:
        assert (fix / f"engine_validation-{dtype}.csv").read_bytes() == \
            (rerun / f"validate-{dtype}" / "engine_validation.csv").read_bytes()


def test_run3_profile_prices_the_ops_vllm_ran():
    """The run-3 profile carries op-level fits of the kernels vLLM's CPU worker runs: oneDNN on
    prepacked weights in bf16 and fp32, decode attention per KV dtype, an elementwise time per
    layer, timed with the one torch thread vLLM's worker logged (logs/serve-*.log there:
    "Reducing Torch threads from 2 to 1")."""
    from inferecon.model.hardware import HardwareProfile

    prof = HardwareProfile.load(RUNS["20261202"] / "profile.json")
    fits = prof.op_fits
    assert {g.dtype for g in fits.gemm} == {"bf16", "fp32"} and {a.kv_dtype for a in fits.attention} == {"bf16", "fp32"}
    assert all(g.kernels == {"onednn_prepacked": 1.0} for g in fits.gemm)
    assert all(g.quality.folds == 5 and g.quality.heldout_mape is not None for g in fits.gemm)
    assert fits.elementwise_per_layer_us is not None and prof.provenance.versions["cpu_threads"] == "1"
    # The vLLM step on this CPU is fp32 weight-bound at batch 1: 4 bytes x 138,412,032 GEMM
    # weights (hand count in tests/test_cpu_ops.py) read at the fit's bandwidth, within its
    # intercepts (33 GEMMs) and the attention and elementwise times, is the predicted step.
    fp32 = next(g for g in fits.gemm if g.dtype == "fp32")
    weights_s = 4 * 138_412_032 / (fp32.gbps * 1e9)
    row = {Path(r["source"]).name: r for r in csv.DictReader(open(RUNS["20261202"] / "engine_validation-fp32.csv"))}
    predicted_s = float(row["vllm-fp32-c1.json"]["predicted_ms"]) * 1e-3
    assert weights_s < predicted_s < weights_s + 33 * fp32.t0_us * 1e-6 + 8 * 1e-3


def test_fp32_runs_need_a_cpu_profile():
    from inferecon.calibration.engine_fit import load_cases

    with pytest.raises(UserError, match="32-bit weights or KV cache are CPU runs"):
        load_cases([str(_files("fp32")[0])], model=str(REAL / "model"), gpu="h100-sxm", tp=1,
                   weight_bits=32, kv_bits=32)


def test_a_profile_without_uncertainty_gives_no_band():
    """An older CPU profile saved without uncertainty entries is still compared (no interval,
    no coverage), not a TypeError."""
    from inferecon.calibration.engine_fit import load_cases, score_engine_runs

    old = Path(__file__).parent / "fixtures" / "validate" / "cpu_profile.json"
    cases = load_cases([str(p) for p in _files("fp32")], model=str(REAL / "model"), hardware_path=str(old),
                       tp=1, weight_bits=32, kv_bits=32)
    rows = score_engine_runs(cases, draws=20)
    assert len(rows) == 4 and all("covered" not in r for r in rows)
