"""Network term: α (latency) and β (bandwidth) of each collective, per world size, scope
(intra-/inter-node) and timing mode, from the collectives benchmark or ingested nccl-tests.

Form: t = α + bytes / β, β in algorithm bandwidth (message bytes per second, nccl-tests'
algbw). NCCL changes protocol and algorithm with message size (LL, LL128, Simple; ring, tree,
NVLS), and each regime has its own α and β, so the fit is 1 to MAX_PIECES lines over
contiguous message ranges. Each line minimises the squared relative error (closed form,
weighted least squares: timings span six decades and their noise is multiplicative); the
breakpoints minimise the total training error (dynamic programming over the sorted sizes).

How many pieces: the fewest whose k-fold error on held-out message sizes is within
PIECE_TOLERANCE of the best count's. The held-out error reported is nested: the count is
chosen inside each outer training fold, never on the sizes it is then scored on.
"""

from __future__ import annotations

import numpy as np

from inferecon.calibration.fit import FitResult, kfold_heldout_mape, mape, usable
from inferecon.model.hardware import CollectiveFit

NAMES = ["alpha_us", "beta_gbps"]
MAX_PIECES = 4
MIN_POINTS_PER_PIECE = 3
PIECE_TOLERANCE = 1.10  # a count within 10% of the best held-out error is as good: take fewer pieces
PIECEWISE_GAIN = 1 / PIECE_TOLERANCE  # kept for callers that read it
# µs per byte: β at most 50,000 GB/s (1e-3 / g GB/s), inside the profile schema's physical range
# (≤ 1e5 GB/s); a flat piece is latency only. 1e-12 here was β = 1e9 GB/s, which a profile load refuses.
_MIN_INV_BETA = 2e-8
_PIECE_NAMES = {1: ["small"], 2: ["small", "large"], 3: ["small", "mid", "large"],
                4: ["small", "mid", "mid2", "large"]}


def _line(p, x):
    return p[0] + x / (p[1] * 1e3)


def _segment_table(x, y, min_g=_MIN_INV_BETA):
    """For every contiguous run x[i:j] of the sorted points, the line α + x·g with α >= 0 and
    g = 1/β >= 0 minimising Σ((α + x·g − y) / y)², as arrays indexed [i, j]: (α, g, error).
    Closed form from prefix sums of the weighted normal equations, so the breakpoint search
    costs O(n²) arithmetic, not O(n²) solver calls."""
    w = 1.0 / y
    c = lambda v: np.concatenate([[0.0], np.cumsum(v)])  # noqa: E731
    s_ww, s_xww, s_xxww, s_w, s_xw, s_1 = (c(w * w), c(x * w * w), c(x * x * w * w), c(w), c(x * w),
                                           c(np.ones_like(x)))
    i, j = np.meshgrid(np.arange(len(x) + 1), np.arange(len(x) + 1), indexing="ij")
    a, b, d = s_ww[j] - s_ww[i], s_xww[j] - s_xww[i], s_xxww[j] - s_xxww[i]
    e, f, n = s_w[j] - s_w[i], s_xw[j] - s_xw[i], s_1[j] - s_1[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        det = a * d - b * b
        alpha = np.where(det > 0, (d * e - b * f) / det, 0.0)
        g = np.where(det > 0, (a * f - b * e) / det, 0.0)
        # Constrained cases: flat (latency only), or through the origin (bandwidth only).
        flat = g < min_g
        g = np.where(flat, min_g, g)
        alpha = np.where(flat, (e - g * b) / a, alpha)
        origin = alpha < 0
        alpha = np.where(origin, 0.0, alpha)
        g = np.where(origin, np.maximum(min_g, f / d), g)
        err = alpha * alpha * a + g * g * d + n + 2 * alpha * g * b - 2 * alpha * e - 2 * g * f
    return alpha, g, np.maximum(err, 0.0)


def _fit_pieces(x, y, k):
    """Best k-piece fit of sorted (x, y): [(lo_bytes, alpha, g), ...] by dynamic programming."""
    n = len(x)
    m = min(MIN_POINTS_PER_PIECE, n)
    k = max(1, min(k, n // m))
    # Sizes span ten decades: solve in units of the largest, so the 2x2 sums stay well
    # conditioned, then convert the slope back to µs per byte.
    scale = float(np.max(x)) or 1.0
    alpha, g, cost = _segment_table(x / scale, y, _MIN_INV_BETA * scale)
    g = g / scale
    inf = float("inf")
    best = np.full((k + 1, n + 1), inf)
    back = np.zeros((k + 1, n + 1), int)
    best[0, 0] = 0.0
    for p in range(1, k + 1):
        for j in range(p * m, n + 1):
            i = np.arange((p - 1) * m, j - m + 1)
            c = best[p - 1, i] + cost[i, j]
            t = int(np.argmin(c))
            best[p, j], back[p, j] = c[t], i[t]
    pieces, j = [], n
    for p in range(k, 0, -1):
        i = back[p, j]
        # A break sits halfway (geometrically) between the last size of one piece and the
        # first of the next: the fit says nothing about where inside that gap NCCL switches.
        lo = 0.0 if i == 0 else float(np.sqrt(x[i - 1] * x[i]))
        pieces.append((lo, float(alpha[i, j]), float(g[i, j])))
        j = i
    return pieces[::-1]


def _predict(pieces, x):
    x = np.asarray(x, float)
    out = np.zeros_like(x)
    for lo, alpha, g in pieces:
        out = np.where(x >= lo, alpha + x * g, out)
    return out


def _fit_sorted(x, y, k):
    o = np.argsort(x)
    return _fit_pieces(x[o], y[o], k)


def _max_pieces(n):
    return max(1, min(MAX_PIECES, n // MIN_POINTS_PER_PIECE))


def _choose_pieces(x, y):
    """The piece count for (x, y) and the k-fold held-out error of each count tried."""
    held = {}
    for k in range(1, _max_pieces(len(x)) + 1):
        h = kfold_heldout_mape(
            lambda tr, te, k=k: _predict(_fit_sorted(x[tr], y[tr], min(k, _max_pieces(len(tr)))), x[te]),
            len(x), y)
        if h is not None:
            held[k] = h
    if not held:
        return 1, held
    best = min(held.values())
    return min(k for k, h in held.items() if h <= best * PIECE_TOLERANCE), held


def fit_one_collective(x, y):
    """Fit one collective's (bytes, µs) points: (pieces, nested held-out MAPE, held-out by count)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    k, held = _choose_pieces(x, y)
    pieces = _fit_sorted(x, y, k)
    nested = kfold_heldout_mape(
        lambda tr, te: _predict(_fit_sorted(x[tr], y[tr], _choose_pieces(x[tr], y[tr])[0]), x[te]),
        len(x), y)
    return pieces, nested, held


def _stderr(x, y, pieces):
    """Standard errors of each piece's α and β from the weighted least-squares covariance."""
    out = []
    bounds = [p[0] for p in pieces[1:]] + [np.inf]
    scale = float(np.max(x)) or 1.0  # as in the fit: sizes in units of the largest
    for (lo, alpha, g), hi in zip(pieces, bounds):
        sel = (x >= lo) & (x < hi)
        xs, ys = x[sel], y[sel]
        w = 1.0 / ys
        a = np.stack([w, xs / scale * w], axis=1)
        r = (alpha + xs * g - ys) * w
        dof = max(1, len(xs) - 2)
        try:
            cov = np.linalg.pinv(a.T @ a) * float(np.sum(r ** 2) / dof)
            se_alpha, se_gs = np.sqrt(np.clip(np.diag(cov), 0, None))
            se_g = se_gs / scale
        except np.linalg.LinAlgError:
            se_alpha = se_g = float("nan")
        beta = 1.0 / (g * 1e3)
        out.append((float(se_alpha), float(beta * se_g / g)))  # dβ = β · dg / g
    return out


def fit_collectives(coll_df) -> tuple[list[CollectiveFit], list[FitResult]]:
    df = usable(coll_df)
    fits, results = [], []
    if df is None or len(df) == 0:
        return fits, results
    for (op, world, scope), g in df.groupby(["op", "world_size", "scope"]):
        # A decode step is captured in a CUDA graph: prefer graph-mode timings where measured.
        mode = "graph" if (g["mode"] == "graph").sum() >= 2 else "eager"
        g = g[g["mode"] == mode]
        x = g["bytes"].to_numpy(float)
        y = g["median_us"].to_numpy(float)
        if len(x) < 2:
            continue
        label = f"network:{op}/w{int(world)}/{scope}/{mode}"
        fs, r = fit_points(op, int(world), scope, mode, x, y, label)
        if "source" in g:
            r.extra["sources"] = sorted({str(s) for s in g["source"].dropna()})
        fits += fs
        results.append(r)
    return fits, results


def fit_points(op, world, scope, mode, x, y, label):
    """CollectiveFits (one per piece) and the FitResult of one collective's points."""
    pieces, held, by_count = fit_one_collective(x, y)
    se = _stderr(x, y, pieces)
    train = mape(_predict(pieces, x), y)
    fits = []
    for i, ((lo, alpha, g), (se_a, se_b)) in enumerate(zip(pieces, se)):
        hi = pieces[i + 1][0] if i + 1 < len(pieces) else None
        fits.append(CollectiveFit(op, world, scope, alpha_us=alpha, beta_gbps=1.0 / (g * 1e3),
                                  alpha_stderr_us=se_a, beta_stderr_gbps=se_b, heldout_mape=held,
                                  mode=mode, min_bytes=lo, max_bytes=hi))
    extra = {"pieces": len(pieces), "heldout_mape_by_pieces": {str(k): v for k, v in by_count.items()},
             "heldout_mape_one_line": by_count.get(1), "breaks_bytes": [p[0] for p in pieces[1:]]}
    if len(pieces) == 1:
        f = fits[0]
        return fits, FitResult(label, "alpha + bytes/beta", {"alpha_us": f.alpha_us, "beta_gbps": f.beta_gbps},
                               {"alpha_us": f.alpha_stderr_us, "beta_gbps": f.beta_stderr_gbps},
                               train, held, len(x), converged=True, extra=extra)
    params, stderr = {}, {}
    for name, f in zip(_PIECE_NAMES[len(pieces)], fits):
        params[f"alpha_us_{name}"], params[f"beta_gbps_{name}"] = f.alpha_us, f.beta_gbps
        stderr[f"alpha_us_{name}"], stderr[f"beta_gbps_{name}"] = f.alpha_stderr_us, f.beta_stderr_gbps
    for i, b in enumerate(extra["breaks_bytes"]):
        params["break_bytes" if i == 0 else f"break_bytes_{i + 1}"] = b
    return fits, FitResult(label, "piecewise alpha + bytes/beta", params, stderr,
                           train, held, len(x), converged=True, extra=extra)


# -- the published NCCL model's figures between nodes, fitted to nccl-tests tables -----------------
# A decode step all-reduces a few KB to a few hundred KB; the public tables of whole-node H100
# clusters time those sizes too. The criterion is the published profiles' own: the largest
# |log(model / measured)| over every row from PROTOCOL_FIT_MIN_BYTES to PROTOCOL_FIT_MAX_BYTES
# of every table (minimax of the time ratio), the mean |log| a tie-break (several figure sets may
# share one minimax where a row no free figure moves sets it).
PROTOCOL_FIT_MIN_BYTES = 4096  # 2 x d_model of a small model: no decode step all-reduces less
PROTOCOL_FIT_MAX_BYTES = 1 << 30
_TIE_BREAK = 0.1
_RESTARTS = 8


def protocol_fit_error(hw, tables, op: str = "all_reduce"):
    """(minimax, mean) of |log(model / measured)| of `hw`'s collective model over `tables`, a list
    of (world size, bytes, measured µs) arrays of whole-node groups (ranks 1 apart)."""
    from inferecon.model.network import collective_time_s

    logs = np.concatenate([np.log(collective_time_s(hw, op, world, 1, b) * 1e6 / us) for world, b, us in tables])
    a = np.abs(logs)
    return float(a.max()), float(a.mean())


def fit_protocol_figures(hw, tables, free, op: str = "all_reduce", seed: int = 0):
    """`hw` with the NCCL protocol figures named in `free` ((protocol name, ProtocolSpec field)
    pairs) fitted to `tables` (see protocol_fit_error), and the fit's (minimax, mean) error.
    Nelder-Mead from the profile's own figures and from _RESTARTS - 1 seeded draws around them
    (the objective is a max of minima: piecewise, with local minima); positive figures only."""
    import dataclasses

    from scipy.optimize import minimize

    names = [p.name for p in hw.network.protocols]
    x0 = np.array([getattr(hw.network.protocols[names.index(p)], f) for p, f in free], dtype=float)

    def make(x):
        protos = list(hw.network.protocols)
        for (p, f), v in zip(free, x):
            i = names.index(p)
            protos[i] = dataclasses.replace(protos[i], **{f: float(v)})
        return dataclasses.replace(hw, network=dataclasses.replace(hw.network, protocols=protos))

    def objective(x):
        if not (x > 0).all():
            return np.inf
        worst, mean = protocol_fit_error(make(x), tables, op)
        return worst + _TIE_BREAK * mean

    rng = np.random.default_rng(seed)
    best = None
    for trial in range(_RESTARTS):
        start = x0 if trial == 0 else x0 * rng.uniform(0.6, 1.6, x0.size)
        res = minimize(objective, start, method="Nelder-Mead", options={"maxfev": 800, "xatol": 1e-3, "fatol": 1e-5})
        if best is None or res.fun < best.fun:
            best = res
    fitted = make(best.x)
    return fitted, protocol_fit_error(fitted, tables, op)
