"""The op-level step model (model/ops.py) against hand calculations.

Fits are round, made-up numbers (labelled synthetic: not any GPU's) so that every figure below
can be worked out on paper; the arithmetic is written out next to each expectation.
"""

import dataclasses

import numpy as np
import pytest

from inferecon.model.engine import EngineProfile
from inferecon.model.opfits import (AllReduceChoice, AttentionFit, CollectiveOpFit, EngineOpFits, GemmFit, OpFits)
from inferecon.model.published import get_profile
from inferecon.model.spec import ModelSpec
from inferecon.model.terms import Layouts, evaluate

# 2 layers, d 1024, 8 heads of 128 (no GQA), gated MLP 4096, vocab 32000, bf16 weights and KV.
MODEL = ModelSpec("toy", n_layers=2, d_model=1024, n_heads=8, n_kv_heads=8, d_head=128, d_ff=4096,
                  vocab_size=32000)
GEMM = GemmFit("bf16", t0_us=4.0, tflops=500.0, gbps=2000.0, compute_efficiency=None, hbm_efficiency=None)
ATTN = AttentionFit("bf16", floor_us=10.0, gbps=1000.0, tflops=100.0)
CUSTOM = CollectiveOpFit("toy_custom", "all_reduce", 2, "intra", "graph", alpha_us=3.0, beta_gbps=100.0)
NCCL = CollectiveOpFit("nccl", "all_reduce", 2, "intra", "graph", alpha_us=10.0, beta_gbps=100.0)
FITS = OpFits("synthetic", "toy", "0", gemm=[GEMM], attention=[ATTN], collectives=[CUSTOM, NCCL])


def _engine(custom_max_bytes=1e6):
    eng = EngineOpFits("synthetic", "toy", "0", allreduce=[AllReduceChoice(2, "toy_custom", custom_max_bytes)],
                       elementwise_per_layer_us=10.0)
    return EngineProfile(name="toy", op_fits=eng)


def _hw(fits=FITS):
    return dataclasses.replace(get_profile("h100-sxm"), op_fits=fits)


def _eval(tp=1, engine=None, model=MODEL, fits=FITS, batch=1):
    lay = Layouts(tp_r=1, tp_c=tp, pp=1, ep=1, micro_batch=batch)
    return evaluate(model, _hw(fits), lay, context=1000, engine=engine or _engine())


# Per layer at M = 1 (bytes = N·K·2 + M·K·2 + M·N·2; every GEMM here is memory-bound: its FLOP
# time, 2·N·K / 500e12, is < 0.05 us against us of bytes):
#   QKV    N 3072 (1024 + 2·8·128), K 1024: 6 299 648 B / 2000 GB/s = 3.149824 us
#   out    N 1024, K 1024:                  2 101 248 B            = 1.050624 us
#   gate/up N 8192, K 1024:                16 795 648 B            = 8.397824 us
#   down   N 1024, K 4096:                  8 398 848 B            = 4.199424 us   (sum 16.797696)
#   attention: KV 1000 · 2·8·128 · 2 B = 4 096 000 B / 1000 GB/s = 4.096 us (FLOP 4·8·128·1000 /
#              100e12 = 0.041 us: memory-bound), floor 10 us
#   elementwise 10 us; activations (8·1024 + 2·4096) · 2 B = 32 768 B per layer / 2000 GB/s
# Once per step: lm head N 32000, K 1024: 65 602 048 B / 2000 GB/s = 32.801024 us, t0 4 us.
MEM_US = 2 * (16.797696 + 4.096) + 32.801024 + 2 * 0.016384  # 74.621184
FIXED_US = 2 * (4 * 4.0 + 10.0 + 10.0) + 4.0  # 76: GEMM intercepts, attention floor, elementwise


def test_single_gpu_step_is_the_sum_of_its_ops():
    r = _eval()
    assert r.t_memory_s[0] * 1e6 == pytest.approx(MEM_US, rel=1e-9)
    assert r.t_latency_s[0] * 1e6 == pytest.approx(FIXED_US, rel=1e-9)
    assert r.t_arithmetic_s[0] == 0.0 and r.t_network_s[0] == 0.0
    # Ops run in sequence: the step is memory + latency (no max with arithmetic to hide behind).
    assert r.t_step_s[0] * 1e6 == pytest.approx(MEM_US + FIXED_US, rel=1e-9)


def test_engine_allreduce_inside_its_limit_and_nccl_beyond():
    # tp 2: a 1 · 1024 · 2 B = 2048 B message, two per layer, two layers.
    small = _eval(tp=2, engine=_engine(custom_max_bytes=1e6))
    assert small.t_network_s[0] * 1e6 == pytest.approx(4 * (3.0 + 2048 / 100e3), rel=1e-9)  # 12.08192
    big = _eval(tp=2, engine=_engine(custom_max_bytes=1000.0))
    assert big.t_network_s[0] * 1e6 == pytest.approx(4 * (10.0 + 2048 / 100e3), rel=1e-9)  # 40.08192


def test_tp2_halves_the_column_and_row_splits():
    # QKV N 1536 (512 + 2·4·128) and gate/up N 4096 at K 1024; out and down K 512 and 2048;
    # lm head N 16000. Bytes: QKV 1536·1024·2 + 2048 + 3072 = 3 150 848, out 1024·512·2 + 1024 +
    # 2048 = 1 051 648, gate/up 8 398 848, down 1024·2048·2 + 4096 + 2048 = 4 200 448 per layer;
    # lm head 32 802 048 once; KV 4.096 us / 2 per layer; activations / 2.
    per_layer = (3150848 + 1051648 + 8398848 + 4200448) / 2000e3 + 4.096 / 2
    mem = 2 * per_layer + (16000 * 1024 * 2 + 2048 + 32000) / 2000e3 + 2 * 0.016384 / 2
    r = _eval(tp=2)
    assert r.t_memory_s[0] * 1e6 == pytest.approx(mem, rel=1e-9)


def test_missing_dtype_uses_the_fallback_fit_at_its_own_bytes():
    # FP8 weights with only a bf16 fit: same t0 and bandwidth, 1-byte weights and activations,
    # 2-byte outputs. gate/up: 8192·1024·1 + 1024·1 + 8192·2 = 8 406 016 B = 4.203008 us.
    from inferecon.model.ops import fallbacks

    fp8 = MODEL.with_format("fp8")
    hw = _hw()
    assert any("fp8 GEMMs priced with the bf16 fit" in f for f in fallbacks(fp8, hw, _engine()))
    lay = Layouts(tp_r=1, tp_c=1, pp=1, ep=1, micro_batch=1)
    r = evaluate(fp8, hw, lay, context=1000, engine=_engine())
    qkv, out, gu, down = (3072 * 1024 + 1024 + 6144, 1024 * 1024 + 1024 + 2048, 8192 * 1024 + 1024 + 16384,
                          1024 * 4096 + 4096 + 2048)
    head = 32000 * 1024 + 1024 + 64000
    mem = (2 * (qkv + out + gu + down) + head) / 2000e3 + 2 * 4.096 + 2 * 0.016384
    assert r.t_memory_s[0] * 1e6 == pytest.approx(mem, rel=1e-9)


def test_compute_bound_gemm_goes_to_arithmetic():
    # batch 4096: gate/up FLOP 2·4096·8192·1024 = 68.7e9 / 500e12 = 137.4 us against bytes
    # (16 777 216 + 8 388 608 + 67 108 864) / 2000e9 = 46.1 us: arithmetic.
    r = _eval(batch=4096)
    assert r.t_arithmetic_s[0] * 1e6 > 2 * 137.0
    total = r.t_arithmetic_s + r.t_memory_s + r.t_network_s + r.t_latency_s
    assert np.allclose(total, r.t_step_s)


def test_without_op_fits_the_model_is_unchanged():
    lay = Layouts(tp_r=1, tp_c=2, pp=1, ep=1, micro_batch=1)
    a = evaluate(MODEL, get_profile("h100-sxm"), lay, context=1000)
    b = evaluate(MODEL, dataclasses.replace(get_profile("h100-sxm"), op_fits=None), lay, context=1000)
    assert a.t_step_s[0] == b.t_step_s[0]


def test_families_add_up_to_the_step():
    # gemm (4 per layer + lm head), attention, elementwise and the engine's all-reduce: every op
    # is in one family, so the families sum to the step (the profile adds no per-step overhead).
    from inferecon.model.terms import FAMILIES

    r = _eval(tp=2)
    total = sum(getattr(r, f"t_{f}_s") for f in FAMILIES)
    assert np.allclose(total, r.t_step_s, rtol=1e-12)
    assert r.t_allreduce_s[0] * 1e6 == pytest.approx(4 * (3.0 + 2048 / 100e3), rel=1e-9)
    assert r.t_elementwise_s[0] * 1e6 == pytest.approx(2 * 10.0 + 2 * 0.016384 / 2, rel=1e-9)


def test_mla_projections_hold_every_attention_weight_once():
    # DeepSeek-V3 per layer: q_a 7168·1536 + kv_a 7168·576 (fused, 11 010 048 + 4 128 768),
    # q_b 1536·128·192 = 37 748 736, absorbed K and V up-projections 128·512·128 twice
    # = 16 777 216, out 128·128·7168 = 117 440 512: 187 105 280 weights (its config.json's
    # shapes), in five kernels with K = 7168, 1536, 128 (nope), 512 (latent), 128·128.
    from inferecon.model.catalog import get_model
    from inferecon.model.ops import _mla_gemms

    calls = []
    _mla_gemms(lambda fam, count, m, n, k: calls.append((n, k)), get_model("deepseek-v3"), 61, 1.0, 1.0, 7168.0)
    assert len(calls) == 5
    assert sum(n * k for n, k in calls) == 187_105_280
    assert sorted(k for _, k in calls) == sorted([7168, 1536, 128, 512, 16384])


def test_published_profiles_read_issue_20s_all_reduce_in_a_decode_step_only():
    import numpy as np

    from inferecon.model import network as net
    from inferecon.model.published import get_profile

    for gpu in ("h100-sxm", "h200", "a100-sxm-80gb", "b200"):
        # The opt-in "-measured" names of before are aliases of the published profiles now.
        assert get_profile(gpu + "-measured") is get_profile(gpu)
        assert any("aiconfigurator-core 0.12.0" in s for s in get_profile(gpu).provenance.sources)
    hw = get_profile("h100-sxm")
    msg = np.array([16384.0])
    # Issue 20 (aiconfigurator-core tables): 8 x H100, 16 KB all-reduce, vLLM's own 5.3 us inside
    # a decode step's CUDA graph, against NCCL's 19.0 us.
    t_us = 1e6 * float(net.collective_time_s(hw.decode_view, net.ALL_REDUCE, np.array([8]), 1, msg)[0])
    assert t_us == pytest.approx(5.3, rel=0.10)
    # A plain collective query (an nccl-tests comparison) stays NCCL's model, within 25% of the 19.0.
    plain_us = 1e6 * float(net.collective_time_s(hw, net.ALL_REDUCE, np.array([8]), 1, msg)[0])
    assert plain_us == pytest.approx(19.0, rel=0.25)
    # The paper's profile is untouched by any of it.
    paper = get_profile("h100-sxm-paper")
    assert paper.latency.kernel_launch_us == 4.0 and paper.memory.efficiency == 0.75
    assert paper.decode_view is paper


def test_moe_router_runs_on_the_bf16_fit():
    # A toy MoE (2 layers, d 1024, 8 experts of 4096, top 2) with INT8 weight-only weights: its
    # dense GEMMs take the int8_wo fit (t0 50 us), the router -- N 8, K 1024, 16-bit weights and
    # inputs -- the bf16 fit (t0 4 us). Both fits stream 2000 GB/s and run 500 TFLOP/s, so the
    # router's bytes cost the same under either and the step differs by the two intercepts:
    # 2 layers x (50 - 4) us = 92 us against a profile without the bf16 fit.
    from inferecon.model.spec import ModelSpec

    moe = ModelSpec("toy-moe", n_layers=2, d_model=1024, n_heads=8, n_kv_heads=8, d_head=128, d_ff=4096,
                    vocab_size=32000, n_experts=8, n_active_experts=2, d_ff_expert=4096, weight_bits=8,
                    weight_format="int8-wo")
    wo = GemmFit("int8_wo", t0_us=50.0, tflops=500.0, gbps=2000.0, compute_efficiency=None, hbm_efficiency=None)
    with_bf16 = OpFits("synthetic", "toy", "0", gemm=[GEMM, wo], attention=[ATTN], collectives=[CUSTOM, NCCL])
    without = OpFits("synthetic", "toy", "0", gemm=[wo], attention=[ATTN], collectives=[CUSTOM, NCCL])
    a = _eval(model=moe, fits=with_bf16)
    b = _eval(model=moe, fits=without)
    assert (b.t_step_s[0] - a.t_step_s[0]) * 1e6 == pytest.approx(2 * (50.0 - 4.0), rel=1e-9)


# An int4 weight-only fit (synthetic, round numbers) beside the bf16 one.
INT4 = GemmFit("int4_wo", t0_us=8.0, tflops=500.0, gbps=1000.0, compute_efficiency=None, hbm_efficiency=None)
FITS4 = OpFits("synthetic", "toy", "0", gemm=[GEMM, INT4], attention=[ATTN], collectives=[CUSTOM, NCCL])


def test_a_16bit_lm_head_of_an_int4_model_runs_the_bf16_gemm():
    from inferecon.model.quant import KeptModules

    int4 = MODEL.with_format("w4a16")
    kept = int4.with_kept_16bit(KeptModules(lm_head=True, embeddings=True))
    # Per layer at M = 1 on the int4 fit (bytes = N·K·0.5 + K·2 + N·2, 1000 GB/s):
    #   QKV 1 581 056 B = 1.581056 us, out 528 384 B = 0.528384, gate/up 4 212 736 B = 4.212736,
    #   down 2 107 392 B = 2.107392 (sum 8.429568); attention 4.096 us as above; activations
    #   2 · 32 768 B / 1000 GB/s = 0.065536 us.
    # The lm head kept 16-bit: bf16 fit, 65 602 048 B / 2000 GB/s = 32.801024 us, t0 4 us; in int4
    # (the old rule) it was 16 384 000 + 2 048 + 64 000 = 16 450 048 B / 1000 GB/s = 16.450048 us, t0 8.
    layers_us = 2 * (8.429568 + 4.096) + 0.065536
    r = _eval(model=kept, fits=FITS4)
    assert r.t_memory_s[0] * 1e6 == pytest.approx(layers_us + 32.801024, rel=1e-9)
    assert r.t_latency_s[0] * 1e6 == pytest.approx(2 * (4 * 8.0 + 10.0 + 10.0) + 4.0, rel=1e-9)
    old = _eval(model=int4, fits=FITS4)
    assert old.t_memory_s[0] * 1e6 == pytest.approx(layers_us + 16.450048, rel=1e-9)
    assert old.t_latency_s[0] * 1e6 == pytest.approx(2 * (4 * 8.0 + 10.0 + 10.0) + 8.0, rel=1e-9)


def test_every_module_kept_16bit_prices_the_gemms_of_the_bf16_model():
    from inferecon.model.quant import KeptModules

    all16 = MODEL.with_format("w4a16").with_kept_16bit(KeptModules(attention_all=True, mlp_layers=2, lm_head=True))
    a, b = _eval(model=all16, fits=FITS4), _eval(model=MODEL, fits=FITS4)
    assert float(a.t_gemm_s[0]) == pytest.approx(float(b.t_gemm_s[0]), rel=1e-12)
    # Half of the attention layers kept: halfway between, in GEMM time.
    half = MODEL.with_format("w4a16").with_kept_16bit(KeptModules(attention_layers=1))
    none = MODEL.with_format("w4a16")
    mid = _eval(model=half, fits=FITS4).t_gemm_s[0]
    att = lambda m: _eval(model=m, fits=FITS4).t_gemm_s[0]  # noqa: E731
    full = MODEL.with_format("w4a16").with_kept_16bit(KeptModules(attention_all=True))
    assert float(mid) == pytest.approx((float(att(none)) + float(att(full))) / 2, rel=1e-12)


def test_per_query_head_attention_reads_each_kv_head_once_per_query_head():
    # The toy with 2 KV heads for its 8 query heads (groups of 4), on one GPU: the grouped
    # kernel reads KV 1000 · 2·2·128 · 2 B = 1 024 000 B a layer (1.024 us at 1000 GB/s); a
    # kernel of one thread block per query head (TensorRT-LLM before XQA) reads it 4 times:
    # 3 x 1.024 us more a layer, 6.144 us over the 2 layers, all of it HBM traffic.
    gqa = dataclasses.replace(MODEL, n_kv_heads=2)
    base = _engine()
    grouped = _eval(model=gqa, engine=base)
    per_head = _eval(model=gqa, engine=dataclasses.replace(base, kv_reread_per_query_head=True))
    assert (per_head.t_memory_s[0] - grouped.t_memory_s[0]) * 1e6 == pytest.approx(6.144, rel=1e-9)
    assert per_head.t_latency_s[0] == pytest.approx(grouped.t_latency_s[0], rel=1e-12)
    # The toy itself (8 KV heads for 8 query heads) has nothing to read twice.
    assert _eval(engine=dataclasses.replace(base, kv_reread_per_query_head=True)).t_memory_s[0] * 1e6 == \
        pytest.approx(MEM_US, rel=1e-9)


def test_roofline_accumulates_the_same_on_the_search_path_and_on_plain_numbers():
    """The accumulator's in-place path (per-configuration arrays, the frontier search) gives the
    figures of the plain-number path. By hand: 2 GEMMs, floor 1 µs, 1 TFLOP/s, 1 GB/s; config 0
    does 1e6 FLOP and no bytes (arith 2 µs), config 1 moves 3e3 bytes and no FLOPs (mem 6 µs)."""
    from inferecon.model.ops import _Acc

    acc = _Acc((2,))
    for _ in range(2):  # a second op into the same family adds to it, not over it
        acc.roofline("gemm", 2.0, np.array([1.0, 1.0]), np.array([1.0, 1.0]), np.array([1.0, 1.0]),
                     np.array([1e6, 0.0]), np.array([0.0, 3e3]))
    out = acc.result()
    np.testing.assert_allclose(out.t_arith, [4e-6, 0.0], rtol=1e-12)
    np.testing.assert_allclose(out.t_mem, [0.0, 12e-6], rtol=1e-12)
    np.testing.assert_allclose(out.t_fixed, [4e-6, 4e-6], rtol=1e-12)
    np.testing.assert_allclose(out.families["gemm"], [8e-6, 16e-6], rtol=1e-12)
    for i in range(2):
        one = _Acc(())
        for _ in range(2):
            one.roofline("gemm", 2.0, 1.0, 1.0, 1.0, [1e6, 0.0][i], [0.0, 3e3][i])
        r = one.result()
        assert (float(r.t_arith), float(r.t_mem), float(r.families["gemm"])) == (
            out.t_arith[i], out.t_mem[i], out.families["gemm"][i])


@pytest.mark.parametrize("one_first", [True, False])
def test_roofline_family_adds_across_shapes_in_either_order(one_first):
    """A family priced once on one configuration's figures and once on a search's arrays
    broadcasts, as plain adds do, whichever comes first (by hand: a 2 µs floor each time, and
    1 and 3 µs of memory on the arrays)."""
    from inferecon.model.ops import _Acc

    acc = _Acc((2,))
    one = ("x", 1.0, np.array([2.0]), np.array([1.0]), np.array([1.0]), np.array([0.0]), np.array([0.0]))
    two = ("x", 1.0, np.array([2.0, 2.0]), 1.0, np.array([1.0, 1.0]), np.array([0.0, 0.0]), np.array([1e3, 3e3]))
    for args in ((one, two) if one_first else (two, one)):
        acc.roofline(*args)
    np.testing.assert_allclose(acc.result().families["x"], [5e-6, 7e-6], rtol=1e-12)
