"""Shared fitting machinery: least squares on relative error, parameter uncertainty, and
held-out scoring. Every fitted term is scored on cases it was not trained on (k-fold), never
only on its training points."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.optimize import least_squares

from inferecon.core.stats import mape_pct, mape_pct_of, pct_errors


@dataclass
class FitResult:
    """One fitted term: its parameters, their standard errors, and how well it predicts."""

    term: str
    form: str
    params: dict[str, float]
    stderr: dict[str, float]
    train_mape: float
    heldout_mape: float | None  # None when there are too few points to hold any out
    n_points: int
    converged: bool = True
    message: str = ""
    extra: dict = field(default_factory=dict)

    def quality(self) -> dict:
        return {"form": self.form, "params": self.params, "stderr": self.stderr,
                "train_mape": self.train_mape, "heldout_mape": self.heldout_mape,
                "n_points": self.n_points, "converged": self.converged, "message": self.message, **self.extra}


def mape(pred, meas) -> float:
    """MAPE as a fraction: the unit of the profile's fit_quality fields (train_mape,
    heldout_mape). The rule itself is core/stats.py's, in percent."""
    m = mape_pct_of(pred, meas)
    return float("nan") if m is None else m / 100.0


def fit_relative(model: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray,
                 p0: np.ndarray, names: list[str], lower=None, upper=None):
    """Least squares on log(model / y): timings span orders of magnitude and their noise is
    multiplicative, so every point weighs by its relative error. Returns (params, stderr,
    converged, message); stderr from the Jacobian at the optimum (Gauss-Newton covariance)."""
    lower = -np.inf * np.ones_like(p0) if lower is None else np.asarray(lower, float)
    upper = np.inf * np.ones_like(p0) if upper is None else np.asarray(upper, float)

    def resid(p):
        pred = model(p, x)
        return np.log(np.maximum(pred, 1e-30)) - np.log(y)

    try:
        res = least_squares(resid, p0, bounds=(lower, upper), x_scale="jac", max_nfev=2000)
    except (ValueError, FloatingPointError) as exc:
        return p0, {n: float("nan") for n in names}, False, f"least_squares failed: {exc}"
    dof = max(1, len(y) - len(p0))
    s2 = float(np.sum(res.fun ** 2) / dof)
    try:
        cov = np.linalg.pinv(res.jac.T @ res.jac) * s2
        # d log(pred) / dp: the covariance is of p itself.
        err = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        err = np.full(len(p0), np.nan)
    ok = bool(res.success) and np.all(np.isfinite(res.x))
    return res.x, dict(zip(names, map(float, err))), ok, res.message if not ok else ""


def kfold_heldout_mape(fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], n: int,
                       y: np.ndarray, k: int = 5, seed: int = 0) -> float | None:
    """Mean absolute percentage error on held-out folds, as a fraction (the profile's unit). `fit_predict(train_idx, test_idx)`
    fits on the training indices and returns predictions for the test indices."""
    if n < 3:
        return None
    k = min(k, n)
    idx = np.random.default_rng(seed).permutation(n)
    errors = []
    for fold in np.array_split(idx, k):
        train = np.setdiff1d(idx, fold)
        if len(train) < 2:
            continue
        errors.extend(pct_errors(fit_predict(train, fold), y[fold]))
    m = mape_pct(errors)
    return None if m is None else m / 100.0  # a fraction, as the profile stores it


def bootstrap_median(samples, n_boot: int = 500, seed: int = 0) -> tuple[float, float]:
    """Median of raw samples and the bootstrap standard error of that median."""
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if len(s) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(s, size=(n_boot, len(s)), replace=True), axis=1)
    return float(np.median(s)), float(np.std(boots))


def usable(df):
    """Rows that measured something: not skipped, with a positive median."""
    if df is None or len(df) == 0:
        return df
    ok = (df["skipped"].fillna("") == "") & (df["median_us"] > 0)
    return df[ok]
