"""kernels/gpu_ops.py, the op families of a GPU calibration, and their path into a GPU profile's
op-level fits. CI has no GPU: the CPU twin runs the same cases on small shapes; a GPU test
(skipped without CUDA) runs the GPU's quick plan. The fit is checked on rows computed from
known parameters (the expected values), in gpu_ops' columns, through calibration/build.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inferecon.calibration.build import GPU_OPS, profile_from_tables
from inferecon.harness.runner import SkipCase, SweepContext
from inferecon.kernels import gpu_ops
from inferecon.model.catalog import get_model
from inferecon.model.terms import Layouts, evaluate
from inferecon.sweeps import calibration as cs

torch = pytest.importorskip("torch")
H100 = {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "gpu_count": 1, "metadata": {"torch_version": "2.13.0"}}


def _run(cases):
    rows = []
    for c in cases:
        try:
            rows.append({**c.params, **c.run(), "skipped": ""})
        except SkipCase as exc:
            rows.append({**c.params, "skipped": str(exc)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def twin():
    ctx = SweepContext(device="cpu", device_name="cpu", gpu_count=0, quick=True)
    cases = gpu_ops.cpu_twin_cases(ctx, True)
    assert len({c.case_id for c in cases}) == len(cases)  # every case its own id (resume keys on it)
    return _run(cases)


def test_the_cpu_twin_times_every_family_and_says_why_a_dtype_is_skipped(twin):
    measured = twin[twin["skipped"] == ""]
    assert set(measured["op"]) == {"gemm", "attention", "elementwise", "floor"}
    assert set(measured.loc[measured["op"] == "gemm", "dtype"]) == {"bf16", "int8_wo", "int4_wo"}
    assert (measured["time_us"] > 0).all()
    skipped = twin[twin["skipped"] != ""]
    assert set(skipped["dtype"]) == {"fp8"}  # torch._scaled_mm: GPUs of compute capability >= 8.9
    assert all("\n" not in r and r for r in skipped["skipped"])
    assert measured.loc[measured["op"] == "attention", "kernel"].str.startswith("torch_sdpa_").all()
    # GEMM weights and KV caches cold (a flush before every repetition); the floor and the
    # activations' ops warm.
    assert measured.loc[measured["op"].isin(["gemm", "attention"]), "flush_l2"].all()
    assert not measured.loc[measured["op"].isin(["elementwise", "floor"]), "flush_l2"].any()


def test_the_cpu_twins_rows_fit_into_a_gpu_profiles_op_fits(twin):
    res = profile_from_tables(H100, {GPU_OPS: twin}, "twin")
    f = res.profile.op_fits
    assert {g.dtype for g in f.gemm} == {"bf16", "int8_wo", "int4_wo"} and [a.kv_dtype for a in f.attention] == ["bf16"]
    assert f.elementwise_per_layer_us == pytest.approx(float(np.median(twin.loc[twin["op"] == "elementwise",
                                                                                   "time_us"])))
    assert any(p.startswith("op_fits.gemm.") for u in res.profile.uncertainty for p in u["paths"])


def _rows(t0_us, tflops, gbps, floor_us, ew_us):
    """gpu_ops rows of a GPU whose bf16 GEMMs take t0 + max(2MNK / F, bytes / B) exactly, its
    attention floor + max(KV bytes / B, FLOP / F), one layer's elementwise ops ew_us."""
    out = []
    for _, n, k in gpu_ops.plan("cuda", False).gemm_shapes:
        for m in (1, 2, 4, 8, 16, 32, 64, 128, 256):
            nbytes = 2 * (n * k + m * k + m * n)
            us = t0_us + max(2 * m * n * k / (tflops * 1e6), nbytes / (gbps * 1e3))
            out.append({**gpu_ops.gemm_params(m, n, k, "bf16", "x"), "time_us": us, "kernel": "torch_linear"})
    for h, hk, d in ((32, 8, 128), (8, 1, 128)):
        for b in (1, 4, 16, 64):
            for L in (512, 2048, 8192):
                kv = 2 * b * L * hk * d * 2
                out.append({**gpu_ops.attention_params(b, L, h, hk, d), "kernel": "torch_sdpa_flash",
                            "time_us": floor_us + max(kv / (gbps * 1e3), 4 * b * L * h * d / (tflops * 1e6))})
    out += [{**gpu_ops.elementwise_params(m, 4096, 14336, 32, 8, 128), "time_us": ew_us} for m in (1, 64)]
    out.append({"op": "floor", "dtype": "bf16", "label": "floor", "time_us": 2.0})
    df = pd.DataFrame(out)
    return df.assign(skipped="", median_us=df["time_us"])  # as measure() records them


def test_a_gpu_run_gives_the_op_fits_its_rows_were_computed_from():
    res = profile_from_tables(H100, {GPU_OPS: _rows(5.0, 600.0, 2800.0, 8.0, 20.0)}, "synthetic")
    f = res.profile.op_fits
    g, a = f.gemm_fit("bf16"), f.attention_fit("bf16")
    assert (g.t0_us, g.tflops, g.gbps) == pytest.approx((5.0, 600.0, 2800.0), rel=1e-3)
    assert (a.floor_us, a.gbps) == pytest.approx((8.0, 2800.0), rel=1e-3)
    assert f.elementwise_per_layer_us == pytest.approx(20.0)
    # The profile now prices a decode step op by op from them: Llama 3 8B, one GPU, batch 1,
    # its GEMMs' time by hand from the generating line (7 weight GEMMs per layer fused as
    # vLLM runs them: qkv, o, gate_up, down; the lm head once).
    m = get_model("llama-3-8b")
    r = evaluate(m, res.profile, Layouts(tp_r=1, tp_c=1, pp=1, ep=1, micro_batch=1), context=1024)
    q, kv = m.n_heads * m.d_head, m.n_kv_heads * m.d_head
    shapes = [(q + 2 * kv, m.d_model), (m.d_model, q), (2 * m.d_ff, m.d_model), (m.d_model, m.d_ff)]
    gemm_us = m.n_layers * sum(5.0 + 2 * (n * k + k + n) / 2800e3 for n, k in shapes) \
        + 5.0 + 2 * (m.vocab_size * m.d_model + m.d_model + m.vocab_size) / 2800e3
    assert r.t_gemm_s[0] * 1e6 == pytest.approx(gemm_us, rel=1e-3)


def test_a_cpu_calibration_runs_no_gpu_op_cases():
    ctx = SweepContext(device="cpu", device_name="cpu", gpu_count=0, quick=True)
    assert cs.gpu_op_cases(ctx, cs.plan("cpu", True, False), True) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_quick_plan_measures_bf16_gemms_attention_and_the_graph_floor():
    ctx = SweepContext(device="cuda", device_name=torch.cuda.get_device_name(), gpu_count=1, quick=True)
    df = _run(gpu_ops.cases(ctx, True))
    ok = df[df["skipped"] == ""]
    assert {"gemm", "attention", "elementwise", "floor"} <= set(ok["op"])
    assert bool(ok.loc[ok["op"] == "floor", "cuda_graph"].iloc[0])
    fits = profile_from_tables({**H100, "device_name": ctx.device_name}, {GPU_OPS: df}, "gpu").profile.op_fits
    assert fits.gemm_fit("bf16") is not None and fits.attention_fit("bf16") is not None
