"""Network term: α (latency) and β (bandwidth) of each collective, per world size, scope
(intra-/inter-node) and timing mode, from the collectives benchmark or ingested nccl-tests.

Form: t = α + bytes / β, β in algorithm bandwidth (message bytes per second, nccl-tests'
algbw). NCCL changes protocol with message size (LL for small, LL128/Simple for large), so
when one line misses the held-out messages by more than PIECEWISE_GAIN over a two-piece fit,
the two-piece fit (breakpoint chosen by training error) is kept instead.
"""

from __future__ import annotations

import numpy as np

from inferecon.calibration.fit import FitResult, fit_relative, kfold_heldout_mape, mape, usable
from inferecon.model.hardware import CollectiveFit

NAMES = ["alpha_us", "beta_gbps"]
PIECEWISE_GAIN = 0.8  # a two-piece fit must cut held-out error by 20% to be worth its parameters
MIN_POINTS_PER_PIECE = 3


def _line(p, x):
    return p[0] + x / (p[1] * 1e3)


def _fit_line(x, y):
    big = x >= np.median(x)
    beta0 = float(np.max(x[big] / y[big])) / 1e3 if big.any() else 1.0
    p0 = np.array([max(float(np.min(y)) * 0.9, 1e-3), max(beta0, 1e-6)])
    return fit_relative(_line, x, y, p0, NAMES, lower=[0.0, 1e-9])


def _fit_piecewise(x, y):
    """Best breakpoint by training error: [(lo, hi, params, stderr, ok), ...]."""
    order = np.argsort(x)
    xs, ys = x[order], y[order]
    best = None
    for cut in range(MIN_POINTS_PER_PIECE, len(xs) - MIN_POINTS_PER_PIECE + 1):
        pieces, err = [], 0.0
        for lo, hi in ((0, cut), (cut, len(xs))):
            p, se, ok, _ = _fit_line(xs[lo:hi], ys[lo:hi])
            err += np.sum(np.log(_line(p, xs[lo:hi]) / ys[lo:hi]) ** 2)
            pieces.append((p, se, ok))
        if best is None or err < best[0]:
            best = (err, float(xs[cut]), pieces)
    return best


def _predict_piecewise(best, x):
    _, cut, ((p1, _, _), (p2, _, _)) = best
    return np.where(x < cut, _line(p1, x), _line(p2, x))


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
        p, se, ok, msg = _fit_line(x, y)
        held_line = kfold_heldout_mape(lambda tr, te: _line(_fit_line(x[tr], y[tr])[0], x[te]), len(x), y)
        label = f"network:{op}/w{int(world)}/{scope}/{mode}"
        piece = None
        if len(x) >= 2 * MIN_POINTS_PER_PIECE + 2 and held_line is not None:
            held_piece = kfold_heldout_mape(
                lambda tr, te: _predict_piecewise(_fit_piecewise(x[tr], y[tr]), x[te])
                if len(tr) >= 2 * MIN_POINTS_PER_PIECE else _line(_fit_line(x[tr], y[tr])[0], x[te]),
                len(x), y)
            if held_piece is not None and held_piece < PIECEWISE_GAIN * held_line:
                piece = (_fit_piecewise(x, y), held_piece)
        if piece is None:
            fits.append(CollectiveFit(op, int(world), scope, alpha_us=float(p[0]), beta_gbps=float(p[1]),
                                      alpha_stderr_us=se["alpha_us"], beta_stderr_gbps=se["beta_gbps"],
                                      heldout_mape=held_line, mode=mode))
            results.append(FitResult(label, "alpha + bytes/beta", dict(zip(NAMES, map(float, p))), se,
                                     mape(_line(p, x), y), held_line, len(x), converged=ok, message=msg))
        else:
            best, held_piece = piece
            _, cut, ((p1, se1, ok1), (p2, se2, ok2)) = best
            for (pp, ss), lo, hi in (((p1, se1), 0.0, cut), ((p2, se2), cut, None)):
                fits.append(CollectiveFit(op, int(world), scope, alpha_us=float(pp[0]), beta_gbps=float(pp[1]),
                                          alpha_stderr_us=ss["alpha_us"], beta_stderr_gbps=ss["beta_gbps"],
                                          heldout_mape=held_piece, mode=mode, min_bytes=lo, max_bytes=hi))
            params = {"alpha_us_small": float(p1[0]), "beta_gbps_small": float(p1[1]),
                      "alpha_us_large": float(p2[0]), "beta_gbps_large": float(p2[1]), "break_bytes": cut}
            results.append(FitResult(label, "piecewise alpha + bytes/beta", params,
                                     {"alpha_us_small": se1["alpha_us"], "beta_gbps_small": se1["beta_gbps"],
                                      "alpha_us_large": se2["alpha_us"], "beta_gbps_large": se2["beta_gbps"]},
                                     mape(_predict_piecewise(best, x), y), held_piece, len(x),
                                     converged=ok1 and ok2, extra={"heldout_mape_one_line": held_line}))
    return fits, results
