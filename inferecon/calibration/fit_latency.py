"""Fixed-latency term: the cost of a kernel launch not hidden behind other work, and the
per-step host synchronisation.

Form: the median of the raw samples, its bootstrap standard error, and, as held-out error, how
far the median of each held-out fold of samples lies from the median of the rest. On a GPU the
launch figure is the one measured inside a CUDA graph (decode steps are captured graphs); the
eager figure is used only where no graph timing exists (CPU)."""

from __future__ import annotations

import numpy as np

from inferecon.calibration.fit import FitResult, bootstrap_median, usable


def _median_fit(term: str, samples) -> FitResult:
    s = np.asarray(samples, float)
    med, se = bootstrap_median(s)
    held = None
    if len(s) >= 6:
        folds = np.array_split(np.random.default_rng(0).permutation(len(s)), 5)
        errs = [abs(np.median(s[f]) - np.median(np.delete(s, f))) / np.median(np.delete(s, f)) for f in folds]
        held = float(np.mean(errs))
    return FitResult(term, "median of samples", {"us": med}, {"us": se}, 0.0, held, len(s))


def fit_launch(launch_df) -> tuple[FitResult | None, FitResult | None]:
    """(kernel launch, per-step sync) fits; None where not measured."""
    df = usable(launch_df)
    if df is None or len(df) == 0:
        return None, None
    by_op = {op: g.iloc[0] for op, g in df.groupby("op")}
    kernel = by_op.get("kernel_graph")
    if kernel is None:
        kernel = by_op.get("kernel_eager")
    launch = _median_fit(f"latency:{kernel['op']}", kernel["samples_us"]) if kernel is not None else None
    sync = by_op.get("sync")
    step = _median_fit("latency:sync", sync["samples_us"]) if sync is not None else None
    return launch, step
