"""Prefill (model/prefill.py): FLOPs and times checked against hand calculations."""

import pytest

from inferecon.core.errors import UserError
from inferecon.model.catalog import resolve_model
from inferecon.model.prefill import chunk_plan, prefill_chunk, prefill_time_s
from inferecon.model.published import get_profile


@pytest.fixture(scope="module")
def llama8b():
    return resolve_model("llama-3-8b")


@pytest.fixture(scope="module")
def h100():
    return get_profile("h100-sxm")


def test_llama3_8b_prefill_flops_at_2048_by_hand(llama8b, h100):
    # Llama 3 8B (config.json: hidden 4096, 32 layers, 32 heads, 8 KV heads of 128, MLP 14336,
    # vocab 128256). Weights per layer: q 4096·4096 = 16,777,216; k and v 2·4096·1024 =
    # 8,388,608; o 16,777,216; gate/up/down 3·4096·14336 = 176,160,768: 218,103,808 per layer,
    # 6,979,321,856 for 32 layers. GEMM FLOPs at 2048 tokens: 2 · 6,979,321,856 · 2048 =
    # 28,587,302,322,176, plus the lm head on the last position only: 2 · 128256 · 4096 =
    # 1,050,673,152 -> 28,588,352,995,328.
    p = prefill_chunk(llama8b, h100, tokens=2048)
    assert p.gemm_flops_per_gpu == pytest.approx(28_588_352_995_328, rel=1e-12)
    # Causal attention: 4 · 32 heads · 128 · 2048 · (2048 / 2) per layer = 34,359,738,368,
    # · 32 layers = 1,099,511,627,776.
    assert p.flops_per_gpu - p.gemm_flops_per_gpu == pytest.approx(1_099_511_627_776, rel=1e-12)


def test_llama3_8b_prefill_time_is_compute_bound(llama8b, h100):
    # Published H100 SXM: 989 TFLOP/s bf16 dense at the paper's 70% cap = 692.3 TFLOP/s. The
    # GEMMs alone: 28.588e12 / 692.3e12 = 41.29 ms; attention at 55% of 989: 1.0995e12 /
    # 543.95e12 = 2.02 ms. Memory-bound parts (KV write, activations) add ~3.3 ms, so the
    # prefill lies between 43.3 ms (FLOPs only) and 48 ms.
    p = prefill_chunk(llama8b, h100, tokens=2048)
    assert p.dominant == "arithmetic"
    assert p.t_arithmetic_s == pytest.approx(0.04129 + 0.00202, rel=0.005)
    assert 0.0433 <= p.t_prefill_s <= 0.048
    assert p.t_prefill_s == pytest.approx(p.t_arithmetic_s + p.t_memory_s + p.t_network_s + p.t_latency_s)
    assert p.tokens_per_s == pytest.approx(2048 / p.t_prefill_s)


def test_attention_is_quadratic_gemms_linear(llama8b, h100):
    a = prefill_chunk(llama8b, h100, tokens=4096)
    b = prefill_chunk(llama8b, h100, tokens=8192)
    # Doubling the prompt quadruples causal attention FLOPs (c²/2) and doubles the GEMMs'
    # (the lm head's single row aside).
    assert (b.flops_per_gpu - b.gemm_flops_per_gpu) / (a.flops_per_gpu - a.gemm_flops_per_gpu) == pytest.approx(4.0)
    assert b.gemm_flops_per_gpu / a.gemm_flops_per_gpu == pytest.approx(2.0, rel=1e-4)


def test_chunks_cover_the_prompt_and_attention_adds_up(llama8b, h100):
    assert chunk_plan(5000, 2048) == [(2048, 0), (2048, 2048), (904, 4096)]
    assert chunk_plan(100, 2048) == [(100, 0)]
    # Causal attention FLOPs of the chunks add to the whole prompt's: sum of c·(P + c/2) over
    # (2048,0), (2048,2048), (904,4096) = 2048·1024 + 2048·3072 + 904·4548 = 12,500,992 = 5000²/2.
    chunks = [prefill_chunk(llama8b, h100, tokens=n, prior_tokens=p, last_chunk=False) for n, p in chunk_plan(5000, 2048)]
    whole = prefill_chunk(llama8b, h100, tokens=5000, last_chunk=False)
    attn = sum(c.flops_per_gpu - c.gemm_flops_per_gpu for c in chunks)
    assert attn == pytest.approx(whole.flops_per_gpu - whole.gemm_flops_per_gpu, rel=1e-12)
    assert prefill_time_s(llama8b, h100, input_len=5000, chunk_tokens=2048) > whole.t_prefill_s


def test_tensor_parallel_prefill_pays_bandwidth_bound_all_reduces(h100):
    m = resolve_model("llama-3-70b")
    one = prefill_chunk(m, h100, tokens=2048, tp=4)
    # 2 all-reduces per layer of 2048 · 8192 · 2 B = 33.6 MB over 4 GPUs, 80 layers. A ring
    # moves 2·(3/4)·33.6 MB = 50.3 MB per GPU; at NVLink's 450 GB/s · 0.82 = 369 GB/s that is
    # 136 µs, · 160 = 21.8 ms: the modelled term must be at least that and not far above.
    assert 0.0218 <= one.t_allreduce_s <= 0.0218 * 1.3
    assert one.t_network_s == pytest.approx(one.t_allreduce_s)


def test_chunk_in_a_decode_step_shares_the_weight_reads(llama8b, h100):
    alone = prefill_chunk(llama8b, h100, tokens=512)
    riding = prefill_chunk(llama8b, h100, tokens=512, decode_tokens=64)
    # Riding in a step of 64 decode tokens, the chunk's GEMMs are the difference between M = 576
    # and M = 64: both compute-bound on H100 at bf16 (ridge ≈ 692 TFLOP/s / 2.5 TB/s ≈ 276
    # FLOP/byte; M = 64 is below it -> memory-bound), so the chunk adds less than alone.
    assert riding.t_prefill_s < alone.t_prefill_s
    assert riding.t_overhead_s == 0.0


def test_bad_prompt_is_one_line(llama8b, h100):
    with pytest.raises(UserError, match="at least 1 token"):
        prefill_chunk(llama8b, h100, tokens=0)
    with pytest.raises(UserError, match="attention heads"):
        prefill_chunk(llama8b, h100, tokens=16, tp=64)


def test_2d_grid_prefill_by_hand(h100):
    # Llama 3 70B (hidden 8192, 80 layers, 64 heads, 8 KV heads of 128, MLP 28672), 2048
    # tokens on tp 8, 1D and as a 2 x 4 grid (2 rows, 4 columns).
    from inferecon.model import network as net
    import numpy as np
    m70 = resolve_model("llama-3-70b")
    one = prefill_chunk(m70, h100, tokens=2048, tp=8)
    two = prefill_chunk(m70, h100, tokens=2048, tp=8, tp_rows=2)
    # Every weight is split over all 8 GPUs either way: the GEMM FLOPs per GPU are the same.
    assert two.gemm_flops_per_gpu == pytest.approx(one.gemm_flops_per_gpu, rel=1e-12)
    # Heads over the 2 rows only (the 4 columns repeat attention): 4 x 32 heads x 128 x 2048 x
    # 1024 x 80 layers = 2,748,779,069,440 FLOP per GPU; 1D: 8 heads per GPU, a quarter.
    assert two.flops_per_gpu - two.gemm_flops_per_gpu == pytest.approx(2_748_779_069_440, rel=1e-12)
    assert one.flops_per_gpu - one.gemm_flops_per_gpu == pytest.approx(2_748_779_069_440 / 4, rel=1e-12)
    # Reductions, bf16 (2 B), per layer: QKV over a row of 4: 2048 x (64 + 16) x 128 / 2 rows x
    # 2 B = 20,971,520 B; gate/up over the row: 2048 x 2 x 28672 / 2 x 2 B = 117,440,512 B;
    # attention-out and down over a column of 2 GPUs 4 apart: 2048 x 8192 / 4 x 2 B = 8,388,608 B
    # each. 1D: two of 2048 x 8192 x 2 B = 33,554,432 B over all 8.
    def ar(group, stride, nbytes):
        return float(net.collective_time_s(h100, net.ALL_REDUCE, np.asarray([group]), np.asarray([stride]),
                                           np.asarray([float(nbytes)]))[0])
    want_2d = 80 * (ar(4, 1, 20_971_520) + ar(4, 1, 117_440_512) + 2 * ar(2, 4, 8_388_608))
    assert two.t_allreduce_s == pytest.approx(want_2d, rel=1e-9)
    assert one.t_allreduce_s == pytest.approx(80 * 2 * ar(8, 1, 33_554_432), rel=1e-9)
    with pytest.raises(UserError, match="does not divide"):
        prefill_chunk(m70, h100, tokens=16, tp=8, tp_rows=3)


# -- a long plan of small chunks: priced in closed form, the same sum ---------------------------

def _chunk_by_chunk(model, hw, input_len, chunk, **kw):
    """The plan priced the plain way: every chunk, summed in order."""
    from inferecon.model.prefill import summed_costs

    plan = chunk_plan(input_len, chunk)
    return summed_costs([prefill_chunk(model, hw, tokens=n, prior_tokens=p, last_chunk=i == len(plan) - 1, **kw)
                         for i, (n, p) in enumerate(plan)])


def _op_level_h100():
    from pathlib import Path

    from inferecon.model.hardware import HardwareProfile

    return HardwareProfile.load(Path(__file__).parent / "fixtures" / "speed" / "opdb-h100-vllm" / "profile.json")


@pytest.mark.parametrize("input_len, chunk, kw", [
    (8037, 100, {}),  # roofline attention switches from byte- to FLOP-bound at the 5th chunk
    (1201, 2, {}),  # byte-bound throughout; a 1-token last chunk
    (9000, 64, {"decode_tokens": 8}),  # chunks riding decode steps
    (30000, 256, {"tp": 4}),
    (6500, 100, {"op": True}),  # an op-level profile: context-attention fit, its terms add
])
def test_long_plan_in_closed_form_is_the_chunk_by_chunk_sum(llama8b, h100, input_len, chunk, kw):
    from dataclasses import fields

    from inferecon.model.prefill import PRICED_CHUNK_BY_CHUNK, prefill_plan

    kw = dict(kw)
    hw = _op_level_h100() if kw.pop("op", False) else h100
    assert len(chunk_plan(input_len, chunk)) > PRICED_CHUNK_BY_CHUNK  # the closed form is what runs
    want = _chunk_by_chunk(llama8b, hw, input_len, chunk, **kw)
    got = prefill_plan(llama8b, hw, input_len=input_len, chunk_tokens=chunk, **kw)
    assert (got.tokens, got.prior_tokens, got.level) == (want.tokens, want.prior_tokens, want.level)
    for f in fields(want):
        if f.name not in ("tokens", "prior_tokens", "level"):
            assert getattr(got, f.name) == pytest.approx(getattr(want, f.name), rel=1e-12, abs=1e-18), f.name


def test_ordinary_plan_is_priced_chunk_by_chunk_to_the_bit(llama8b, h100):
    from inferecon.model.prefill import prefill_plan

    want = _chunk_by_chunk(llama8b, h100, 22000, 2048)
    assert prefill_plan(llama8b, h100, input_len=22000, chunk_tokens=2048) == want
    assert prefill_time_s(llama8b, h100, input_len=22000, chunk_tokens=2048) == want.t_prefill_s


def test_two_token_chunks_of_a_100k_prompt_cost_a_few_chunk_prices(llama8b, h100, monkeypatch):
    """50,000 chunks were 50,000 prices (minutes in a frontier search). By hand: attention over
    the plan is 4 · 32 heads · 128 · sum of c · (P + c/2) over the chunks = N² / 2 pairs whatever
    the chunking, · 32 layers: 16,384 · 5e9 · 32 = 2.62144e15 FLOPs; the weight GEMMs run at M =
    N in all (2 · 6,979,321,856 · 100,000) plus the lm head once (2 · 128256 · 4096)."""
    import inferecon.model.prefill as pf

    calls = []
    real = pf.prefill_chunk
    monkeypatch.setattr(pf, "prefill_chunk", lambda *a, **k: calls.append(k) or real(*a, **k))
    got = pf.prefill_plan(llama8b, h100, input_len=100_000, chunk_tokens=2)
    assert len(calls) <= 3
    assert got.tokens == 100_000
    assert got.flops_per_gpu - got.gemm_flops_per_gpu == pytest.approx(2.62144e15, rel=1e-12)
    assert got.gemm_flops_per_gpu == pytest.approx(2 * 6_979_321_856 * 100_000 + 1_050_673_152, rel=1e-12)


# -- op level: what the engines run at prefill, read off the per-op tables -------------------

def _op_profile(gemm, collectives=(), context_attention=()):
    import dataclasses

    from inferecon.model.opfits import OpFits

    fits = OpFits("synthetic", "toy", "0", gemm=list(gemm), collectives=list(collectives),
                  context_attention=list(context_attention))
    return dataclasses.replace(get_profile("h100-sxm"), op_fits=fits)


def test_mla_down_projection_is_replicated_on_every_gpu():
    # DeepSeek-V3 (config.json: hidden 7168, q_lora_rank 1536, kv_lora_rank 512, rope 64, 128
    # heads, 61 layers of which 58 MoE with 256 experts). Prefill GEMMs per GPU are R + S / tp:
    # R replicated on every GPU of the tp group -- MLA's fused down-projection of query and KV
    # latent, 7168 x (1536 + 512 + 64) = 15,138,816 weights, in each of the 61 layers, and the
    # router, 7168 x 256 = 1,835,008, in each of the 58 MoE layers -- and S split over tp. So
    # R = (8 g(8) - g(1)) / 7 = 2 x tokens x (61 x 15,138,816 + 58 x 1,835,008).
    ds = resolve_model("deepseek-v3")
    h100 = get_profile("h100-sxm")
    g1 = prefill_chunk(ds, h100, tokens=1024, tp=1, last_chunk=False).gemm_flops_per_gpu
    g8 = prefill_chunk(ds, h100, tokens=1024, tp=8, last_chunk=False).gemm_flops_per_gpu
    assert (8 * g8 - g1) / 7 == pytest.approx(2 * 1024 * (61 * 15_138_816 + 58 * 1_835_008), rel=1e-9)


def test_prefill_gemm_regime_adds_the_activation_pass():
    # A synthetic bf16 fit whose prefill regime (M > 256) is t0 2 us, 500 TFLOP/s, 2000 GB/s and
    # 1 ps per activation element. Llama 3 8B at 1024 tokens, tp 1, lm head off: per layer QKV
    # (N 6144, K 4096), out (4096, 4096), gate/up (28672, 4096), down (4096, 14336): FLOPs
    # 2 x 1024 x 218,103,808 = 446,676,598,784 per layer, each GEMM compute-bound (gate/up:
    # 2 x (28672 x 4096 + 1024 x 4096 + 1024 x 28672) = 301,989,888 B / 2000 GB/s = 151 us
    # against 2 x 1024 x 28672 x 4096 / 500e12 = 481 us of FLOPs; the other three alike).
    # GEMM time per layer = 4 x 2 us + 893.353 us (FLOPs) + 1024 x (3 x 4096 + 14336) x 1 ps
    # = 27.263 us of activation pass; 32 layers.
    from inferecon.model.opfits import GemmFit

    fit = GemmFit("bf16", t0_us=50.0, tflops=100.0, gbps=100.0, compute_efficiency=None, hbm_efficiency=None,
                  decode_m_max=256, decode_t0_us=50.0, decode_tflops=100.0, decode_gbps=100.0,
                  prefill_t0_us=2.0, prefill_tflops=500.0, prefill_gbps=2000.0, prefill_act_ps_per_elem=1.0)
    p = prefill_chunk(resolve_model("llama-3-8b"), _op_profile([fit]), tokens=1024, last_chunk=False)
    flop_us = 2 * 1024 * 218_103_808 / 500e6
    act_us = 1024 * (3 * 4096 + 14336) * 1e-6
    assert p.t_gemm_s * 1e6 == pytest.approx(32 * (4 * 2.0 + flop_us + act_us), rel=1e-9)
    # At M <= 256 the fit's one roofline (t0 50 us, 100 TFLOP/s, 100 GB/s), no activation pass:
    # 128 tokens, per layer 4 intercepts and the larger of FLOPs and bytes of each GEMM.
    q = prefill_chunk(resolve_model("llama-3-8b"), _op_profile([fit]), tokens=128, last_chunk=False)
    shapes = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
    by_hand = sum(50.0 + max(2 * 128 * n * k / 100e6, 2 * (n * k + 128 * k + 128 * n) / 100e3) for n, k in shapes)
    assert q.t_gemm_s * 1e6 == pytest.approx(32 * by_hand, rel=1e-9)


def test_prefill_allreduce_reads_the_fitted_nccl_line():
    # Two synthetic NCCL lines over 2 GPUs, the one above 1 MiB at 20 us + bytes / 100 GB/s:
    # Llama 3 8B at 2048 tokens, tp 2, moves 2048 x 4096 x 2 B = 16,777,216 B per all-reduce
    # = 20 + 167.77216 us, twice a layer over 32 layers.
    from inferecon.model.opfits import CollectiveOpFit, GemmFit

    gemm = GemmFit("bf16", t0_us=1.0, tflops=500.0, gbps=2000.0, compute_efficiency=None, hbm_efficiency=None)
    lines = [CollectiveOpFit("nccl", "all_reduce", 2, "intra", "eager", alpha_us=5.0, beta_gbps=10.0, max_bytes=1048576.0),
             CollectiveOpFit("nccl", "all_reduce", 2, "intra", "eager", alpha_us=20.0, beta_gbps=100.0,
                             min_bytes=1048576.0)]
    p = prefill_chunk(resolve_model("llama-3-8b"), _op_profile([gemm], lines), tokens=2048, tp=2)
    assert p.t_allreduce_s * 1e6 == pytest.approx(2 * 32 * (20.0 + 16_777_216 / 100e3), rel=1e-9)


def test_moe_prefill_reads_the_engines_moe_table_curve():
    # Mixtral 8x7B (hidden 4096, expert MLP 14336, 8 experts, top-2, 32 MoE layers) with a
    # synthetic MoE fit whose curve for that shape at tp 2, ep 1 is 100 us at 512 tokens and
    # 400 us at 2048: 1024 tokens sit halfway in log -> sqrt(100 x 400) = 200 us a layer. The
    # fit's rates (1000 TFLOP/s, 1e6 GB/s) put its FLOPs, 2 x 1024 x 2 x 3 x 4096 x 14336 / 2
    # = 360,777,252,864 -> 360.777 us, above the measured 200: scaled to it, arithmetic, no latency.
    import dataclasses

    from inferecon.model.engine import EngineProfile
    from inferecon.model.opfits import EngineOpFits, GemmFit, MoeFit, moe_curve_key

    mix = resolve_model("mixtral-8x7b")
    key = moe_curve_key(4096, 14336, 8, 2, 2, 1)
    moe = MoeFit(dtype="bf16", fixed_us=0.0, gbps=1e6, tflops=1000.0, distribution="power_law_1.2",
                 shape_curves={key: [[512.0, 2048.0], [100.0, 400.0]]})
    gemm = GemmFit("bf16", t0_us=0.0, tflops=1e9, gbps=1e9, compute_efficiency=None, hbm_efficiency=None)
    hw = _op_profile([gemm])
    eng = EngineProfile(name="toy", op_fits=EngineOpFits("synthetic", "toy", "0", moe=[moe]))
    with_table = prefill_chunk(mix, hw, tokens=1024, tp=2, engine=eng, last_chunk=False)
    without = prefill_chunk(mix, hw, tokens=1024, tp=2, engine=dataclasses.replace(
        eng, op_fits=EngineOpFits("synthetic", "toy", "0")), last_chunk=False)
    # Without the table the routed experts' grouped GEMMs at 1e9 TFLOP/s and GB/s cost 0.05 us in
    # all, so the difference is the table's 32 x 200 us (to 1e-5).
    assert (with_table.t_gemm_s - without.t_gemm_s) * 1e6 == pytest.approx(32 * 200.0, rel=1e-5)
    assert with_table.t_latency_s == pytest.approx(without.t_latency_s, abs=1e-12)  # scaled FLOPs, no latency


def test_a_16bit_lm_head_of_an_fp8_model_reads_two_bytes_a_weight(llama8b, h100):
    # Llama 3 8B in FP8 with its lm head kept 16-bit (every engine but gpt-fast/torchao runs it so):
    # at prefill the lm head multiplies the last position only, so it is weight-bound either way
    # and reads 128256 · 4096 = 525 336 576 weights at 2 bytes instead of 1: 525 336 576 B more at
    # the published profile's bandwidth; its FLOPs are unchanged.
    from inferecon.model.quant import KeptModules

    fp8 = llama8b.with_precision(8)
    kept = fp8.with_kept_16bit(KeptModules(lm_head=True, embeddings=True))
    a, b = prefill_chunk(fp8, h100, tokens=2048), prefill_chunk(kept, h100, tokens=2048)
    assert b.gemm_flops_per_gpu == a.gemm_flops_per_gpu
    assert b.t_memory_s - a.t_memory_s == pytest.approx(525_336_576 / (h100.memory.achieved_gbps * 1e9), rel=1e-9)


def test_prefill_step_pays_the_engines_per_sequence_time_per_prompt():
    """An engine's per-sequence host work is paid for each prompt a prefill step carries: three
    200-token prompts in one step at 40 µs a sequence add 3 x 40 = 120 µs (hand) to the step,
    one prompt 40 µs."""
    from inferecon.model.catalog import get_model
    from inferecon.model.engine import EngineProfile
    from inferecon.model.prefill import prefill_step
    from inferecon.model.published import get_profile

    m, hw = get_model("llama-3-8b"), get_profile("h100-sxm")
    eng = EngineProfile("toy", per_sequence_us=40.0)
    for chunks, added_s in (([(200, 0, True)] * 3, 120e-6), ([(200, 0, True)], 40e-6)):
        plain = prefill_step(m, hw, chunks=chunks)
        paid = prefill_step(m, hw, chunks=chunks, engine=eng)
        assert paid.t_prefill_s - plain.t_prefill_s == pytest.approx(added_s, rel=1e-9)
