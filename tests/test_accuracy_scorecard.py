"""The public accuracy scorecard (benchmarks/accuracy.py) on its CSV of published decode figures:
structure of the data, the metric conversions, and that the leave-one-source-out engine fit
never sees the source it predicts."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inferecon.model.published import get_profile
from inferecon.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scorecards import point_pricing beside them
import accuracy as acc  # noqa: E402


@pytest.fixture(scope="module")
def points():
    return acc.load_points(acc.DEFAULT_CSV)


def test_csv_has_enough_cited_points(points):
    assert len(points) >= 40
    assert points["source_id"].nunique() >= 8
    assert points["engine"].nunique() >= 4
    assert all(str(u).startswith(("http://", "https://")) for u in points["source_url"])
    # One source has one address: a source_id never points to two pages.
    assert (points.groupby("source_id")["source_url"].nunique() == 1).all()
    assert (points["measured_ms"] > 0).all()


def test_every_model_and_gpu_resolves(points):
    for name in points["model"].unique():
        spec = acc.resolve_model(name)
        assert spec.n_layers > 0
    for gpu in points["gpu"].unique():
        assert get_profile(gpu).memory.bandwidth_gbps > 0


@pytest.mark.parametrize("name, total_b, active_b", [
    # Parameter counts the model cards state (Llama 2 paper Table 1 sizes 7B/13B/70B as
    # 6.74/13.0/69.0 B on the Hugging Face cards; Qwen3 cards: 14.8 B, 30.5 B with 3.3 B active).
    ("llama-2-7b", 6.74, 6.74), ("llama-2-13b", 13.0, 13.0), ("llama-2-70b", 69.0, 69.0),
    ("qwen3-14b", 14.8, 14.8), ("qwen3-30b-a3b", 30.5, 3.3),
    # DBRX model card: 132B total, 36B active.
    ("dbrx", 132.0, 36.0),
])
def test_written_configs_match_published_sizes(name, total_b, active_b):
    spec = acc.resolve_model(name)
    assert spec.total_params / 1e9 == pytest.approx(total_b, rel=0.02)
    assert spec.active_params / 1e9 == pytest.approx(active_b, rel=0.03)


@pytest.mark.parametrize("metric, value, batch, n_gpu, output_len, expect_ms", [
    ("tpot_ms_mean", 20.63, 1, 1, 200, 20.63),
    ("tok_s_per_user", 104.9, 1, 1, 200, 1000 / 104.9),        # 9.533 ms
    ("out_tok_s_total", 1504.72, 16, 1, 128, 16000 / 1504.72),  # 10.633 ms
    ("out_tok_s_per_gpu", 1486.0, 480, 4, 2048, 480000 / (1486.0 * 4)),  # 80.75 ms
    ("e2e_latency_s", 0.236, 1, 1, 32, 7.375),
])
def test_metric_conversion(metric, value, batch, n_gpu, output_len, expect_ms):
    row = pd.Series(dict(metric=metric, value=value, batch=batch, n_gpu=n_gpu, output_len=output_len))
    assert acc.measured_ms_per_token(row) == pytest.approx(expect_ms, rel=1e-9)


def test_bad_rows_are_one_line_errors(tmp_path, points):
    raw = pd.read_csv(acc.DEFAULT_CSV)
    bad = raw.copy()
    bad.loc[3, "source_url"] = "see the blog"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(UserError, match="row 5 .*source_url"):
        acc.load_points(path)
    bad = raw.drop(columns=["kv_bits"])
    bad.to_csv(path, index=False)
    with pytest.raises(UserError, match="missing column"):
        acc.load_points(path)
    bad = raw.copy()
    bad.loc[0, "metric"] = "tokens_per_minute"
    bad.to_csv(path, index=False)
    with pytest.raises(UserError, match="unknown metric"):
        acc.load_points(path)


def _with_fake_source(points, scale):
    """vLLM's points plus a made-up vLLM source whose figures are `scale` times the real ones."""
    vllm = points[points["engine"] == "vllm"].copy()
    fake = vllm[vllm["source_id"] == "vllm-rtn-marlin-h100"].copy()
    fake["source_id"] = "fake-absurd"
    fake["measured_ms"] = fake["measured_ms"] * scale
    return pd.concat([vllm, fake], ignore_index=True)


@pytest.mark.slow
def test_leave_one_source_out_never_sees_the_held_out_source(points):
    a, fits_a = acc.scorecard(_with_fake_source(points, 1000.0))
    b, fits_b = acc.scorecard(_with_fake_source(points, 10.0))
    held_a = a[a["source_id"] == "fake-absurd"]["pred_engine_ms"].to_numpy()
    held_b = b[b["source_id"] == "fake-absurd"]["pred_engine_ms"].to_numpy()
    # The fake's own figures never reach the fit that predicts it ...
    np.testing.assert_allclose(held_a, held_b, rtol=1e-12)
    assert "fake-absurd" not in fits_a["loso"]["fake-absurd"].profile.sources
    assert not [r for r in fits_a["loso"]["fake-absurd"].rows if r["source"] == "fake-absurd"]
    # ... but they do reach the fits of the other sources of its engine (so the check above can fail).
    def fake_rows(fits):
        return [r["measured_ms"] for r in fits["loso"]["tt-gpu-ref-qwen3"].rows if r["source"] == "fake-absurd"]
    assert fake_rows(fits_a) and len(fake_rows(fits_a)) == len(held_a)
    np.testing.assert_allclose(np.array(fake_rows(fits_a)) / np.array(fake_rows(fits_b)), 100.0)
    assert "fake-absurd" in fits_a["loso"]["tt-gpu-ref-qwen3"].profile.sources


@pytest.mark.slow
def test_single_source_engine_keeps_published_and_unsupported_parameters_are_held(points):
    res, fits = acc.scorecard(points)
    lone = res[res["engine"] == "autoawq"]
    np.testing.assert_allclose(lone["pred_engine_ms"], lone["pred_published_ms"])
    assert lone["engine_fit"].str.contains("no other autoawq source").all()
    assert fits["loso"]["autoawq-gemm-a100"] is None
    # Held out the two-node DeepSeek run, SGLang is fitted on one model (61 layers) only: a time
    # per layer cannot be told from a time per step, so it keeps its published value, with why.
    fit = fits["loso"]["tt-gpu-ref-dsr1"]
    per_layer = next(p for p in fit.params if p.name == "per_layer_us")
    assert not per_layer.fitted and per_layer.value == 0.0 and "61 layers" in per_layer.note
    assert fit.profile.sources == ["inferencex-dsr1-h200"]
    # The scorecard's figures are finite and cover every point.
    for col in ("pred_published_ms", "pred_engine_ms"):
        assert np.isfinite(res[col]).all() and (res[col] > 0).all()
    table = acc.slice_table(res, "engine", ("pub", "eng"))
    assert table.iloc[-1]["points"] == len(points)
    assert math.isfinite(table.iloc[-1]["eng_mape"])


# -- the peer column: aiconfigurator's own estimates (benchmarks/data/aiconfigurator_estimates.csv) --

@pytest.fixture(scope="module")
def aic():
    return acc.load_aiconfigurator(acc.AIC_CSV)


def test_aiconfigurator_csv_covers_every_point_and_says_why_not(points, aic):
    # Written by the real tool (benchmarks/aiconfigurator_estimates.py in .venv-aic), one row per point.
    assert aic is not None and set(aic["aic_version"]) == {"0.12.0"}
    assert set(aic["status"]) <= {"ok", "none"}
    keys = lambda df: set(map(tuple, df[list(acc.AIC_KEY)].astype(str).to_numpy()))  # noqa: E731
    assert keys(aic) == keys(points)
    missing = aic[aic["status"] != "ok"]
    assert (missing["reason"].str.len() > 0).all() and missing["ms_per_token"].isna().all()
    ok = aic[aic["status"] == "ok"]
    assert (ok["ms_per_token"] > 0).all() and (ok["mapping"].str.len() > 0).all()
    # ms_per_token is on the published metric's basis, from the row's own figures: the vLLM
    # benchmark_latency point (e2e latency of 32 output tokens) is request latency / 32, the NIM
    # ITL points are the TPOT.
    e2e = ok[(ok["source_id"] == "vllm-rtn-marlin-h100") & (ok["weight_format"] == "bf16")].iloc[0]
    assert e2e["ms_per_token"] == pytest.approx(float(e2e["request_latency_ms"]) / 32, rel=1e-3)
    nim = ok[ok["source_id"] == "nim-bench-llama33-70b"]
    np.testing.assert_allclose(nim["ms_per_token"], nim["tpot_ms"].astype(float), rtol=1e-9)
    # Engines aiconfigurator does not model are flagged as substituted, its own are not.
    sub = dict(zip(ok["engine"], ok["engine_substituted"]))
    assert sub["lmdeploy"] == "yes" and sub["gpt-fast"] == "yes" and sub["trtllm"] == "no" and sub["vllm"] == "no"


def test_aiconfigurator_column_is_read_and_the_slices_add_up(points, aic):
    res = acc.add_aiconfigurator(points, aic).assign(ratio_published=1.0)
    n_ok = int((aic["status"] == "ok").sum())
    assert int(res["pred_aic_ms"].notna().sum()) == n_ok
    np.testing.assert_allclose(res["ratio_aic"], res["pred_aic_ms"] / res["measured_ms"])
    for by in acc.PEER_SLICES:
        table = acc.slice_table(res, by, ("pub", "aic"), same_points=True)
        body, total = table.iloc[:-1], table.iloc[-1]
        assert total[by] == "all" and total["points"] == len(points) and total["compared"] == n_ok
        assert body["points"].sum() == len(points) and body["compared"].sum() == n_ok


def test_slice_table_by_hand():
    # Four points: aiconfigurator estimated three of them (ratios 1.1, 0.7, 1.25), the published
    # profile's ratios on those three are 0.5, 0.9, 1.0 (and 0.8 on the fourth).
    res = pd.DataFrame({"engine": ["a", "a", "b", "b"], "model": ["llama-2-7b"] * 4, "weight_bits": [16, 16, 8, 8],
                        "batch": [1, 8, 32, 256], "source_id": ["s1", "s1", "s2", "s3"],
                        "ratio_aic": [1.1, 0.7, 1.25, np.nan], "ratio_published": [0.5, 0.9, 1.0, 0.8]})
    t = acc.slice_table(res, "engine", ("pub", "aic"), same_points=True).set_index("engine")
    # all: aic |errors| 10, 30, 25 % -> MAPE 21.67 %, median 1.1, within ±20%: 1 of 3;
    #      published on the same three: 50, 10, 0 % -> MAPE 20 %, median 0.9, within: 2 of 3.
    assert t.loc["all", "compared"] == 3 and t.loc["all", "points"] == 4 and t.loc["all", "sources"] == 3
    assert t.loc["all", "aic_mape"] == pytest.approx(65 / 3)
    assert t.loc["all", "aic_med"] == pytest.approx(1.1)
    assert t.loc["all", "aic_w20"] == pytest.approx(100 / 3)
    assert t.loc["all", "pub_mape"] == pytest.approx(20.0)
    assert t.loc["all", "pub_med"] == pytest.approx(0.9)
    assert t.loc["all", "pub_w20"] == pytest.approx(200 / 3)
    # engine a: aic 10 and 30 % -> 20 %; engine b: only 1.25 estimated -> 25 %, published 0 %.
    assert t.loc["a", "aic_mape"] == pytest.approx(20.0) and t.loc["b", "aic_mape"] == pytest.approx(25.0)
    assert t.loc["b", "pub_mape"] == pytest.approx(0.0) and t.loc["b", "compared"] == 1
    buckets = acc.slice_table(res, "batch_bucket", ("pub", "aic"), same_points=True).set_index("batch_bucket")
    assert list(buckets.index) == ["1", "17-64", "2-16", ">64", "all"]
    assert buckets.loc[">64", "compared"] == 0 and math.isnan(buckets.loc[">64", "aic_mape"])
    # Each tool on its own points: published on all four (50, 10, 0, 20 % -> 20 %), aic on its three;
    # both = the three both predicted, where published is 20 % and aic 21.67 %.
    own = acc.slice_table(res, "engine", ("pub", "aic"), both=("pub", "aic")).set_index("engine")
    assert own.loc["all", "pub_n"] == 4 and own.loc["all", "aic_n"] == 3
    assert own.loc["all", "pub_mape"] == pytest.approx(20.0) and own.loc["all", "pub_med"] == pytest.approx(0.85)
    assert own.loc["all", "both"] == 3 and own.loc["all", "pub_mape_both"] == pytest.approx(20.0)
    assert own.loc["all", "aic_mape_both"] == pytest.approx(65 / 3)


def test_note_reasons_come_from_the_notes():
    # Phrases of real rows' notes (public_decode.csv) -> the reason shown beside a worst point.
    assert acc.note_reason("enforce-eager: no CUDA graphs (every kernel launch exposed)") == "eager: no CUDA graphs"
    assert acc.note_reason("vicuna-7b-v1.5 (Llama-2-7b shapes); eager PyTorch") == "eager: no CUDA graphs"
    got = acc.note_reason("peak-throughput table; batch is the engine's max batch size: whether all 480 "
                          "sequences were resident at once is not stated")
    assert got == "max-batch throughput table; batch = engine max (residency not stated)"
    assert acc.note_reason("static batch; per-user tok/s = throughput / batch") == ""
    assert acc.note_reason(None) == ""


def test_worst_ten_orders_by_log_ratio_and_carries_the_reason():
    res = pd.DataFrame({"source_id": list("abcdefghijkl"), "engine": ["vllm"] * 12, "gpu": ["h100-sxm"] * 12,
                        "model": ["llama-3-8b"] * 12, "tp": [1] * 12, "batch": [1] * 12, "context": [100] * 12,
                        "weight_format": ["bf16"] * 12, "measured_ms": [10.0] * 12,
                        # ratios: 0.25 and 4.0 tie on |log|; 1.0 is exact; NaN has no prediction.
                        "ratio_published": [1.0, 0.25, 4.0, 1.1, 0.9, 1.2, 0.8, 1.3, 0.7, 1.5, 0.6, np.nan],
                        "notes": ["", "--enforce-eager", "", "", "", "", "", "", "", "", "", ""]})
    res["pred_published_ms"] = res["ratio_published"] * 10.0
    w = acc.worst_ten(res, "pub")
    assert len(w) == 10 and set(w["source_id"][:2]) == {"b", "c"} and "a" not in set(w["source_id"])
    assert w.set_index("source_id").loc["b", "reason"] == "eager: no CUDA graphs"
    # then |log 0.6| = 0.51, |log 1.5| = 0.41, |log 0.7| = 0.36
    assert list(w["source_id"][2:5]) == ["k", "j", "i"]


def test_aiconfigurator_rows_join_by_point_not_position(points, aic, tmp_path):
    # Reversed rows, one point dropped and one marked as refused: the join is by the point's key.
    sub = aic.iloc[::-1].copy()
    first = points.iloc[0]
    key = (sub["source_id"] == first.source_id) & (sub["batch"] == first.batch) & \
          (sub["input_len"] == first.input_len) & (sub["model"] == first.model)
    dropped = sub[~key]
    res = acc.add_aiconfigurator(points, dropped)
    assert math.isnan(res.iloc[0]["pred_aic_ms"]) and "not run" in res.iloc[0]["aic_note"]
    whole = acc.add_aiconfigurator(points, aic)
    np.testing.assert_allclose(res["pred_aic_ms"].iloc[1:], whole["pred_aic_ms"].iloc[1:])
    dup = pd.concat([aic, aic.iloc[:1]])
    path = tmp_path / "dup.csv"
    dup.to_csv(path, index=False)
    with pytest.raises(UserError, match="two estimates for one point"):
        acc.load_aiconfigurator(path)
    assert acc.load_aiconfigurator(tmp_path / "absent.csv") is None


# -- the points added for issue 20 (item 5): transcription checked by hand against the sources --

@pytest.mark.parametrize("source_id, model, batch, input_len, output_len, expect_ms", [
    # TensorRT-LLM H200 launch blog: llama_13b, batch 128, TP1, 128/2048, 4,750 out tok/s/GPU
    # -> 128 x 1000 / 4750 = 26.947 ms per token of one sequence.
    ("trtllm-h200-launch-v0.5", "llama-2-13b", 128, 128, 2048, 26.947368),
    # Falcon-180B/H200 blog: Llama2-70B TP1, batch 96, 128/4096, 1,946 out tok/s/GPU -> 49.332 ms.
    ("trtllm-h200-blog-v0.7a", "llama-2-70b", 96, 128, 4096, 49.331963),
    # TensorRT-LLM v0.5.0 page: LLaMA 70B TP4, batch 64, 2048/2048, 1,583 out tok/s (total) -> 40.430 ms.
    ("trtllm-perf-v0.5.0", "llama-2-70b", 64, 2048, 2048, 40.429564),
    # gpt-fast mixtral-moe README: int8, 8 GPUs, 279.35 tok/s -> 3.580 ms.
    ("gpt-fast-mixtral", "mixtral-8x7b", 1, 5, 200, 1000 / 279.35),
    # vLLM PR 23151: mean TPOT 13.18 ms at concurrency 10, 2048/1024.
    ("vllm-pr23151-qwen3moe-h100", "qwen3-30b-a3b", 10, 2048, 1024, 13.18),
    # LMDeploy kv_quant doc: mean TPOT 0.024 s at concurrency 64.
    ("lmdeploy-kvquant-h200", "qwen3-30b-a3b", 64, 221, 204, 24.0),
])
def test_new_points_as_their_sources_state_them(points, source_id, model, batch, input_len, output_len, expect_ms):
    rows = points[(points["source_id"] == source_id) & (points["model"] == model) & (points["batch"] == batch)
                  & (points["input_len"] == input_len) & (points["output_len"] == output_len)]
    assert len(rows) >= 1
    # gpt-fast's Mixtral table has a bf16 and an int8 row at 8 GPUs: the int8 one is the faster.
    assert rows["measured_ms"].min() == pytest.approx(expect_ms, rel=1e-6)


def test_whole_run_throughput_rows_are_long_generations(points):
    # A whole-run throughput figure includes the prefill; the scorecard takes such rows only where
    # the generation is at least as long as the prompt (the rule every source here was read by).
    whole = points[points["metric"].isin(["out_tok_s_total", "out_tok_s_per_gpu"])]
    assert len(whole) >= 20
    assert (whole["output_len"] >= whole["input_len"]).all()


def test_points_without_cuda_graphs_are_priced_with_the_host_launch_floor(points):
    # The AutoAWQ point (eager PyTorch, Llama 2 7B: 32 layers) and the same point with its notes
    # cleared. The built-in eager engine (model/engine.py): 42 kernels per layer x 4.0 us of host
    # time each, so a step takes at least 32 x 42 x 4.0 us = 5.376 ms.
    row = points[points["source_id"] == "autoawq-gemm-a100"].head(1)
    assert bool(row["eager"].iloc[0]) and acc.runs_eagerly(row["notes"].iloc[0])
    plain = row.assign(notes="", eager=False, source_id="plain")
    res, _ = acc.scorecard(pd.concat([row, plain], ignore_index=True))
    eager_ms, plain_ms = res["pred_published_ms"]
    assert eager_ms == pytest.approx(max(plain_ms, 32 * 42 * 4.0e-3), rel=1e-9)
    assert eager_ms > plain_ms  # the floor binds here: the plain step is shorter than 5.4 ms
    assert not acc.runs_eagerly("static batch (profile_generation)")
    assert acc.runs_eagerly("vLLM --enforce-eager: no CUDA graphs")


@pytest.mark.parametrize("source_id, gpu, model, batch, input_len, output_len, expect_ms", [
    # Audit 2026-12-02. TensorRT-LLM v0.6.1 A100 table: a later revision of the same file heads the
    # column 'out tok/s/GPU' -> LLaMA 70B TP4, batch 240, 525 tok/s/GPU: 240 x 1000 / (525 x 4) = 114.286 ms.
    ("trtllm-perf-v0.6.1", "a100-sxm-80gb", "llama-2-70b", 240, 128, 2048, 114.285714),
    # ... and LLaMA 7B TP2, batch 64, 782 tok/s/GPU: 64 x 1000 / (782 x 2) = 40.921 ms.
    ("trtllm-perf-v0.6.1", "a100-sxm-80gb", "llama-2-7b", 64, 2048, 2048, 40.920716),
    # torchao README: generate.py's --max_new_tokens default is 200 (not 100); per-user tok/s unchanged
    # (the fastest H100 row is int4wo-64 at 241.39 tok/s).
    ("torchao-quant-readme", "h100-sxm", "llama-3-8b", 1, 6, 200, 1000 / 241.39),
    # vLLM PR 23197, Llama3.1-8B, new RTN (Int4), batch 16: 0.267 s / 32 tokens = 8.344 ms.
    ("vllm-rtn-marlin-h100", "h100-sxm", "llama-3-8b", 16, 256, 32, 8.34375),
])
def test_audited_points_as_their_sources_state_them(points, source_id, gpu, model, batch, input_len, output_len,
                                                    expect_ms):
    rows = points[(points["source_id"] == source_id) & (points["gpu"] == gpu) & (points["model"] == model)
                  & (points["batch"] == batch) & (points["input_len"] == input_len)
                  & (points["output_len"] == output_len)]
    assert len(rows) >= 1
    assert rows["measured_ms"].min() == pytest.approx(expect_ms, rel=1e-6)


def test_whole_run_ms_by_hand():
    # A run whose prefill (the first token) takes 30 ms and whose other 3 tokens take a 10 ms step
    # each: (30 + 3 x 10) / 4 = 15 ms per output token.
    assert acc.whole_run_ms(10.0, 30.0, 4) == pytest.approx(15.0, rel=1e-12)
    # One output token is the prefill alone.
    assert acc.whole_run_ms(10.0, 30.0, 1) == pytest.approx(30.0, rel=1e-12)
    assert {"out_tok_s_total", "out_tok_s_per_gpu", "e2e_latency_s"} == set(acc.WHOLE_RUN_METRICS)
    assert "tpot_ms_mean" not in acc.WHOLE_RUN_METRICS and "tok_s_per_user" not in acc.WHOLE_RUN_METRICS


def test_whole_run_points_are_priced_with_their_prefill(points):
    # The same LMDeploy batch-1 point (1-token prompt, 2048 in the second) as a per-step TPOT and as
    # the whole-run throughput it is: with a 1-token prompt the prefill costs about one decode step,
    # so the two predictions agree within 1%; with a 2048-token prompt the whole run is slower than
    # the step alone by the prefill's share (over 0.2% of 2048 steps here).
    rows = points[(points["source_id"] == "lmdeploy-a100-fp16") & (points["model"] == "llama-2-7b")
                  & (points["batch"] == 1)].head(2)
    assert list(rows["input_len"]) == [1, 2048]
    as_tpot = rows.assign(metric="tpot_ms_mean", source_id="as-tpot")
    res, _ = acc.scorecard(pd.concat([rows, as_tpot], ignore_index=True))
    whole, step = res["pred_published_ms"].to_numpy()[:2], res["pred_published_ms"].to_numpy()[2:]
    assert whole[0] == pytest.approx(step[0], rel=0.01)
    assert whole[1] > step[1] * 1.002


def test_the_eager_flag_is_read_in_one_place(points):
    # load_points writes the flag; a frame without the column gets it from its notes, the same rule.
    assert acc.eager_flags(points).equals(points["eager"].astype(bool))
    bare = points.drop(columns=["eager"])
    assert acc.eager_flags(bare).tolist() == points["eager"].tolist()
    assert int(acc.eager_flags(points).sum()) == 4  # vLLM --enforce-eager (1) and AutoAWQ's eager PyTorch (3)


def test_every_point_says_how_its_source_ran_it(points):
    # The load column, read from each source's description of its run (benchmarks/accuracy.py LOADS):
    # the serving-benchmark sources keep C = batch requests in flight; the rest are static batches.
    load = points.groupby("source_id")["load"].first()
    served = {"nim-bench-llama33-70b", "vllm-qwen3-awq-eager", "tt-gpu-ref-qwen3", "tt-gpu-ref-dsr1",
              "trtllm-dsr1-h200-b200", "inferencex-dsr1-h200", "vllm-pr23151-qwen3moe-h100", "lmdeploy-kvquant-h200"}
    static = {"lmdeploy-a100-fp16", "gpt-fast-readme", "trtllm-perf-v0.6.1", "vllm-rtn-marlin-h100",
              "autoawq-gemm-a100", "vllm-perf-ci-h200", "torchao-quant-readme", "trtllm-perf-v0.5.0",
              "vllm-pr3692-dbrx-h100"}
    assert (load[sorted(served)] == "concurrency").all() and (load[sorted(static)] == "static").all()
    assert set(points["load"]) == {"static", "concurrency"}
    # A source is one kind of run: no source mixes the two.
    assert (points.groupby("source_id")["load"].nunique() == 1).all()
    assert not points.loc[points["load"] == "concurrency", "metric"].isin(acc.WHOLE_RUN_METRICS).any()


def test_concurrency_points_are_priced_with_the_serving_model(points):
    # NIM's Llama 3.3 70B on 2 x H100 (FP8), 5000-token prompts at concurrency 25, and the 500-token
    # prompt at concurrency 1; each also as a static batch of the same size (another source id).
    nim = points[points["source_id"] == "nim-bench-llama33-70b"]
    c25 = nim[(nim["batch"] == 25) & (nim["input_len"] == 5000)]
    c1 = nim[(nim["batch"] == 1) & (nim["input_len"] == 500)]
    assert len(c25) == len(c1) == 1 and (pd.concat([c25, c1])["load"] == "concurrency").all()
    static = pd.concat([c25, c1]).assign(load="static", source_id="as-static")
    res, _ = acc.scorecard(pd.concat([c25, c1, static], ignore_index=True))
    served25, served1, step25, step1 = res["pred_published_ms"].to_numpy()

    # The TTFT scorecard prices the same closed loop through its own code (ttft_accuracy.price_point):
    # the decode scorecard's figure is its TPOT 'after' (serving), its static twin the TPOT 'before'.
    import ttft_accuracy as tta

    point = tta.Point(row=0, source_id="nim", engine="nim", engine_version="", model="llama-3-70b", gpu="h100-sxm",
                      tp=2, concurrency=25, request_rate_per_s=None, input_len=5000, output_len=500,
                      weight_format="fp8", weight_bits=8, kv_bits=int(c25["kv_bits"].iloc[0]))
    got = tta.price_point(point, tta.Pricing(get_profile("h100-sxm"), None, "published h100-sxm"), None, False)
    assert served25 == pytest.approx(got["pred_tpot_after_ms"], rel=1e-9)
    assert step25 == pytest.approx(got["pred_tpot_before_ms"], rel=1e-9)
    # By hand: 25 clients each send a 5000-token prompt per 499 decode steps; one such prefill is
    # 2 x 70e9 x 5000 / 2 GPUs = 3.5e14 FLOP per GPU, about 0.35 s at H100's ~1e15 FP8 FLOP/s, against
    # steps of ~25 ms: 25 prefills take ~8.8 s of every ~20 s cycle, so ~40% of the time the steps carry
    # a chunk that costs 10x a plain step and TPOT is well over 1.3x the pure decode step.
    assert served25 > 1.3 * step25
    # One client with a 500-token prompt (~35 ms of prefill, 1/10 of the above) and 1999 decode steps
    # of ~15 ms (~31 s): the prefill is ~0.1% of the time, so the served TPOT is the decode step within 0.5%.
    assert served1 == pytest.approx(step1, rel=5e-3)


def test_bad_load_column_is_a_one_line_error(tmp_path, points, capsys):
    raw = pd.read_csv(acc.DEFAULT_CSV)
    path = tmp_path / "bad.csv"
    raw.drop(columns=["load"]).to_csv(path, index=False)
    with pytest.raises(UserError, match="missing column.*load"):
        acc.load_points(path)
    for value in ("online", np.nan):
        bad = raw.copy()
        bad.loc[2, "load"] = value
        bad.to_csv(path, index=False)
        with pytest.raises(UserError, match=r"row 4 .*load must be one of static, concurrency"):
            acc.load_points(path)
    bad = raw.copy()
    row = int(np.flatnonzero(bad["metric"] == "e2e_latency_s")[0])
    bad.loc[row, "load"] = "concurrency"
    bad.to_csv(path, index=False)
    with pytest.raises(UserError, match=f"row {row + 2} .*concurrency point's figure is per output token"):
        acc.load_points(path)
    # The command: one line on stderr, exit 2, before any point is priced.
    assert acc.main(["--csv", str(path), "--no-op-db"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "per output token" in err and "Traceback" not in err


def test_quantised_points_keep_the_modules_their_sources_name(points):
    # Decided from the sources, not the measured figure (model/quant.py): Meta's FFN-only FP8
    # 405B (dstack's rows name the checkpoint), the lm head 16-bit under vLLM / TRT-LLM / NIM /
    # SGLang / AutoAWQ, every nn.Linear quantised by gpt-fast and torchao.
    cases = {(r.source_id, r.weight_bits): acc.to_case(r).model for r in points.itertuples()}
    meta = cases[("dstack-llama31-405b-fp8-h100", 8)]
    assert (meta.attention_16bit_layers, meta.mlp_16bit_layers, meta.lm_head_16bit) == (126, 2, True)
    rtn = cases[("vllm-rtn-marlin-h100", 8)]
    assert rtn.lm_head_16bit and rtn.attention_16bit_layers == 0
    gpt_fast = cases[("gpt-fast-readme", 4)]
    assert (gpt_fast.lm_head_16bit, gpt_fast.embedding_16bit) == (False, True)
    for (src, _), m in cases.items():
        assert m.has_16bit_modules == (m.weight_bits < 16), src  # every quantised point has a rule
