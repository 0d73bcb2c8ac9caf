"""A CPU calibration's op-level fits: the `cpu_ops` measurements (kernels/cpu_ops.py) as the
typed OpFits an op-DB profile carries (model/opfits.py), so that model/ops.py prices a CPU
profile op by op, as it prices a GPU under an engine.

- GEMMs, per dtype: t0 + max(2MNK / F, bytes / B) on every decode shape timed, least squares
  in relative error (calibration/fit.py's fit_relative), k-fold held-out error (kfold_heldout_mape).
- Decode attention, per KV dtype: floor + per_sequence_head · batch · KV heads + max(KV bytes
  / B, FLOP / F), the same solver and held-out check.
- Elementwise time per layer: the median of the timed layers (norms, rotary, activation,
  residual adds), every M and dtype (a constant per layer: at decode M its bytes are nothing).
- The per-op floor (one tiny op) is kept in the notes and as the floor no fitted intercept
  may undercut: no op costs less than the dispatch of one op.

- Prefill (the engine path's rows labelled "prefill_", kernels/cpu_ops.py): each dtype's GEMM
  fit gains GemmFit's prefill regime, t0 + max(2MNK / F, bytes / B) (no activation term: no
  quantising pass on the CPU) fitted on the prefill rows above a boundary read off the
  measurements (_prefill_boundary), which becomes decode_m_max (decode_t0_us stays None, so
  model/ops.py's decode pricing is the one fit as before; model/prefill.py reads prefill_params).
  On this EPYC the decode fit (M <= 8) priced bf16 GEMMs at 0.18 TFLOP/s where vLLM's onednn_mm
  runs 0.44-0.48 at M = 128-512. The causal context attention of one prompt: floor + 2 L^2 h d
  / F per kv dtype (opfits.ContextAttentionFit).

Rows the interleaved timing flagged `sliced` (most of their blocks hit by a time slice) are
left out of every fit and counted in the notes.

Each path of kernels/cpu_ops.py is fitted on its own rows: "engine" (the serving engine's
kernels: the profile's `op_fits`) and "decoder" (the torch ops of inferecon's own decoder,
which `validate` times: `decoder_op_fits`). Rows without a path column are the engine's.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from inferecon.calibration.fit import FitResult, fit_relative, kfold_heldout_mape, usable
from inferecon.model.opfits import (GEMM_OPERAND_BYTES, KV_ELEMENT_BYTES, AttentionFit, ContextAttentionFit,
                                    FitQuality, GemmFit, OpFits)

MIN_ROWS = 6  # per fit: three parameters (four with the per-sequence term) and folds to hold out


def sliced(df) -> np.ndarray:
    """Which rows the interleaved timing flagged `sliced` (none where the column is absent)."""
    return df["sliced"].fillna(False).astype(bool).to_numpy() if "sliced" in df else np.zeros(len(df), bool)


ENGINE, DECODER = "engine", "decoder"  # kernels/cpu_ops.py's paths (calibration never imports kernels)


def on_path(df, path: str):
    """The rows of one path (kernels/cpu_ops.py path_of: no path column, or an empty one, is the
    engine's). The floor is shared: one tiny op is what every path costs at least."""
    if df is None or "path" not in df:
        return df if path == ENGINE else (df.iloc[0:0] if df is not None else None)
    p = df["path"].fillna(ENGINE).replace("", ENGINE)
    return df[(p == path).to_numpy() | (df["op"] == "floor").to_numpy()]


def _clean(df, op):
    d = usable(df)
    if d is None or len(d) == 0 or "op" not in d:
        return None, 0
    d = d[d["op"] == op]
    hit = sliced(d)
    return d[~hit], int(np.sum(hit))


def _groups(df, op, widths):
    """(dtype, rows) of each dtype of `op` whose element widths `widths` knows and that has
    MIN_ROWS unsliced rows to fit."""
    d, _ = _clean(df, op)
    if d is None:
        return []
    return [(dt, g) for dt, g in d.groupby("dtype") if dt in widths and len(g) >= MIN_ROWS]


PREFILL = "prefill_"  # kernels/cpu_ops.py's label prefix of the prefill cases


def is_prefill(d) -> np.ndarray:
    """Which rows are prefill cases (their label starts with PREFILL)."""
    if d is None or "label" not in d:
        return np.zeros(0 if d is None else len(d), bool)
    return d["label"].astype(str).str.startswith(PREFILL).to_numpy()


def _time(d):
    return d["time_us"].to_numpy(float) if "time_us" in d else d["median_us"].to_numpy(float)


FOLDS = 5


def _roofline(p, x):
    """t0 + c·extra + max(work / F, bytes / B): µs, F in TFLOP/s, B in GB/s."""
    t0, f, bw, c = p
    work, nbytes, extra = x
    return t0 + c * extra + np.maximum(work / (f * 1e6), nbytes / (bw * 1e3))


def _fit(work, nbytes, y, extra=None):
    """(t0_us, tflops, gbps, c, FitQuality) of the roofline above, relative least squares; c = 0
    without an `extra` column. Each rate starts from the rows it bounds hardest."""
    extra_col = np.zeros_like(work) if extra is None else np.asarray(extra, float)
    x = np.vstack([work, nbytes, extra_col])

    def solve(idx):
        w, b, yy = work[idx], nbytes[idx], y[idx]
        t0 = float(np.min(yy)) * 0.5
        p0 = np.array([t0, max(float(np.quantile(w / yy, 0.95)) / 1e6, 1e-6),
                       max(float(np.quantile(b / yy, 0.95)) / 1e3, 1e-6), 1e-13 if extra is None else 1e-3])
        hi = [float(np.min(yy)), np.inf, np.inf, np.inf if extra is not None else 1e-12]
        p, _, _, _ = fit_relative(_roofline, x[:, idx], yy, np.minimum(p0, np.array(hi) * 0.999 + 1e-15),
                                  ["t0_us", "tflops", "gbps", "c"], lower=[0.0, 1e-9, 1e-9, 0.0], upper=hi)
        return p

    all_idx = np.arange(len(y))
    p = solve(all_idx)
    held = kfold_heldout_mape(lambda tr, te: _roofline(solve(tr), x[:, te]), len(y), y, k=FOLDS)
    q = FitQuality(n_points=len(y), folds=min(FOLDS, len(y)) if held is not None else 0, heldout_mape=held)
    return float(p[0]), float(p[1]), float(p[2]), float(p[3]), q


def _result(term, form, params, q: FitQuality, train_pred, y) -> FitResult:
    train = float(np.mean(np.abs(train_pred / y - 1.0)))
    return FitResult(term, form, params, {}, train, q.heldout_mape, q.n_points,
                     extra={"heldout_median_ape": q.heldout_median_ape, "heldout_p90_ape": q.heldout_p90_ape})


GEMV_M = 1  # aten::mm's GEMV regime: M = 1 alone (_gemv_regime)


def _gemv_regime(m, flop, nbytes, y, floor_us, single: FitQuality):
    """Two rooflines, M = 1 and M >= 2, kept where their k-fold held-out error, pooled over
    every row, is below the one fit's: aten::mm runs M = 1 as a GEMV and M >= 2 as a GEMM, and
    in fp32 on this EPYC the second reads the weights at half the rate (gate_up 8192x1024:
    1.66 ms at M = 1, 3.45 ms at M = 2, 3.43 at M = 4; 2026-12-02 calibration,
    docs/validation.md), which no one line over M holds. ((t0, F, B, quality) of M = 1, the
    same of M >= 2, pooled quality), or None."""
    parts = []
    for idx in (np.flatnonzero(m <= GEMV_M), np.flatnonzero(m > GEMV_M)):
        if len(idx) < MIN_ROWS:
            return None
        t0, f, bw, _, q = _fit(flop[idx], nbytes[idx], y[idx])
        if q.heldout_mape is None:
            return None
        parts.append((max(t0, floor_us or 0.0), f, bw, q))
    n = [p[3].n_points for p in parts]
    held = sum(k * p[3].heldout_mape for k, p in zip(n, parts)) / sum(n)
    if single.heldout_mape is None or held >= single.heldout_mape:
        return None
    return parts[0], parts[1], FitQuality(n_points=sum(n), folds=min(p[3].folds for p in parts), heldout_mape=held)


def _rel_err(pred, y) -> np.ndarray:
    return np.abs(np.asarray(pred, float) / y - 1.0)


def _prefill_boundary(m, flop, nbytes, y, pred_decode, m_decode_max: int, floor_us: float | None) -> int:
    """The boundary b (the decode rows' largest M, or a timed prefill M) that prices the prefill
    rows best: the decode fit at M <= b, a prefill roofline fitted on the rows above b beyond it,
    the mean relative error over every prefill row the score (in-sample: each candidate refits
    the rows above it). The knee is where the kernel leaves the decode regime, read off the
    measurements, not assumed (the op DBs' 256 is a GPU's)."""
    best, best_err = None, np.inf
    for b in [int(m_decode_max)] + sorted(set(int(v) for v in m if v > m_decode_max)):
        above = m > b
        if int(np.sum(above)) < MIN_ROWS:
            break
        t0, f, bw, _, _ = _fit(flop[above], nbytes[above], y[above])
        t0 = max(t0, floor_us or 0.0)
        pred = np.where(above, t0 + np.maximum(flop / (f * 1e6), nbytes / (bw * 1e3)), pred_decode)
        err = float(np.mean(_rel_err(pred, y)))
        if err < best_err - 1e-9:  # a later boundary must do better, not tie
            best, best_err = b, err
    return int(m_decode_max) if best is None else best


def _with_prefill(fit: GemmFit, pg, dtype: str, floor_us: float | None) -> tuple[GemmFit, dict | None]:
    """`fit` with its prefill regime from the prefill rows `pg` (module docstring), and the
    figures of it for the FitResult (None: too few rows above the boundary)."""
    a, w, o = GEMM_OPERAND_BYTES[dtype]
    m, n, k = (pg[c].to_numpy(float) for c in ("m", "n", "k"))
    flop, nbytes, y = 2 * m * n * k, n * k * w + m * k * a + m * n * o, _time(pg)
    if len(y) < MIN_ROWS:
        return fit, None
    pred_dec = np.array([fit.time_us(mm, nn, kk) for mm, nn, kk in zip(m, n, k)])
    bound = _prefill_boundary(m, flop, nbytes, y, pred_dec, fit.m_range[1], floor_us)
    above = m > bound
    if int(np.sum(above)) < MIN_ROWS:
        return fit, None
    t0, f, bw, _, q = _fit(flop[above], nbytes[above], y[above])
    t0 = max(t0, floor_us or 0.0)
    # The decode fit's error on the same rows, none of which it saw: what the regime replaces.
    before = FitQuality(n_points=int(np.sum(above)), folds=0, heldout_mape=float(np.mean(_rel_err(pred_dec[above], y[above]))))
    out = dataclasses.replace(fit, decode_m_max=bound, prefill_t0_us=t0, prefill_tflops=f, prefill_gbps=bw,
                              prefill_act_ps_per_elem=0.0, prefill_quality=q, large_quality=before)
    train = float(np.mean(_rel_err(t0 + np.maximum(flop[above] / (f * 1e6), nbytes[above] / (bw * 1e3)), y[above])))
    return out, {"boundary_m": bound, "t0_us": t0, "tflops": f, "gbps": bw, "quality": q, "before": before,
                 "train": train}


def fit_cpu_gemms(df, floor_us: float | None, gemv: bool = False) -> tuple[list[GemmFit], list[FitResult]]:
    """Each dtype's GEMM fit; with `gemv`, M = 1 and M >= 2 apart where that predicts held-out
    rows better (_gemv_regime): GemmFit's decode regime (decode_m_max 1) holds M = 1, its one
    roofline M >= 2, as model/ops.py prices them. The prefill rows (labels "prefill_") are kept
    out of those fits and give the prefill regime (_with_prefill; not with `gemv`, whose
    decode_m_max is the GEMV's)."""
    fits, results = [], []
    d, _ = _clean(df, "gemm")
    pre = d[is_prefill(d)] if d is not None else None
    df = d[~is_prefill(d)] if d is not None else None
    for dtype, g in _groups(df, "gemm", GEMM_OPERAND_BYTES):
        a, w, o = GEMM_OPERAND_BYTES[dtype]
        m, n, k = (g[c].to_numpy(float) for c in ("m", "n", "k"))
        flop, nbytes, y = 2 * m * n * k, n * k * w + m * k * a + m * n * o, _time(g)
        t0, f, bw, _, q = _fit(flop, nbytes, y)
        t0 = max(t0, floor_us or 0.0)
        kernels = {str(kk): round(float(v), 4) for kk, v in g["kernel"].value_counts(normalize=True).items()} \
            if "kernel" in g else {}
        fit = GemmFit(dtype=dtype, t0_us=t0, tflops=f, gbps=bw, compute_efficiency=None, hbm_efficiency=None,
                      kernels=kernels, m_range=(int(m.min()), int(m.max())), quality=q)
        params, form = {"t0_us": t0, "tflops": f, "gbps": bw}, "t0 + max(flop/F, bytes/B)"
        two = _gemv_regime(m, flop, nbytes, y, floor_us, q) if gemv else None
        if two is not None:
            (t1, f1, b1, q1), (t2, f2, b2, q2), q = two
            fit = dataclasses.replace(fit, t0_us=t2, tflops=f2, gbps=b2, quality=q, large_quality=q2,
                                      decode_m_max=GEMV_M, decode_t0_us=t1, decode_tflops=f1, decode_gbps=b1,
                                      decode_quality=q1)
            params = {"m1:t0_us": t1, "m1:tflops": f1, "m1:gbps": b1, "t0_us": t2, "tflops": f2, "gbps": b2}
            form = "M=1 and M>=2 apart: t0 + max(flop/F, bytes/B)"
        pred = np.array([fit.time_us(mm, nn, kk) for mm, nn, kk in zip(m, n, k)])
        pf = None
        if not gemv and pre is not None and len(pre):
            fit, pf = _with_prefill(fit, pre[(pre["dtype"] == dtype).to_numpy()], dtype, floor_us)
        fits.append(fit)
        results.append(_result(f"op:gemm:{dtype}", form, params, q, pred, y))
        if pf is not None:
            pq = pf["quality"]
            results.append(FitResult(f"op:gemm-prefill:{dtype}", f"M > {pf['boundary_m']}: t0 + max(flop/F, bytes/B)",
                                     {"t0_us": pf["t0_us"], "tflops": pf["tflops"], "gbps": pf["gbps"],
                                      "boundary_m": pf["boundary_m"]}, {}, pf["train"], pq.heldout_mape, pq.n_points,
                                     extra={"decode_fit_mape_on_these_rows": pf["before"].heldout_mape}))
    return fits, results


def fit_cpu_context_attention(df, floor_us: float | None) -> tuple[list[ContextAttentionFit], list[FitResult]]:
    """One prompt's causal attention per kv dtype: floor + 2 L^2 h d / F (opfits.ContextAttentionFit,
    as model/prefill.py prices a chunk with no cached prefix), relative least squares, k-fold."""
    fits, results = [], []
    for kv, g in _groups(df, "context_attention", KV_ELEMENT_BYTES):
        L, h, hd = (g[c].to_numpy(float) for c in ("seq_len", "n_heads", "head_dim"))
        flop = 2 * L * L * h * hd
        y = _time(g)
        # The roofline with no byte side (its bandwidth pinned far above any row's need).
        t0, f, _, _, q = _fit(flop, np.zeros_like(flop), y)
        t0 = max(t0, floor_us or 0.0)
        kernels = {str(kk): 1.0 for kk in set(g["kernel"])} if "kernel" in g else {}
        fits.append(ContextAttentionFit(kv_dtype=kv, floor_us=t0, tflops=f, kernels=kernels, quality=q))
        pred = t0 + flop / (f * 1e6)
        results.append(_result(f"op:context_attention:{kv}", "floor + 2 L^2 h d / F",
                               {"floor_us": t0, "tflops": f}, q, pred, y))
    return fits, results


def fit_cpu_attention(df, floor_us: float | None) -> tuple[list[AttentionFit], list[FitResult]]:
    fits, results = [], []
    for kv, g in _groups(df, "attention", KV_ELEMENT_BYTES):
        b, L, h, hk, hd = (g[c].to_numpy(float) for c in ("batch", "kv_len", "n_heads", "n_kv_heads", "head_dim"))
        kv_bytes = 2 * b * L * hk * hd * KV_ELEMENT_BYTES[kv]
        flop = 4 * b * L * h * hd
        y = _time(g)
        t0, f, bw, c, q = _fit(flop, kv_bytes, y, extra=b * hk)
        t0 = max(t0, floor_us or 0.0)
        kernels = {str(kk): 1.0 for kk in set(g["kernel"])} if "kernel" in g else {}
        fits.append(AttentionFit(kv_dtype=kv, floor_us=t0, gbps=bw, tflops=f, per_sequence_head_us=c,
                                 kernels=kernels, quality=q))
        pred = t0 + c * b * hk + np.maximum(kv_bytes / (bw * 1e3), flop / (f * 1e6))
        results.append(_result(f"op:attention:{kv}", "floor + c*batch*kv_heads + max(bytes/B, flop/F)",
                               {"floor_us": t0, "tflops": f, "gbps": bw, "per_sequence_head_us": c}, q, pred, y))
    return fits, results


PATH_ENGINE_NAME = {ENGINE: "torch", DECODER: "inferecon-decoder"}  # OpFits.engine of each path
PATH_TERM = {ENGINE: "op", DECODER: "op-decoder"}  # the FitResult terms' prefix


def fit_cpu_ops(df, device_name: str, torch_version: str,
                path: str = ENGINE) -> tuple[OpFits | None, list[FitResult], float | None]:
    """(op fits of one path or None where nothing was fitted, their FitResults, elementwise µs
    per layer)."""
    df = on_path(df, path)
    # The GEMV regime for the decoder's aten::mm alone: the engine's fits stay as the vLLM loop
    # validated them.
    gemm, attn, ew_us, notes, results = _fit_path(df, gemv=(path == DECODER))
    ctx, cres = fit_cpu_context_attention(df, None) if path == ENGINE else ([], [])
    results = results + cres
    if not gemm:
        return None, results, ew_us
    if path == DECODER:
        notes.insert(0, "the torch ops of inferecon's own decoder (kernels/decode.py: x @ W.t() on plain weights, "
                        "GQA as batched matmuls, its own RMSNorm and rotary): what `inferecon validate` runs")
    fits = OpFits(gpu=device_name or "cpu", engine=PATH_ENGINE_NAME[path], engine_version=torch_version or "",
                  gemm=gemm, attention=attn, context_attention=ctx, notes=notes)
    if path != ENGINE:
        results = [dataclasses.replace(r, term=r.term.replace("op:", PATH_TERM[path] + ":", 1)) for r in results]
    return fits, results, ew_us


def _fit_path(df, gemv: bool = False):
    fl, _ = _clean(df, "floor")
    floor_us = float(np.min(_time(fl))) if fl is not None and len(fl) else None
    gemm, gres = fit_cpu_gemms(df, floor_us, gemv=gemv)
    attn, ares = fit_cpu_attention(df, floor_us)
    ew, _ = _clean(df, "elementwise")
    ew_pf = ew[is_prefill(ew)] if ew is not None and len(ew) else None
    ew = ew[~is_prefill(ew)] if ew is not None and len(ew) else ew  # the decode M alone: as before
    elementwise = float(np.median(_time(ew))) if ew is not None and len(ew) else None
    notes = []
    if floor_us is not None:
        notes.append(f"per-op floor (one tiny torch op): {floor_us:.2f} us; no fitted intercept is below it")
    if elementwise is not None:
        notes.append(f"elementwise per layer (norms, rotary, SwiGLU, residual adds as torch ops): {elementwise:.1f} us")
    if ew_pf is not None and len(ew_pf):
        notes.append("elementwise per layer at prefill M (as torch ops; a check, not fitted): "
                     + ", ".join(f"M={int(r.m)} {r.dtype} {t:.0f} us" for r, t in zip(ew_pf.itertuples(), _time(ew_pf))))
    for g in gemm:
        if g.prefill_t0_us is not None:
            notes.append(f"gemm {g.dtype} prefill regime M > {g.decode_m_max} (to M={g.m_range[1]} decode, prefill "
                         f"rows above): t0 {g.prefill_t0_us:.1f} us, {g.prefill_tflops:.3f} TFLOP/s, "
                         f"{g.prefill_gbps:.1f} GB/s, held-out MAPE {100 * g.prefill_quality.heldout_mape:.1f}% "
                         f"(the decode fit on those rows: {100 * g.large_quality.heldout_mape:.1f}%)")
    dropped = sum(_clean(df, op)[1] for op in ("gemm", "attention", "elementwise", "floor"))
    if dropped:
        notes.append(f"{dropped} shape(s) left out: their interleaved blocks say a time slice hit most of them")
    return gemm, attn, elementwise, notes, gres + ares
