"""Mean absolute percentage error: the one rule, in one unit (percent).

Every MAPE inferecon prints or stores under a `*_pct` name is this function's. The hardware
profile's fit quality keeps its MAPE as a fraction (the `train_mape` / `heldout_mape` fields
of the profile schema); calibration/fit.py converts at that one boundary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def pct_errors(pred, meas) -> np.ndarray:
    """Signed errors of predictions against measurements, percent of the measurement."""
    pred, meas = np.asarray(pred, dtype=float), np.asarray(meas, dtype=float)
    return 100.0 * (pred - meas) / meas


def mape_pct(errors_pct: Iterable) -> float | None:
    """Mean of |error| over the signed percent errors that exist (None and non-finite entries
    are cases without a figure, left out); None when no case has one."""
    values = [abs(float(e)) for e in errors_pct if e is not None and math.isfinite(float(e))]
    return float(np.mean(values)) if values else None


def mape_pct_of(pred, meas) -> float | None:
    """MAPE of predictions against measurements, percent."""
    return mape_pct(pct_errors(pred, meas))
