"""Op-level fits: the typed schema of what a per-op measurement database says about one GPU
under one serving engine (DESIGN.md, "At operation level").

Two records, carried optionally in the existing JSON files (old files load unchanged):

- `OpFits` rides in a HardwareProfile (`profile.json`, field `op_fits`): the kernels' own
  speed on this GPU as this engine runs them — GEMMs per dtype, decode and prefill attention
  per KV dtype, collectives per implementation, world size and scope.
- `EngineOpFits` rides in an EngineProfile (`engine.json`, field `op_fits`): what the engine
  decides and adds around those kernels — which all-reduce it uses up to which message size,
  the per-kernel floor inside a CUDA graph, the attention floor, elementwise time per layer,
  the MoE fixed cost, the per-step overhead (None where the database cannot say).

Contract (units are in the names; a step model built on this module relies on each of them):

- `*_us` microseconds (but `k_per_us`, `decode_k_per_us`: K elements per µs, a rate whose
  checks are a time's: finite, >= 0); `*_tflops` 1e12 FLOP/s achieved; `*_gbps` 1e9 bytes/s achieved;
  `*_bytes` bytes; `*_efficiency` a fraction of the datasheet figure named in the field's
  comment (None when the datasheet figure is unknown).
- A GEMM y[M,N] = x[M,K] · W[N,K]^T takes `GemmFit.time_us(m, n, k)`:
      t0 + max(2·M·N·K / F, bytes / B),  bytes = N·K·w + M·K·a + M·N·o
  with (a, w, o) the activation, weight and output bytes per element of its dtype
  (`GEMM_OPERAND_BYTES`; output is 16-bit for every dtype, as the engines write it).
  Where the fit carries a decode regime (`decode_*` fields), M <= decode_m_max is priced by
  that regime's t0, F and B instead (`GemmFit.params`): one roofline over M up to 8192 lets
  the prefill shapes set a decode GEMM's intercept. Where it carries `decode_bands`, the band
  whose (previous m_max, m_max] holds M prices it; B is the band's bandwidth beyond L2, and
  weights within L2 (N·K·w <= decode_l2_bytes) read at min(small_gbps, B). A decode regime or
  band with `k_per_us` adds a third bound inside the max: K / k_per_us (few blocks walk the
  whole K), priced as the bandwidth min(B, bytes · k_per_us / K).
- Decode attention for `batch` sequences of `kv_len` cached tokens takes
  `AttentionFit.time_us(batch, kv_len, n_heads, n_kv_heads, head_dim)`:
      floor + per_sequence_head · batch · n_kv_heads + max(kv_bytes / B, flop / F),
      kv_bytes = 2 (K and V) · batch · kv_len · n_kv_heads · head_dim · kv element bytes,
      flop = 4 · batch · kv_len · n_heads · head_dim   (QK^T and PV, one query token each).
  The database's KV length of a decode row is isl + step (= step + 1 at its isl of 1).
- Prefill attention of `batch` prompts of `seq_len` tokens (causal) takes
  `ContextAttentionFit.time_us(...)`: floor + flop / F + qkvo_bytes / B, flop = 2 · batch ·
  seq_len² · n_heads · head_dim (4·b·s²·h·d halved by the causal mask), qkvo_bytes = 2 (bf16) ·
  batch · seq_len · (2 · n_heads + 2 · n_kv_heads) · head_dim (Q and O of every head, K and V
  of every KV head); the byte term is 0 when `gbps` is None (files written before it).
- A collective of `message_bytes` takes `CollectiveOpFit.time_us` of the line whose
  [min_bytes, max_bytes) holds it: alpha + message_bytes / beta (beta = algorithm bandwidth,
  message bytes over time; not bus bandwidth).
- A MoE layer (grouped GEMMs of the experts a batch touches, plus routing and permutation) of
  `tokens` tokens takes `MoeFit.time_us(...)`: a shape the table measured, its own time read off
  its token curve (`shape_curves`, log-log interpolation inside the measured range); any other,
  fixed + per_token_expert · tokens · top-k + per_expert · touched + max(expert_bytes / B, flop / F)
  with touched = min(E/ep, tokens·k/ep) experts on one rank (`moe_touched_experts`, balanced
  routing), expert_bytes = touched · 3·hidden·inter/tp weights, flop = 2·tokens·k·3·hidden·inter/tp/ep.
- `quality` of every fit: k-fold held-out error on rows the fit never saw.
- `source` of every fit: the database table it came from (`OpSource`), with the collection
  metadata that table carries.

This module is plain data plus the formulas above; fitting lives in calibration/opdb_fit.py,
reading the database in ingest/opdb.py. It never imports torch, numpy or the calibration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from inferecon.core.errors import UserError

OPFITS_SCHEMA_VERSION = 1

# Bytes per element (activation, weight, output) of each GEMM dtype, by inferecon's dtype name.
# Weight-only formats read 16-bit activations; NVFP4 and INT4 pack two weights per byte (their
# block scales, ≈ 1/16 more, are left out: under the fit's resolution).
GEMM_OPERAND_BYTES: dict[str, tuple[float, float, float]] = {
    "bf16": (2.0, 2.0, 2.0),
    "fp16": (2.0, 2.0, 2.0),
    "fp8": (1.0, 1.0, 2.0),  # per-tensor scales
    "fp8_block": (1.0, 1.0, 2.0),  # 128x128 block scales (DeepSeek-V3 style)
    "int8_wo": (2.0, 1.0, 2.0),  # INT8 weight-only (W8A16)
    "int4_wo": (2.0, 0.5, 2.0),  # INT4 weight-only (W4A16: AWQ, GPTQ)
    "sq": (1.0, 1.0, 2.0),  # SmoothQuant W8A8 INT8
    "nvfp4": (0.5, 0.5, 2.0),
    "fp32": (4.0, 4.0, 4.0),  # CPU calibrations (calibration/fit_ops.py): fp32 in and out
}
KV_ELEMENT_BYTES: dict[str, float] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp32": 4.0}
# MLA's cached latent per token and layer: kv_lora_rank 512 + qk_rope_head_dim 64 (DeepSeek-V2/V3
# config.json), the dims aiconfigurator-core's generation_mla_perf tables are timed at.
MLA_LATENT_DIM = 576


@dataclass(frozen=True)
class FitQuality:
    """How well a fit predicts rows it was not fitted to."""

    n_points: int  # rows the fit used (after dropping flagged ones)
    folds: int  # k of the k-fold split (0: too few rows to hold any out)
    heldout_mape: float | None  # mean |pred - meas| / meas over held-out rows, a fraction
    heldout_median_ape: float | None = None  # the median of the same, a fraction
    heldout_p90_ape: float | None = None  # its 90th percentile, a fraction


@dataclass(frozen=True)
class OpSource:
    """The database table a fit came from, with the collection metadata it records."""

    database: str  # "aiconfigurator-core 0.12.0" or the folder read
    system: str  # the database's system name, e.g. "h100_sxm"
    op: str  # op family folder: "gemm", "attention", "comm", "moe", ...
    backend: str  # folder: "vllm", "sglang", "trtllm", "nccl"
    version: str  # folder version (the engine's, or NCCL's for backend "nccl")
    table: str  # table name, e.g. "gemm_perf"
    device: str = ""  # GPU name the rows record, e.g. "NVIDIA H100 80GB HBM3"
    provenance: str = ""  # the metadata's own word: "legacy", "collected", "synthetic"
    collected_at: str | None = None
    # Whatever the metadata records about the software it ran under (NCCL/CUDA/driver, image).
    runtime: dict[str, str] = field(default_factory=dict)
    rows: int = 0  # rows read
    rows_flagged: int = 0  # rows whose labels disagree with the metadata (not used)
    rows_l2_resident: int = 0  # GEMM rows whose weights fit in L2 (not used: read optimistic)


@dataclass(frozen=True)
class GemmBand:
    """The decode regime of one band of M values, (previous band's m_max, m_max]: its own
    intercept, FLOP rate and the two bandwidths of GemmFit's decode regime (kernels switch tile
    shapes with M, so one line over M <= 256 holds none of them well)."""

    m_max: int
    t0_us: float
    tflops: float
    gbps: float  # weights beyond L2 (from rows whose weights exceed it)
    small_gbps: float | None = None  # weights within L2 (used no faster than gbps)
    k_per_us: float | None = None  # the serial bound: the time is at least K / k_per_us (None: none)
    quality: FitQuality | None = None  # held-out error on the band's rows beyond L2; None: the decode fit's figures
    small_quality: FitQuality | None = None  # the same on its rows of L2-sized weights


@dataclass(frozen=True)
class GemmFit:
    dtype: str  # inferecon dtype name, a key of GEMM_OPERAND_BYTES
    t0_us: float  # intercept: the kernel's floor (CUDA-graph replay, so no host launch)
    tflops: float  # F: achieved FLOP/s where the shape is compute-bound
    gbps: float  # B: achieved HBM bytes/s where the shape is memory-bound (skinny decode GEMMs)
    compute_efficiency: float | None  # tflops / datasheet dense peak of this dtype
    hbm_efficiency: float | None  # gbps / datasheet HBM bandwidth
    kernels: dict[str, float] = field(default_factory=dict)  # kernel source -> share of shapes it was fastest on
    m_range: tuple[int, int] = (1, 1)  # smallest and largest M fitted
    quality: FitQuality | None = None
    source: OpSource | None = None
    # Decode regime (absent in files written before it: the one fit above then holds for every M).
    # For M <= decode_m_max the GEMM takes decode_t0 + max(2MNK / decode_F, bytes / B') with
    # B' = decode_gbps when the weights (N·K·w) exceed decode_l2_bytes, else
    # min(decode_small_gbps, decode_gbps): the decode fit is solved on the tables' decode rows,
    # L2-sized weights included (they are the shapes a tensor-parallel decode runs), with a
    # bandwidth of their own, and a step that streams every layer reads them no faster than HBM.
    decode_m_max: int | None = None
    decode_t0_us: float | None = None
    decode_tflops: float | None = None
    decode_gbps: float | None = None
    decode_small_gbps: float | None = None
    decode_l2_bytes: float | None = None
    # K elements walked per µs: at decode M too few blocks fill the GPU and each walks the whole
    # K, so the time is at least K / decode_k_per_us, whatever N is (None: no such bound).
    decode_k_per_us: float | None = None
    decode_quality: FitQuality | None = None  # held-out error of the decode fit, decode rows beyond L2
    decode_small_quality: FitQuality | None = None  # the same on its rows of L2-sized weights
    single_decode_quality: FitQuality | None = None  # the one fit's held-out error on decode rows beyond L2
    large_quality: FitQuality | None = None  # held-out error of the fit above on rows M > decode_m_max
    # Bands of M covering (0, decode_m_max] in rising m_max, each priced by its own figures
    # (a band with too few rows carries the decode fit's); empty: the decode fit prices every
    # M <= decode_m_max (files written before them).
    decode_bands: list[GemmBand] = field(default_factory=list)
    # Held-out error of the bands on decode rows beyond L2 (kept only where below decode_quality's).
    band_quality: FitQuality | None = None
    band_small_quality: FitQuality | None = None  # the same on decode rows of L2-sized weights
    # Prefill regime (M > decode_m_max; absent in older files: the one fit above prices it):
    # prefill_t0 + max(2MNK / prefill_F, bytes / prefill_B) + M·K · prefill_act_ps_per_elem,
    # solved on the tables' rows at those M, L2-sized weights included (a prefill GEMM's time is
    # its FLOPs and its activations, whatever its weights; the tensor-parallel shards prefill
    # runs are mostly L2-sized), with a time per activation element: the pass over the M x K
    # input that quantising kernels make (FP8 per-tensor or block scales, INT8/INT4; bf16's
    # coefficient comes out ~0). Why (MAPE on every usable row M > 256: the one fit, solved on
    # rows beyond L2, -> this regime's k-fold held-out):
    # H200 TRT-LLM 1.3.0rc20 fp8_block 36% -> 11%, fp8 19% -> 6%, bf16 19% -> 9%; A100 TRT-LLM
    # 1.0.0 bf16 46% -> 15%, int8_wo 25% -> 11%; B200 TRT-LLM nvfp4 62% -> 11%.
    prefill_t0_us: float | None = None
    prefill_tflops: float | None = None
    prefill_gbps: float | None = None
    prefill_act_ps_per_elem: float | None = None
    prefill_quality: FitQuality | None = None

    def prefill_params(self, m: float) -> tuple[float, float, float, float]:
        """(t0 µs, TFLOP/s, GB/s, µs per activation element) of a prefill GEMM at M = m: the
        prefill regime above decode_m_max where the fit has one, else params' (no activation term)."""
        if self.prefill_t0_us is not None and m > (self.decode_m_max or 0):
            return self.prefill_t0_us, self.prefill_tflops, self.prefill_gbps, (self.prefill_act_ps_per_elem or 0.0) * 1e-6
        return self.t0_us, self.tflops, self.gbps, 0.0

    def params(self, m: float, n: float, k: float) -> tuple[float, float, float]:
        """(t0 µs, FLOP/s in TFLOP/s, bytes/s in GB/s) of the regime that prices this shape."""
        if self.decode_m_max is None or self.decode_t0_us is None or m > self.decode_m_max:
            return self.t0_us, self.tflops, self.gbps
        t0, tflops, bw, small_bw = self.decode_t0_us, self.decode_tflops, self.decode_gbps, self.decode_small_gbps
        band = next((b for b in self.decode_bands if m <= b.m_max), None)
        if band is not None:
            t0, tflops, bw, small_bw = band.t0_us, band.tflops, band.gbps, band.small_gbps
        k_per_us = self.decode_k_per_us if band is None else band.k_per_us
        if small_bw and self.decode_l2_bytes and n * k * GEMM_OPERAND_BYTES[self.dtype][1] <= self.decode_l2_bytes:
            bw = min(small_bw, bw)
        if k_per_us:  # max(bytes / B, K / k_per_us) as one bandwidth: bytes over the longer of the two
            a, w, o = GEMM_OPERAND_BYTES[self.dtype]
            bw = min(bw, (n * k * w + m * k * a + m * n * o) * k_per_us / (k * 1e3))
        return t0, tflops, bw

    def time_us(self, m: float, n: float, k: float) -> float:
        a, w, o = GEMM_OPERAND_BYTES[self.dtype]
        flop = 2.0 * m * n * k
        nbytes = n * k * w + m * k * a + m * n * o
        t0, tflops, gbps = self.params(m, n, k)
        return t0 + max(flop / (tflops * 1e6), nbytes / (gbps * 1e3))


@dataclass(frozen=True)
class AttentionFit:
    """Decode ("generation") attention, one fit per KV-cache dtype."""

    kv_dtype: str  # "bf16" or "fp8"
    floor_us: float  # time of a call with (almost) nothing to read: the kernel's floor
    gbps: float  # achieved KV-cache read bandwidth
    tflops: float  # achieved attention FLOP/s where it is compute-bound (many heads per KV head)
    hbm_efficiency: float | None = None  # gbps / datasheet HBM bandwidth
    # Time per (sequence x KV head) beyond its bytes: block-table walks and the split-KV
    # reduction, which make a batch of 1024 short sequences far slower than its bytes say.
    per_sequence_head_us: float = 0.0
    kernels: dict[str, float] = field(default_factory=dict)
    quality: FitQuality | None = None
    source: OpSource | None = None
    # The table's own times of each head layout it measured (attention_grid_key -> [batches],
    # [kv lengths], µs batch-major: len(batches) x len(kv lengths) entries, None where not
    # measured), read by bilinear log-log
    # interpolation inside the grid; the fit above prices the rest. Absent in older files.
    shape_grids: dict[str, list] = field(default_factory=dict)
    grid_quality: FitQuality | None = None  # held-out error of reading a row off its grid without it
    # Cells beyond a KV-length column's largest measured batch (the collector stops where the KV
    # cache no longer fits) filled in `shape_grids` from the column's own curve, at most
    # GRID_FILL_STEPS batch rows out (calibration/opdb_fit.py: _fill_grids); 0 where the fill did
    # not beat the fit above on the table's own last measured cells, or in older files.
    grid_filled_cells: int = 0
    fill_quality: FitQuality | None = None  # held-out error of the fill rule on each column's last measured cell
    fit_beyond_quality: FitQuality | None = None  # the fit's own error on those same cells

    def grid_us(self, key: str, batch: float, kv_len: float) -> float | None:
        """The measured grid's time (bilinear in log batch, log kv_len), None outside it, where a
        corner was not measured or the layout was not (model/ops.py reads the grids vectorised)."""
        import bisect
        import math

        g = self.shape_grids.get(key)
        if not g:
            return None
        bs, ls, flat = g
        if not (bs[0] <= batch <= bs[-1] and ls[0] <= kv_len <= ls[-1]):
            return None

        def cell(axis, x):
            i = min(max(bisect.bisect_left(axis, x), 1), len(axis) - 1)
            return i, math.log(x / axis[i - 1]) / math.log(axis[i] / axis[i - 1])

        i, fb = cell(bs, batch)
        j, fl = cell(ls, kv_len)
        n = len(ls)
        corners = (flat[(i - 1) * n + j - 1], flat[(i - 1) * n + j], flat[i * n + j - 1], flat[i * n + j])
        weights = ((1 - fb) * (1 - fl), (1 - fb) * fl, fb * (1 - fl), fb * fl)
        if any(c is None and w > 1e-12 for c, w in zip(corners, weights)):
            return None  # a corner the table did not measure (an exact hit on a grid line needs none)
        return math.exp(sum(w * math.log(c) for c, w in zip(corners, weights) if w > 1e-12))

    def time_us(self, batch: float, kv_len: float, n_heads: float, n_kv_heads: float, head_dim: float) -> float:
        measured = self.grid_us(attention_grid_key(n_heads, n_kv_heads, head_dim), batch, kv_len)
        if measured is not None:
            return measured
        kv_bytes = 2.0 * batch * kv_len * n_kv_heads * head_dim * KV_ELEMENT_BYTES[self.kv_dtype]
        flop = 4.0 * batch * kv_len * n_heads * head_dim
        return (self.floor_us + self.per_sequence_head_us * batch * n_kv_heads
                + max(kv_bytes / (self.gbps * 1e3), flop / (self.tflops * 1e6)))


def attention_grid_key(n_heads, n_kv_heads, head_dim) -> str:
    """Key of one head layout (per GPU) in AttentionFit.shape_grids."""
    return f"{int(n_heads)}x{int(n_kv_heads)}x{int(head_dim)}"


@dataclass(frozen=True)
class ContextAttentionFit:
    """Prefill ("context") attention, causal, one fit per KV-cache dtype."""

    kv_dtype: str
    floor_us: float
    tflops: float  # achieved attention FLOP/s
    compute_efficiency: float | None = None  # tflops / datasheet bf16 dense peak
    kernels: dict[str, float] = field(default_factory=dict)
    quality: FitQuality | None = None
    source: OpSource | None = None
    gbps: float | None = None  # achieved Q/K/V/O read-write bandwidth (not overlapped with the FLOPs)

    def time_us(self, batch: float, seq_len: float, n_heads: float, head_dim: float,
                n_kv_heads: float | None = None) -> float:
        t = self.floor_us + 2.0 * batch * seq_len * seq_len * n_heads * head_dim / (self.tflops * 1e6)
        if self.gbps:
            hk = n_heads if n_kv_heads is None else n_kv_heads
            t += 2.0 * batch * seq_len * (2 * n_heads + 2 * hk) * head_dim / (self.gbps * 1e3)
        return t


@dataclass(frozen=True)
class ContextMlaFit:
    """MLA's prefill attention kernel of one KV-cache dtype as the table measured it (aiconfigurator's
    context_mla_perf: one prompt of isl tokens, no cached prefix, `num_heads` heads on one GPU,
    DeepSeek-V3's latent and rope dims): per head count its (isl, µs) curve at batch 1, read
    by log-log interpolation inside the measured range (model/prefill.py)."""

    kv_dtype: str
    shape_curves: dict[str, list[list[float]]] = field(default_factory=dict)  # "h16" -> [[isl], [us]]
    curve_quality: FitQuality | None = None  # held-out error of reading a row off its curve without it
    source: OpSource | None = None

    def time_us(self, heads: float, tokens: float) -> float | None:
        """µs of one prompt of `tokens` tokens on `heads` heads of one GPU; None where not measured."""
        c = self.shape_curves.get(f"h{int(round(heads))}") if float(heads) == round(heads) else None
        return curve_interp_us(c, tokens) if c else None


def curve_interp_us(curve, x: float) -> float | None:
    """A measured (x, µs) curve read at x by log-log interpolation: None beyond its last x, its
    first row below its first x (MoeFit and ContextMlaFit curves)."""
    import bisect
    import math

    xs, us = curve
    if x > xs[-1]:
        return None
    x = max(x, xs[0])
    i = min(max(bisect.bisect_left(xs, x), 1), len(xs) - 1)
    f = math.log(x / xs[i - 1]) / math.log(xs[i] / xs[i - 1])
    return math.exp(math.log(us[i - 1]) + f * math.log(us[i] / us[i - 1]))


@dataclass(frozen=True)
class CollectiveOpFit:
    """One α + bytes/β line of one collective implementation at one world size and scope."""

    implementation: str  # "nccl" or the engine's own: "vllm_custom", "sglang_custom", "trtllm_custom"
    collective: str  # "all_reduce", "all_gather", "reduce_scatter", "all_to_all"
    world_size: int
    scope: str  # "intra" (inside one node) or "inter"
    mode: str  # "graph" (replayed inside a CUDA graph, as a decode step runs) or "eager"
    alpha_us: float
    beta_gbps: float  # algorithm bandwidth: message bytes / (time - alpha)
    min_bytes: float = 0.0  # message range of this line (NCCL and custom kernels switch algorithm with size)
    max_bytes: float | None = None  # None: no upper end
    dtype: str = "bf16"  # element type the messages were measured in
    quality: FitQuality | None = None
    source: OpSource | None = None

    def time_us(self, message_bytes: float) -> float:
        return self.alpha_us + message_bytes / (self.beta_gbps * 1e3)


def moe_touched_experts(tokens, topk, experts, ep):
    """Experts one rank's grouped GEMM runs, balanced routing: the tokens·k routed pairs spread
    over the ep ranks, at most the rank's E/ep experts: min(E/ep, tokens·k/ep).

    The one statement of the rule: MoeFit.time_us calls it on numbers, model/ops.py and
    calibration/opdb_fit.py on numpy arrays (elementwise). Written with comparisons rather than
    min() or np.minimum so that it serves both without this module importing numpy; exact for
    finite inputs (each term is multiplied by 1 or 0)."""
    per_rank = experts / ep
    pairs = tokens * topk / ep
    return pairs * (pairs < per_rank) + per_rank * (pairs >= per_rank)


# The token routing a decode step's MoE layer is priced under: aiconfigurator-core 0.12.0's own
# estimator reads its MoE tables at a power-law routing (sdk/config.py: workload_distribution =
# "power_law"), alpha 1.01 for the DeepSeek family (sdk/models/deepseek.py) and 1.2 for its
# generic MoE family -- Mixtral, Qwen2/3-MoE, GPT-OSS, MiniMax-M2 (sdk/models/moe.py; the family
# map is sdk/common.py ARCHITECTURE_TO_MODEL_FAMILY). The collector times both routings beside
# the balanced one, whose even spread no real router gives: every table of 0.12.0 holds them.
MOE_ROUTING_DEEPSEEK = "power_law_1.01"
MOE_ROUTING_GENERIC = "power_law_1.2"
MOE_ROUTINGS = (MOE_ROUTING_DEEPSEEK, MOE_ROUTING_GENERIC)


def moe_curve_key(hidden, inter, experts, topk, tp, ep) -> str:
    """Key of one MoE shape's measured token curve in MoeFit.shape_curves."""
    return f"{int(hidden)}x{int(inter)}x{int(experts)}x{int(topk)}:tp{int(tp)}:ep{int(ep)}"


@dataclass(frozen=True)
class MoeFit:
    """A whole MoE layer's expert computation (routing, permute, grouped GEMMs, un-permute)."""

    dtype: str  # expert weight dtype, a key of GEMM_OPERAND_BYTES
    fixed_us: float  # the MoE fixed cost: what a layer takes beyond its weight reads and FLOPs
    gbps: float  # achieved read bandwidth of the touched experts' weights
    tflops: float  # achieved grouped-GEMM FLOP/s
    kernels: dict[str, float] = field(default_factory=dict)
    quality: FitQuality | None = None
    source: OpSource | None = None
    # Time per routed (token, expert) pair: routing, permutation and un-permutation.
    per_token_expert_us: float = 0.0
    # Time per expert the rank runs (one more group of the grouped GEMM); 0 in older files.
    per_expert_us: float = 0.0
    tokens_max: int | None = None  # largest token count the fit was solved on (None: every one)
    # The table's own time of each shape it measured (moe_curve_key -> [tokens], [us]), read by
    # log-log interpolation in tokens inside the measured range; the fit prices the rest.
    shape_curves: dict[str, list[list[float]]] = field(default_factory=dict)
    curve_quality: FitQuality | None = None  # held-out error of reading a row off its curve without it
    distribution: str = "balanced"  # the table's routing the fit and curves were read from (MOE_ROUTINGS)

    def curve_us(self, key: str, tokens: float) -> float | None:
        """The measured curve's time at `tokens` (log-log interpolation), None outside its range
        or where the shape was not measured; below the first count (less than one token on a
        rank) the first row holds. model/ops.py reads the same curves vectorised."""
        c = self.shape_curves.get(key)
        return curve_interp_us(c, tokens) if c else None

    def time_us(self, tokens: float, hidden: float, inter: float, topk: float, experts: float,
                tp: float = 1, ep: float = 1) -> float:
        measured = self.curve_us(moe_curve_key(hidden, inter, experts, topk, tp, ep), tokens)
        if measured is not None:
            return measured
        _, w, _ = GEMM_OPERAND_BYTES[self.dtype]
        touched = moe_touched_experts(tokens, topk, experts, ep)
        expert_bytes = touched * 3.0 * hidden * inter / tp * w  # gate, up and down projections
        flop = 2.0 * tokens * topk * 3.0 * hidden * inter / tp / ep
        return (self.fixed_us + self.per_token_expert_us * tokens * topk + self.per_expert_us * touched
                + max(expert_bytes / (self.gbps * 1e3), flop / (self.tflops * 1e6)))


@dataclass(frozen=True)
class OpFits:
    """Per-op kernel speed of one GPU as one engine version runs it (in profile.json)."""

    gpu: str  # inferecon GPU name, e.g. "h100-sxm"
    engine: str  # "vllm", "sglang", "trtllm"
    engine_version: str
    gemm: list[GemmFit] = field(default_factory=list)
    attention: list[AttentionFit] = field(default_factory=list)
    context_attention: list[ContextAttentionFit] = field(default_factory=list)
    collectives: list[CollectiveOpFit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    schema_version: int = OPFITS_SCHEMA_VERSION
    # MLA (DeepSeek-V2/V3) decode attention over the compressed latent, per KV dtype: an
    # AttentionFit of one KV head of MLA_LATENT_DIM (kv_lora_rank + qk_rope_dim) per token.
    mla_attention: list[AttentionFit] = field(default_factory=list)
    context_mla: list[ContextMlaFit] = field(default_factory=list)  # MLA prefill attention (absent: older files)
    # Norms, activations, residual adds per layer where no engine stands between (a CPU
    # calibration times them itself); None: the engine's op fits say (EngineOpFits).
    elementwise_per_layer_us: float | None = None
    # A multiplier on each op family's time, by time_scale_key ("gemm_bf16", "attention_fp8",
    # "moe_fp8_block", "allreduce"): 1.0 in a file, an array of draws when the profile's
    # uncertainty entries move it (model/uncertainty.apply). A family without a key is x 1.
    time_scale: dict[str, Any] = field(default_factory=dict)  # float, or a numpy array of draws

    def scale(self, family: str, dtype: str = ""):
        """The time multiplier of an op family (of one dtype), 1.0 where none is set."""
        return self.time_scale.get(time_scale_key(family, dtype), 1.0)

    def gemm_fit(self, dtype: str) -> GemmFit | None:
        return next((g for g in self.gemm if g.dtype == dtype), None)

    def attention_fit(self, kv_dtype: str) -> AttentionFit | None:
        return next((a for a in self.attention if a.kv_dtype == kv_dtype), None)

    def mla_attention_fit(self, kv_dtype: str) -> AttentionFit | None:
        return next((a for a in self.mla_attention if a.kv_dtype == kv_dtype), None)

    def context_mla_fit(self, kv_dtype: str) -> ContextMlaFit | None:
        """The MLA prefill table's fit of this KV dtype, else the bf16 one."""
        by = {f.kv_dtype: f for f in self.context_mla}
        return by.get(kv_dtype) or by.get("bf16")

    def collective_lines(self, collective: str, world_size: int, implementation: str | None = None,
                         scope: str = "intra") -> list[CollectiveOpFit]:
        return sorted((c for c in self.collectives if c.collective == collective and c.world_size == world_size
                       and c.scope == scope and (implementation is None or c.implementation == implementation)),
                      key=lambda c: c.min_bytes)


def time_scale_key(family: str, dtype: str = "") -> str:
    """OpFits.time_scale's key of an op family and dtype: one word, so that an uncertainty path
    (op_fits.time_scale.<key>, dotted) can name it."""
    return f"{family}_{dtype}" if dtype else family


@dataclass(frozen=True)
class AllReduceChoice:
    """Which all-reduce the engine runs at one world size, up to which message size."""

    world_size: int
    implementation: str  # the engine's own ("vllm_custom" ...) used for messages up to custom_max_bytes
    custom_max_bytes: float  # largest measured message at which the engine's own is faster than NCCL
    fallback: str = "nccl"  # what runs above custom_max_bytes
    mode: str = "graph"  # the engine's all-reduce as timed: inside a CUDA graph


@dataclass(frozen=True)
class EngineOpFits:
    """What one engine version adds around the kernels (in engine.json)."""

    gpu: str
    engine: str
    engine_version: str
    allreduce: list[AllReduceChoice] = field(default_factory=list)
    # Per-kernel floor inside a CUDA graph (the fastest tiny GEMM replayed in a graph): what each
    # serial kernel of a captured decode step costs at least.
    cuda_graph_kernel_us: float | None = None
    attention_floor_us: dict[str, float] = field(default_factory=dict)  # per KV dtype, per layer
    # Norms, activations, residual adds, RoPE: fixed time per layer (None: the database does not say).
    elementwise_per_layer_us: float | None = None
    moe: list[MoeFit] = field(default_factory=list)
    moe_fixed_us: dict[str, float] = field(default_factory=dict)  # per expert dtype, per MoE layer
    # Scheduling, sampling, host work per decode step; None: per-op tables cannot measure it
    # (fit it from the engine's own benchmark results: `calibrate --engine-results`).
    step_overhead_us: float | None = None
    sources: list[OpSource] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    schema_version: int = OPFITS_SCHEMA_VERSION

    def allreduce_choice(self, world_size: int) -> AllReduceChoice | None:
        return next((a for a in self.allreduce if a.world_size == world_size), None)


# -- JSON ----------------------------------------------------------------------------------

def to_dict(obj) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise UserError(f"{where}: {cls.__name__} must be an object")
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in known:
            continue  # a newer writer's extra field
        if key.endswith("quality") and value is not None:
            value = _build(FitQuality, value, where)
        elif key == "source" and value is not None:
            value = _build(OpSource, value, where)
        elif key == "sources":
            value = [_build(OpSource, v, where) for v in value]
        elif key == "decode_bands":
            if not isinstance(value, list):
                raise UserError(f"{where}: {cls.__name__}.decode_bands must be a list")
            value = [_build(GemmBand, v, where) for v in value]
            if any(a.m_max >= b.m_max for a, b in zip(value, value[1:])):
                raise UserError(f"{where}: {cls.__name__}.decode_bands must rise in m_max")
        elif key == "m_range":
            value = tuple(int(v) for v in value)
        elif key == "shape_curves":
            value = _curves(value, f"{where}: {cls.__name__}.shape_curves")
        elif key == "shape_grids":
            value = _grids(value, f"{where}: {cls.__name__}.shape_grids")
        elif key == "time_scale":
            value = _time_scale(value, f"{where}: {cls.__name__}.time_scale")
        values[key] = value
    for key, value in values.items():
        for v in (value.values() if isinstance(value, dict) else [value]):  # per-dtype maps too
            _check_number(where, cls.__name__, key, v)
    try:
        return cls(**values)
    except TypeError as exc:
        raise UserError(f"{where}: malformed {cls.__name__} ({exc})") from None


def _time_scale(value, where: str) -> dict:
    """{key: a finite multiplier > 0}: a scale of 0 would erase an op, a negative one invert it."""
    import math

    if not isinstance(value, dict):
        raise UserError(f"{where} must be an object of multipliers")
    for key, v in value.items():
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
            raise UserError(f"{where}[{key!r}] must be a finite number > 0, got {v!r}")
    return {str(k): float(v) for k, v in value.items()}


def _rising(xs) -> bool:
    """Each number above the one before (built-in maps, not a Python loop per number)."""
    return all(map(float.__lt__, map(float, xs[:-1]), map(float, xs[1:])))


def _curves(value, where: str) -> dict:
    """Each curve: two equal-length lists, token counts rising and > 0, times finite and > 0."""
    import math

    if not isinstance(value, dict):
        raise UserError(f"{where} must be an object")
    for key, c in value.items():
        try:  # built-in reductions, not a Python loop per number: a profile carries ~1e5 of them
            tok, us = c
            ok = (len(tok) == len(us) >= 2 and min(tok) > 0 and min(us) > 0 and math.isfinite(sum(tok) + sum(us))
                  and _rising(tok))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UserError(f"{where}[{key!r}] must be [[rising token counts > 0], [times > 0]] of equal length")
    return value


def _grids(value, where: str) -> dict:
    """Each grid: rising batches > 0, rising kv lengths > 0, then batches x kv lengths times > 0
    (or null), batch-major."""
    import math

    if not isinstance(value, dict):
        raise UserError(f"{where} must be an object")
    for key, g in value.items():
        try:
            bs, ls, flat = g
            cells = [v for v in flat if v is not None]
            ok = (len(bs) >= 2 and len(ls) >= 2 and len(flat) == len(bs) * len(ls) and min(bs) > 0 and min(ls) > 0 and bool(cells) and min(cells) > 0
                  and math.isfinite(sum(bs) + sum(ls) + sum(cells))
                  and _rising(bs) and _rising(ls))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UserError(f"{where}[{key!r}] must be [[rising batches], [rising kv lengths], [batches x kv lengths "
                            "times > 0 or null, batch-major]]")
    return value


def _check_number(where: str, owner: str, key: str, value) -> None:
    """Rates a step model divides by are finite and > 0; times and sizes are finite and >= 0."""
    import math

    if key.endswith(("_gbps", "_tflops")) or key in ("gbps", "tflops"):
        rule = "positive"
    elif key.endswith(("_us", "_bytes")):
        rule = "nonneg"
    else:
        return
    if value is None and (key in ("max_bytes", "gbps", "cuda_graph_kernel_us", "elementwise_per_layer_us",
                                  "step_overhead_us", "small_gbps", "k_per_us") or key.startswith(("decode_", "prefill_"))):
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > 0 if rule == "positive" else value >= 0
    if not ok:
        need = "a finite number > 0" if rule == "positive" else "a finite number >= 0"
        raise UserError(f"{where}: {owner}.{key} must be {need}, got {value!r}")


def op_fits_from_dict(data, where: str = "profile op_fits") -> OpFits:
    if not isinstance(data, dict):
        raise UserError(f"{where}: not an object")
    if data.get("schema_version") != OPFITS_SCHEMA_VERSION:
        raise UserError(f"{where}: op_fits schema_version {data.get('schema_version')!r}, "
                        f"this inferecon reads version {OPFITS_SCHEMA_VERSION}")
    lists = {"gemm": GemmFit, "attention": AttentionFit, "context_attention": ContextAttentionFit,
             "collectives": CollectiveOpFit, "mla_attention": AttentionFit, "context_mla": ContextMlaFit}
    plain = {k: v for k, v in data.items() if k not in lists}
    fits = _build(OpFits, plain, where)
    return dataclasses.replace(fits, **{k: [_build(c, v, f"{where}.{k}") for v in data.get(k) or []]
                                        for k, c in lists.items()})


def engine_op_fits_from_dict(data, where: str = "engine op_fits") -> EngineOpFits:
    if not isinstance(data, dict):
        raise UserError(f"{where}: not an object")
    if data.get("schema_version") != OPFITS_SCHEMA_VERSION:
        raise UserError(f"{where}: op_fits schema_version {data.get('schema_version')!r}, "
                        f"this inferecon reads version {OPFITS_SCHEMA_VERSION}")
    lists = {"allreduce": AllReduceChoice, "moe": MoeFit}
    plain = {k: v for k, v in data.items() if k not in lists}
    fits = _build(EngineOpFits, plain, where)
    return dataclasses.replace(fits, **{k: [_build(c, v, f"{where}.{k}") for v in data.get(k) or []]
                                        for k, c in lists.items()})
