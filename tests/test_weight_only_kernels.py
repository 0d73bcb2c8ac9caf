"""Marlin, the weight-only GEMM vLLM and SGLang run on Hopper (model/weight_only_kernels.py), and
the SGLang table whose "int8_wo" label names a kernel its collector did not time.

Expected values are computed here by hand from the source's published TFLOP/s (inclusionAI/
humming PR #2: H100, N = K = 8192, M = 1: W4A16 4.98, W8A16 3.46) and from the real table's rows."""

from __future__ import annotations

import importlib.util

import pytest

from inferecon.calibration.opdb_fit import calibrate_from_opdb
from inferecon.ingest.opdb import open_database
from inferecon.model.opfits import GemmFit
from inferecon.model.weight_only_kernels import marlin_gemm_fit, marlin_line, uses_marlin

HAVE_AIC = importlib.util.find_spec("aiconfigurator_core") is not None
needs_aic = pytest.mark.skipif(not HAVE_AIC, reason="aiconfigurator-core not installed (pip install 'inferecon[opdb]')")


def test_the_line_through_the_two_published_points_by_hand():
    # 2 * 8192^2 = 134,217,728 FLOP: W4A16 at 4.98 TFLOP/s = 26.951 us, W8A16 at 3.46 = 38.791 us.
    # Bytes: weights 33,554,432 (4 bit) and 67,108,864 (8 bit), plus 16,384 in and 16,384 out.
    # Slope 33,554,432 B / 11.840 us = 2,834 GB/s; intercept 26.951 - 33,587,200 / 2,834e3 = 15.10 us.
    t0_us, gbps = marlin_line()
    assert gbps == pytest.approx(2834.0, abs=2.0)
    assert t0_us == pytest.approx(15.10, abs=0.02)


def _bf16(decode_gbps: float) -> GemmFit:
    return GemmFit(dtype="bf16", t0_us=4.0, tflops=790.0, gbps=2850.0, compute_efficiency=None, hbm_efficiency=None,
                   decode_m_max=256, decode_t0_us=2.5, decode_tflops=560.0, decode_gbps=decode_gbps,
                   decode_small_gbps=1200.0, decode_l2_bytes=50e6, decode_k_per_us=3000.0)


def test_a_marlin_fit_prices_the_measured_shape_at_the_measured_times():
    # With the bf16 decode bandwidth equal to the line's slope, the fit gives back the source's
    # two times; the 33.6 MB W4A16 weights sit within the 50 MB L2 and still read at that slope
    # (not the bf16 fit's 1,200 GB/s below L2), as the source's points do.
    _, slope = marlin_line()
    w4 = marlin_gemm_fit(_bf16(slope), "int4_wo")
    w8 = marlin_gemm_fit(_bf16(slope), "int8_wo")
    assert w4.time_us(1, 8192, 8192) == pytest.approx(26.95, abs=0.02)
    assert w8.time_us(1, 8192, 8192) == pytest.approx(38.79, abs=0.02)
    # Prefill M keeps the bf16 fit's one roofline: 2 * 4096 * 8192^2 FLOP at 790 TFLOP/s + 4 us.
    assert w4.time_us(4096, 8192, 8192) == pytest.approx(4.0 + 549.76e9 / 790e6, rel=1e-3)


def test_only_vllm_and_sglang_on_hopper_run_marlin():
    assert uses_marlin("vllm", "h100_sxm") and uses_marlin("SGLang", "h200_sxm")
    assert not uses_marlin("trtllm", "h100_sxm") and not uses_marlin("vllm", "a100_sxm")


def test_the_synthetic_h100_vllm_calibration_gets_marlin_fits():
    from pathlib import Path

    cal = calibrate_from_opdb(str(Path(__file__).parent / "fixtures" / "opdb" / "db"), "h100-sxm", "vllm")
    got = {g.dtype: g for g in cal.profile.op_fits.gemm}
    assert got["int4_wo"].kernels == {"marlin": 1.0} and got["int8_wo"].kernels == {"marlin": 1.0}
    # The synthetic bf16 rows stream at 2,800 GB/s (make_fixtures.GEMM_GBPS): Marlin reads at that rate,
    # its own intercept on top.
    assert got["int4_wo"].decode_gbps == pytest.approx(2800.0, rel=1e-6)
    assert got["int4_wo"].time_us(1, 8192, 8192) == pytest.approx(15.10 + (8192 * 8192 / 2 + 4 * 8192) / 2800e3, abs=0.02)
    assert any("Marlin" in n and "humming" in n for n in cal.profile.op_fits.notes)
    assert any("int4_wo" in line and "marlin" in line for line in cal.summary)


@needs_aic
def test_sglang_int8_wo_rows_are_flagged_as_another_kernel():
    # h100_sxm/gemm/sglang/0.5.6.post2: its 9,240 int8_wo rows time W8A8 (the 8192 x 8192, M = 1
    # row reads 50.8 us, the bf16 row 47.8 us for twice the weight bytes).
    t = open_database(None).read("h100_sxm", "gemm", "sglang", "0.5.6.post2", "gemm_perf")
    wo = t.rows[t.rows["dtype"] == "int8_wo"]
    assert len(wo) == 9240 and set(wo["flag"]) == {"kernel: W8A8 with dynamic activation quantisation, not weight-only"}
    assert "int8_wo" not in set(t.clean["dtype"])
    row = wo[(wo["m"] == 1) & (wo["n"] == 8192) & (wo["k"] == 8192)]
    assert float(row["time_us"].iloc[0]) == pytest.approx(50.77, abs=0.01)


@needs_aic
def test_real_calibrations_take_marlin_on_hopper_and_trtllm_tables_on_a100():
    h100 = {g.dtype: g for g in calibrate_from_opdb(None, "h100-sxm", "vllm").profile.op_fits.gemm}
    assert h100["int4_wo"].kernels == {"marlin": 1.0}
    assert h100["int4_wo"].decode_t0_us == pytest.approx(15.10, abs=0.02)
    # A100: vLLM's table has no weight-only rows and no Marlin measurement covers the GPU, so
    # TensorRT-LLM 1.0.0's FpA-IntB rows of the same GPU serve (decode intercept 8.19 us).
    a100 = {g.dtype: g for g in calibrate_from_opdb(None, "a100-sxm-80gb", "vllm").profile.op_fits.gemm}
    assert "marlin" not in a100["int4_wo"].kernels
    assert a100["int4_wo"].decode_t0_us == pytest.approx(8.19, abs=0.01)
