"""Per-op calibration from a per-op measurement database (ingest/opdb.py): one GPU under one
engine version -> a HardwareProfile carrying `OpFits` and an EngineProfile carrying
`EngineOpFits` (model/opfits.py states what each figure means).

Choices the figures depend on, and why:
- Each shape keeps its fastest kernel across the table's kernel sources: an engine tuned for
  the node picks the fastest one it has (the share each kernel won is kept with the fit).
- Fits minimise squared log error (relative error), so microsecond decode shapes weigh as
  much as second-long prefill shapes; every fit reports its k-fold held-out error (rows
  assigned to folds at random with a fixed seed), never its training error.
- GEMM rows whose weights fit in L2 are left out of the one roofline (the tables replay GEMMs
  in a CUDA graph, so such weights stay in L2 and read faster than a decode step that streams
  every layer), as are rows whose labels disagree with their folder. The decode regime and its
  bands of M keep them with a bandwidth of their own, so HBM's still comes only from rows whose
  weights exceed L2 (ingest/opdb.py marks them `l2_resident`), and price them no faster than it. The kernel floor inside a CUDA graph is
  the opposite question, so it is taken from the smallest shapes, L2-resident or not.
- Collectives are fitted as α + bytes/β per message range (below 64 KiB, 64 KiB–1 MiB, above
  1 MiB): NCCL and the custom kernels switch algorithm with size, so one line cannot hold.
- Versions: an op family the requested engine version lacks (or whose table is unusable) is
  served by the newest older version that has it, as aiconfigurator does; each fit's source
  names the version it actually came from.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from inferecon.calibration.fit_uncertainty import opdb_uncertainty
from inferecon.core.errors import UserError, suggest
from inferecon.core.stats import mape_pct
from inferecon.ingest.opdb import OpDatabase, OpTable, open_database, version_key
from inferecon.model.engine import OPDB_ENGINES as ENGINES, EngineProfile
from inferecon.model.engine_kernel_facts import kernel_facts, with_kernel_facts
from inferecon.model.engine_overheads import overhead_fact, with_overhead
from inferecon.model.hardware import INTER, INTRA, CollectiveFit, HardwareProfile, Provenance
from inferecon.model.opfits import (GEMM_OPERAND_BYTES, KV_ELEMENT_BYTES, AllReduceChoice, AttentionFit,
                                    CollectiveOpFit, ContextAttentionFit, ContextMlaFit, EngineOpFits, FitQuality, GemmBand, GemmFit,
                                    MOE_ROUTINGS, MoeFit, OpFits, OpSource, attention_grid_key, moe_curve_key,
                                    moe_touched_experts)
from inferecon.model.weight_only_kernels import marlin_gemm_fit, marlin_note, uses_marlin

# inferecon's published GPU -> the database's system name.
SYSTEMS = {"h100-sxm": "h100_sxm", "h200": "h200_sxm", "a100-sxm-80gb": "a100_sxm", "b200": "b200_sxm"}
# L2 size where the published profile has none. B200: 126 MB as microbenchmark studies of
# Blackwell report it (NVIDIA's datasheet gives no figure) — an assumption, named as such.
L2_FALLBACK_MB = {"b200": 126.0}
FOLDS = 5
# Rows a three-parameter fit is solved on (a seeded random sample of larger tables); the
# held-out error is still scored on every held-out row.
MAX_FIT_ROWS = 3000
SEED = 0
# Line segments of the collective tables (message bytes). Above 1 MB one line misread the NCCL
# rows at prefill sizes by up to 23% (8 x H200 NCCL 2.26.2: 0.81 of the 8 MB row, 1.13 of the
# 512 MB one; 8 x B200 2.29.2: 0.77 at 32 MB); split at 16 MB and 256 MB every row of both lies
# within 11% of its line.
COLLECTIVE_SEGMENTS_BYTES = (0.0, 64 * 1024.0, 1024 * 1024.0, 16 * 1024.0 * 1024.0, 256 * 1024.0 * 1024.0)
# The engine's own all-reduce counts as "used" up to the largest message at which it beats
# NCCL by more than this; above, the two agree (the engine falls back to NCCL or matches it).
CUSTOM_AR_MARGIN = 0.05
# Decode steps sit here; GEMM fits cover them and prefill chunks up to this many tokens.
GEMM_MAX_M = 8192
# The decode regime of a GEMM fit: M up to here gets its own intercept, FLOP rate and bandwidth.
# Why 256: one roofline over M <= 8192 lets the compute-bound prefill shapes set the intercept
# (H200 TRT-LLM fp8_block: 19.7 us fitted, 5.5-10.8 us measured at M = 1); cut at 64, 256 and
# 512 the decode fit's k-fold held-out error on the rows it covers was lowest relative to the
# single fit at 64-256 and no better at 512 (A100 TRT-LLM bf16: 4.6 / 8.8 / 10.3% against the
# single fit's 8.0 / 10.5 / 10.3% on the same rows), and 256 covers the decode batches per GPU of
# the engines' default CUDA-graph captures (SGLang's cuda_graph_max_bs: 160-256 on H100/H200).
DECODE_M_MAX = 256
# Bands of M with a decode roofline each (powers of two up to DECODE_M_MAX): the kernels switch
# tile shape with M, so t0, F and B move with it. Chosen on the tables' own k-fold held-out
# error, decode rows, 36 system x engine x dtype fits (H100, H200, A100, B200; default versions;
# rates unbounded):
# mean 23.1% with one decode fit, 21.0% with bands at 4/16/64/256, 20.3% with these, 20.1% with
# 16 bands (each M of the coarse tables its own).
DECODE_BANDS_M = (1, 2, 4, 8, 16, 32, 64, 128, DECODE_M_MAX)
# vLLM, SGLang and TRT-LLM each run three elementwise kernels per layer at decode: residual
# add fused into RMSNorm (twice) and SiLU-and-multiply; RoPE rides inside attention or QKV.
ELEMENTWISE_KERNELS_PER_LAYER = 3


@dataclass(frozen=True)
class OpDbCalibration:
    profile: HardwareProfile
    engine: EngineProfile
    summary: list[str] = field(default_factory=list)


# -- resolution ----------------------------------------------------------------------------

def resolve_system(db: OpDatabase, gpu: str) -> tuple[str, str]:
    """(inferecon GPU name, database system) for a --gpu; an unknown one lists what the database holds."""
    from inferecon.model.published import PROFILES, get_profile

    held = [s for s in db.systems() if db.backends(s, "gemm")]
    if not held:  # a folder of some other kind: nothing to list or suggest
        raise UserError(f"per-op database {db.label}: no GEMM tables in it (expected "
                        "<system>/gemm/<backend>/<version>/gemm_perf.parquet, aiconfigurator-core's layout)")
    names = {v: k for k, v in SYSTEMS.items()}
    listing = ", ".join(f"{names[s]} ({s})" if s in names else s for s in held)
    if gpu in held:
        if gpu not in names:
            raise UserError(f"--gpu {gpu}: inferecon has no published profile of this GPU to base a profile on "
                            f"(op-db GPUs with one: {', '.join(names[s] for s in held if s in names)})")
        return names[gpu], gpu
    try:
        name = get_profile(gpu).name
    except UserError:
        name = None
    system = SYSTEMS.get(name or "")
    if system is None or system not in held:
        raise UserError(f"--gpu {gpu}: the per-op database ({db.label}) holds no tables for it; it holds "
                        f"{listing}{suggest(gpu, list(names.get(s, s) for s in held) + list(PROFILES))}")
    return name, system


def engine_versions(db: OpDatabase, system: str, engine: str) -> list[str]:
    found = set()
    for op in ("gemm", "attention", "comm", "moe"):
        found.update(db.versions(system, op, engine))
    return sorted(found, key=version_key)


def resolve_version(db: OpDatabase, system: str, engine: str, version: str | None) -> str:
    if engine not in ENGINES:
        raise UserError(f"--engine {engine}: not one of {', '.join(ENGINES)}")
    engines = [e for e in ENGINES if db.versions(system, "gemm", e)]
    if engine not in engines:
        raise UserError(f"--engine {engine}: the per-op database holds no {system} GEMM tables for it "
                        f"(it holds {', '.join(engines) or 'none'})")
    held = engine_versions(db, system, engine)
    if version is not None:
        if version not in held:
            raise UserError(f"--engine-version {version}: no {engine} tables of that version for {system} "
                            f"(held: {', '.join(held)})")
        return version
    # Default: the newest version measured for both GEMMs and decode attention.
    both = [v for v in db.versions(system, "gemm", engine) if v in db.versions(system, "attention", engine)]
    if not both:
        raise UserError(f"{system} {engine}: no version has both GEMM and attention tables "
                        f"(held: {', '.join(held)}); pass --engine-version")
    return both[-1]


def _pick(db, system, op, backend, table, version, l2_bytes=None, required=False, notes=None):
    """The table of `version`, or of the newest older version with usable rows (backward fill)."""
    candidates = [v for v in db.versions(system, op, backend)
                  if version is None or version_key(v) <= version_key(version)]
    tried = []
    for v in reversed(candidates):
        if table not in db.tables(system, op, backend, v):
            continue
        t = db.read(system, op, backend, v, table, l2_bytes=l2_bytes)
        if (t.rows["flag"] == "").any():
            if v != version and notes is not None and version is not None:
                notes.append(f"{op}/{table}: {backend} {version} has none usable; served by {v}")
            return t
        labels = sorted(set(t.rows.get("version", ["?"])))
        tried.append(f"{v} (every row says {t.rows['flag'].iloc[0]} {', '.join(map(str, labels))[:40]})")
    if required:
        why = f"; metadata mismatch in {', '.join(tried)}" if tried else ""
        raise UserError(f"{system}/{op}/{backend}: no usable {table} table at or below version {version}{why}")
    if tried and notes is not None:
        notes.append(f"{op}/{table}: {backend} tables left out, metadata mismatch: {', '.join(tried)}")
    return None


# -- fitting helpers -----------------------------------------------------------------------

def _folds(n: int, k: int = FOLDS):
    rng = np.random.default_rng(SEED)
    return rng.permutation(n) % k if n >= 2 * k else np.arange(n) % max(n, 1)


def _ape_heldout(fit, predict, X, y):
    """Per-row k-fold held-out |pred/meas - 1|: each row scored by the fit solved without its fold."""
    n = len(y)
    k = FOLDS if n >= 2 * FOLDS else n
    ape = np.full(n, np.nan)
    if k < 2:
        return ape
    fold = _folds(n, k)
    for f in range(k):
        test = fold == f
        ape[test] = np.abs(predict(fit(X[~test], y[~test]), X[test]) / y[test] - 1.0)
    return ape


def _quality_of(ape) -> FitQuality | None:
    """FitQuality of per-row held-out errors (fractions); MAPE by core/stats.py's one rule."""
    ape = np.asarray(ape, dtype=float)
    ape = ape[np.isfinite(ape)]
    if not len(ape):
        return None
    return FitQuality(n_points=int(len(ape)), folds=FOLDS if len(ape) >= 2 * FOLDS else int(len(ape)),
                      heldout_mape=mape_pct(100.0 * ape) / 100.0, heldout_median_ape=float(np.median(ape)),
                      heldout_p90_ape=float(np.quantile(ape, 0.9)))


def _quality(fit, predict, X, y) -> FitQuality:
    """k-fold held-out error of `fit` (X, y -> params) scored by `predict` (params, X -> y)."""
    q = _quality_of(_ape_heldout(fit, predict, X, y))
    return q if q is not None else FitQuality(n_points=len(y), folds=0, heldout_mape=None)


@dataclass(frozen=True)
class _Roofline:
    """t = t0 + sum_j c_j * extra_j + max(work / F, bytes * ((1 - s) / B + s / B_s)) fitted in log
    time; s = 1 for rows whose operands fit in L2 (their own bandwidth B_s), else 0."""

    t0_us: float
    tflops: float
    gbps: float
    small_gbps: float | None
    extra_us: tuple[float, ...]  # c_j: µs per unit of each extra column
    serial_rate: float | None  # serial units per µs (None: no serial bound)
    ape: np.ndarray  # per-row k-fold held-out |pred/meas - 1|

    def quality(self, rows=None) -> FitQuality | None:
        return _quality_of(self.ape if rows is None else self.ape[rows])


def _roofline_fit(work, nbytes, y, *, extras=(), small=None, floor=True, floor_at_most_fastest=False,
                  max_tflops=None, max_gbps=None, serial=None) -> _Roofline:
    """The one fitting loop of every roofline-shaped op family (GEMMs, both regimes; attention;
    MoE): log least squares on a seeded sample of at most MAX_FIT_ROWS rows, each rate started
    from the rows it bounds hardest, and a k-fold held-out error per row. `extras`: columns with
    a time per unit each (per sequence-head, per routed pair ...); `small`: rows with a bandwidth
    of their own; `floor_at_most_fastest`: the intercept no higher than the fastest row (a floor);
    `max_tflops` / `max_gbps`: F and B no higher than these (the datasheet peaks: a rate above
    them is a rate the rows do not pin, or L2 read as HBM); `serial`: a third bound inside the
    max, serial units at a rate of their own (a GEMM's K walked by too few blocks to fill the GPU)."""
    from scipy.optimize import least_squares

    extras = [np.asarray(e, dtype=float) for e in extras]
    two_bw = small is not None
    n_rate = 3 + int(two_bw)  # t0, F, B[, B_s]
    X = np.column_stack([work, nbytes, (np.zeros_like(work) if small is None else np.asarray(small, float))] + extras
                        + ([np.asarray(serial, dtype=float)] if serial is not None else []))
    n_extra = len(extras)

    def model(p, Xp):
        # The solver's trial steps in log space can reach exp() overflow; the huge or infinite cost
        # such a step gives is how the solver rejects it, so the warning says nothing to a user.
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return _model(p, Xp)

    def _model(p, Xp):
        e = np.exp(p)
        t0, f, bh = e[0], e[1], e[2]
        r = Xp[:, 2]
        per_byte = (1.0 - r) / (bh * 1e3) + (r / (e[3] * 1e3) if two_bw else r / (bh * 1e3))
        bound = np.maximum(Xp[:, 0] / (f * 1e6), Xp[:, 1] * per_byte)
        if serial is not None:
            bound = np.maximum(bound, Xp[:, 3 + n_extra] / e[n_rate + n_extra])
        t = (t0 if floor else 0.0) + bound
        for j in range(len(extras)):
            t = t + e[n_rate + j] * Xp[:, 3 + j]
        return t

    def fit(Xf, yf):
        if len(yf) > MAX_FIT_ROWS:  # a seeded sample fixes a handful of parameters as well, in a tenth the time
            pick = np.random.default_rng(SEED).choice(len(yf), MAX_FIT_ROWS, replace=False)
            Xf, yf = Xf[pick], yf[pick]
        t0 = max(float(np.min(yf)) * 0.8, 0.1)
        rest = np.maximum(yf - 0.9 * t0, 1e-3)
        f0 = float(np.quantile(Xf[:, 0] / rest, 0.95)) / 1e6 or 1.0
        b0 = float(np.quantile(Xf[:, 1] / rest, 0.95)) / 1e3 or 1.0
        p0 = [t0, max(f0, 1e-3), max(b0, 1e-3)] + ([max(b0, 1e-3)] if two_bw else [])
        p0 += [max(float(np.median(yf / np.maximum(Xf[:, 3 + j], 1e-9))) * 1e-3, 1e-9) for j in range(len(extras))]
        if serial is not None:
            p0 += [max(float(np.quantile(Xf[:, 3 + n_extra] / rest, 0.95)), 1e-9)]
        p0 = np.log(p0)
        lo, hi = np.full(len(p0), -np.inf), np.full(len(p0), np.inf)
        if floor_at_most_fastest:
            hi[0] = np.log(float(np.min(yf)))
        if max_tflops:
            hi[1] = np.log(max_tflops)
        if max_gbps:
            hi[2] = np.log(max_gbps)
        p0 = np.minimum(p0, hi - 1e-9)
        return least_squares(lambda p: np.log(model(p, Xf)) - np.log(yf), p0, bounds=(lo, hi), method="trf",
                             max_nfev=400).x

    p = np.exp(fit(X, y))
    return _Roofline(t0_us=float(p[0]) if floor else 0.0, tflops=float(p[1]), gbps=float(p[2]),
                     small_gbps=float(p[3]) if two_bw else None,
                     extra_us=tuple(float(v) for v in p[n_rate:n_rate + n_extra]),
                     serial_rate=float(p[n_rate + n_extra]) if serial is not None else None,
                     ape=_ape_heldout(fit, model, X, y))


def _fastest(df, keys):
    """One row per shape: the fastest kernel's time, and each kernel's share of shapes won."""
    idx = df.groupby(keys, sort=False)["time_us"].idxmin()
    best = df.loc[idx]
    shares = best["kernel"].value_counts(normalize=True)
    return best.reset_index(drop=True), {str(k): round(float(v), 4) for k, v in shares.items()}


def _source(t: OpTable, used: int | None = None) -> OpSource:
    return t.source


# -- the op families -----------------------------------------------------------------------

def _gemm_columns(d, dtype):
    a, w, o = GEMM_OPERAND_BYTES[dtype]
    m, n, k = (d[c].to_numpy(float) for c in ("m", "n", "k"))
    return m, 2 * m * n * k, n * k * w + m * k * a + m * n * o


def fit_gemms(t: OpTable, peak_tflops: dict, hbm_gbps: float, l2_bytes: float | None = None) -> list[GemmFit]:
    """Per dtype: one roofline over M <= GEMM_MAX_M on rows whose weights exceed L2 (the fit all
    M share, held-out error reported for M > DECODE_M_MAX too), and a decode regime over
    M <= DECODE_M_MAX on every usable row, L2-sized weights with a bandwidth of their own."""
    out = []
    df = t.clean
    usable = t.rows[t.rows["flag"] == ""]
    for dtype in sorted(set(df["dtype"])):
        if dtype not in GEMM_OPERAND_BYTES:
            continue
        d = df[(df["dtype"] == dtype) & (df["m"] <= GEMM_MAX_M)]
        if len(d) < 10:
            continue
        d, shares = _fastest(d, ["m", "n", "k"])
        m, flop, nbytes = _gemm_columns(d, dtype)
        y = d["time_us"].to_numpy(float)
        one = _roofline_fit(flop, nbytes, y)
        t0, f, bw, q = one.t0_us, one.tflops, one.gbps, one.quality()
        # The same fit's held-out error on the prefill-sized rows alone (its own regime).
        big = m > DECODE_M_MAX
        large_q = single_dec_q = None
        if big.sum() >= 2 * FOLDS:
            large_q, single_dec_q = one.quality(big), one.quality(~big)
        peak = peak_tflops.get({"int8_wo": "bf16", "int4_wo": "bf16", "sq": "int8", "fp8_block": "fp8"}.get(dtype, dtype))
        dec = {}
        dd = usable[(usable["dtype"] == dtype) & (usable["m"] <= DECODE_M_MAX)]
        if len(dd) >= 10 * FOLDS and "l2_resident" in dd:
            dd, _ = _fastest(dd, ["m", "n", "k"])
            dm, dflop, dbytes = _gemm_columns(dd, dtype)
            dk = dd["k"].to_numpy(float)
            dy = dd["time_us"].to_numpy(float)
            small = dd["l2_resident"].to_numpy(bool)
            if (~small).sum() >= 2 * FOLDS:  # the HBM bandwidth needs rows that stream from HBM
                # The small rows pin the intercept (their time is mostly floor); the large ones B.
                # F and B no higher than the datasheet's: at decode M the FLOP rate is rarely
                # pinned, and a B above HBM's is L2 read as HBM (H100 vLLM fp8_block: 1.17x).
                bound = dict(small=small, floor_at_most_fastest=True, max_tflops=peak, max_gbps=hbm_gbps)
                # A third bound, K / k_per_us: at decode M few blocks walk the whole K, so the time
                # grows with K whatever N is (B200 TRT-LLM nvfp4, M = 1, N <= 12288: 6.7 us at
                # K = 128, 21.5 at 8192, 37 at 16384); decode rows' held-out error 20.4 -> 12.6%
                # (mean of 36 fits), B200 TRT-LLM nvfp4 38.9 -> 3.6%.
                r = _roofline_fit(dflop, dbytes, dy, **bound, serial=dk)
                dec = dict(decode_m_max=DECODE_M_MAX, decode_t0_us=r.t0_us, decode_tflops=r.tflops,
                           decode_gbps=r.gbps, decode_small_gbps=r.small_gbps, decode_l2_bytes=l2_bytes,
                           decode_k_per_us=r.serial_rate,
                           decode_quality=r.quality(~small), decode_small_quality=r.quality(small),
                           single_decode_quality=single_dec_q)
                dec.update(_gemm_bands(dm, dflop, dbytes, dy, small, r, dict(bound, serial=dk)))
        dec.update(_gemm_prefill(usable[(usable["dtype"] == dtype) & (usable["m"] > DECODE_M_MAX)
                                        & (usable["m"] <= GEMM_MAX_M)], dtype))
        out.append(GemmFit(dtype=dtype, t0_us=t0, tflops=f, gbps=bw,
                           compute_efficiency=f / peak if peak else None, hbm_efficiency=bw / hbm_gbps,
                           kernels=shares, m_range=(int(m.min()), int(m.max())), quality=q, source=t.source,
                           large_quality=large_q, **dec))
    return out


def _gemm_prefill(rows, dtype: str) -> dict:
    """The prefill regime of a GEMM fit (model/opfits.GemmFit.prefill_*): t0 + max(flop / F,
    bytes / B) + a time per activation element (M·K), on the usable rows above DECODE_M_MAX, L2-
    sized weights included; {} with too few rows."""
    if len(rows) < 10 * FOLDS:
        return {}
    d, _ = _fastest(rows, ["m", "n", "k"])
    m, flop, nbytes = _gemm_columns(d, dtype)
    r = _roofline_fit(flop, nbytes, d["time_us"].to_numpy(float), extras=[m * d["k"].to_numpy(float)])
    return dict(prefill_t0_us=r.t0_us, prefill_tflops=r.tflops, prefill_gbps=r.gbps,
                prefill_act_ps_per_elem=r.extra_us[0] * 1e6, prefill_quality=r.quality())


def _gemm_bands(m, flop, nbytes, y, small, whole: _Roofline, bound: dict) -> dict:
    """decode_bands over DECODE_BANDS_M: each band of M its own decode roofline, where it holds
    2 * FOLDS rows of weights beyond L2 and as many within (else the whole decode fit's figures,
    quality None); band_quality: the held-out error of the bands together, beyond L2 and within."""
    bands, ape, lo = [], whole.ape.copy(), 0
    for hi in DECODE_BANDS_M:
        rows = (m > lo) & (m <= hi)
        lo = hi
        s = small[rows]
        if s.sum() >= 2 * FOLDS and (~s).sum() >= 2 * FOLDS:
            serial = bound.get("serial")
            r = _roofline_fit(flop[rows], nbytes[rows], y[rows],
                              **dict(bound, small=s, serial=None if serial is None else serial[rows]))
            ape[rows] = r.ape
            bands.append(GemmBand(m_max=hi, t0_us=r.t0_us, tflops=r.tflops, gbps=r.gbps, small_gbps=r.small_gbps,
                                  k_per_us=r.serial_rate, quality=r.quality(~s), small_quality=r.quality(s)))
        else:
            bands.append(GemmBand(m_max=hi, t0_us=whole.t0_us, tflops=whole.tflops, gbps=whole.gbps,
                                  small_gbps=whole.small_gbps, k_per_us=whole.serial_rate))
    q, q_small = _quality_of(ape[~small]), _quality_of(ape[small])
    # Kept where they price the rows a decode step streams (beyond L2) better than the one
    # decode fit, held out (H100 vLLM fp8_block: 19.6% against 19.2%, so not kept there).
    keep = q is not None and whole.quality(~small) is not None and q.heldout_mape < whole.quality(~small).heldout_mape
    return dict(decode_bands=bands if keep else [], band_quality=q, band_small_quality=q_small)


def fit_decode_attention(t: OpTable, hbm_gbps: float) -> list[AttentionFit]:
    """Per KV dtype: the fit floor + per sequence-head * b*hk + max(KV bytes / B, FLOP / F) over
    every decode row, and each measured head layout's own batch x KV-length grid (read by
    bilinear log-log interpolation). Why the grids: one roofline cannot hold every kernel the
    tables time (H200 TRT-LLM 1.3.0rc20 bf16: held-out MAPE 37.5%, 45% at batch 256; with a
    time per sequence and per sequence-head too, 30.6%), while reading a row off its grid
    without it misses by the figure `grid_quality` reports. MLA tables (generation_mla_perf)
    go through the same fit with one latent KV head of MLA_LATENT_DIM."""
    out = []
    df = t.clean
    df = df[(df["window"] == 0) & (df["beam"] == 1)]
    keys = ["batch", "kv_len", "n_heads", "n_kv_heads", "head_dim"]
    for kv in sorted(set(df["kv_dtype"])):
        if kv not in KV_ELEMENT_BYTES:
            continue
        d, shares = _fastest(df[df["kv_dtype"] == kv], keys)
        if len(d) < 10:
            continue
        b, L, h, hk, hd = (d[c].to_numpy(float) for c in keys)
        kv_bytes = 2 * b * L * hk * hd * KV_ELEMENT_BYTES[kv]
        flop = 4 * b * L * h * hd
        # Per (sequence x KV head) time: without it large batches of short sequences read 2-5x
        # slower than their bytes (H100 vLLM: held-out error 37% -> 14%).
        r = _roofline_fit(flop, kv_bytes, d["time_us"].to_numpy(float), extras=[b * hk])
        grids, grid_q = _attention_grids(d)
        grids, filled, fill_q, fit_q = _fill_grids(grids, r, KV_ELEMENT_BYTES[kv])
        out.append(AttentionFit(kv_dtype=kv, floor_us=r.t0_us, gbps=r.gbps, tflops=r.tflops,
                                hbm_efficiency=r.gbps / hbm_gbps, kernels=shares, quality=r.quality(),
                                source=t.source, per_sequence_head_us=r.extra_us[0], shape_grids=grids,
                                grid_quality=grid_q, grid_filled_cells=filled, fill_quality=fill_q,
                                fit_beyond_quality=fit_q))
    return out


# Batch rows a decode-attention grid's column is filled beyond its largest measured batch
# (_fill_grids). The tables' own check (each column's last measured cell predicted from the cells
# below it; 28 system x engine x KV-dtype tables of aiconfigurator-core 0.12.0, MLA included):
# mean error 1-15% one row out, 3-31% two rows out, 6-31% three rows out, against 12-99% for
# the roofline fit on the same cells (54-99% on every TensorRT-LLM table). The grids step batch
# by 2x, so two rows reach 4x the largest batch the collector could fit.
GRID_FILL_STEPS = 2


def _column_fill(bs, col, last, steps_bytes_per_batch, best_gbps):
    """Times of the batches `bs` from a KV-length column's own curve above its measured row
    `last`: the log slope of its last two measured rows (clipped to [0, 1]: no faster than flat,
    no steeper than linear in batch), no faster than its KV bytes at the grid's best measured
    bandwidth (`steps_bytes_per_batch` x batch / best_gbps)."""
    idx = np.flatnonzero(np.isfinite(col[:last + 1]))
    i1, i2 = idx[-1], idx[-2]
    slope = float(np.clip(np.log(col[i1] / col[i2]) / np.log(bs[i1] / bs[i2]), 0.0, 1.0))
    return np.maximum(col[i1] * (bs / bs[i1]) ** slope, steps_bytes_per_batch * bs / (best_gbps * 1e3))


def _fill_grids(grids: dict, r, kv_elem_bytes: float):
    """The grids with each KV-length column filled up to GRID_FILL_STEPS batch rows beyond its
    largest measured batch (_column_fill), where that rule beats the roofline fit `r` on the
    table's own check: every column's last measured cell predicted one and two rows out from the
    cells below it (its own column's bandwidth held out too), against the fit on the same cells.
    -> (grids, cells filled, the fill's FitQuality, the fit's FitQuality on the same cells)."""
    arrays = {key: _grid_arrays(key, g, kv_elem_bytes) for key, g in grids.items()}  # read by the check and the fill
    fill_ape, fit_ape = [], []
    for (h, hk, hd), b, ls, v, per_b, gbps in arrays.values():
        for j, L in enumerate(ls):
            idx = np.flatnonzero(np.isfinite(v[:, j]))
            if len(idx) < 2:
                continue
            best_other = np.nanmax(np.delete(gbps, j, axis=1)) if gbps.shape[1] > 1 else np.nan
            i = idx[-1]
            fit_us = (r.t0_us + r.extra_us[0] * b[i] * hk
                      + max(per_b[i, j] * b[i] / (r.gbps * 1e3), 4.0 * b[i] * L * h * hd / (r.tflops * 1e6)))
            for steps in range(1, GRID_FILL_STEPS + 1):
                if len(idx) < 2 + steps or not np.isfinite(best_other):
                    continue
                guess = _column_fill(b, v[:, j], idx[-1 - steps], per_b[i, j], best_other)[i]
                fill_ape.append(abs(guess / v[i, j] - 1.0))
                fit_ape.append(abs(fit_us / v[i, j] - 1.0))
    fill_q, fit_q = _quality_of(fill_ape), _quality_of(fit_ape)
    if fill_q is None or fit_q is None or fill_q.heldout_mape >= fit_q.heldout_mape:
        return grids, 0, fill_q, fit_q
    out, filled = {}, 0
    for key, g in grids.items():
        _, b, ls, v, per_b, gbps = arrays[key]
        best = np.nanmax(gbps)
        new = v.copy()
        for j in range(len(ls)):
            idx = np.flatnonzero(np.isfinite(v[:, j]))
            if len(idx) < 2:
                continue
            top = idx[-1]
            rows = np.arange(top + 1, min(top + 1 + GRID_FILL_STEPS, len(b)))
            if rows.size:
                new[rows, j] = _column_fill(b, v[:, j], top, per_b[top, j], best)[rows]
                filled += int(rows.size)
        out[key] = [g[0], g[1], [None if not np.isfinite(x) else round(float(x), 4) for x in new.ravel()]]
    return out, filled, fill_q, fit_q


def _grid_arrays(key: str, grid, kv_elem_bytes: float):
    """One shape_grids entry as arrays: ((heads, kv heads, head dim), batches, kv lengths, times
    batch x kv length (NaN where not measured), KV bytes per sequence at each cell, each measured
    cell's bandwidth in GB/s)."""
    bs, ls, flat = grid
    h, hk, hd = (float(x) for x in key.split("x"))
    b = np.array(bs, dtype=float)
    v = np.array([np.nan if x is None else x for x in flat], dtype=float).reshape(len(bs), len(ls))
    per_b = 2.0 * np.outer(np.ones_like(b), np.asarray(ls, dtype=float)) * hk * hd * kv_elem_bytes
    return (h, hk, hd), b, [float(x) for x in ls], v, per_b, per_b * b[:, None] / v / 1e3


def _attention_grids(d) -> tuple[dict, FitQuality | None]:
    """Each head layout's batch x KV-length grid of times (None where not measured), and the
    held-out error of reading a row off it without that row: every interior KV length of a
    batch interpolated (log-log) from its two neighbours, a doubled spacing (the tables step KV
    lengths by 2x), so the check is harsher than a lookup between grid lines."""
    grids, ape = {}, []
    for (h, hk, hd), g in d.groupby(["n_heads", "n_kv_heads", "head_dim"], sort=True):
        piv = g.pivot_table(index="batch", columns="kv_len", values="time_us", aggfunc="min")
        if piv.shape[0] < 2 or piv.shape[1] < 2:
            continue
        v = piv.to_numpy(float)
        # One flat, batch-major list (not a list per batch): a profile load checks each list at once.
        flat = [None if not np.isfinite(x) else round(float(x), 4) for x in v.ravel()]
        grids[attention_grid_key(h, hk, hd)] = [[float(x) for x in piv.index], [float(x) for x in piv.columns], flat]
        lb, lv = np.log(piv.columns.to_numpy(float)), np.log(v)
        if len(lb) >= 3:
            f = (lb[1:-1] - lb[:-2]) / (lb[2:] - lb[:-2])
            guess = (1 - f) * lv[:, :-2] + f * lv[:, 2:]
            e = np.abs(np.exp(guess - lv[:, 1:-1]) - 1.0)
            ape.append(e[np.isfinite(e)])
    return grids, (_quality_of(np.concatenate(ape)) if ape else None)


def fit_context_attention(t: OpTable, peak_bf16: float | None) -> list[ContextAttentionFit]:
    out = []
    df = t.clean
    df = df[(df["window"] == 0) & (df["beam"] == 1)]
    for kv in sorted(set(df["kv_dtype"])):
        d, shares = _fastest(df[df["kv_dtype"] == kv], ["batch", "isl", "n_heads", "n_kv_heads", "head_dim"])
        if len(d) < 10:
            continue
        b, s, h, hk, hd = (d[c].to_numpy(float) for c in ("batch", "isl", "n_heads", "n_kv_heads", "head_dim"))
        flop = 2 * b * s * s * h * hd
        qkvo_bytes = 2 * b * s * (2 * h + 2 * hk) * hd
        y = d["time_us"].to_numpy(float)
        # FLOPs alone leave short prompts in large batches 2-3x slower than predicted (H100 vLLM:
        # 41% held-out error); their Q/K/V/O traffic, added, explains most of it. The roofline's own
        # byte column is given nothing (zero bytes) so the FLOP rate stands alone in the max.
        r = _roofline_fit(flop, np.zeros_like(flop), y, extras=[qkvo_bytes])
        t0, f, c, q = r.t0_us, r.tflops, r.extra_us[0], r.quality()
        out.append(ContextAttentionFit(kv_dtype=kv, floor_us=t0, tflops=f,
                                       compute_efficiency=f / peak_bf16 if peak_bf16 else None,
                                       kernels=shares, quality=q, source=t.source, gbps=1.0 / (c * 1e3)))
    return out


def fit_context_mla(t: OpTable) -> list[ContextMlaFit]:
    """Per KV dtype, the MLA prefill table's own (isl, µs) curve of each head count at batch 1
    (one prompt, as a prefill chunk runs; the fastest kernel where several were timed), and the
    held-out error of reading a row off its curve without it. Why the table, not the context-
    attention fit: MLA's prefill kernel is not the MHA one the fit is solved on; at DeepSeek-V3's
    16 heads a GPU (tp 8) the MHA fit read with MLA's FLOPs gave H200 TRT-LLM 1.3.0rc20 78 us a
    layer at 1,600 tokens against this table's 57 (1,536) - 81 (2,048) us, and SGLang 0.5.14 32 us
    at 1,024 against its 46."""
    df = t.clean
    df = df[df["batch"] == 1]
    out = []
    for kv, d in df.groupby("kv_dtype", sort=True):
        curves, groups = {}, []
        for heads, g in d.groupby("n_heads", sort=True):
            g = g.groupby("kv_len", as_index=False)["time_us"].min().sort_values("kv_len")
            if len(g) < 2:
                continue
            x, us = g["kv_len"].to_numpy(float), g["time_us"].to_numpy(float)
            curves[f"h{int(heads)}"] = [[float(v) for v in x], [round(float(v), 4) for v in us]]
            groups.append((np.log(x), np.log(us)))
        if curves:
            out.append(ContextMlaFit(kv_dtype=str(kv), shape_curves=curves, curve_quality=_curve_quality(groups),
                                     source=t.source))
    return out


def _curve_quality(groups) -> FitQuality | None:
    """Held-out error of reading each row of log-log curves off its curve's other rows (k folds)."""
    ape = []
    for lt, lu in groups:
        fold = _folds(len(lt))
        for f in range(int(fold.max()) + 1):
            test = fold == f
            if test.all():
                continue
            ape.append(np.abs(np.exp(np.interp(lt[test], lt[~test], lu[~test]) - lu[test]) - 1.0))
    return _quality_of(np.concatenate(ape)) if ape else None


def _line_fit(b, y):
    """α (µs), β (GB/s) of t = α + b/β minimising relative error, both kept physical (≥ 0, β finite)."""
    from scipy.optimize import nnls

    A = np.column_stack([1.0 / y, b / y])
    (alpha, inv_beta), _ = nnls(A, np.ones_like(y))
    # A flat segment: bandwidth beyond any link (50,000 GB/s; NVLink 5 moves 900 GB/s each way),
    # inside the range a profile load accepts.
    inv_beta = max(inv_beta, 2e-8)
    return alpha, 1.0 / inv_beta / 1e3  # inv_beta is µs per byte -> GB/s


def fit_collective_lines(df, implementation, collective, world, mode, dtype, source, gpus_per_node):
    df = df.sort_values("message_bytes")
    b, y = df["message_bytes"].to_numpy(float), df["time_us"].to_numpy(float)
    lines = []
    edges = list(COLLECTIVE_SEGMENTS_BYTES) + [math.inf]
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (b >= lo) & (b < hi)
        if sel.sum() < 2:
            continue
        bs, ys = b[sel], y[sel]
        alpha, beta = _line_fit(bs, ys)
        X = bs[:, None]
        q = _quality(lambda Xf, yf: _line_fit(Xf[:, 0], yf), lambda p, Xp: p[0] + Xp[:, 0] / (p[1] * 1e3), X, ys)
        lines.append(CollectiveOpFit(implementation=implementation, collective=collective, world_size=int(world),
                                     scope=INTRA if world <= gpus_per_node else INTER, mode=mode, alpha_us=alpha,
                                     beta_gbps=beta, min_bytes=lo, max_bytes=None if math.isinf(hi) else hi,
                                     dtype=dtype, quality=q, source=source))
    return lines


def fit_nccl(t: OpTable, gpus_per_node: int) -> list[CollectiveOpFit]:
    df = t.clean
    df = df[df["dtype"].isin(["fp16", "bf16"])]  # what a tensor-parallel step moves
    out = []
    for (coll, world), d in df.groupby(["collective", "world_size"]):
        out += fit_collective_lines(d, "nccl", coll, world, "eager", "bf16", t.source, gpus_per_node)
    return out


def fit_custom_allreduce(t: OpTable, engine: str, gpus_per_node: int) -> list[CollectiveOpFit]:
    df = t.clean
    out = []
    for (world, mode), d in df.groupby(["world_size", "mode"]):
        d = d.groupby("message_bytes", as_index=False)["time_us"].min()
        out += fit_collective_lines(d, f"{engine}_custom", "all_reduce", world, mode, "bf16", t.source,
                                    gpus_per_node)
    return out


def allreduce_choices(custom: OpTable, nccl: OpTable | None, engine: str) -> list[AllReduceChoice]:
    out = []
    c = custom.clean
    c = c[c["mode"] == "graph"]
    n = nccl.clean if nccl is not None else None
    for world, d in c.groupby("world_size"):
        d = d.groupby("message_bytes")["time_us"].min()
        if n is None:
            out.append(AllReduceChoice(world_size=int(world), implementation=f"{engine}_custom",
                                       custom_max_bytes=float(d.index.max())))
            continue
        ref = n[(n["collective"] == "all_reduce") & (n["world_size"] == world) & n["dtype"].isin(["fp16", "bf16"])]
        ref = ref.groupby("message_bytes")["time_us"].min()
        common = d.index.intersection(ref.index)
        faster = [bb for bb in common if d[bb] < (1 - CUSTOM_AR_MARGIN) * ref[bb]]
        if faster:
            out.append(AllReduceChoice(world_size=int(world), implementation=f"{engine}_custom",
                                       custom_max_bytes=float(max(faster))))
    return out


MOE_KEYS = ["hidden", "inter", "experts", "topk", "tp", "ep"]


# TensorRT-LLM's min-latency NVFP4 MoE kernel (the tables' kernel_source of that name) runs only
# for batches of at most 128 tokens: modeling_deepseekv3.py sets min_latency_mode = True if
# hidden_states.size(0) <= 128 and POST_MOE_FUSION and is_nvfp4. Its rows above 128 tokens
# (B200 1.3.0rc20, DeepSeek-V3 tp 8: 209 us at 1,536 tokens against the CUTLASS path's 476 us)
# are a kernel the engine does not run there, so the curves leave them out.
MOE_MIN_LATENCY_KERNEL = "moe_torch_flow_min_latency"
MOE_MIN_LATENCY_TOKENS_MAX = 128


def fit_moe(t: OpTable) -> list[MoeFit]:
    """Per routing (moe_distributions) and expert dtype: the table's own token curve of every
    shape it measured, at every token count it measured (model/opfits.py MoeFit.shape_curves;
    prefill reads them too, model/prefill.py), and, in the decode regime (tokens <= DECODE_M_MAX),
    for other shapes the fit fixed + per pair * t*k + per expert * touched + max(bytes / B, flop / F).

    Why each term (H200 TRT-LLM 1.3.0rc20 fp8_block, k-fold held-out MAPE on rows with tokens <=
    256): the experts one rank touches are min(E/ep, t*k/ep) — the t*k routed pairs spread over
    ep ranks (the table: DeepSeek-V3 at one token, tp 1, takes 165 / 93 / 60 / 40 us at ep 1 / 2 /
    4 / 8; the old min(E/ep, t*k) gave every rank all t*k): 26.7% -> 15.6%; a time per touched
    expert (each is one more group of the grouped GEMM): 15.6% -> 10.9%; the prefill rows left to
    prefill (a fit over every token count: 19.5%). No such form holds every kernel: TRT-LLM's
    DeepSeek-V3 at tp 8, ep 1 takes 115 us at one token, 4x its bytes at the fitted bandwidth (its
    skinny per-rank experts leave most SMs idle), so shapes the table holds are read from it."""
    out = []
    df = t.clean
    for dist in moe_distributions(set(df["distribution"])):
        out += _fit_moe_routing(t, df[df["distribution"] == dist], dist)
    return out


def _fit_moe_routing(t: OpTable, df_all, dist: str) -> list[MoeFit]:
    """fit_moe on the rows of one routing: the fit on the decode rows, the curves on every row
    (a prefill chunk's thousands of tokens read the table's own prefill rows: TRT-LLM 1.3.0rc20
    on H200, DeepSeek-V3 fp8_block at tp 8, ep 1 takes 1,418 us at 1,536 tokens; the grouped
    GEMMs priced from the GEMM fit, as prefill did before, gave 421 us at 1,600)."""
    out = []
    df = df_all[df_all["tokens"] <= DECODE_M_MAX]
    for dtype in sorted(set(df["dtype"])):
        if dtype not in GEMM_OPERAND_BYTES:
            continue
        d, shares = _fastest(df[df["dtype"] == dtype], ["tokens"] + MOE_KEYS)
        if len(d) < 10:
            continue
        rows = df_all[(df_all["dtype"] == dtype)
                      & ~((df_all["kernel"] == MOE_MIN_LATENCY_KERNEL) & (df_all["tokens"] > MOE_MIN_LATENCY_TOKENS_MAX))]
        d_all, _ = _fastest(rows, ["tokens"] + MOE_KEYS)
        tok, hid, inter, k, E, tp, ep = (d[c].to_numpy(float) for c in
                                          ("tokens", "hidden", "inter", "topk", "experts", "tp", "ep"))
        w = GEMM_OPERAND_BYTES[dtype][1]
        touched = moe_touched_experts(tok, k, E, ep)
        nbytes = touched * 3 * hid * inter / tp * w
        flop = 2 * tok * k * 3 * hid * inter / tp / ep
        y = d["time_us"].to_numpy(float)
        r = _roofline_fit(flop, nbytes, y, extras=[tok * k, touched])
        curves, curve_q = _moe_curves(d_all)
        out.append(MoeFit(dtype=dtype, fixed_us=r.t0_us, gbps=r.gbps, tflops=r.tflops, kernels=shares,
                          quality=r.quality(), source=t.source, per_token_expert_us=r.extra_us[0],
                          per_expert_us=r.extra_us[1], tokens_max=DECODE_M_MAX, shape_curves=curves,
                          curve_quality=curve_q, distribution=dist))
    return out


def moe_distributions(held: set) -> list[str]:
    """The routings MoE fits are solved on: each of opfits.MOE_ROUTINGS the table holds (the
    routings the step model prices, model/ops.moe_routing); a table holding none of them (a
    collector's own, say), its one routing nearest to even: balanced, else its least skewed power
    law. On the tables holding both, power_law_1.01 over balanced at tokens <= 256 has median
    0.96-0.99 (p10 0.76-0.79, p90 1.09-1.35: A100 SGLang 0.5.10, H100 vLLM 0.24.0, H200 TRT-LLM
    1.3.0rc20)."""
    ours = [d for d in MOE_ROUTINGS if d in held]
    if ours:
        return ours
    if "balanced" in held or not held:
        return ["balanced"]
    laws = sorted((float(d.split("_")[-1]), d) for d in held if d.startswith("power_law_"))
    return [laws[0][1] if laws else sorted(held)[0]]


def _moe_curves(d) -> tuple[dict, FitQuality | None]:
    """Each measured shape's (tokens, us) curve, and the held-out error of reading a row off its
    curve without it: rows in k folds, each interpolated (log-log) from its curve's other rows."""
    curves, groups = {}, []
    for key, g in d.groupby(MOE_KEYS, sort=True):
        g = g.sort_values("tokens")
        if len(g) < 2:
            continue
        tok, us = g["tokens"].to_numpy(float), g["time_us"].to_numpy(float)
        curves[moe_curve_key(*key)] = [[float(v) for v in tok], [round(float(v), 4) for v in us]]
        groups.append((np.log(tok), np.log(us)))
    return curves, _curve_quality(groups)


# -- the whole calibration -----------------------------------------------------------------

def calibrate_from_opdb(db_path, gpu: str, engine: str, engine_version: str | None = None) -> OpDbCalibration:
    from inferecon.model.published import get_profile

    db = open_database(db_path)
    name, system = resolve_system(db, gpu)
    version = resolve_version(db, system, engine, engine_version)
    base = get_profile(name)
    l2_mb = base.memory.l2_mb or L2_FALLBACK_MB.get(name, 0.0)
    notes: list[str] = []
    hbm = base.memory.bandwidth_gbps
    gpn = base.network.gpus_per_node

    gemm_t = _pick(db, system, "gemm", engine, "gemm_perf", version, l2_bytes=l2_mb * 1e6, required=True,
                   notes=notes)
    attn_t = _pick(db, system, "attention", engine, "generation_attention_perf", version, required=True, notes=notes)
    ctx_t = _pick(db, system, "attention", engine, "context_attention_perf", version, notes=notes)
    custom_t = _pick(db, system, "comm", engine, "custom_allreduce_perf", version, notes=notes)
    nccl_t = _pick(db, system, "comm", "nccl", "nccl_perf", None, notes=notes)  # the newest NCCL measured
    moe_t = _pick(db, system, "moe", engine, "moe_perf", version, notes=notes)
    mla_t = _pick(db, system, "mla", engine, "generation_mla_perf", version, notes=notes)
    ctx_mla_t = _pick(db, system, "mla", engine, "context_mla_perf", version, notes=notes)

    gemms = fit_gemms(gemm_t, base.compute.peak_tflops, hbm, l2_bytes=l2_mb * 1e6 or None)
    if not gemms:
        raise UserError(f"{system}/gemm/{engine}/{gemm_t.source.version}: no dtype with enough usable rows")
    gemms += _marlin_weight_only(system, engine, gemms, notes)
    gemms += _weight_only_from_other_engines(db, system, engine, {g.dtype for g in gemms}, base, l2_mb, notes)
    if l2_mb:
        notes.append(f"gemm decode regime and bands: HBM bandwidth from rows whose weights exceed L2 ({l2_mb:g} MB"
                     f"{', an assumed figure' if not base.memory.l2_mb else ''}: the tables replay GEMMs in a CUDA graph, "
                     "so smaller weights stay in L2 and read optimistic); those rows fit a bandwidth of their own, used "
                     "no faster than HBM's; F and B bounded by the datasheet peaks")
    attention = fit_decode_attention(attn_t, hbm)
    mla = fit_decode_attention(mla_t, hbm) if mla_t is not None else []
    if not attention:
        raise UserError(f"{system}/attention/{engine}/{attn_t.source.version}: no usable decode-attention rows")
    context = fit_context_attention(ctx_t, base.compute.peak_tflops.get("bf16")) if ctx_t is not None else []
    context_mla = fit_context_mla(ctx_mla_t) if ctx_mla_t is not None else []
    collectives = (fit_nccl(nccl_t, gpn) if nccl_t is not None else []) + \
                  (fit_custom_allreduce(custom_t, engine, gpn) if custom_t is not None else [])
    moe = fit_moe(moe_t) if moe_t is not None else []
    notes += [f"moe/{m.dtype}: fitted at {m.distribution} routing" for m in moe]
    choices = allreduce_choices(custom_t, nccl_t, engine) if custom_t is not None else []
    for t, what in ((ctx_t, "prefill attention"), (custom_t, "engine all-reduce"), (nccl_t, "NCCL"), (moe_t, "MoE"),
                    (mla_t, "MLA decode attention"), (ctx_mla_t, "MLA prefill attention")):
        if t is None:
            notes.append(f"no {what} table for {system} {engine} {version}")

    graph_floor = float(gemm_t.rows[gemm_t.rows["flag"] == ""]["time_us"].min())
    sources = [t.source for t in (gemm_t, attn_t, ctx_t, custom_t, nccl_t, moe_t, mla_t, ctx_mla_t) if t is not None]
    # The database times no norm or activation kernel. Its one elementwise table (quantize/
    # computescale_perf) is no stand-in: vLLM's rows are the difference of two kernels' times
    # ("..._minus_..."), TRT-LLM's eager torch ops. At decode sizes an elementwise kernel reads a
    # few KB and costs its floor, so each is charged the measured per-kernel floor in a graph.
    ew = graph_floor
    ew_note = (f"elementwise per layer: an estimate, not a measurement: {ELEMENTWISE_KERNELS_PER_LAYER} kernels "
               f"(add+RMSNorm twice, SiLU-and-mul) at the per-kernel floor inside a CUDA graph ({ew:.2f} us each); "
               "the database times no norm or activation kernel")
    eng_fits = EngineOpFits(
        gpu=name, engine=engine, engine_version=version, allreduce=choices,
        cuda_graph_kernel_us=graph_floor,
        attention_floor_us={a.kv_dtype: a.floor_us for a in attention},
        elementwise_per_layer_us=ELEMENTWISE_KERNELS_PER_LAYER * ew,
        moe=moe, moe_fixed_us={m.dtype: m.fixed_us for m in moe}, step_overhead_us=None,
        sources=sources,
        notes=notes + [ew_note, "cuda_graph_kernel_us: the fastest GEMM replay in the table (tiny, L2-resident "
                                "shapes included): the floor of one kernel inside a CUDA graph",
                       "step_overhead_us: per-op tables cannot measure scheduling or sampling; fit it with "
                       "`calibrate --engine-results`"],
    )
    op_fits = OpFits(gpu=name, engine=engine, engine_version=version, gemm=gemms, attention=attention, mla_attention=mla,
                     context_attention=context, context_mla=context_mla, collectives=collectives, notes=notes)
    profile = _profile(base, op_fits, db, sources, engine, version)
    # Each op family's held-out error as a band on its time (calibration/fit_uncertainty.py).
    time_scale, entries = opdb_uncertainty(op_fits, eng_fits)
    profile = dataclasses.replace(profile, op_fits=dataclasses.replace(op_fits, time_scale=time_scale),
                                  uncertainty=entries)
    engine_profile = EngineProfile(
        name=engine, sources=[f"{s.database}: {s.system}/{s.op}/{s.backend}/{s.version}/{s.table}" for s in sources],
        notes=["per-op database fit (calibrate --op-db): step_overhead_us and per_layer_us stay 0 here; "
               "what the engine adds around its kernels is in op_fits"],
        hardware=profile.name, fit_quality=_quality_summary(op_fits, eng_fits), op_fits=eng_fits)
    # The tables cannot see the engine's host work between steps; a published figure for this
    # engine version (model/engine_overheads.py) is its step overhead, none where no source gives one.
    engine_profile = with_overhead(engine_profile, overhead_fact(engine, version))
    # Likewise a version whose kernels the sources say differ from the tables' (model/engine_kernel_facts.py).
    engine_profile = with_kernel_facts(engine_profile, kernel_facts(engine, version))
    return OpDbCalibration(profile=profile, engine=engine_profile, summary=_summary(op_fits, eng_fits))


# Weight-only formats: an engine whose table lacks them runs its own kernel where a published
# measurement gives it (vLLM and SGLang on Hopper: Marlin, model/weight_only_kernels.py), else is
# served by another engine's table of the same GPU (dequantise-then-multiply kernels at 16 bit:
# TRT-LLM's FpA-IntB on A100) before the bf16 fit at 4- or 8-bit bytes, which the tables
# contradict (A100 TRT-LLM 1.0.0: int4_wo's decode intercept 8.2 us against bf16's 2.6 us).
WEIGHT_ONLY_DTYPES = ("int8_wo", "int4_wo")


def _marlin_weight_only(system, engine, gemms, notes) -> list[GemmFit]:
    bf16 = next((g for g in gemms if g.dtype == "bf16"), None)
    if bf16 is None or not uses_marlin(engine, system):
        return []
    have = {g.dtype for g in gemms}
    out = [marlin_gemm_fit(bf16, d) for d in WEIGHT_ONLY_DTYPES if d not in have]
    notes.extend(marlin_note(engine, g.dtype, bf16) for g in out)
    return out


def _weight_only_from_other_engines(db, system, engine, have, base, l2_mb, notes) -> list[GemmFit]:
    out = []
    missing = [d for d in WEIGHT_ONLY_DTYPES if d not in have]
    for other in (e for e in ENGINES if e != engine):
        if not missing:
            break
        for v in reversed(db.versions(system, "gemm", other)):
            if "gemm_perf" not in db.tables(system, "gemm", other, v):
                continue
            try:
                t = db.read(system, "gemm", other, v, "gemm_perf", l2_bytes=l2_mb * 1e6)
            except UserError:
                continue
            held = set(t.clean["dtype"]) & set(missing)
            if not held:
                continue
            sub = dataclasses.replace(t, rows=t.rows[t.rows["dtype"].isin(held)])
            for g in fit_gemms(sub, base.compute.peak_tflops, base.memory.bandwidth_gbps, l2_bytes=l2_mb * 1e6 or None):
                out.append(g)
                missing.remove(g.dtype)
                notes.append(f"gemm/{g.dtype}: {engine} has no table; fitted from {other} {v}'s (same GPU)")
    return out


def _profile(base: HardwareProfile, op_fits: OpFits, db, sources, engine, version) -> HardwareProfile:
    # The existing GEMM and collective models read these two places; the op-level model reads op_fits.
    gemm_fit = {g.dtype: {"form": "roofline", "roofline": {"t0_us": g.t0_us, "tflops": g.tflops, "gbps": g.gbps},
                          "heldout_mape": g.quality.heldout_mape if g.quality else None, "source": "op-db"}
                for g in op_fits.gemm if g.dtype in ("bf16", "fp16", "fp8")}
    lines = [CollectiveFit(collective=c.collective, world_size=c.world_size, scope=c.scope, alpha_us=c.alpha_us,
                           beta_gbps=c.beta_gbps, heldout_mape=c.quality.heldout_mape if c.quality else None,
                           mode=c.mode, min_bytes=c.min_bytes, max_bytes=c.max_bytes)
             for c in op_fits.collectives if c.mode == "graph" or c.implementation == "nccl"]
    versions = {engine: version}
    nccl = next((s for s in sources if s.backend == "nccl"), None)
    if nccl is not None:
        versions["nccl"] = nccl.version
    prov = Provenance(kind="calibrated", sources=[db.label] + [f"{s.system}/{s.op}/{s.backend}/{s.version}/{s.table}"
                                                             for s in sources],
                      run_id=None, versions=versions,
                      fit_quality=_quality_summary(op_fits, None),
                      notes=["per-op database fit (calibrate --op-db); memory, launch and price figures are the "
                             f"published {base.name} profile's"] + list(op_fits.notes))
    return dataclasses.replace(
        base, name=f"{base.name}-{engine}-{version}-opdb", display_name=f"{base.display_name} ({engine} {version}, op-db)",
        compute=dataclasses.replace(base.compute, gemm_fit=gemm_fit),
        network=dataclasses.replace(base.network, collectives=lines),
        provenance=prov, op_fits=op_fits, uncertainty=[])


def _quality_summary(op_fits: OpFits, eng: EngineOpFits | None) -> dict:
    q = {f"gemm.{g.dtype}": {"heldout_mape": g.quality.heldout_mape} for g in op_fits.gemm if g.quality}
    q.update({f"attention.{a.kv_dtype}": {"heldout_mape": a.quality.heldout_mape} for a in op_fits.attention if a.quality})
    q.update({f"mla_attention.{a.kv_dtype}": {"heldout_mape": a.quality.heldout_mape} for a in op_fits.mla_attention
              if a.quality})
    if eng is not None:
        q.update({f"moe.{m.dtype}": {"heldout_mape": m.quality.heldout_mape} for m in eng.moe if m.quality})
    return q


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def _summary(f: OpFits, e: EngineOpFits) -> list[str]:
    lines = [f"{f.gpu} x {f.engine} {f.engine_version}"]
    for g in f.gemm:
        if g.quality is None:  # derived from a published measurement, no table (model/weight_only_kernels.py)
            lines.append(f"  gemm {g.dtype:10s} {'/'.join(g.kernels) or 'derived'} (published measurement, no table): "
                         f"decode t0 {g.decode_t0_us:6.2f} us  {g.decode_gbps:7.1f} GB/s; the bf16 fit above M "
                         f"{g.decode_m_max}")
            continue
        lines.append(f"  gemm {g.dtype:10s} t0 {g.t0_us:6.2f} us  {g.tflops:7.1f} TFLOP/s ({_pct(g.compute_efficiency)} of peak)"
                     f"  {g.gbps:7.1f} GB/s ({_pct(g.hbm_efficiency)} of HBM)  held-out MAPE {_pct(g.quality.heldout_mape)}"
                     f"  n={g.quality.n_points}")
        if g.decode_t0_us is not None:
            h = lambda q: _pct(q.heldout_mape if q else None)  # noqa: E731
            lines.append(f"    decode M<={g.decode_m_max}: t0 {g.decode_t0_us:6.2f} us  {g.decode_tflops:7.1f} TFLOP/s"
                         f"  {g.decode_gbps:7.1f} GB/s ({g.decode_small_gbps:.0f} below L2)"
                         f"  K at {g.decode_k_per_us or float('inf'):.0f} per us  held-out MAPE "
                         f"{h(g.decode_quality)} (the one fit: {h(g.single_decode_quality)}), L2-sized rows "
                         f"{h(g.decode_small_quality)}; the one fit on M>{g.decode_m_max}: {h(g.large_quality)}")
            if g.band_quality is not None:
                lines.append(f"    bands of M (m_max {', '.join(str(m) for m in DECODE_BANDS_M)}): held-out MAPE "
                             f"{h(g.band_quality)} beyond L2, {h(g.band_small_quality)} L2-sized rows; "
                             f"{'used' if g.decode_bands else 'not used (no better than the decode fit beyond L2)'}")
    for a in f.attention:
        lines.append(f"  decode attention kv {a.kv_dtype:5s} floor {a.floor_us:6.2f} us  {a.gbps:7.1f} GB/s "
                     f"({_pct(a.hbm_efficiency)} of HBM)  {a.tflops:6.1f} TFLOP/s  {1e3 * a.per_sequence_head_us:5.1f} ns "
                     f"per seq x kv head  held-out MAPE {_pct(a.quality.heldout_mape)}")
    for kind, fits in (("decode attention", f.attention), ("MLA decode attention", f.mla_attention)):
        for a in fits:
            if a.grid_quality is not None:
                lines.append(f"  {kind} kv {a.kv_dtype}: {len(a.shape_grids)} measured head layouts read off their "
                             f"batch x KV-length grids, held-out MAPE {_pct(a.grid_quality.heldout_mape)}")
            if a.fill_quality is not None and a.fit_beyond_quality is not None:
                lines.append(f"  {kind} kv {a.kv_dtype}: {a.grid_filled_cells} cells beyond a column's largest measured "
                             f"batch filled from its own curve (held-out MAPE {_pct(a.fill_quality.heldout_mape)} there, "
                             f"the fit {_pct(a.fit_beyond_quality.heldout_mape)})")
    for a in f.mla_attention:
        lines.append(f"  MLA decode attention kv {a.kv_dtype:5s} floor {a.floor_us:6.2f} us  {a.gbps:7.1f} GB/s  "
                     f"{a.tflops:6.1f} TFLOP/s  {1e3 * a.per_sequence_head_us:5.1f} ns per seq  held-out MAPE "
                     f"{_pct(a.quality.heldout_mape)}")
    for a in f.context_attention:
        lines.append(f"  prefill attention kv {a.kv_dtype:5s} floor {a.floor_us:6.2f} us  {a.tflops:7.1f} TFLOP/s  "
                     f"{a.gbps:7.1f} GB/s Q/K/V/O "
                     f"held-out MAPE {_pct(a.quality.heldout_mape)}")
    for c in f.collectives:
        if c.collective == "all_reduce" and c.min_bytes == 0.0:
            lines.append(f"  all_reduce {c.implementation:14s} {c.mode:5s} x{c.world_size}  alpha {c.alpha_us:6.2f} us  "
                         f"beta {c.beta_gbps:7.1f} GB/s (< 64 KiB)  held-out MAPE {_pct(c.quality.heldout_mape)}")
    for a in e.allreduce:
        lines.append(f"  engine all-reduce x{a.world_size}: {a.implementation} up to {a.custom_max_bytes / 1e6:.3g} MB, then NCCL")
    lines.append(f"  cuda-graph kernel floor {e.cuda_graph_kernel_us:.2f} us; elementwise per layer "
                 f"{'-' if e.elementwise_per_layer_us is None else f'{e.elementwise_per_layer_us:.1f} us'}")
    for m in e.moe:
        lines.append(f"  moe {m.dtype:12s} {m.distribution:14s} fixed {m.fixed_us:6.1f} us  {1e3 * m.per_token_expert_us:5.1f} ns per "
                     f"token x expert  {m.per_expert_us:5.2f} us per expert  {m.gbps:7.1f} GB/s  {m.tflops:6.1f} TFLOP/s "
                     f"held-out MAPE {_pct(m.quality.heldout_mape)} (tokens <= {m.tokens_max}); "
                     f"{len(m.shape_curves)} measured shapes, read off their curves: held-out MAPE "
                     f"{_pct(m.curve_quality.heldout_mape if m.curve_quality else None)}")
    return lines
