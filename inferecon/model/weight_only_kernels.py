"""The weight-only GEMM kernel vLLM and SGLang run on Hopper, Marlin, from a published
measurement, where a per-op database has no table of it.

aiconfigurator-core holds no weight-only GEMM table for vLLM or SGLang on H100 or H200: its one
SGLang "int8_wo" table times per-token INT8 activation quantisation in PyTorch ops and
`int8_scaled_mm`, a W8A8 kernel (ingest/opdb.py flags those rows), and TensorRT-LLM's FpA-IntB
tables exist on A100 only. Both engines serve AWQ, GPTQ and RTN checkpoints through the Marlin
kernels (vLLM's gptq_marlin / awq_marlin / rtn_marlin, SGLang's sgl-kernel port of them).

The figure: the Humming project's H100 benchmark (inclusionAI/humming PR #2, 2026-03-24) times
Marlin at N = K = 8192, per-channel scales, M = 1: W4A16 4.98 TFLOP/s, W8A16 3.46 TFLOP/s
(cuBLAS FP16 2.30). At 2·N·K = 134.2 MFLOP those are 26.95 µs and 38.79 µs for 33.6 MB and
67.1 MB of weights; the line through the two points has a slope of 2.83 TB/s (within 2% of
the bandwidth the vLLM H100 bf16 table's decode fit gives, 2.79 TB/s) and an intercept of
15.1 µs, against 2.5 µs for the bf16 GEMM's fit: Marlin's fixed cost at decode sizes, not its
bytes, is what keeps 4-bit weights from a 4x speed-up. The same source's M = 2 and 4 columns
double the TFLOP/s, so the time holds flat over small M: the roofline's memory side.

So a Marlin GEMM at decode M is priced as that intercept plus the format's bytes at the
engine's own bf16 decode bandwidth (the same HBM, read by a kernel that streams as well), and
at prefill M by the bf16 fit's prefill figures (no measurement of Marlin there; the source's
table stops at small M). Hopper only: the intercept is an SM90 measurement.
"""

from __future__ import annotations

import dataclasses

from inferecon.model.engine_overheads import SourceQuote
from inferecon.model.opfits import GEMM_OPERAND_BYTES, GemmFit

HUMMING_H100 = SourceQuote(
    url="https://github.com/inclusionAI/humming/pull/2",
    quote="Device: H100; Problem: dense n8192 k8192 channelwise; Activation Type: float16; Metric: TFLOPS "
          "[...] | shape_m | torch-w16a16 | marlin-w4a16 | humming-w4a16 | marlin-w8a16 | [...] | 1 | 2.30 | 4.98 | "
          "4.96 | 3.46 | [...] | 2 | 4.63 | 10.02 | 9.92 | 6.87 | [...] | 4 | 9.26 | 19.85 | 19.65 | 13.75 |")

# The measurement, as the source gives it: the shape and each kernel's TFLOP/s at M = 1.
_N = _K = 8192
_M = 1
MARLIN_H100_TFLOPS_AT_M1 = {"int4_wo": 4.98, "int8_wo": 3.46}
# Engines whose weight-only formats run Marlin, and the GPUs (op-database system names) the
# measurement covers.
MARLIN_ENGINES = ("vllm", "sglang")
MARLIN_SYSTEMS = ("h100_sxm", "h200_sxm")


def _time_us(dtype: str) -> float:
    return 2.0 * _M * _N * _K / (MARLIN_H100_TFLOPS_AT_M1[dtype] * 1e6)


def _bytes(dtype: str) -> float:
    a, w, o = GEMM_OPERAND_BYTES[dtype]
    return _N * _K * w + _M * _K * a + _M * _N * o


def marlin_line() -> tuple[float, float]:
    """(intercept µs, bandwidth GB/s) of the line through the source's W4A16 and W8A16 points."""
    t4, t8 = _time_us("int4_wo"), _time_us("int8_wo")
    b4, b8 = _bytes("int4_wo"), _bytes("int8_wo")
    gbps = (b8 - b4) / (t8 - t4) / 1e3
    return t4 - b4 / (gbps * 1e3), gbps


def uses_marlin(engine: str, system: str) -> bool:
    return engine.strip().lower() in MARLIN_ENGINES and system in MARLIN_SYSTEMS


def marlin_gemm_fit(bf16: GemmFit, dtype: str) -> GemmFit:
    """A weight-only GEMM fit for `dtype` (int4_wo or int8_wo) from the engine's bf16 fit on the
    same GPU: Marlin's intercept at decode M, the bf16 decode fit's HBM bandwidth for every
    weight size (the source's 33.6 MB W4A16 point, within L2, sits on the same line as its
    67.1 MB W8A16 one) and its FLOP rate, no serial-K bound or bands (the source has one shape);
    the bf16 fit's figures above the decode regime."""
    if dtype not in MARLIN_H100_TFLOPS_AT_M1:
        raise ValueError(f"no Marlin measurement for {dtype}")
    t0_us, _ = marlin_line()
    gbps = bf16.decode_gbps or bf16.gbps
    return dataclasses.replace(
        bf16, dtype=dtype, kernels={"marlin": 1.0}, quality=None, source=None,
        decode_m_max=bf16.decode_m_max or 256, decode_t0_us=t0_us, decode_tflops=bf16.decode_tflops or bf16.tflops,
        decode_gbps=gbps, decode_small_gbps=None, decode_k_per_us=None, decode_quality=None,
        decode_small_quality=None, single_decode_quality=None, large_quality=None, decode_bands=[],
        band_quality=None, band_small_quality=None, prefill_quality=None)


def marlin_note(engine: str, dtype: str, bf16: GemmFit) -> str:
    t0_us, gbps = marlin_line()
    return (f"gemm/{dtype}: {engine} runs Marlin for weight-only formats and the database has no table of it: "
            f"decode intercept {t0_us:.1f} us and the bf16 decode fit's {bf16.decode_gbps or bf16.gbps:.0f} GB/s "
            f"(the measured line's slope: {gbps:.0f} GB/s), from {HUMMING_H100.url} (H100, N = K = 8192, M = 1); "
            "prefill M at the bf16 fit's figures")
