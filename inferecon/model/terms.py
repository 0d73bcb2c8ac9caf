"""The decode-step cost model of DESIGN.md, vectorised over arrays of configurations.

A configuration (one element of each array in `Layouts`) places one model instance on
n_gpu = pp · ep · tp GPUs:

- tp: tensor parallelism inside a pipeline stage, either 1D (tp_r = 1: the attention-out and
  MLP-down partial sums are all-reduced over the tp group, 2 all-reduces per layer) or a 2D
  weight-stationary grid (tp_r rows × tp_c columns, Pope et al. 2022, "Efficiently Scaling
  Transformer Inference"): every weight matrix is split over both axes, so each of the four
  matmuls of a layer leaves partial sums to reduce — QKV and gate/up over a row of tp_c GPUs
  ((q + 2 kv) · d_head / tp_r and gated · d_ff / tp_r words), attention-out and down over a
  column of tp_r GPUs (d_model / tp_c words each). Bytes per GPU shrink as 1/sqrt(tp). Heads
  are split over the rows only, so KV cache and attention are shared by tp_r, not tp. A row's
  GPUs are neighbours; a column's are tp_c apart, so columns span nodes first.
- ep: expert parallelism. Attention and dense layers are data-parallel across the ep ranks
  (each holds a replica and serves batch/ep of the sequences, DeepSeek-style DP attention);
  routed experts are spread over all ep · tp GPUs of the stage, and every MoE layer costs
  two all-to-alls (dispatch, combine) over the ep group. Dense models use ep = 1.
- pp: pipeline stages. The batch is split into pp micro-batches that keep every stage busy;
  one token of one sequence passes all pp stages in turn, plus pp - 1 point-to-point hops.

One token step of one sequence (speculative decoding: one draft-and-verify round) takes

    t_step = pp · [max(t_memory, t_arithmetic) + t_network + t_fixed]_stage + hops + overhead

Speed = accepted tokens / t_step per sequence; cost = n_gpu · t_step / (batch · tokens)
GPU-seconds per token. No term is capped or tuned here: efficiencies come from the profile.

With a calibrated profile that carries a GEMM fit (model/gemm.py), the weight GEMMs are timed
from that shape-dependent fit (their weight reads and FLOPs both inside the fitted time G),
and attention over the KV cache follows them (it needs the QKV GEMM's output): the stage's
compute is G + max(KV read, attention FLOPs). So that max() still means overlap there, the
arithmetic term is G + attention FLOP time and the memory term G + KV read time: the GEMMs are
in both (they are one measured time, not split by resource), max(arithmetic, memory) is the
compute time, and `dominant` says which side of attention binds when neither network nor
latency is larger.

`evaluate` returns a `StepCost`: one frozen record of arrays, one element per configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from inferecon.model import network as net
from inferecon.model.engine import EngineProfile, kv_reads_per_kv_head
from inferecon.model.gemm import gemm_time_s
from inferecon.model.hardware import HardwareProfile
from inferecon.model.spec import ModelSpec

TERMS = ("arithmetic", "memory", "network", "latency")
# Op families a step's time is reported by (StepCost.t_<family>_s); the op-level model
# (model/ops.py) names finer families, summed into these.
FAMILIES = ("gemm", "attention", "elementwise", "allreduce", "moe", "moe_all_to_all", "engine_overhead")
_OPS_FAMILY = {"gemm_attention": "gemm", "gemm_mlp": "gemm", "gemm_lm_head": "gemm", "gemm_moe": "gemm",
               "attention": "attention", "elementwise": "elementwise", "allreduce": "allreduce",
               "moe": "moe", "moe_all_to_all": "moe_all_to_all", "engine_overhead": "engine_overhead"}


@dataclass(frozen=True)
class CostOptions:
    # Share of HBM that can hold weights and KV cache; the rest is CUDA context, activations,
    # workspace and allocator slack.
    hbm_usable_fraction: float = 0.9
    # Per-token activation traffic per layer, in units of d_model (GEMM inputs and outputs,
    # residual stream, norms), on top of the MLP hidden activations.
    activation_elems_per_layer_in_d_model: float = 8.0


@dataclass(frozen=True)
class StepCost:
    """Every figure of one decode step for each configuration of a `Layouts` (arrays of one
    length; seconds, bytes, $). The four paper terms satisfy
    t_step_s = max(t_arithmetic_s, t_memory_s) + t_network_s + t_latency_s, except with
    op-level fits (model/ops.py), where the ops run in sequence and t_step_s is their sum.
    The per-family times say what the step is made of where the model separates it (zero
    where it does not yet: the hardware-only model knows the collectives and the engine's
    overhead, a GEMM fit adds GEMM and attention, the op-level model fills them all)."""

    t_arithmetic_s: np.ndarray
    t_memory_s: np.ndarray
    t_network_s: np.ndarray
    t_latency_s: np.ndarray
    t_step_s: np.ndarray
    t_gemm_s: np.ndarray
    t_attention_s: np.ndarray
    t_elementwise_s: np.ndarray
    t_allreduce_s: np.ndarray
    t_moe_s: np.ndarray  # routing, permutation and the routed experts' grouped GEMMs
    t_moe_all_to_all_s: np.ndarray  # dispatch and combine
    t_engine_overhead_s: np.ndarray
    tokens_per_step: np.ndarray
    tokens_per_s_per_seq: np.ndarray
    tokens_per_s_per_gpu: np.ndarray
    usd_per_mtok: np.ndarray
    mfu: np.ndarray
    memory_per_gpu_bytes: np.ndarray  # weights + KV cache one GPU stores
    feasible: np.ndarray  # bool: memory_per_gpu_bytes within the usable HBM
    dominant: np.ndarray  # one of TERMS per configuration
    flops_per_gpu_step: np.ndarray

    def __len__(self):
        return int(np.size(self.t_step_s))

    def family_s(self, family: str) -> np.ndarray:
        return getattr(self, f"t_{family}_s")

    def take(self, rows) -> "StepCost":
        """The same figures for the configurations `rows` (indices or a mask)."""
        return StepCost(**{f.name: np.asarray(getattr(self, f.name))[rows] for f in fields(self)})

    def at(self, i: int = 0) -> dict[str, float | str | bool]:
        """Configuration i's figures as plain Python scalars, by field name."""
        out = {}
        for f in fields(self):
            v = np.asarray(getattr(self, f.name))[i]
            out[f.name] = str(v) if f.name == "dominant" else (bool(v) if f.name == "feasible" else float(v))
        return out

    def columns(self, lay: "Layouts") -> dict[str, np.ndarray]:
        """Table columns (the frontier's CSV): the configuration, then the figures; memory in GB."""
        cols = dict(n_gpu=lay.n_gpu, tp=lay.tp, tp_r=lay.tp_r, tp_c=lay.tp_c, pp=lay.pp, ep=lay.ep,
                    batch=lay.batch, gamma=lay.gamma,
                    t_arithmetic_s=self.t_arithmetic_s, t_memory_s=self.t_memory_s,
                    t_network_s=self.t_network_s, t_latency_s=self.t_latency_s, t_step_s=self.t_step_s,
                    tokens_per_step=self.tokens_per_step, tokens_per_s_per_seq=self.tokens_per_s_per_seq,
                    tokens_per_s_per_gpu=self.tokens_per_s_per_gpu, usd_per_mtok=self.usd_per_mtok,
                    mfu=self.mfu, mem_per_gpu_gb=self.memory_per_gpu_bytes / 1e9, dominant=self.dominant)
        return cols


@dataclass
class Layouts:
    """Parallel layouts and batch sizes, one configuration per array element."""

    tp_r: np.ndarray  # 2D-TP rows (1 for 1D tensor parallelism)
    tp_c: np.ndarray  # 2D-TP columns (= tp for 1D)
    pp: np.ndarray
    ep: np.ndarray
    micro_batch: np.ndarray  # sequences per ep rank per micro-batch
    gamma: np.ndarray = field(default=None)  # draft tokens per round (0: no speculative decoding)

    def __post_init__(self):
        gamma = 0 if self.gamma is None else self.gamma
        arrays = [np.atleast_1d(a) for a in (self.tp_r, self.tp_c, self.pp, self.ep, self.micro_batch, gamma)]
        size = np.broadcast(*arrays).shape
        self.tp_r, self.tp_c, self.pp, self.ep, self.micro_batch, self.gamma = (
            np.broadcast_to(a, size).astype(np.int64) for a in arrays
        )
        if (self.micro_batch < 1).any():
            from inferecon.core.errors import UserError

            raise UserError("batch size must be at least 1")

    @property
    def tp(self):
        return self.tp_r * self.tp_c

    @property
    def n_gpu(self):
        return self.tp * self.pp * self.ep

    @property
    def batch(self):
        """Sequences decoded together by one instance."""
        return self.micro_batch * self.ep * self.pp

    def __len__(self):
        return int(self.tp_r.size)

    def subset(self, rows) -> "Layouts":
        return Layouts(tp_r=self.tp_r[rows], tp_c=self.tp_c[rows], pp=self.pp[rows], ep=self.ep[rows],
                       micro_batch=self.micro_batch[rows], gamma=self.gamma[rows])


def compute_dtype(model: ModelSpec, hw: HardwareProfile) -> str:
    """The dtype the weight GEMMs multiply in: the weight format's (model/quant.py). Without a
    named format, 8-bit weights run FP8 GEMMs where the GPU has FP8 (W8A8); 4-bit weights are
    weight-only quantised and multiply in 16-bit (W4A16), as deployed engines do; 32-bit
    weights (CPU validation runs) multiply in fp32; a device with no 16-bit figure (a CPU
    calibration that timed fp32 GEMMs only) multiplies in fp32."""
    from inferecon.model.quant import format_of

    return format_of(model).compute_dtype(hw.compute.peak_tflops)


def moe_expert_fraction(model: ModelSpec, tokens):
    """Expected share of a layer's routed experts that a batch of `tokens` touches, each token
    picking k of E experts uniformly: 1 - (1 - k/E)^tokens."""
    if not model.is_moe:
        return np.zeros_like(np.asarray(tokens, dtype=float))
    return 1.0 - (1.0 - model.n_active_experts / model.n_experts) ** np.asarray(tokens, dtype=float)


def heads_split(lay: "Layouts"):
    """GPUs the attention heads are split over: the whole group in 1D, the rows in 2D."""
    return np.where(lay.tp_r > 1, lay.tp_r, lay.tp_c).astype(float)


def _kv_share_per_gpu(model: ModelSpec, heads_axis):
    """Share of a layer's KV cache one GPU holds when heads are split over `heads_axis` GPUs.
    KV heads are split but never below one head per GPU (GQA heads are replicated when the
    axis is wider than the KV heads); MLA's latent is shared by all heads, so every GPU keeps
    all of it."""
    if model.is_mla:
        return np.ones_like(heads_axis, dtype=float)
    return np.maximum(1.0 / heads_axis, 1.0 / model.n_kv_heads)


def dispatch_bytes(model: ModelSpec, hw: HardwareProfile) -> float:
    """Bytes per element an MoE all-to-all moves: FP8-native models dispatch in FP8."""
    return 1.0 if compute_dtype(model, hw) == "fp8" else float(model.act_bytes)


def _stage(model, hw, lay, tokens_per_seq, context, opts, engine=None):
    """Per-stage times (seconds) and per-GPU traffic for one micro-batch step."""
    tp = lay.tp.astype(float)
    ep = lay.ep.astype(float)
    pp = lay.pp.astype(float)
    layers = model.n_layers / pp
    moe_layers = model.n_moe_layers / pp
    dense_layers = layers - moe_layers
    tok_rank = lay.micro_batch * tokens_per_seq  # tokens through one ep rank's attention
    tok_group = tok_rank * ep  # tokens reaching the experts of the stage
    wbytes = model.weight_bytes_per_param
    ab = model.act_bytes

    # Memory: weights touched, KV cache of this rank's sequences, activations.
    always_on = (model.always_on_params + model.lm_head_params) / pp / tp
    routed = model.routed_expert_params / pp / (ep * tp) * moe_expert_fraction(model, tok_group)
    weight_bytes = (always_on + routed) * wbytes
    heads_axis = heads_split(lay)
    kv_share = _kv_share_per_gpu(model, heads_axis)
    kv_bytes = lay.micro_batch * context * layers * model.kv_bytes_per_token_layer * kv_share
    if engine is not None and engine.kv_reread_per_query_head:
        # One thread block per query head (model/engine_kernel_facts.py): each GPU's query heads
        # read their group's KV head once each.
        kv_bytes = kv_bytes * kv_reads_per_kv_head(engine, model, heads_axis)
    ff_active = model.d_ff if not model.is_moe else model.n_active_experts * model.d_ff_expert
    act_elems = opts.activation_elems_per_layer_in_d_model * model.d_model + 2 * ff_active
    act_bytes = tok_rank * layers * act_elems * ab / tp
    mem_bytes = weight_bytes + kv_bytes + act_bytes
    # An engine's kernels may read weights below the bandwidth a plain copy reaches (quantised
    # GEMMs at small batch): its weight-read efficiency stretches the weight part.
    weight_eff = engine.weight_efficiency(model.weight_bits) if engine is not None else 1.0
    if model.has_16bit_modules:
        # Modules the checkpoint keeps in 16 bit (attention, first/last MLPs, the lm head) are read
        # at 2 bytes and at the engine's 16-bit read efficiency.
        kept = (model.stack_16bit_params + model.lm_head_params * model.lm_head_kept_16bit) / pp / tp
        w16 = kept * 2.0
        wq = weight_bytes - kept * wbytes
        weight_bytes = wq + w16
        eff16 = engine.weight_efficiency(16) if engine is not None else 1.0
        mem_bytes = weight_bytes + kv_bytes + act_bytes
        t_mem = (wq / weight_eff + w16 / eff16 + kv_bytes + act_bytes) / (hw.memory.achieved_gbps * 1e9)
    else:
        t_mem = (weight_bytes / weight_eff + kv_bytes + act_bytes) / (hw.memory.achieved_gbps * 1e9)

    # Arithmetic: every token of this rank through the always-on weights and attention; the
    # routed-expert FLOPs of the whole ep group spread evenly over its ep · tp GPUs.
    routed_active = model.n_moe_layers * model.n_active_experts * model.expert_params
    # Attention over the cache is split by heads only: a 2D grid's columns repeat it.
    flops = (2.0 * (model.always_on_params + model.lm_head_params + routed_active) / tp
             + model.attention_flop_per_token(context) / heads_axis) / pp * tok_rank
    dtype = compute_dtype(model, hw)
    t_arith = flops / (hw.compute.achieved_tflops(dtype) * 1e12)
    if getattr(hw, "op_fits", None) is not None:
        # Op-level fits (calibrate --op-db): every op timed from its own fit, in sequence, and
        # accounted inside the four terms (model/ops.py); the engine's per-layer time still adds.
        from inferecon.model.ops import stage_ops

        o = stage_ops(model, hw, engine, lay, tok_rank, tok_group, context, heads_axis, kv_share, act_bytes,
                      dispatch_bytes(model, hw))
        fixed = o.t_fixed + (layers * engine.per_layer_us * 1e-6 if engine is not None else 0.0)
        families = {}
        for name, v in o.families.items():
            families[_OPS_FAMILY[name]] = families.get(_OPS_FAMILY[name], 0.0) + v
        if engine is not None:
            families["engine_overhead"] = families.get("engine_overhead", 0.0) + layers * engine.per_layer_us * 1e-6
        return dict(t_mem=o.t_mem, t_arith=o.t_arith, t_net=o.t_net, t_fixed=fixed, t_compute=o.compute_s,
                    flops=flops, mem_bytes=mem_bytes, families=families)

    # Network. 1D: the attention-out and MLP-down partial sums, d_model words each, over the
    # tp group. 2D: four reductions per layer (see the module docstring). A decode step runs as
    # a captured graph: its collectives include the engine's own (HardwareProfile.decode_view).
    dhw = hw.decode_view
    r = lay.tp_r
    c = lay.tp_c
    tok_bytes = tok_rank * ab
    ff_words = model.mlp_matrices - 1  # gated MLPs reduce gate and up
    # Hidden width a token's gate/up partial sums span: the routed experts it picks plus the
    # shared ones (wider than the activation width above, which leaves shared experts out).
    ff_reduced = model.d_ff if not model.is_moe else (model.n_active_experts + model.n_shared_experts) * model.d_ff_expert
    qkv_words = (model.n_heads + 2 * model.n_kv_heads) * model.d_head
    if model.is_mla:
        qkv_words = model.attention_params / model.d_model - model.n_heads * model.v_head_dim
    tok_bytes, r, c = np.broadcast_arrays(tok_bytes, r, c)
    per_layer = np.zeros(tok_bytes.shape)
    # Each layout pays only its own collectives (the search is dominated by this term's cost).
    one, two = np.flatnonzero(r == 1), np.flatnonzero(r > 1)
    if one.size:
        per_layer[one] = 2.0 * net.collective_time_s(dhw, net.ALL_REDUCE, c[one], 1, tok_bytes[one] * model.d_model)
    if two.size:
        rr, cc, tb = r[two].astype(float), c[two], tok_bytes[two]
        per_layer[two] = (net.collective_time_s(dhw, net.ALL_REDUCE, cc, 1, tb * qkv_words / rr)
                          + net.collective_time_s(dhw, net.ALL_REDUCE, cc, 1, tb * ff_words * ff_reduced / rr)
                          + 2.0 * net.collective_time_s(dhw, net.ALL_REDUCE, rr, cc, tb * model.d_model / cc))
    t_net = layers * per_layer
    families = {"allreduce": t_net}
    if model.is_moe:
        # Dispatch and combine: each token goes to k experts across the ep group; a tp group
        # shares its tokens, so each of its GPUs sends 1/tp of them. Pairwise exchange.
        a2a_bytes = tok_rank * model.n_active_experts * model.d_model * dispatch_bytes(model, hw) / tp
        a2a = net.collective_time_s(dhw, net.ALL_TO_ALL, lay.ep, lay.tp, a2a_bytes)
        t_net = t_net + 2.0 * moe_layers * a2a
        families["moe_all_to_all"] = 2.0 * moe_layers * a2a

    kernels = (dense_layers * hw.latency.serial_kernels_per_dense_layer
               + moe_layers * hw.latency.serial_kernels_per_moe_layer)
    t_fixed = kernels * hw.latency.kernel_launch_us * 1e-6
    if engine is not None:
        t_fixed = t_fixed + layers * engine.per_layer_us * 1e-6
        families["engine_overhead"] = layers * engine.per_layer_us * 1e-6

    t_compute = np.maximum(t_mem, t_arith)
    t_gemm = _gemm_stage_s(model, hw, dtype, tok_rank, tok_group, tp, ep, pp) if hw.compute.gemm_fit else None
    if t_gemm is not None:
        # Calibrated: the weight GEMMs take their measured, shape-dependent time G (weight
        # reads and activations included); attention over the KV cache cannot start before the
        # QKV GEMM ends and so adds to it. G is in both terms so that max() is the compute
        # time (module docstring).
        attn_flops = model.attention_flop_per_token(context) / pp * tok_rank / heads_axis
        t_attn = attn_flops / (hw.compute.achieved_tflops(dtype) * 1e12)
        t_kv = kv_bytes / (hw.memory.achieved_gbps * 1e9)
        g = t_gemm / weight_eff
        t_arith = g + t_attn
        t_mem = g + t_kv
        t_compute = g + np.maximum(t_kv, t_attn)
        families["gemm"] = g
        families["attention"] = np.maximum(t_kv, t_attn)
    return dict(t_mem=t_mem, t_arith=t_arith, t_net=t_net, t_fixed=t_fixed, t_compute=t_compute,
                flops=flops, mem_bytes=mem_bytes, families=families)


def _gemm_stage_s(model, hw, dtype, tok_rank, tok_group, tp, ep, pp):
    """Seconds of one stage's weight GEMMs on one GPU from the calibrated GEMM fit, or None
    when the fit has no entry for this dtype. Column-parallel matrices split N over the tp
    group, row-parallel ones split K; each GPU runs its share of the touched routed experts."""
    def g(m, n, k):
        return gemm_time_s(hw.compute.gemm_fit, dtype, m, n, k)

    if g(1.0, 1.0, 1.0) is None:
        return None
    d, gated = model.d_model, model.mlp_matrices - 1
    if model.is_mla:
        attn = g(tok_rank, model.attention_params / d / tp, d)
    else:
        q = model.n_heads * model.d_head
        kv = 2 * model.d_head * np.maximum(model.n_kv_heads / tp, 1.0)
        attn = g(tok_rank, q / tp + kv, d) + g(tok_rank, d, q / tp)
    dense_mlp = g(tok_rank, gated * model.d_ff / tp, d) + g(tok_rank, d, model.d_ff / tp)
    layers = model.n_layers / pp
    moe_layers = model.n_moe_layers / pp
    total = layers * attn + (layers - moe_layers) * dense_mlp + g(tok_rank, model.vocab_size / tp, d) / pp
    if model.is_moe:
        ff = model.d_ff_expert
        shared = 0.0
        if model.n_shared_experts:
            width = ff * model.n_shared_experts
            shared = g(tok_rank, gated * width / tp, d) + g(tok_rank, d, width / tp)
        frac = np.maximum(moe_expert_fraction(model, tok_group), 1e-12)
        touched = model.n_experts / ep * frac
        tokens_each = tok_group * model.n_active_experts / model.n_experts / frac
        routed = touched * (g(tokens_each, gated * ff / tp, d) + g(tokens_each, d, ff / tp))
        total = total + moe_layers * (shared + routed)
    return total


def stored_bytes_per_gpu(model: ModelSpec, lay: Layouts, context: int) -> tuple[np.ndarray, np.ndarray]:
    """(weight bytes, KV-cache bytes) one GPU stores, per configuration: the one rule of
    memory per GPU (feasibility, predict's memory columns).

    Weights: attention, dense layers, shared experts, embeddings and the lm head are split
    over tp within a stage and replicated on every ep rank (data-parallel attention); the
    routed experts are split over ep x tp. KV: each ep rank keeps the cache of its batch/ep
    sequences for its stage's layers; the heads' GPUs split the KV heads but never below one
    head per GPU (GQA heads are replicated beyond that), and MLA's shared latent is held
    whole by every GPU."""
    tp = lay.tp.astype(float)
    ep = lay.ep.astype(float)
    pp = lay.pp.astype(float)
    replicated = model.always_on_params + model.lm_head_params * (not model.tied_embeddings) + model.embedding_params
    weights = (replicated / (pp * tp) + model.routed_expert_params / (pp * ep * tp)) * model.weight_bytes_per_param
    if model.has_16bit_modules:  # modules kept in 16 bit: 2 bytes each, not weight_bits'
        kept = (model.stack_16bit_params + model.embedding_params * model.embedding_kept_16bit
                + model.lm_head_params * (model.lm_head_kept_16bit and not model.tied_embeddings))
        weights = weights + kept / (pp * tp) * (2.0 - model.weight_bytes_per_param)
    # Every micro-batch's sequences keep their cache on the stage: micro_batch · pp per rank.
    seqs = lay.micro_batch * lay.pp
    kv = seqs * context * (model.n_layers / pp) * model.kv_bytes_per_token_layer * _kv_share_per_gpu(model, heads_split(lay))
    return weights, kv


def expected_tokens(gamma, acceptance):
    """Tokens a speculative round yields on average: with γ drafted tokens each accepted
    independently with probability α, the target keeps the accepted prefix plus one token of
    its own, E = (1 - α^(γ+1)) / (1 - α)  (Leviathan et al. 2023, eq. 1). γ = 0 gives 1."""
    gamma = np.asarray(gamma, dtype=float)
    if acceptance >= 1.0:
        return gamma + 1.0
    return (1.0 - acceptance ** (gamma + 1.0)) / (1.0 - acceptance)


def _writable(fresh, shape):
    """`fresh` (a product just computed, owned by the caller) as a writable array of `shape`:
    itself where it has that shape already, else broadcast into a copy."""
    if isinstance(fresh, np.ndarray) and fresh.shape == shape:
        return fresh
    return np.broadcast_to(fresh, shape).copy()


def evaluate(model: ModelSpec, hw: HardwareProfile, lay: Layouts, context: int,
             draft: ModelSpec | None = None, acceptance: float = 0.0,
             opts: CostOptions = CostOptions(), engine: EngineProfile | None = None) -> StepCost:
    """All figures for every configuration in `lay` (a StepCost of arrays). With an `engine`,
    its per-step and per-layer overheads and weight-read efficiency apply (model/engine.py)."""
    gamma = lay.gamma.astype(float)
    spec = gamma > 0
    if spec.any() and draft is None:
        from inferecon.core.errors import UserError

        raise UserError("speculative decoding (gamma > 0) needs a draft model")
    pp = lay.pp.astype(float)
    shape = pp.shape

    target = _stage(model, hw, lay, tokens_per_seq=gamma + 1.0, context=context, opts=opts, engine=engine)
    parts = {k: pp * target[k] for k in ("t_mem", "t_arith", "t_net", "t_fixed")}
    parts["t_fixed"] = _writable(parts["t_fixed"], shape)
    # Only the families the model separates are computed; the others are zero (one shared
    # read-only view, not an array per family: the search prices millions of configurations).
    fams = {f: _writable(pp * v, shape) for f, v in target["families"].items()}
    compute = pp * target["t_compute"]
    flops_per_gpu = pp * target["flops"]
    stored = sum(stored_bytes_per_gpu(model, lay, context))

    if draft is not None and spec.any():
        # The draft runs on the same GPUs with the same layout, one token per sequence per
        # drafted position; its own pipeline is never split (speculation requires pp = 1).
        # Only the speculative rows are evaluated for it.
        rows = np.flatnonzero(spec)
        sub = lay.subset(rows)
        d = _stage(draft, hw, sub, tokens_per_seq=1.0, context=context, opts=opts, engine=engine)
        g = gamma[rows]
        for k in parts:
            parts[k][rows] += g * d[k]
        for f, v in d["families"].items():
            if f not in fams:
                fams[f] = np.zeros(shape)
            fams[f][rows] += g * v
        compute[rows] += g * d["t_compute"]
        stored[rows] += sum(stored_bytes_per_gpu(draft, sub, context))

    # Pipeline hops: one activation send per stage boundary, per micro-batch pass.
    msg = lay.micro_batch * lay.ep * (gamma + 1.0) * model.d_model * model.act_bytes
    gpus_per_stage = lay.tp * lay.ep
    gpn = hw.network.gpus_per_node
    # A hop is between nodes when its two stages sit on different nodes.
    stride = np.where(gpus_per_stage >= gpn, gpn, gpus_per_stage)
    hop = net.collective_time_s(hw.decode_view, net.SEND_RECV, 2, stride, msg)
    parts["t_net"] = parts["t_net"] + (pp - 1.0) * hop
    parts["t_fixed"] = parts["t_fixed"] + hw.latency.step_overhead_us * 1e-6
    if engine is not None:
        # The host work per sequence is done by the scheduler of each data-parallel (ep) rank,
        # for the sequences it holds: micro_batch per pipeline stage, every stage's per step.
        host_s = (engine.step_overhead_us + engine.per_sequence_us * lay.micro_batch * pp) * 1e-6
        parts["t_fixed"] = parts["t_fixed"] + host_s
        fams["engine_overhead"] = fams.get("engine_overhead", 0.0) + host_s

    # 1 except under uncertainty draws (model/uncertainty.py), which scale the whole term.
    scale = hw.network.time_scale
    parts["t_net"] = parts["t_net"] * scale
    if np.ndim(scale) or scale != 1.0:
        for f in ("allreduce", "moe_all_to_all"):
            if f in fams:
                fams[f] = fams[f] * scale
    t_step = compute + parts["t_net"] + parts["t_fixed"]
    if engine is not None and engine.host_us_per_layer > 0:
        # Without CUDA graphs the host launches every kernel of every layer (each pipeline stage's
        # host its own pp micro-batches x layers/pp, so n_layers per step; the draft's too). The
        # GPU runs ahead of the host as far as the queue lets it, so the step is at least the
        # host's launch time: what it adds beyond the GPU's step is latency (model/engine.py).
        layers = model.n_layers + (gamma * draft.n_layers if draft is not None else 0.0)
        exposed = np.maximum(layers * engine.host_us_per_layer * 1e-6 - t_step, 0.0)
        parts["t_fixed"] = parts["t_fixed"] + exposed
        fams["engine_overhead"] = fams.get("engine_overhead", 0.0) + exposed
        t_step = t_step + exposed
    tokens = expected_tokens(gamma, acceptance) if spec.any() else np.ones_like(gamma)
    n_gpu = lay.n_gpu.astype(float)
    batch = lay.batch.astype(float)
    speed = tokens / t_step
    gpu_s_per_token = n_gpu * t_step / (batch * tokens)
    usd_per_mtok = gpu_s_per_token * hw.price_usd_per_gpu_hour / 3600.0 * 1e6
    useful_flops = model.flop_per_token(context) * speed * batch  # per instance per second
    peak = hw.compute.peak_tflops[compute_dtype(model, hw)] * 1e12
    mfu = useful_flops / (n_gpu * peak)
    capacity = hw.memory.capacity_gb * 1e9 * opts.hbm_usable_fraction

    # Which term the step waits on: memory and arithmetic overlap, so only the larger counts.
    arith_eff = np.where(parts["t_arith"] >= parts["t_mem"], compute, 0.0)
    mem_eff = np.where(parts["t_arith"] < parts["t_mem"], compute, 0.0)
    stacked = np.stack([arith_eff, mem_eff, parts["t_net"], parts["t_fixed"]])
    dominant = np.array(TERMS)[np.argmax(stacked, axis=0)]

    return StepCost(
        t_arithmetic_s=parts["t_arith"], t_memory_s=parts["t_mem"], t_network_s=parts["t_net"],
        t_latency_s=parts["t_fixed"], t_step_s=t_step,
        **{f"t_{f}_s": np.broadcast_to(fams.get(f, 0.0), shape) for f in FAMILIES},
        tokens_per_step=np.broadcast_to(tokens, t_step.shape),
        tokens_per_s_per_seq=speed, tokens_per_s_per_gpu=batch * speed / n_gpu,
        usd_per_mtok=usd_per_mtok, mfu=mfu, memory_per_gpu_bytes=stored,
        feasible=stored <= capacity, dominant=dominant,
        flops_per_gpu_step=np.broadcast_to(flops_per_gpu, shape),
    )
