"""Prefill: the time to process a prompt (or one chunk of it) on one model instance, per op and
in the paper's four terms.

A chunk of c prompt tokens, with P tokens of the same prompt already in the KV cache (P = 0
for a whole prompt), passes every layer of every pipeline stage in turn. Per layer, on one GPU
of a stage (1D tensor parallelism over tp GPUs, heads split over tp; experts over ep · tp; a
2D grid of tp_rows x tp / tp_rows GPUs splits each weight over both axes and the heads over the
rows, with four reductions a layer, as the decode step, model/terms.py):

- the weight GEMMs at M = c (QKV, attention-out, gate/up, down; MLA's projections as one GEMM of
  all attention weights, the un-absorbed form engines run at prefill; routed experts as two
  grouped GEMMs over the experts the chunk touches): t0 + max(2·M·N·K / F, bytes / B). At
  M in the thousands they are compute-bound: FLOPs over achieved FLOP/s;
- causal attention of the chunk over P + c positions: 4 · heads · d_head · c · (P + c/2) FLOP
  (scores and the weighted sum, each 2 FLOP per multiply-add, the causal mask halving the
  chunk's own square), at flash-attention efficiency;
- the KV-cache write: c tokens' K and V (MLA: its latent) of this GPU's heads;
- activations (norms, residuals, the MLP's hidden state) read and written once;
- two all-reduces of c · d_model activations (tp > 1), two all-to-alls per MoE layer (ep > 1):
  at prefill sizes (megabytes) bandwidth-bound;
- the lm head only on the last position of the prompt (engines compute logits only there).

Where the profile carries op-level fits (`calibrate --op-db`, model/opfits.py), the GEMMs use
the fit of the weight format's dtype (model/ops.py's fallbacks), attention the context-
attention fit (floor, FLOP/s, and its Q/K/V/O bandwidth where fitted), activation bytes the
GEMM fit's bandwidth; the ops run in sequence, so the four terms add (as model/ops.py at
decode). A published profile prices the same ops by roofline: GEMM FLOPs at the profile's
achieved FLOP/s, attention at `PrefillOptions.attention_efficiency` of the 16-bit peak, bytes
at achieved HBM bandwidth, each op bound by the larger of its FLOP and byte times. At both
levels the ops run one after another (a prefill's compute-bound GEMM does not overlap the next
memory-bound norm), so each op's time lands in one term and t_prefill = the sum of the four
terms, unlike the paper's decode rule max(arithmetic, memory) + network + latency.

Latency term: GEMM and attention floors (op-level) and the per-step overheads of the profile
and the engine, once per chunk. Per-kernel launch latency is not charged: prefill kernels run
for hundreds of microseconds each, so the next launch hides behind the running one.

Collectives use model/network.py's model (NCCL's tuning model, or its calibrated lines)
for both profiles: at prefill message sizes it is the bandwidth part that counts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

import numpy as np

from inferecon.core.errors import RequestError
from inferecon.model import network as net
from inferecon.model.engine import EngineProfile
from inferecon.model.hardware import HardwareProfile
from inferecon.model.layout import heads_axis as _heads_axis
from inferecon.model.opfits import MLA_LATENT_DIM
from inferecon.model.spec import ModelSpec

TERMS = ("arithmetic", "memory", "network", "latency")
FAMILIES = ("gemm", "attention", "kv_write", "elementwise", "allreduce", "moe_all_to_all", "pipeline", "overhead")

# Flash-attention forward efficiency for a published profile (no context-attention fit): the
# midpoint of the two published H100 figures, FlashAttention-2 at "only 35% utilization on the
# H100" and FlashAttention-3 at "up to 740 TFLOPS (75% utilization)" in FP16 (Shah et al. 2024,
# arXiv:2407.08608, abstract). vLLM and SGLang run FA2/FA3-class kernels (or FlashInfer)
# depending on version and GPU, so neither end is the engine's; a calibrated op database replaces it.
FLASH_ATTENTION_EFFICIENCY = 0.55


@dataclass(frozen=True)
class PrefillOptions:
    # Share of the 16-bit dense peak that prefill attention reaches (published profiles only).
    attention_efficiency: float = FLASH_ATTENTION_EFFICIENCY
    # Activation traffic per token per layer in units of d_model, as terms.CostOptions.
    activation_elems_per_layer_in_d_model: float = 8.0


@dataclass(frozen=True)
class PrefillCost:
    """One chunk's prefill on one instance, seconds. `level` is "op" (op-level fits) or
    "roofline" (published profile). The ops run in sequence: t_prefill_s is the sum of the four
    terms, and the families (what the time is made of) add to it too."""

    tokens: int  # prompt tokens in this chunk
    prior_tokens: int  # tokens of the same prompt already cached
    level: str
    t_arithmetic_s: float
    t_memory_s: float
    t_network_s: float
    t_latency_s: float
    t_prefill_s: float
    t_gemm_s: float
    t_attention_s: float
    t_kv_write_s: float
    t_elementwise_s: float
    t_allreduce_s: float
    t_moe_all_to_all_s: float
    t_pipeline_s: float
    t_overhead_s: float
    flops_per_gpu: float  # FLOPs one GPU runs for the chunk (all its stages' layers)
    gemm_flops_per_gpu: float

    @property
    def tokens_per_s(self) -> float:
        """Prompt tokens per second of one instance."""
        return self.tokens / self.t_prefill_s

    @property
    def dominant(self) -> str:
        vals = dict(arithmetic=self.t_arithmetic_s, memory=self.t_memory_s, network=self.t_network_s,
                    latency=self.t_latency_s)
        return max(vals, key=vals.get)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["tokens_per_s"] = self.tokens_per_s
        d["dominant"] = self.dominant
        return d


class _Terms:
    def __init__(self):
        self.t = dict.fromkeys(TERMS, 0.0)
        self.fam = dict.fromkeys(FAMILIES, 0.0)

    def add(self, family, arithmetic=0.0, memory=0.0, network=0.0, latency=0.0):
        for k, v in (("arithmetic", arithmetic), ("memory", memory), ("network", network), ("latency", latency)):
            self.t[k] += float(v)
        self.fam[family] += float(arithmetic + memory + network + latency)


def _gemm_pricing(model: ModelSpec, hw: HardwareProfile):
    """(t0_us, FLOP/s, bytes/s, (act, weight, out) bytes per element, GemmFit or None) of the
    weight GEMMs: the op-level fit of the format's dtype (its prefill regime, where it has one,
    prices each GEMM above the decode M: _token_ops), else the profile's achieved figures (no
    floor). The bytes/s also price the activations' and KV cache's traffic."""
    from inferecon.model.quant import format_of
    from inferecon.model.terms import compute_dtype

    fits = getattr(hw, "op_fits", None)
    if fits is not None:
        from inferecon.model.opfits import GEMM_OPERAND_BYTES
        from inferecon.model.ops import FORMAT_GEMM_DTYPE, _dense_format, gemm_fit_for

        dtype = FORMAT_GEMM_DTYPE[_dense_format(format_of(model)).name]
        fit, _ = gemm_fit_for(fits, dtype)
        if fit is not None:
            ops_bytes = GEMM_OPERAND_BYTES.get(dtype, (2.0, model.weight_bytes_per_param, 2.0))
            return fit.t0_us, fit.tflops * 1e12, fit.gbps * 1e9, ops_bytes, fit
    dtype = compute_dtype(model, hw)
    act = 1.0 if dtype == "fp8" else model.act_bytes
    return 0.0, hw.compute.achieved_tflops(dtype) * 1e12, hw.memory.achieved_gbps * 1e9, \
        (act, model.weight_bytes_per_param, model.act_bytes), None


def _context_attention_fit(model: ModelSpec, hw: HardwareProfile):
    fits = getattr(hw, "op_fits", None)
    if fits is None or not getattr(fits, "context_attention", None):
        return None
    from inferecon.model.ops import kv_dtype_of

    want = kv_dtype_of(model)
    by = {f.kv_dtype: f for f in fits.context_attention}
    return by.get(want) or by.get("bf16") or fits.context_attention[0]


def _context_mla_s(model: ModelSpec, hw: HardwareProfile, chunks, heads: float, layers: float):
    """(seconds beyond the floor, floor seconds) of MLA's prefill attention over a step's chunks,
    read off the engine's MLA prefill table (opfits.ContextMlaFit: one prompt of isl tokens on
    this GPU's heads, DeepSeek-V3's latent dims): a chunk of c tokens after P cached costs what
    the table gives a prompt of P + c less a prompt of P (the causal rows P..P+c of the same
    kernel), the kernel's floor (its one-token row) once per chunk as latency, both x the MLA
    prefill's time multiplier (OpFits.time_scale). None where the profile has no such table, the
    model's latent or head count is not measured, or a prompt runs past the table's longest."""
    from inferecon.model.ops import kv_dtype_of

    fits = getattr(hw, "op_fits", None)
    if fits is None or not fits.context_mla or model.kv_lora_rank + model.qk_rope_dim != MLA_LATENT_DIM:
        return None
    fit = fits.context_mla_fit(kv_dtype_of(model))
    if fit is None or fit.time_us(heads, 1.0) is None:
        return None
    floor_us = fit.time_us(heads, 1.0)
    work_us = 0.0
    for c, P, _ in chunks:
        whole = fit.time_us(heads, float(P) + float(c))
        if whole is None:
            return None
        work_us += whole - (fit.time_us(heads, float(P)) if P > 0 else floor_us)
    n = len(chunks)
    s = _scale(hw, "context_mla", fit.kv_dtype)
    return s * layers * max(work_us, 0.0) * 1e-6, s * layers * n * floor_us * 1e-6


def check_prefill_layout(model: ModelSpec, tp: int, pp: int, ep: int, tp_rows: int = 1) -> None:
    from inferecon.model.layout import layout_problem

    for name, v in (("tp", tp), ("pp", pp), ("ep", ep), ("tp_rows", tp_rows)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise RequestError(name, v, f"{name} must be a whole number >= 1")
    if tp % tp_rows:
        raise RequestError("tp_rows", tp_rows, f"a 2D grid of {tp_rows} rows does not divide tp {tp}")
    problem = layout_problem(model, tp, pp, ep, tp_rows=tp_rows)
    if problem is not None:
        raise problem


def _moe_measured_s(model: ModelSpec, moe_fit, m: float, tp: int, ep: int) -> dict | None:
    """One MoE layer's routed experts at m tokens read off the engine's MoE table (the curve of
    this model's shape at this tp and ep, model/opfits.MoeFit: routing, permute, the grouped
    GEMMs and un-permute as the engine's kernel runs them), split into the four terms as the
    decode step splits it (model/ops._at_measured): FLOPs at the fit's rate are arithmetic, or
    the expert bytes memory, no more than the measured time; the rest latency. None where the
    table did not measure the shape, tp, ep or token count, or stores the experts in another
    format's bytes (a stand-in fit): the grouped GEMMs from the GEMM fit then price it."""
    from inferecon.model.opfits import GEMM_OPERAND_BYTES, moe_curve_key, moe_touched_experts
    from inferecon.model.ops import FORMAT_GEMM_DTYPE, _at_measured
    from inferecon.model.quant import format_of

    if moe_fit is None or m <= 0:
        return None
    expert_wb = GEMM_OPERAND_BYTES.get(FORMAT_GEMM_DTYPE[format_of(model).name], (0.0, model.weight_bytes_per_param))[1]
    if GEMM_OPERAND_BYTES.get(moe_fit.dtype, (0.0, -1.0))[1] != expert_wb:
        return None
    d, ff, k, E = float(model.d_model), float(model.d_ff_expert), float(model.n_active_experts), float(model.n_experts)
    us = moe_fit.curve_us(moe_curve_key(d, ff, E, k, tp, ep), float(m))
    if us is None:
        return None
    mats = float(model.mlp_matrices)
    flop_us = 2.0 * m * k * mats * d * ff / tp / ep / (moe_fit.tflops * 1e6)
    byte_us = moe_touched_experts(float(m), k, E, float(ep)) * mats * d * ff / tp * expert_wb / (moe_fit.gbps * 1e3)
    fixed_us, scale = _at_measured(np.asarray([us]), 0.0, np.asarray([flop_us]), np.asarray([byte_us]))
    f, b = flop_us * _one(scale) * 1e-6, byte_us * _one(scale) * 1e-6
    return dict(arithmetic=f if f > b else 0.0, memory=b if b >= f else 0.0, latency=_one(fixed_us) * 1e-6)


def _token_ops(model, hw, acc, m, lm_rows, tp, pp, ep, op_level, pricing, tp_rows=1, moe_fit=None, eng_fits=None):
    """The ops whose cost follows the tokens through the weights: GEMMs at M = m, the lm head at
    M = lm_rows, the all-reduces, all-to-alls and pipeline hops of m tokens. Per stage except
    the hops (whole instance). Returns the GEMM FLOPs per GPU per stage.

    tp_rows > 1: a 2D weight-stationary grid of r = tp_rows rows x c = tp / r columns, as the
    decode step prices it (model/terms.py, Pope et al. 2022): every weight matrix is split over
    both axes, the output width over the rows (heads over the rows) and the reduced width over
    the columns, so a GEMM's FLOPs per GPU are 1/tp of the whole either way; what changes is the
    collectives: QKV and gate/up partial sums all-reduced over a row of c GPUs (M x width / r
    words), attention-out and down over a column of r GPUs, c apart (M x d_model / c words)."""
    t0_us, F, B, (a_b, w_b, o_b), gfit = pricing
    r = int(tp_rows)
    c = tp // r if r > 1 else 1  # the columns d_model is split over: none in 1D
    layers = model.n_layers / pp
    moe_layers = model.n_moe_layers / pp
    dense_layers = layers - moe_layers
    d = float(model.d_model)
    flops = 0.0

    def gemm(count, mm, n, k, wbytes=None, weight_elems=None, fit=None, rate=None):
        """count GEMMs y[mm,n] = x[mm,k] W[n,k]^T, each t0 + max(flop / F, bytes / B): the
        larger side is the op's term (weight_elems: weights actually read, when not n·k; rate:
        FLOP/s where no fit prices it, for a 16-bit module of a quantised model)."""
        nonlocal flops
        if mm <= 0:
            return
        wb = w_b if wbytes is None else wbytes
        flop = 2.0 * mm * n * k * count
        nbytes = ((n * k if weight_elems is None else weight_elems) * wb + mm * k * a_b + mm * n * o_b) * count
        flops += flop
        t0, f_rate, b_rate, act_us, s = t0_us, rate or F, B, 0.0, 1.0
        if (fit or gfit) is not None:  # the fit's regime at this M (opfits.GemmFit.prefill_params)
            t0, tflops, gbps, act_us = (fit or gfit).prefill_params(mm)
            f_rate, b_rate = tflops * 1e12, gbps * 1e9
            s = _scale(hw, "gemm", (fit or gfit).dtype)
        f, b = flop / f_rate, nbytes / b_rate
        # The activation pass (quantising the M x K input) streams memory: the memory term.
        acc.add("gemm", arithmetic=s * (f if f > b else 0.0),
                memory=s * ((b if b >= f else 0.0) + count * mm * k * act_us * 1e-6), latency=s * count * t0 * 1e-6)

    # Output width split over the heads' axis (tp in 1D, the r rows in 2D), the reduced width
    # d_model over the c columns (1 in 1D): one rule for both.
    hx = _heads_axis(tp, r)
    if model.has_16bit_modules:
        # Modules the checkpoint keeps in 16 bit (ModelSpec.attention_16bit_layers ...): 2-byte
        # weights on the bf16 fit (op-level), else at the profile's bf16 rate, as at decode (model/ops.py).
        bf16_fit = hw.op_fits.gemm_fit("bf16") if op_level and gfit is not None else None
        bf16_rate = hw.compute.achieved_tflops("bf16") * 1e12 if "bf16" in hw.compute.peak_tflops else None

        def gemm16(count, mm, n, k):
            gemm(count, mm, n, k, wbytes=2.0, fit=bf16_fit, rate=bf16_rate)

    att16 = model.attention_16bit_share
    for g, count in (((gemm, layers),) if not att16 else ((gemm, layers * (1.0 - att16)), (gemm16, layers * att16))):
        if model.is_mla and r == 1:
            # MLA's projections as the engines run them at prefill (un-absorbed; DeepSeek-V2/V3 code
            # in TRT-LLM, vLLM, SGLang): the fused down-projection of query and KV latent replicated
            # on every GPU (as at decode, model/ops._mla_gemms), the query and KV up-projections and
            # the output projection split by heads. Splitting the down-projection over tp too read
            # 1/tp of its 15.1M weights per GPU (DeepSeek-V3 at tp 8: 47 MFLOP a token where a GPU runs 73).
            h = model.n_heads / hx
            qk = model.qk_nope_dim + model.qk_rope_dim
            latent = model.kv_lora_rank + model.qk_rope_dim
            g(count, m, model.q_lora_rank + latent, d)
            if model.q_lora_rank:
                g(count, m, h * qk, model.q_lora_rank)
            else:
                g(count, m, h * qk, d)
            g(count, m, h * (model.qk_nope_dim + model.v_head_dim), model.kv_lora_rank)
            g(count, m, d, h * model.v_head_dim)
        elif model.is_mla:
            g(count, m, model.attention_params / d / hx, d / c)
        else:
            q = model.n_heads * model.d_head
            kv = 2.0 * model.d_head * max(model.n_kv_heads / hx, 1.0)
            g(count, m, q / hx + kv, d / c)
            g(count, m, d / c, q / hx)
    gated = model.mlp_matrices - 1
    mlp16 = model.mlp_16bit_share
    for g, count in (((gemm, dense_layers),) if not mlp16 else
                     ((gemm, dense_layers * (1.0 - mlp16)), (gemm16, dense_layers * mlp16))):
        if count > 0:
            g(count, m, gated * model.d_ff / hx, d / c)
            g(count, m, d / c, model.d_ff / hx)
    if model.is_moe and moe_layers > 0 and m > 0:
        ff = float(model.d_ff_expert)
        # The router: 16-bit weights and inputs, as at decode (model/ops._moe), so the bf16 fit
        # where the profile has one.
        router_fit = hw.op_fits.gemm_fit("bf16") if op_level and gfit is not None else None
        gemm(moe_layers, m, model.n_experts, d, wbytes=model.act_bytes, fit=router_fit)
        if model.n_shared_experts:
            width = ff * model.n_shared_experts
            gemm(moe_layers, m, gated * width / hx, d / c)
            gemm(moe_layers, m, d / c, width / hx)
        k_act = float(model.n_active_experts)
        measured = _moe_measured_s(model, moe_fit, m, tp, ep) if r == 1 else None
        if measured is not None:
            s = _scale(hw, "moe", moe_fit.dtype)
            acc.add("gemm", **{k: s * moe_layers * v for k, v in measured.items()})
        else:
            # m tokens pick k of E experts each; this rank holds E/ep of them (balanced routing).
            touched = model.n_experts / ep * (1.0 - (1.0 - k_act / model.n_experts) ** m)
            rows = m * k_act / ep
            gemm(moe_layers, rows, gated * ff / hx, d / c, weight_elems=touched * gated * ff / tp * d)
            gemm(moe_layers, rows, d / c, ff / hx, weight_elems=touched * d * ff / tp)
    (gemm16 if model.lm_head_kept_16bit else gemm)(1.0 / pp, lm_rows, model.vocab_size / hx, d / c)

    if tp > 1 and m > 0 and r == 1:
        acc.add("allreduce", network=2.0 * layers * _allreduce_s(hw, eng_fits, tp, m * d * model.act_bytes, op_level))
    elif m > 0 and r > 1:
        ab = m * model.act_bytes
        qkv_words = (model.n_heads + 2 * model.n_kv_heads) * model.d_head
        if model.is_mla:
            qkv_words = model.attention_params / d - model.n_heads * model.v_head_dim
        # Gate/up partial sums span the MLP's hidden width: d_ff in dense layers; in MoE layers
        # the experts a token picks plus the shared ones (as the decode step's 2D reductions).
        moe_ff = (model.n_active_experts + model.n_shared_experts) * model.d_ff_expert if model.is_moe else 0.0
        row = (layers * _collective_s(hw, net.ALL_REDUCE, c, 1, ab * qkv_words / r)
               + dense_layers * _collective_s(hw, net.ALL_REDUCE, c, 1, ab * gated * model.d_ff / r)
               + moe_layers * (_collective_s(hw, net.ALL_REDUCE, c, 1, ab * gated * moe_ff / r) if moe_ff else 0.0))
        col = 2.0 * layers * _collective_s(hw, net.ALL_REDUCE, r, c, ab * d / c)
        acc.add("allreduce", network=row + col)
    if model.is_moe and ep > 1 and m > 0:
        from inferecon.model.terms import dispatch_bytes

        a2a_bytes = m * model.n_active_experts * d * dispatch_bytes(model, hw) / tp
        acc.add("moe_all_to_all", network=2.0 * moe_layers * _collective_s(hw, net.ALL_TO_ALL, ep, tp, a2a_bytes))
    if pp > 1 and m > 0:
        stride = min(tp * ep, hw.network.gpus_per_node)
        hop = _collective_s(hw, net.SEND_RECV, 2, stride, m * d * model.act_bytes)
        acc.add("pipeline", network=(pp - 1) * hop / pp)  # scaled back by pp with the stage
    return flops


def _allreduce_s(hw, eng_fits, tp: int, nbytes: float, op_level: bool) -> float:
    """One tensor-parallel all-reduce of a prefill chunk's activations: with op-level fits, the
    database's own lines as the decode step reads them (model/ops.allreduce_1d_us: the engine's
    all-reduce up to its size limit, NCCL's measured line beyond; prefill runs outside CUDA
    graphs, so NCCL's eager timing), else the network model. The NCCL table is the measurement:
    8 x H200 (NCCL 2.26.2), 11.5M fp16 elements (DeepSeek-V3, 1,600 tokens) lie between rows of
    121 us (8.4M) and 198 us (16.8M); the network model gave 120 us."""
    if op_level and tp <= hw.network.gpus_per_node:
        from inferecon.model.ops import allreduce_1d_us

        t_us = allreduce_1d_us(hw, eng_fits, int(tp), np.asarray([nbytes]), nccl_mode="eager")
        if t_us is not None:
            return _one(t_us) * 1e-6 * _scale(hw, "allreduce")
    return _collective_s(hw, net.ALL_REDUCE, tp, 1, nbytes)


def _scale(hw, family: str, dtype: str = "") -> float:
    """An op family's time multiplier in the profile's op fits (OpFits.time_scale: 1.0 but in an
    uncertainty draw of the prompt's TTFT band, model/uncertainty.py)."""
    fits = getattr(hw, "op_fits", None)
    return float(fits.scale(family, dtype)) if fits is not None else 1.0


def _one(x) -> float:
    return float(np.asarray(x).reshape(-1)[0])


_COLLECTIVE_CACHE: dict = {}


def _collective_s(hw, op, group, stride, nbytes) -> float:
    """One collective's time (model/network.py), memoised per profile: a serving or frontier
    question prices the same few messages thousands of times, and each call is a vectorised
    model evaluated on one element. The profile object is kept with the value, so an id reused
    after garbage collection never returns another profile's time."""
    key = (id(hw), op, int(group), int(stride), float(nbytes))
    hit = _COLLECTIVE_CACHE.get(key)
    if hit is not None and hit[0] is hw:
        return hit[1]
    if len(_COLLECTIVE_CACHE) > 50_000:
        _COLLECTIVE_CACHE.clear()
    value = _one(net.collective_time_s(hw, op, np.asarray([group]), np.asarray([stride]), np.asarray([nbytes])))
    _COLLECTIVE_CACHE[key] = (hw, value)
    return value


def prefill_chunk(model: ModelSpec, hw: HardwareProfile, *, tokens: int, prior_tokens: int = 0, tp: int = 1,
                  pp: int = 1, ep: int = 1, engine: EngineProfile | None = None, last_chunk: bool = True,
                  decode_tokens: int = 0, opts: PrefillOptions = PrefillOptions(), tp_rows: int = 1) -> PrefillCost:
    """Prefill of `tokens` prompt tokens after `prior_tokens` already cached, on one instance of
    tp x pp x ep GPUs (module docstring). `last_chunk`: the lm head runs (on one position).

    `decode_tokens` > 0: the chunk rides in a decode step of that many tokens (chunked prefill,
    model/serving.py), and what is returned is the time the chunk *adds* to that step: the
    weight GEMMs and collectives at M = tokens + decode_tokens less the same at decode_tokens
    alone (the weights are read once for both), plus the chunk's attention, KV write and
    activations; no second step overhead."""
    return prefill_step(model, hw, chunks=[(tokens, prior_tokens, last_chunk)], tp=tp, pp=pp, ep=ep, engine=engine,
                        decode_tokens=decode_tokens, opts=opts, tp_rows=tp_rows)


@dataclass(frozen=True)
class _Attention:
    """The prefill attention of one step's chunks on one GPU of a stage: its FLOPs, their time and
    its bytes' time; `fitted`: a context-attention fit prices it (the three add, with its floor),
    else the roofline (the larger of flop_s and byte_s counts)."""

    flops: float
    flop_s: float
    byte_s: float
    floor_s: float
    fitted: bool
    kv_share: float


def _attention(model: ModelSpec, hw: HardwareProfile, chunks, heads_axis: float, layers: float, B: float,
               op_level: bool, opts: PrefillOptions) -> _Attention:
    """Causal attention of each chunk over its prompt so far (module docstring), this GPU's
    heads. The only part of a step that depends on the chunks' cached prefixes, and affinely so
    (prefill_plan sums a long plan's chunks in closed form on that)."""
    heads = model.n_heads / heads_axis
    if model.is_mla:
        per_pair = 2.0 * heads * (model.qk_nope_dim + model.qk_rope_dim + model.v_head_dim)
        qkvo_elems = heads * (2 * (model.qk_nope_dim + model.qk_rope_dim) + 2 * model.v_head_dim)
    else:
        per_pair = 4.0 * heads * model.d_head
        kv_heads = max(model.n_kv_heads / heads_axis, 1.0)
        qkvo_elems = (2 * heads + 2 * kv_heads) * model.d_head
    c_total = float(sum(int(t) for t, _, _ in chunks))
    pairs = sum(float(c) * (float(P) + float(c) / 2.0) for c, P, _ in chunks)
    attn_flop = per_pair * pairs * layers
    # Bytes: Q/K/V/O of the chunks once, and each cached prefix's K and V once (flash attention
    # streams them through on-chip memory).
    from inferecon.model.terms import _kv_share_per_gpu

    kv_share = _one(_kv_share_per_gpu(model, np.asarray([heads_axis])))
    prefix_bytes = sum(float(P) for _, P, _ in chunks) * model.kv_bytes_per_token_layer * kv_share * layers
    qkvo_bytes = c_total * qkvo_elems * model.act_bytes * layers
    mla_s = _context_mla_s(model, hw, chunks, heads, layers) if op_level and model.is_mla else None
    if mla_s is not None:
        flop_s, floor_s = mla_s  # the table's prompt of P + c read its P cached tokens too: no byte term
        return _Attention(attn_flop, flop_s, 0.0, floor_s, True, kv_share)
    cfit = _context_attention_fit(model, hw) if op_level else None
    if cfit is not None:
        s = _scale(hw, "context_attention", cfit.kv_dtype)
        f = attn_flop / (cfit.tflops * 1e12)
        b = (qkvo_bytes / (cfit.gbps * 1e9) if cfit.gbps else 0.0) + prefix_bytes / B
        return _Attention(attn_flop, s * f, s * b, s * layers * cfit.floor_us * 1e-6, True, kv_share)
    f = attn_flop / (hw.compute.peak_tflops["bf16"] * opts.attention_efficiency * 1e12)
    b = (qkvo_bytes + prefix_bytes) / (hw.memory.achieved_gbps * 1e9)
    return _Attention(attn_flop, f, b, 0.0, False, kv_share)


def prefill_step(model: ModelSpec, hw: HardwareProfile, *, chunks, tp: int = 1, pp: int = 1, ep: int = 1,
                 engine: EngineProfile | None = None, decode_tokens: int = 0,
                 opts: PrefillOptions = PrefillOptions(), tp_rows: int = 1) -> PrefillCost:
    """The prompt chunks one engine step carries, priced together: `chunks` is a list of
    (tokens, prior_tokens, last_chunk), one per prompt. The batched prompts' tokens are packed
    into one token dimension (vLLM, SGLang and TensorRT-LLM all run packed, unpadded inputs),
    so the weight GEMMs and collectives run once at M = all the chunks' tokens (+ decode_tokens),
    and each prompt's attention, KV write and activations add. Forty 200-token prompts in one
    step are an 8,000-row GEMM, compute-bound; priced one by one beside a decode batch each
    would look almost free (a 200-row GEMM is still weight-bound). `tokens` of the result is
    the sum over the chunks, `prior_tokens` the first chunk's. `tp_rows` > 1: the tp GPUs of a
    stage as a 2D grid of tp_rows rows (_token_ops), heads and attention over the rows only
    (a grid's columns repeat it, as at decode)."""
    if not chunks:
        raise RequestError("input_len", 0, "a prefill step needs at least one prompt chunk")
    for tokens, prior_tokens, _ in chunks:
        if not isinstance(tokens, (int, np.integer)) or isinstance(tokens, bool) or tokens < 1:
            raise RequestError("input_len", tokens, "a prompt needs at least 1 token")
        if prior_tokens < 0:
            raise RequestError("input_len", prior_tokens, "tokens already cached cannot be negative")
    if decode_tokens < 0:
        raise RequestError("input_len", decode_tokens, "decode tokens in a step cannot be negative")
    check_prefill_layout(model, tp, pp, ep, tp_rows)
    op_level = getattr(hw, "op_fits", None) is not None
    c_total = float(sum(int(t) for t, _, _ in chunks))
    layers = model.n_layers / pp
    d = float(model.d_model)
    heads_axis = float(_heads_axis(tp, tp_rows))
    pricing = _gemm_pricing(model, hw)
    B = pricing[2]
    acc = _Terms()
    lm = float(sum(1 for _, _, last in chunks if last))
    eng_fits = getattr(engine, "op_fits", None) if engine is not None else None
    moe_fit = None
    if op_level and model.is_moe:
        from inferecon.model.ops import _moe_fit

        moe_fit = _moe_fit(eng_fits, model)
    gemm_flops = _token_ops(model, hw, acc, c_total + decode_tokens, lm + decode_tokens, tp, pp, ep, op_level,
                            pricing, tp_rows, moe_fit, eng_fits)
    if decode_tokens:
        base = _Terms()
        gemm_flops -= _token_ops(model, hw, base, float(decode_tokens), float(decode_tokens), tp, pp, ep,
                                 op_level, pricing, tp_rows, moe_fit, eng_fits)
        for k in TERMS:
            acc.t[k] -= base.t[k]
        for k in FAMILIES:
            acc.fam[k] -= base.fam[k]

    att = _attention(model, hw, chunks, heads_axis, layers, B, op_level, opts)
    attn_flop, f, b = att.flops, att.flop_s, att.byte_s
    if att.fitted:
        acc.add("attention", arithmetic=f, memory=b, latency=att.floor_s)
    else:
        acc.add("attention", arithmetic=f if f > b else 0.0, memory=b if b >= f else 0.0)
    kv_share = att.kv_share

    # KV-cache write and activation traffic.
    kv_write = c_total * model.kv_bytes_per_token_layer * kv_share * layers
    acc.add("kv_write", memory=kv_write / B)
    ff_active = model.d_ff if not model.is_moe else model.n_active_experts * model.d_ff_expert
    # Norms and residual adds run on the whole d_model on every GPU of a 1D group (tensor
    # parallelism replicates them between the all-reduces; a 2D grid splits d_model over its
    # columns); only the MLP's hidden state is split over the tp GPUs. Dividing the d_model part
    # by tp as well priced DeepSeek-V3's norms at tp 8 at an eighth of the bytes they move.
    cols = tp // tp_rows if tp_rows > 1 else 1
    act_elems = opts.activation_elems_per_layer_in_d_model * d / cols + 2 * ff_active / tp
    acc.add("elementwise", memory=c_total * layers * act_elems * model.act_bytes / B)
    if op_level and eng_fits is not None and eng_fits.elementwise_per_layer_us is not None and not decode_tokens:
        acc.add("elementwise", latency=layers * eng_fits.elementwise_per_layer_us * 1e-6)

    # Per-stage figures -> the whole instance: a prompt passes the pp stages in turn.
    fam = {k: v * pp for k, v in acc.fam.items()}
    terms = {k: v * pp for k, v in acc.t.items()}
    overhead = 0.0
    if not decode_tokens:
        overhead = float(hw.latency.step_overhead_us) * 1e-6
        if engine is not None:
            overhead += (engine.step_overhead_us + model.n_layers * engine.per_layer_us
                         + len(chunks) * engine.per_sequence_us) * 1e-6  # each prompt of the step
    terms["latency"] += overhead
    fam["overhead"] += overhead
    return PrefillCost(tokens=int(c_total), prior_tokens=int(chunks[0][1]), level="op" if op_level else "roofline",
                       t_arithmetic_s=terms["arithmetic"], t_memory_s=terms["memory"],
                       t_network_s=terms["network"], t_latency_s=terms["latency"],
                       t_prefill_s=sum(terms.values()),
                       **{f"t_{k}_s": v for k, v in fam.items()},
                       flops_per_gpu=(gemm_flops + attn_flop) * pp, gemm_flops_per_gpu=gemm_flops * pp)


def chunk_plan(input_len: int, chunk_tokens: int | None) -> list[tuple[int, int]]:
    """(tokens, prior_tokens) of each chunk of an `input_len` prompt split into chunks of at
    most `chunk_tokens` (None: one chunk)."""
    if chunk_tokens is None or chunk_tokens >= input_len:
        return [(int(input_len), 0)]
    if chunk_tokens < 1:
        raise RequestError("chunk_size", chunk_tokens, "a prefill chunk needs at least 1 token")
    out, done = [], 0
    while done < input_len:
        n = min(chunk_tokens, input_len - done)
        out.append((n, done))
        done += n
    return out


def chunk_count(input_len: int, chunk_tokens: int | None) -> int:
    """len(chunk_plan(input_len, chunk_tokens)), without building the plan."""
    if chunk_tokens is None or chunk_tokens >= input_len:
        return 1
    if chunk_tokens < 1:
        raise RequestError("chunk_size", chunk_tokens, "a prefill chunk needs at least 1 token")
    return -(-int(input_len) // int(chunk_tokens))


# A plan of up to this many chunks is priced chunk by chunk, as it always was (every figure of an
# ordinary plan -- a few chunks of thousands of tokens -- stays to the bit); a longer one in
# closed form (prefill_plan), so that 2-token chunks of a 100k prompt cost a few chunk prices,
# not 50,000 (minutes in a frontier search, which prices each plan at many layouts).
PRICED_CHUNK_BY_CHUNK = 64


def summed_costs(costs) -> PrefillCost:
    """The chunks `costs` (in order) as one PrefillCost: times, tokens and FLOPs added, the first
    chunk's prior_tokens and level."""
    first = costs[0]
    values = {f.name: sum(getattr(c, f.name) for c in costs) for f in fields(PrefillCost)
              if f.name not in ("prior_tokens", "level")}
    return PrefillCost(prior_tokens=first.prior_tokens, level=first.level, **values)


def _times(cost: PrefillCost, count: int) -> PrefillCost:
    """`count` chunks that each cost `cost`."""
    values = {f.name: getattr(cost, f.name) * count for f in fields(PrefillCost)
              if f.name not in ("prior_tokens", "level")}
    return PrefillCost(prior_tokens=cost.prior_tokens, level=cost.level, **values)


def prefill_plan(model: ModelSpec, hw: HardwareProfile, *, input_len: int, tp: int = 1, pp: int = 1,
                 ep: int = 1, engine: EngineProfile | None = None, chunk_tokens: int | None = None,
                 decode_tokens: int = 0, opts: PrefillOptions = PrefillOptions(), tp_rows: int = 1) -> PrefillCost:
    """One whole prompt prefilled chunk after chunk (chunk_plan), its chunks' costs summed: alone,
    or with decode_tokens > 0 what its chunks add to steps that already carry that many decode
    tokens (prefill_chunk).

    Of a plan's chunks only the attention depends on where a chunk starts (_attention), and
    affinely: the full chunks before the last, at prefixes 0, c, 2c, ..., cost on average what
    one chunk at the mean prefix costs. A roofline's attention is the larger of its FLOP and
    byte times per chunk, so the full chunks split where that switches (once at most: both are
    affine in the prefix) and each side is one price times its count; the last chunk (partial
    or not, with the lm head) is priced on its own."""
    def price(tokens: int, prior: float, last: bool) -> PrefillCost:
        return prefill_chunk(model, hw, tokens=tokens, prior_tokens=prior, tp=tp, pp=pp, ep=ep, engine=engine,
                             last_chunk=last, decode_tokens=decode_tokens, opts=opts, tp_rows=tp_rows)

    if chunk_count(input_len, chunk_tokens) <= PRICED_CHUNK_BY_CHUNK:
        plan = chunk_plan(input_len, chunk_tokens)
        return summed_costs([price(n, p, i == len(plan) - 1) for i, (n, p) in enumerate(plan)])
    c = int(chunk_tokens)
    body = (int(input_len) - 1) // c  # the full chunks before the last one
    last = price(int(input_len) - body * c, body * c, True)
    parts = [_times(price(c, c * (lo + hi - 1) / 2.0, False), hi - lo) for lo, hi in _same_regime(
        model, hw, c, body, tp, pp, ep, opts, tp_rows)]
    return dataclasses.replace(summed_costs(parts + [last]), prior_tokens=0)  # the plan's first chunk's


def _same_regime(model, hw, c: int, body: int, tp, pp, ep, opts, tp_rows) -> list[tuple[int, int]]:
    """[lo, hi) ranges of the full chunks 0..body-1 (chunk i after i·c cached tokens) whose
    attention is priced by the same rule: one range with a context-attention fit (its terms add),
    else split where the roofline's FLOP time overtakes its byte time (a bisection: the sign of
    their difference is monotone in i)."""
    heads_axis = float(_heads_axis(tp, tp_rows))  # the layout was checked by the plan's last chunk's price
    op_level = getattr(hw, "op_fits", None) is not None
    B = _gemm_pricing(model, hw)[2]

    def flop_bound(i: int) -> bool:
        a = _attention(model, hw, [(c, i * c, False)], heads_axis, model.n_layers / pp, B, op_level, opts)
        return not a.fitted and a.flop_s > a.byte_s

    first = flop_bound(0)
    if flop_bound(body - 1) == first:
        return [(0, body)]
    lo, hi = 0, body - 1  # flop_bound(lo) == first != flop_bound(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if flop_bound(mid) == first else (lo, mid)
    return [(0, hi), (hi, body)]


def prefill_time_s(model: ModelSpec, hw: HardwareProfile, *, input_len: int, tp: int = 1, pp: int = 1,
                   ep: int = 1, engine: EngineProfile | None = None, chunk_tokens: int | None = None,
                   decode_tokens: int = 0, opts: PrefillOptions = PrefillOptions(), tp_rows: int = 1) -> float:
    """Seconds to prefill one whole prompt on the instance, chunk after chunk (prefill_plan)."""
    return prefill_plan(model, hw, input_len=input_len, tp=tp, pp=pp, ep=ep, engine=engine,
                        chunk_tokens=chunk_tokens, decode_tokens=decode_tokens, opts=opts,
                        tp_rows=tp_rows).t_prefill_s
