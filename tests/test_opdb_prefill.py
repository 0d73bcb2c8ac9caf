"""The prefill side of the per-op fits (calibration/opdb_fit.py) against the installed tables'
own rows: each expected figure is a row of aiconfigurator-core 0.12.0's parquet files, read by
hand (pandas, the row's `latency` in ms x 1000) and written here; skipped without the package."""

import importlib.util

import pytest

from inferecon.calibration import opdb_fit as F
from inferecon.model.opfits import ContextMlaFit, curve_interp_us, moe_curve_key

HAVE_AIC = importlib.util.find_spec("aiconfigurator_core") is not None
needs_aic = pytest.mark.skipif(not HAVE_AIC, reason="aiconfigurator-core not installed (pip install 'inferecon[opdb]')")


@pytest.fixture(scope="module")
def db():
    from inferecon.ingest.opdb import open_database

    return open_database(None)


def _moe(db, system, dtype, dist="power_law_1.01"):
    t = F._pick(db, system, "moe", "trtllm", "moe_perf", "1.3.0rc20")
    return next(m for m in F.fit_moe(t) if m.dtype == dtype and m.distribution == dist)


@pytest.mark.slow  # the 126k-row MoE table, ~2 s
@needs_aic
def test_moe_curves_reach_prefill_token_counts(db):
    # h200_sxm/moe/trtllm/1.3.0rc20: DeepSeek-V3's experts (7168 x 2048, 256 experts, top 8)
    # fp8_block at moe_tp 8, ep 1, power_law_1.01: 1.418419 ms at 1,536 tokens, 9.800340 at 16,384.
    m = _moe(db, "h200_sxm", "fp8_block")
    key = moe_curve_key(7168, 2048, 256, 8, 8, 1)
    assert m.curve_us(key, 1536) == pytest.approx(1418.419, rel=1e-4)
    assert m.curve_us(key, 16384) == pytest.approx(9800.340, rel=1e-4)


@pytest.mark.slow
@needs_aic
def test_trtllm_min_latency_moe_kernel_only_up_to_128_tokens(db):
    # b200_sxm/moe/trtllm/1.3.0rc20, the same shape in nvfp4: at 1,536 tokens the min-latency
    # kernel's row is 0.209312 ms, the CUTLASS path's 0.476282; TensorRT-LLM runs the former only
    # up to 128 tokens, so the curve reads the latter.
    m = _moe(db, "b200_sxm", "nvfp4")
    assert m.curve_us(moe_curve_key(7168, 2048, 256, 8, 8, 1), 1536) == pytest.approx(476.282, rel=1e-4)


@needs_aic
def test_context_mla_fit_reads_the_table(db):
    # h200_sxm/mla/trtllm/1.3.0rc20/context_mla_perf, batch 1, bf16 KV, 16 heads: 0.056672 ms at
    # isl 1,536 and 0.632843 at 8,192.
    t = F._pick(db, "h200_sxm", "mla", "trtllm", "context_mla_perf", "1.3.0rc20")
    fit = next(f for f in F.fit_context_mla(t) if f.kv_dtype == "bf16")
    assert fit.time_us(16, 1536) == pytest.approx(56.672, rel=1e-4)
    assert fit.time_us(16, 8192) == pytest.approx(632.843, rel=1e-4)
    assert fit.time_us(16, 65536) is None and fit.time_us(12, 1536) is None  # beyond / not measured


@needs_aic
def test_nccl_lines_read_prefill_sized_rows_within_11_percent(db):
    # h200_sxm/comm/nccl/2.29.2 (the newest, what calibrate --op-db reads), all_reduce over 8
    # GPUs, fp16: 8,388,608 elements (16 MiB) 0.12174 ms, 4,194,304 (8 MiB) 0.07830 ms.
    t = F._pick(db, "h200_sxm", "comm", "nccl", "nccl_perf", None)
    lines = [ln for ln in F.fit_nccl(t, 8) if ln.collective == "all_reduce" and ln.world_size == 8]

    def at(nbytes):
        ln = next(ln for ln in lines if ln.min_bytes <= nbytes < (ln.max_bytes or float("inf")))
        return ln.alpha_us + nbytes / (ln.beta_gbps * 1e3)

    assert at(16 * 2 ** 20) == pytest.approx(121.74, rel=0.11)
    assert at(8 * 2 ** 20) == pytest.approx(78.30, rel=0.11)


def test_curve_interpolation_by_hand():
    # Log-log between (1000, 100) and (4000, 400): 2000 tokens -> 200 us (a straight line in log);
    # below the first row the first row; beyond the last, none.
    c = [[1000.0, 4000.0], [100.0, 400.0]]
    assert curve_interp_us(c, 2000.0) == pytest.approx(200.0)
    assert curve_interp_us(c, 10.0) == pytest.approx(100.0)
    assert curve_interp_us(c, 4001.0) is None
    assert ContextMlaFit("bf16", shape_curves={"h16": c}).time_us(16, 2000.0) == pytest.approx(200.0)


def test_prefill_mla_attention_is_the_tables_difference_of_prompts():
    # A synthetic MLA prefill table for 16 heads: 10 us at 1 token, 100 at 1,000, 400 at 4,000.
    # DeepSeek-V3 at tp 8 (16 heads a GPU, 61 layers): a whole 1,000-token prompt is 61 x 100 us,
    # 10 of each as the floor; a 1,000-token chunk after 1,000 cached is T(2000) - T(1000)
    # = 200 - 100 = 100 us of work plus the 10 us floor, a layer.
    import dataclasses

    from inferecon.model.catalog import resolve_model
    from inferecon.model.opfits import GemmFit, OpFits
    from inferecon.model.prefill import prefill_chunk
    from inferecon.model.published import get_profile

    gemm = GemmFit("bf16", t0_us=1.0, tflops=500.0, gbps=2000.0, compute_efficiency=None, hbm_efficiency=None)
    mla = ContextMlaFit("bf16", shape_curves={"h16": [[1.0, 1000.0, 4000.0], [10.0, 100.0, 400.0]]})
    hw = dataclasses.replace(get_profile("h200"), op_fits=OpFits("synthetic", "toy", "0", gemm=[gemm], context_mla=[mla]))
    ds = resolve_model("deepseek-v3").with_precision(16, 16)
    whole = prefill_chunk(ds, hw, tokens=1000, tp=8)
    assert whole.t_attention_s * 1e6 == pytest.approx(61 * 100.0, rel=1e-9)
    later = prefill_chunk(ds, hw, tokens=1000, prior_tokens=1000, tp=8)
    assert later.t_attention_s * 1e6 == pytest.approx(61 * (200.0 - 100.0 + 10.0), rel=1e-9)
