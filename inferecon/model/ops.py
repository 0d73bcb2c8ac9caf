"""The decode step at operation level (DESIGN.md, "At operation level"), vectorised over arrays
of configurations like model/terms.py, from op-level fits (model/opfits.py): a HardwareProfile's
`op_fits` (the kernels' speed on this GPU under one engine) and, where given, an EngineProfile's
`op_fits` (the engine's all-reduce choice, elementwise time per layer, MoE fixed cost).

Per layer on one GPU of a pipeline stage, one op after another (a decode step inside a CUDA
graph runs its kernels in sequence; nothing overlaps but what a kernel overlaps itself):

- each weight GEMM y[M,N] = x[M,K] W[N,K]^T — QKV, attention-out, gate/up, down; the lm head
  once per step — costs t0 + max(2MNK / F, bytes / B) with t0, F, B the fit of the weight
  format's GEMM dtype (model/quant.py: FP8 per-tensor or block, INT8/INT4 weight-only ...), or
  the bf16 fit with 2-byte weights for the modules the checkpoint keeps in 16 bit (the lm head
  under most formats, attention in Meta's FP8 405B: ModelSpec.attention_16bit_layers ...);
- decode attention costs floor + max(KV bytes / B, FLOP / F) from the fit of the KV dtype;
- norms, activations, residual adds cost the engine's elementwise time per layer;
- a MoE layer costs the MoE fit (fixed cost + max(touched expert bytes / B, FLOP / F)) plus the
  shared experts' and router's GEMMs, and two all-to-alls when ep > 1;
- 1D tensor parallelism costs two all-reduces of M · d_model activations per layer: the engine's
  own (one/two-shot inside a CUDA graph) up to its size limit inside a node, NCCL beyond it (the
  fitted NCCL line where the database has one at that world size, else the hierarchical model
  of model/network.py, which also prices every group that spans nodes).

Every op's time lands in exactly one of the paper's four terms, so the terms add up to the
step: a GEMM's or attention's intercept/floor, the elementwise time and the MoE fixed cost are
**latency** (time that does not shrink with bytes or FLOPs); the rest of a GEMM, attention or
MoE op is **arithmetic** where its FLOP time exceeds its byte time, else **memory**; every
collective is **network**. Because the ops run in sequence, the step is the sum of the four
(not max(memory, arithmetic) as in the paper's term model): `StageOps.compute_s` is arithmetic
+ memory.

Fallbacks, each a stated approximation, never a silent zero: a GEMM dtype without a fit uses
the nearest fitted one's t0, F and B with its own operand bytes (fp8_block -> fp8 -> bf16;
weight-only and nvfp4 -> bf16); a KV dtype without an attention fit uses the bf16 fit with the
model's own KV bytes; no MoE fit: the routed experts' grouped GEMMs from the GEMM fit (one
intercept per grouped GEMM). `fallbacks()` names which apply to a model on a profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from inferecon.model import network as net
from inferecon.model.distinct import distinct_rows
from inferecon.model.engine import kv_reads_per_kv_head
from inferecon.model.opfits import (GEMM_OPERAND_BYTES, MLA_LATENT_DIM, MOE_ROUTING_DEEPSEEK, MOE_ROUTING_GENERIC,
                                    moe_curve_key, moe_touched_experts)
from inferecon.model.quant import format_of

# model/quant.py format -> the op-level GEMM dtype its kernels are fitted under (opfits names).
FORMAT_GEMM_DTYPE = {"bf16": "bf16", "fp32": "fp32", "fp8": "fp8", "fp8-block": "fp8_block", "int8": "sq",
                     "int8-wo": "int8_wo", "w4a16": "int4_wo", "nvfp4": "nvfp4", "nvfp4-experts": "nvfp4",
                     "mxfp4": "int4_wo"}
# Where a dtype has no fit: the fitted dtype whose kernel is closest (same activation width first).
# Weight-only 4-bit falls back to the 8-bit weight-only kernel of the same GPU before bf16: same
# dequantise-then-multiply kernel family, its intercept measured (A100 TRT-LLM decode fits: int8_wo 8.2 us,
# int4_wo 8.2 us, bf16 2.6 us).
GEMM_FALLBACK = {"fp8_block": ("fp8", "bf16"), "fp8": ("bf16",), "sq": ("fp8", "bf16"), "int8_wo": ("int4_wo", "bf16"),
                 "int4_wo": ("int8_wo", "bf16"), "nvfp4": ("fp8", "bf16"), "fp16": ("bf16",), "fp32": ("bf16",)}
# The MoE table's dtype names for the same formats (aiconfigurator moe_dtype).
FORMAT_MOE_DTYPE = {"bf16": "bf16", "fp32": "bf16", "fp8": "fp8", "fp8-block": "fp8_block", "int8": "fp8",
                    "int8-wo": "bf16", "w4a16": "int4_wo", "nvfp4": "nvfp4", "nvfp4-experts": "nvfp4",
                    "mxfp4": "w4a16_mxfp4"}


def _dense_format(fmt):
    """The format of the GEMMs outside the routed experts."""
    from inferecon.model.quant import get_format

    return get_format(fmt.non_expert_format) if fmt.non_expert_format else fmt


@dataclass
class StageOps:
    """Seconds per GPU of one pipeline stage's micro-batch step, per configuration: the four
    terms, and the same time by op family (for the explanation; the families sum to the terms)."""

    t_arith: np.ndarray
    t_mem: np.ndarray
    t_net: np.ndarray
    t_fixed: np.ndarray
    families: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def compute_s(self):
        return self.t_arith + self.t_mem


class _Acc:
    """Adds ops into the four terms and their families."""

    def __init__(self, shape):
        self.shape = shape
        self.terms = {k: np.zeros(shape) for k in ("arith", "mem", "net", "fixed")}
        self.families: dict[str, np.ndarray] = {}

    def _fam(self, name, value, owned=False):
        """Adds `value` into family `name`. owned: `value` is a fresh array of this accumulator's,
        so it may hold the sum itself (the search's path: no array allocated per op)."""
        prev = self.families.get(name)
        if not owned or (prev is not None and np.broadcast_shapes(value.shape, np.shape(prev)) != value.shape):
            value = (0.0 if prev is None else prev) + value  # a new array (of an earlier op's larger shape)
        elif prev is not None:
            value += prev
        self.families[name] = value

    def roofline(self, family, count, floor_us, tflops, gbps, flop, nbytes):
        """count x (floor + max(flop / F, bytes / B)), seconds."""
        f = flop * (count / (tflops * 1e12))
        b = nbytes * (count / (gbps * 1e9))
        fixed = count * (floor_us * 1e-6)
        flop_bound = f > b
        # The search's arrays (f and b fresh, of the full shape) are worked in place: the same
        # figures in half the time over millions of configurations. One of arith and mem is
        # exactly zero, so max(f, b) is their sum and max(f, b) - arith the memory part, bit for bit.
        in_place = (isinstance(f, np.ndarray) and isinstance(b, np.ndarray) and f.shape == b.shape
                    and np.broadcast_shapes(f.shape, np.shape(fixed)) == f.shape)
        if in_place:
            total = np.maximum(f, b)
            arith = np.multiply(f, flop_bound, out=f)
            mem = np.subtract(total, arith, out=b)
            total += fixed
        else:
            arith = f * flop_bound
            mem = b - b * flop_bound
            total = fixed + arith + mem
        t = self.terms
        t["fixed"] += fixed
        t["arith"] += arith
        t["mem"] += mem
        self._fam(family, total, owned=in_place)

    @staticmethod
    def _spread(v, part_shape, rows, shape):
        return np.broadcast_to(v, part_shape).take(rows).reshape(shape)

    def gathered(self, rows, shape) -> "_Acc":
        """This accumulator over distinct rows spread over configurations: row rows[i] into
        configuration i of an accumulator of `shape`."""
        out = _Acc.__new__(_Acc)
        out.shape = shape
        out.terms = {k: self._spread(v, self.shape, rows, shape) for k, v in self.terms.items()}
        out.families = {k: self._spread(v, self.shape, rows, shape) for k, v in self.families.items()}
        return out

    def absorb(self, part, rows):
        """Adds `part`, an accumulator over distinct rows, into these configurations (row rows[i]
        of it into configuration i), as its ops' own adds would have: terms it left at zero are
        left alone."""
        for k, v in part.terms.items():
            if v.any():
                self.terms[k] += self._spread(v, part.shape, rows, self.shape)
        for name, v in part.families.items():
            self._fam(name, self._spread(v, part.shape, rows, self.shape), owned=True)

    def fixed(self, family, seconds):
        self.terms["fixed"] = self.terms["fixed"] + seconds
        self._fam(family, seconds)

    def network(self, family, seconds):
        self.terms["net"] = self.terms["net"] + seconds
        self._fam(family, seconds)

    def memory(self, family, seconds):
        self.terms["mem"] = self.terms["mem"] + seconds
        self._fam(family, seconds)

    def result(self) -> StageOps:
        t = self.terms
        # Every array among the families was made here (an add or a product of this accumulator's),
        # so one of the full shape is handed over as it is; the others are broadcast into copies.
        fams = {k: v if isinstance(v, np.ndarray) and v.shape == self.shape and v.dtype == float
                else np.broadcast_to(v, self.shape).astype(float) for k, v in self.families.items()}
        return StageOps(t["arith"], t["mem"], t["net"], t["fixed"], fams)


# Below this many configurations the arrays sit in cache and keying costs more than it saves
# (evaluate, H100 x vLLM op-DB, 2-core Sapphire Rapids, 2026-12-03: keyed / element-wise time
# 1.5-1.8 at 1,000 configurations, 1.04-1.11 at 10,000, 0.69-0.82 at 30,000, 0.65 at 100,000 for
# Llama 3 70B and DeepSeek-V3): predict's one configuration and the serving model's grids of 48
# take the element-wise path, a search of tens of thousands and more the keyed one.
KEYED_FROM_CONFIGS = 1 << 14


def _per_configuration_arrays(obj, n: int, depth: int = 0) -> bool:
    """Whether a profile (a dataclass tree) holds an array of n values, one per configuration:
    an uncertainty draw's (model/uncertainty.apply puts the draws of n tiled configurations into
    a fit's fields), which pricing once per distinct row would misalign. Lists and dicts of plain
    numbers (measured grids) are not walked."""
    if isinstance(obj, np.ndarray):
        return obj.ndim > 0 and obj.shape[-1] == n
    if depth > 8 or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
        return False
    if dataclasses.is_dataclass(obj):
        return any(_per_configuration_arrays(getattr(obj, f.name), n, depth + 1) for f in dataclasses.fields(obj))
    if isinstance(obj, dict):
        # Each value on its own: a map of per-dtype numbers may hold a drawn array beside plain
        # ones (OpFits.time_scale), in any order.
        return any(_per_configuration_arrays(v, n, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)) and obj and not isinstance(obj[0], (int, float, str, type(None))):
        return any(_per_configuration_arrays(v, n, depth + 1) for v in obj)
    return False


# The last profile and engine checked, with the answer (a search evaluates one pair many times).
_DRAWN_CACHE: list = [None, None, 0, False]


def _keyable(hw, engine, n: int) -> bool:
    """Whether the ops of n configurations may be priced per distinct row: enough of them
    (KEYED_FROM_CONFIGS), and no per-configuration draws in the profile or the engine."""
    if n < KEYED_FROM_CONFIGS:
        return False
    c = _DRAWN_CACHE
    if not (c[0] is hw and c[1] is engine and c[2] == n):
        c[:] = [hw, engine, n, not (_per_configuration_arrays(hw, n) or _per_configuration_arrays(engine, n))]
    return c[3]


class _Rows:
    """Configurations grouped by the distinct rows of some of their columns (model/distinct.py):
    an op whose time depends on those columns alone is priced once per row, from arrays reduced
    to the rows (`take`), and spread back over the configurations (`spread`, `into`), the same
    element-wise figures bit for bit. Where the columns cannot be keyed, every configuration is
    its own row and nothing is reduced."""

    def __init__(self, shape, cols, codes=None, enabled=True):
        self.full = shape
        keyed = distinct_rows(cols, shape, codes) if enabled else None
        self.rows, self.rep = keyed if keyed is not None else (None, None)
        self.shape = shape if self.rep is None else self.rep.shape

    def take(self, x):
        """x (a configuration array, or one value) on the distinct rows."""
        if self.rep is None or np.ndim(x) == 0:
            return x
        return np.broadcast_to(x, self.full).take(self.rep)

    def spread(self, part: _Acc) -> _Acc:
        """An accumulator over the rows as one over the configurations."""
        return part if self.rep is None else part.gathered(self.rows, self.full)

    def into(self, acc: _Acc) -> "_RowOps":
        """Ops priced on the rows and added into `acc` one by one."""
        return _RowOps(self, acc)


class _RowOps:
    """_Acc's ops, each priced over a _Rows' distinct rows and added into the configurations'
    accumulator at once, so that every term and family sums its ops in the order they come."""

    def __init__(self, rows: _Rows, acc: _Acc):
        self._rows, self._acc = rows, acc

    def _op(self, name, *args):
        r = self._rows
        if r.rep is None:
            getattr(self._acc, name)(*args)
            return
        part = _Acc(r.shape)
        getattr(part, name)(*args)
        self._acc.absorb(part, r.rows)

    def roofline(self, *args):
        self._op("roofline", *args)

    def fixed(self, *args):
        self._op("fixed", *args)

    def network(self, *args):
        self._op("network", *args)

    def memory(self, *args):
        self._op("memory", *args)


def gemm_params(fit, m, weight_bytes, k=None, nbytes=None):
    """(t0 µs, TFLOP/s, GB/s) per configuration: the fit's decode regime where M is in it
    (model/opfits.GemmFit.params, vectorised), else its one roofline. With `k` and `nbytes`
    (the GEMM's K and bytes), a decode regime's serial bound K / k_per_us rides in the bandwidth."""
    if fit.decode_m_max is None or fit.decode_t0_us is None:
        return fit.t0_us, fit.tflops, fit.gbps
    if fit.decode_bands:
        return _band_params(fit, m, weight_bytes, k, nbytes)
    dec = np.asarray(m) <= fit.decode_m_max
    bw = fit.decode_gbps
    if fit.decode_small_gbps and fit.decode_l2_bytes:
        bw = _pick(np.asarray(weight_bytes) <= fit.decode_l2_bytes, bw, min(fit.decode_small_gbps, bw))
    if fit.decode_k_per_us and k is not None:
        bw = np.minimum(bw, nbytes * (fit.decode_k_per_us * 1e-3) / k)
    return (_pick(dec, fit.t0_us, fit.decode_t0_us), _pick(dec, fit.tflops, fit.decode_tflops),
            _pick(dec, fit.gbps, bw))


def _band_params(fit, m, weight_bytes, k=None, nbytes=None):
    """gemm_params over a fit's M bands: one lookup row per band, then the one roofline's for
    M > decode_m_max; weights within L2 read at min(band's small_gbps, its gbps)."""
    bands = fit.decode_bands
    nb = len(bands) + 1
    c = _BANDS_CACHE
    if c[0] is fit and c[1] is m:
        row, t0_taken, tflops_taken, k_taken = c[2:]
    else:
        row = _band_rows(bands, m)
        t0_taken = np.array([b.t0_us for b in bands] + [fit.t0_us]).take(row)
        tflops_taken = np.array([b.tflops for b in bands] + [fit.tflops]).take(row)
        # The serial bound's K walked per second by band; beyond the bands, none.
        k_taken = (np.array([(b.k_per_us or np.inf) * 1e-3 for b in bands] + [np.inf]).take(row)
                   if any(b.k_per_us for b in bands) else None)
        if np.ndim(m):
            c[:] = [fit, m, row, t0_taken, tflops_taken, k_taken]
    # One table of bandwidths: rows beyond L2, then the same rows within L2 (offset nb).
    bw = np.array([b.gbps for b in bands] + [fit.gbps]
                  + [min(b.small_gbps or b.gbps, b.gbps) for b in bands] + [fit.gbps])
    if fit.decode_l2_bytes:
        bw_row = row + nb * (np.asarray(weight_bytes) <= fit.decode_l2_bytes)
    else:
        bw_row = row
    bw = bw.take(bw_row)
    if k is not None and k_taken is not None:
        # The serial bound K / k_per_us as a bandwidth (bytes over it).
        bw = np.minimum(bw, nbytes * k_taken / k)
    return t0_taken, tflops_taken, bw


# (fit, m, rows, t0, F, K rate) of the last call: a stage's GEMMs of one fit share one m, so their
# band lookups too. The cache holds m, so `is` cannot match a new array; read-only to callers.
_BANDS_CACHE: list = [None] * 6


def _band_rows(bands, m):
    """Per configuration, the index of the first band with m <= m_max (len(bands) beyond the
    last). Powers of two from 1 (the fit's DECODE_BANDS_M) by ceil(log2 m), a third of
    np.searchsorted's time over the search's millions of configurations."""
    edges = [b.m_max for b in bands]
    if edges == [2 ** i for i in range(len(edges))]:
        rows = np.minimum(np.ceil(np.log2(np.maximum(m, 1.0))), len(edges)).astype(np.intp)
    else:
        rows = np.searchsorted(np.array(edges, dtype=float), m)
    return rows


def _pick(flag, if_false, if_true):
    """np.where(flag, if_true, if_false); for two plain numbers as a lookup by the flag, the same
    figures in a quarter of the time over the search's millions of configurations."""
    if np.ndim(if_false) or np.ndim(if_true):
        return np.where(flag, if_true, if_false)
    return np.array([if_false, if_true], dtype=float).take(np.asarray(flag).view(np.uint8))


def gemm_fit_for(op_fits, dtype: str):
    """(fit, dtype it was fitted under) for a GEMM dtype, following GEMM_FALLBACK; (None, None)
    when the profile has no GEMM fit at all."""
    for d in (dtype,) + GEMM_FALLBACK.get(dtype, ("bf16",)):
        fit = op_fits.gemm_fit(d)
        if fit is not None:
            return fit, d
    return None, None


def kv_dtype_of(model) -> str:
    return {16: "bf16", 8: "fp8", 32: "fp32"}.get(int(model.kv_bits), "bf16")


def fallbacks(model, hw, engine=None) -> list[str]:
    """Which stated approximations the op-level model makes for this model on this profile."""
    fits = hw.op_fits
    out = []
    want = FORMAT_GEMM_DTYPE[_dense_format(format_of(model)).name]
    _, got = gemm_fit_for(fits, want)
    if got is None:
        out.append("no GEMM fit in the profile")
    elif got != want:
        out.append(f"{want} GEMMs priced with the {got} fit (t0, FLOP/s, bytes/s) at {want}'s operand bytes")
    fit, _ = gemm_fit_for(fits, want)
    src = getattr(fit, "source", None)
    if src is not None and src.backend and src.backend != fits.engine:
        out.append(f"{got} GEMMs priced from {src.backend} {src.version}'s table on the same GPU "
                   f"({fits.engine} {fits.engine_version} has none)")
    if model.has_16bit_modules and want != "bf16" and fits.gemm_fit("bf16") is None:
        out.append(f"modules kept in 16 bit priced with the {got} fit at 2-byte weights (no bf16 GEMM fit)")
    kv = kv_dtype_of(model)
    if fits.attention_fit(kv) is None:
        out.append(f"{kv} KV attention priced with the bf16 fit's floor and bandwidth at {kv} bytes")
    eng = getattr(engine, "op_fits", None) if engine is not None else None
    mfit = _moe_fit(eng, model) if model.is_moe else None
    if model.is_moe and mfit is None:
        out.append("no MoE fit: routed experts as grouped GEMMs from the GEMM fit")
    elif mfit is not None and mfit.distribution != moe_routing(model):
        out.append(f"MoE priced at the table's {mfit.distribution} routing (no {moe_routing(model)} fit)")
    if eng is None and fits.elementwise_per_layer_us is not None:
        out.append("no engine op fits: norms and activations take the profile's own time per layer")
    elif eng is None:
        out.append("no engine op fits: norms and activations add only their bytes; the all-reduce is NCCL's")
    elif eng.elementwise_per_layer_us is None:
        out.append("the engine op fits give no elementwise time per layer: norms and activations add only their bytes")
    return out


def moe_routing(model) -> str:
    """The routing a model's MoE layers are priced under (opfits.MOE_ROUTINGS): aiconfigurator's
    DeepSeek family (MLA, DeepSeek-V2/V3) at power_law_1.01, every other MoE at power_law_1.2."""
    return MOE_ROUTING_DEEPSEEK if model.is_mla else MOE_ROUTING_GENERIC


def _moe_fit(eng, model):
    """The engine's MoE fit for this model: its expert dtype's (the nearest kernel's where the
    table has none), read at the model's routing where fitted at it, else at the one there is."""
    if eng is None or not eng.moe:
        return None
    want = FORMAT_MOE_DTYPE[format_of(model).name]
    routing = moe_routing(model)
    for d in dict.fromkeys((want, "fp8_block", "fp8", "bf16")):  # nearest kernel first
        fits = [m for m in eng.moe if m.dtype == d]
        if fits:
            return next((m for m in fits if m.distribution == routing), fits[0])
    return None


def stage_ops(model, hw, engine, lay, tok_rank, tok_group, context, heads_axis, kv_share, act_bytes_per_gpu,
              dispatch_bytes_per_elem: float) -> StageOps:
    """One stage's op-level times per configuration (arrays broadcast over `lay`). `tok_rank`:
    tokens through one ep rank's attention; `tok_group`: tokens reaching the stage's experts;
    `kv_share`: share of a layer's KV cache one GPU holds; `act_bytes_per_gpu`: the activation
    traffic terms.py counts (norms, residuals), priced at the GEMM fit's bandwidth."""
    fits = hw.op_fits
    eng = getattr(engine, "op_fits", None) if engine is not None else None
    tp = lay.tp.astype(float)
    ep = lay.ep.astype(float)
    pp = lay.pp.astype(float)
    m = np.broadcast_to(np.asarray(tok_rank, dtype=float), tp.shape)
    layers = model.n_layers / pp
    moe_layers = model.n_moe_layers / pp
    d = float(model.d_model)
    fmt = format_of(model)
    dense_fmt = _dense_format(fmt)
    gdtype = FORMAT_GEMM_DTYPE[dense_fmt.name]
    gfit, fitted_as = gemm_fit_for(fits, gdtype)
    a_b, w_b, o_b = GEMM_OPERAND_BYTES.get(gdtype, (2.0, dense_fmt.weight_bits / 8, 2.0))
    expert_wb = GEMM_OPERAND_BYTES.get(FORMAT_GEMM_DTYPE[fmt.name], (2.0, model.weight_bytes_per_param, 2.0))[1]

    def gemm_into(target):
        def gemm(family, count, mm, n, k, wbytes=w_b, fit=None):
            """count GEMMs priced with the dense format's fit, or `fit` (a 16-bit GEMM's own: bf16
            operands)."""
            f = fit or gfit
            if f is None:
                return
            ab, ob = (2.0, 2.0) if fit is not None else (a_b, o_b)
            flop = 2.0 * mm * n * k
            weight_bytes = n * k * wbytes
            nbytes = weight_bytes + mm * k * ab + mm * n * ob
            # x the fit's time multiplier (1.0 but in an uncertainty draw: OpFits.time_scale).
            target.roofline(family, count * fits.scale("gemm", f.dtype), *gemm_params(f, mm, weight_bytes, k, nbytes),
                            flop, nbytes)

        def gemm16(family, count, mm, n, k):
            # Modules the checkpoint keeps in 16 bit (ModelSpec.attention_16bit_layers ...) run the
            # bf16 GEMM with 2-byte weights, as the router does (the dense format's fit where the
            # profile has no bf16 one).
            gemm(family, count, mm, n, k, wbytes=2.0, fit=bf16_fit)

        return gemm, gemm16

    bf16_fit = fits.gemm_fit("bf16")
    # A weight GEMM's time depends on (tokens per rank, tp, pp) alone, and a search's millions of
    # configurations hold a few hundred distinct such rows (DeepSeek-V3's default space: 307 in
    # 29,304 layouts): the GEMMs are priced once per distinct row, into an accumulator of those
    # rows, and gathered (_Rows.spread): the same element-wise figures, bit for bit.
    codes: dict = {}  # each column's codes, shared by the groupings below
    keyable = _keyable(hw, engine, int(np.prod(tp.shape)))
    gr = _Rows(tp.shape, (m, tp, pp), codes, keyable)
    m_k, tp_k, pp_k = gr.take(m), gr.take(tp), gr.take(pp)
    layers_k = model.n_layers / pp_k
    dense_layers_k = layers_k - model.n_moe_layers / pp_k

    part = _Acc(gr.shape)
    gemm, gemm16 = gemm_into(part)
    # Attention projections (heads split over `heads_axis`: the tp group in 1D).
    att16 = model.attention_16bit_share
    for g, count in (((gemm, layers_k),) if not att16 else
                     ((gemm, layers_k * (1.0 - att16)), (gemm16, layers_k * att16))):
        if model.is_mla:
            _mla_gemms(g, model, count, m_k, tp_k, d)
        else:
            q = model.n_heads * model.d_head
            kv = 2.0 * model.d_head * np.maximum(model.n_kv_heads / tp_k, 1.0)
            g("gemm_attention", count, m_k, q / tp_k + kv, d)
            g("gemm_attention", count, m_k, d, q / tp_k)
    gated = model.mlp_matrices - 1
    mlp16 = model.mlp_16bit_share
    for g, count in (((gemm, dense_layers_k),) if not mlp16 else
                     ((gemm, dense_layers_k * (1.0 - mlp16)), (gemm16, dense_layers_k * mlp16))):
        g("gemm_mlp", count, m_k, gated * model.d_ff / tp_k, d)
        g("gemm_mlp", count, m_k, d, model.d_ff / tp_k)
    (gemm16 if model.lm_head_kept_16bit else gemm)("gemm_lm_head", 1.0 / pp_k, m_k, model.vocab_size / tp_k, d)
    # Nothing came before the GEMMs, so the gathered sums are every configuration's sums, bit for bit.
    acc = gr.spread(part)

    # Decode attention over this GPU's share of the KV cache.
    kvd = kv_dtype_of(model)
    afit, mla = _attention_fit(fits, model, kvd)
    if afit is not None:
        # Its time depends on (tokens, sequences, head split, pp) alone: priced once per distinct row.
        ar = _Rows(tp.shape, (m, lay.micro_batch, heads_axis, pp), codes, keyable)
        m_a, ha, layers_a = ar.take(m), ar.take(heads_axis), ar.take(layers)
        kv_bytes = ar.take(lay.micro_batch) * context * model.kv_bytes_per_token_layer * ar.take(kv_share)
        attn_flop = model.attention_flop_per_token(context) / model.n_layers * m_a / ha
        # One GPU's heads; MLA reads one latent "KV head" per token (opfits.MLA_LATENT_DIM).
        h_gpu = model.n_heads / ha
        hk_gpu = 1.0 if mla else np.maximum(model.n_kv_heads / ha, 1.0)
        floor_us = afit.floor_us + afit.per_sequence_head_us * m_a * hk_gpu
        measured = _attention_grid_us(afit, model, mla, h_gpu, hk_gpu, m_a, context)
        floor_us, scale = _at_measured(measured, floor_us, attn_flop / (afit.tflops * 1e6), kv_bytes / (afit.gbps * 1e3))
        ops = ar.into(acc)
        layers_a = layers_a * fits.scale("mla_attention" if mla else "attention", afit.kv_dtype)
        ops.roofline("attention", layers_a, floor_us, afit.tflops, afit.gbps, attn_flop * scale, kv_bytes * scale)
        if engine is not None and engine.kv_reread_per_query_head:
            # A kernel of one thread block per query head (engine_kernel_facts.py): the other
            # query heads of each group read the group's KV again, at the fit's bandwidth.
            reads = kv_reads_per_kv_head(engine, model, ha)
            ops.memory("attention", layers_a * (reads - 1.0) * kv_bytes / (afit.gbps * 1e9))

    # Norms, activations, residuals: the engine's fixed time per layer, plus the activation bytes.
    ew_us = eng.elementwise_per_layer_us if eng is not None else None
    if ew_us is None:
        ew_us = fits.elementwise_per_layer_us  # a CPU calibration's own
    if ew_us is not None:
        acc.fixed("elementwise", layers * ew_us * 1e-6)
    if gfit is not None:
        acc.memory("elementwise", act_bytes_per_gpu / (gfit.gbps * 1e9))

    if model.is_moe:
        # The router's and shared experts' GEMMs on the distinct rows too, each gathered into the
        # terms on its own (after the ops above: the same sums in the same order).
        for one in _moe_gemms(model, gated, bf16_fit, m_k, tp_k, pp_k):
            one(gemm_into(gr.into(acc))[0])
        # The routed experts and their all-to-alls: (tokens, tp, ep, pp) alone.
        mr = _Rows(tp.shape, (m, tp, ep, pp), codes, keyable)
        tok_group = np.broadcast_to(np.asarray(tok_group, dtype=float), tp.shape)
        _moe(mr.into(acc), model, eng, mr.take(m), mr.take(tok_group), mr.take(tp), mr.take(ep), mr.take(moe_layers),
             d, gated, gfit, a_b, expert_wb, o_b, dispatch_bytes_per_elem, hw)

    # The tensor-parallel reductions: (grid, tokens, pp) alone.
    rr = _Rows(tp.shape, (lay.tp_r, lay.tp_c, m, pp), codes, keyable)
    _allreduce(rr.into(acc), hw, eng, rr.take(lay.tp_r), rr.take(lay.tp_c), rr.take(m) * d * model.act_bytes,
               rr.take(layers), model)
    return acc.result()


def _mla_gemms(gemm, model, layers, m, tp, d):
    """MLA's projections as SGLang, vLLM and TRT-LLM run them at decode (DeepSeek-V2/V3 code,
    weight absorption): the fused down-projection of query and KV latent (replicated on every
    GPU of the group), the query up-projection (split by heads), the two absorbed per-head
    products with the KV up-projection (K side before attention, V side after; batched GEMMs,
    priced with the GEMM fit), and the output projection (row-parallel). Together they hold
    every attention weight of ModelSpec.attention_params once."""
    h = model.n_heads / tp
    qk = model.qk_nope_dim + model.qk_rope_dim
    latent = model.kv_lora_rank + model.qk_rope_dim
    if model.q_lora_rank:
        gemm("gemm_attention", layers, m, model.q_lora_rank + latent, d)
        gemm("gemm_attention", layers, m, h * qk, model.q_lora_rank)
    else:
        gemm("gemm_attention", layers, m, latent, d)
        gemm("gemm_attention", layers, m, h * qk, d)
    gemm("gemm_attention", layers, m, h * model.kv_lora_rank, model.qk_nope_dim)
    gemm("gemm_attention", layers, m, h * model.v_head_dim, model.kv_lora_rank)
    gemm("gemm_attention", layers, m, d, h * model.v_head_dim)


def _moe_gemms(model, gated, bf16_fit, m, tp, pp):
    """The MoE layers' dense GEMMs, one callable each (taking the gemm function to price with):
    the router, then the shared experts' gate/up and down."""
    moe_layers = model.n_moe_layers / pp
    d = float(model.d_model)
    # The router: 16-bit weights and inputs (gpt-fast's mixtral-moe/quantize.py skips the layer
    # named "gate" when it quantises; DeepSeek-V3's checkpoints store the gate unquantised), so
    # the bf16 GEMM fit where the profile has one: the dense format's
    # (INT8 weight-only, A100 TRT-LLM: 9.2 us intercept and K / 434 per us against bf16's 2.5 us)
    # priced a kernel the router does not run.
    out = [lambda gemm: gemm("gemm_moe", moe_layers, m, model.n_experts, d, wbytes=2.0, fit=bf16_fit)]
    if model.n_shared_experts:
        width = float(model.d_ff_expert) * model.n_shared_experts
        out.append(lambda gemm: gemm("gemm_moe", moe_layers, m, gated * width / tp, d))
        out.append(lambda gemm: gemm("gemm_moe", moe_layers, m, d, width / tp))
    return out


def _moe(acc, model, eng, m, tok_group, tp, ep, moe_layers, d, gated, gfit, a_b, w_b, o_b, disp, hw):
    """The routed experts (the MoE fit's roofline, or grouped GEMMs from the GEMM fit) and the
    dispatch and combine all-to-alls."""
    ff = float(model.d_ff_expert)
    k = float(model.n_active_experts)
    mfit = _moe_fit(eng, model)
    # Experts of this rank a batch touches, min(E/ep, t·k/ep): the fit's form, whichever routing's
    # rows it was solved on (moe_routing); a skewed routing's extra time is in its fitted figures.
    touched = moe_touched_experts(tok_group, k, float(model.n_experts), ep)
    mats = float(model.mlp_matrices)
    expert_bytes = touched * mats * d * ff / tp * w_b
    flop = 2.0 * tok_group * k * mats * d * ff / tp / ep
    if mfit is not None:
        # The fit's latency part: fixed, per routed pair, per expert the rank runs (opfits.MoeFit).
        fixed_us = mfit.fixed_us + mfit.per_token_expert_us * tok_group * k + mfit.per_expert_us * touched
        # The table's own curve only for experts stored as that table's dtype: a fit standing in
        # for another format (INT8 weight-only experts on the bf16 table) keeps its own bytes.
        same_bytes = GEMM_OPERAND_BYTES.get(mfit.dtype, (0.0, 0.0, 0.0))[1] == w_b
        measured_us = _moe_curve_us(mfit, model, tok_group, tp, ep) if same_bytes else np.full(np.shape(flop), np.nan)
        fixed_us, scale = _at_measured(measured_us, fixed_us, flop / (mfit.tflops * 1e6),
                                       expert_bytes / (mfit.gbps * 1e3))
        acc.roofline("moe", moe_layers * hw.op_fits.scale("moe", mfit.dtype), fixed_us, mfit.tflops, mfit.gbps,
                     flop * scale, expert_bytes * scale)
    elif gfit is not None:
        # Two grouped GEMMs (gate/up, down) over the touched experts: one intercept each.
        tok_bytes = tok_group * k / ep * d * (a_b + o_b) * 2.0
        acc.roofline("moe", 2.0 * moe_layers * hw.op_fits.scale("gemm", gfit.dtype),
                     *gemm_params(gfit, tok_group * k / ep, expert_bytes / np.maximum(touched, 1.0)),
                     flop / 2.0, (expert_bytes + tok_bytes) / 2.0)
        fixed = (eng.moe_fixed_us.get(FORMAT_MOE_DTYPE[format_of(model).name]) if eng is not None else None)
        if fixed:
            acc.fixed("moe", moe_layers * fixed * 1e-6)
    # Dispatch and combine over the ep group (terms.py's pairwise exchange, hierarchical NCCL).
    a2a_bytes = m * k * d * disp / tp
    a2a = net.collective_time_s(hw, net.ALL_TO_ALL, ep, tp, a2a_bytes)
    acc.network("moe_all_to_all", 2.0 * moe_layers * a2a)


def _at_measured(measured_us, fixed_us, flop_us, byte_us):
    """(latency µs, scale of the FLOPs and bytes) of an op the table measured at `measured_us`
    (NaN where it did not: the fit's own `fixed_us` and scale 1 stay): its bytes and FLOPs at the
    fitted rates stay memory/arithmetic, no more than the measured time; the rest is latency."""
    got = np.isfinite(measured_us)
    if not got.any():
        return fixed_us, 1.0
    roof_us = np.maximum(flop_us, byte_us)
    scale = np.where(got, np.minimum(1.0, measured_us / np.maximum(roof_us, 1e-12)), 1.0)
    return np.where(got, np.maximum(measured_us - roof_us, 0.0), fixed_us), scale


def _attention_fit(fits, model, kv_dtype):
    """(decode-attention fit, whether it is MLA's): an MLA model takes the MLA tables' fit where
    the profile has one (DeepSeek-V2/V3 latent dims), every other model the attention fit of its
    KV dtype (bf16's where its own is missing)."""
    if model.is_mla and fits.mla_attention and model.kv_lora_rank + model.qk_rope_dim == MLA_LATENT_DIM:
        fit = fits.mla_attention_fit(kv_dtype) or fits.mla_attention_fit("bf16")
        if fit is not None:
            return fit, True
    return fits.attention_fit(kv_dtype) or fits.attention_fit("bf16"), False


def _attention_grid_us(afit, model, mla, h_gpu, hk_gpu, batch, kv_len):
    """µs of decode attention read off the table's grid of this head layout (opfits.AttentionFit
    .grid_us, vectorised: bilinear in log batch and log KV length); NaN where not measured."""
    shape = np.broadcast(h_gpu, hk_gpu, batch, kv_len).shape
    out = np.full(shape, np.nan)
    grids = afit.shape_grids
    if not grids:
        return out
    hd = MLA_LATENT_DIM if mla else model.d_head
    h, hk, b, L = (np.broadcast_to(np.asarray(a, dtype=float), shape) for a in (h_gpu, hk_gpu, batch, kv_len))
    for key, (bs, ls, flat) in grids.items():
        kh, kk, kd = (float(v) for v in key.split("x"))
        # Only the layouts this model can have on one GPU (its heads split k ways) are compared.
        split = model.n_heads / kh
        if kd != hd or abs(split - round(split)) > 1e-9 or kk != (1.0 if mla else max(model.n_kv_heads / split, 1.0)):
            continue
        sel = (h == kh) & (hk == kk) & (b >= bs[0]) & (b <= bs[-1]) & (L >= ls[0]) & (L <= ls[-1])
        if not sel.any():
            continue
        lb, ll = np.log(bs), np.log(ls)
        lv = np.log(np.array([np.nan if v is None else v for v in flat], dtype=float)).reshape(len(bs), len(ls))
        x, y = np.log(b[sel]), np.log(L[sel])
        i = np.clip(np.searchsorted(lb, x), 1, len(lb) - 1)
        j = np.clip(np.searchsorted(ll, y), 1, len(ll) - 1)
        fb = (x - lb[i - 1]) / (lb[i] - lb[i - 1])
        fl = (y - ll[j - 1]) / (ll[j] - ll[j - 1])
        acc = np.zeros(x.shape)
        for ii, jj, w in ((i - 1, j - 1, (1 - fb) * (1 - fl)), (i - 1, j, (1 - fb) * fl),
                          (i, j - 1, fb * (1 - fl)), (i, j, fb * fl)):
            v = lv[ii, jj]
            # A corner the table did not measure spoils the cell unless its weight is nil.
            acc = acc + np.where(w > 1e-12, w * v, 0.0)
        out[sel] = np.exp(acc)
    return out


def _moe_curve_us(mfit, model, tokens, tp, ep):
    """µs of the routed experts read off the MoE table's own curve of this model's shape at each
    configuration's (tp, ep) (opfits.MoeFit.curve_us, vectorised); NaN where the table did not
    measure the shape or the tokens lie beyond its curve."""
    shape = np.broadcast(tokens, tp, ep).shape
    out = np.full(shape, np.nan)
    curves = mfit.shape_curves
    if not curves:
        return out
    prefix = moe_curve_key(model.d_model, model.d_ff_expert, model.n_experts, model.n_active_experts, 1, 1)
    prefix = prefix.split(":")[0] + ":"
    tok, tpb, epb = (np.broadcast_to(np.asarray(a, dtype=float), shape) for a in (tokens, tp, ep))
    for key, (ct, cu) in curves.items():
        if not key.startswith(prefix):
            continue
        _, ctp, cep = key.split(":")
        sel = (tpb == float(ctp[2:])) & (epb == float(cep[2:])) & (tok <= ct[-1])
        if sel.any():
            x = np.log(np.maximum(tok[sel], ct[0]))  # below one token on a rank: the first row
            out[sel] = np.exp(np.interp(x, np.log(ct), np.log(cu)))
    return out


def _mode(lines, mode):
    """The lines timed the way the step runs them (inside a CUDA graph for a captured decode
    step); all of them where none was timed that way (NCCL tables time eager calls only)."""
    same = [ln for ln in lines if ln.mode == mode]
    return same or lines


def _line_time_us(lines, nbytes):
    """alpha + bytes / beta of the line whose [min_bytes, max_bytes) holds each message (the
    nearest end line outside them all)."""
    out = np.full(nbytes.shape, np.nan)
    for ln in lines:
        hi = np.inf if ln.max_bytes is None else ln.max_bytes
        sel = (nbytes >= ln.min_bytes) & (nbytes < hi)
        out = np.where(sel, ln.alpha_us + nbytes / (ln.beta_gbps * 1e3), out)
    if np.isnan(out).any():
        first, last = lines[0], lines[-1]
        below = nbytes < first.min_bytes
        out = np.where(np.isnan(out) & below, first.alpha_us + nbytes / (first.beta_gbps * 1e3), out)
        out = np.where(np.isnan(out), last.alpha_us + nbytes / (last.beta_gbps * 1e3), out)
    return out


def allreduce_1d_us(hw, eng, n: int, nbytes, nccl_mode: str = "graph"):
    """µs of one all-reduce of `nbytes` (an array) over n GPUs of a node from the profile's fitted
    lines: the engine's own (its AllReduceChoice) up to its size limit, NCCL's line beyond (NCCL
    timed `nccl_mode`, else however it was timed; the hierarchical model where the database has
    no NCCL line at n); None where the profile has no line at n at all."""
    fits = hw.op_fits
    b = np.asarray(nbytes, dtype=float)
    nccl = _mode(fits.collective_lines("all_reduce", n, "nccl"), nccl_mode)
    choice = eng.allreduce_choice(n) if eng is not None else None
    own = _mode(fits.collective_lines("all_reduce", n, choice.implementation), choice.mode) if choice else []
    if not (nccl or own):
        return None
    t_us = _line_time_us(nccl, b) if nccl else net.collective_time_s(hw, net.ALL_REDUCE, n, 1, b) * 1e6
    if own:
        t_us = np.where(b <= choice.custom_max_bytes, _line_time_us(own, b), t_us)
    return t_us


def _allreduce(acc, hw, eng, r, c, msg_bytes, layers, model):
    """Tensor-parallel reductions over grids of r x c GPUs. 1D: two all-reduces of M · d_model per
    layer, the engine's own inside a node up to its limit, NCCL beyond. 2D grids: the four
    reductions of terms.py, NCCL."""
    msg = np.broadcast_to(msg_bytes, c.shape).astype(float)
    per_layer = np.zeros(c.shape)
    gpn = hw.network.gpus_per_node
    fits = hw.op_fits
    one = r == 1
    modelled = np.zeros(c.shape, dtype=bool)  # rows priced by the hierarchical NCCL model below
    for n in np.unique(c[one & (c > 1) & (c <= gpn)]):
        n = int(n)
        rows = np.flatnonzero(one & (c == n))
        t_us = allreduce_1d_us(hw, eng, n, msg[rows])
        if t_us is None:
            modelled |= one & (c == n)
            continue
        per_layer[rows] = 2.0 * t_us * 1e-6
    # Groups across nodes (and sizes the fits do not cover): one vectorised call of the model.
    rows = np.flatnonzero(modelled | (one & (c > gpn)))
    if rows.size:
        per_layer[rows] = 2.0 * net.collective_time_s(hw, net.ALL_REDUCE, c[rows], 1, msg[rows])
    two = np.flatnonzero(~one)
    if two.size:
        rr, cc, tb = r[two].astype(float), c[two], msg[two] / model.d_model
        ff_reduced = model.d_ff if not model.is_moe else (model.n_active_experts + model.n_shared_experts) * model.d_ff_expert
        qkv_words = (model.n_heads + 2 * model.n_kv_heads) * model.d_head
        if model.is_mla:
            qkv_words = model.attention_params / model.d_model - model.n_heads * model.v_head_dim
        per_layer[two] = (net.collective_time_s(hw, net.ALL_REDUCE, cc, 1, tb * qkv_words / rr)
                          + net.collective_time_s(hw, net.ALL_REDUCE, cc, 1, tb * (model.mlp_matrices - 1) * ff_reduced / rr)
                          + 2.0 * net.collective_time_s(hw, net.ALL_REDUCE, rr, cc, tb * model.d_model / cc))
    acc.network("allreduce", layers * per_layer * fits.scale("allreduce"))
