"""Checks of a HardwareProfile's JSON before it is built: every figure the cost model divides
by or multiplies with is a finite number of the right sign, counts are whole numbers.

A profile with zero memory bandwidth would otherwise give infinite step times (or a
ZeroDivisionError) deep inside the search; a NaN price would give NaN costs that sort
anywhere. The rules go by field name and unit suffix, so new fields with the usual units
(`_gbps`, `_gb`, `_us`, ...) are checked without touching this module.
"""

from __future__ import annotations

import math
from numbers import Real

from inferecon.core.errors import UserError

# Above this a $/GPU-hour is a typo (100x today's on-demand rates); costs would print as
# meaningless digits. The command line uses the same bound (inferecon/cli_args.py).
MAX_PRICE_USD_PER_HOUR = 1000.0
# Free-form records a fit leaves behind (parameters, standard errors that may be NaN where a
# fit is degenerate): documentation, never used as a divisor.
_FREE_FORM = {"provenance", "gemm_fit", "uncertainty"}  # uncertainty: model/uncertainty.py checks it
_INTEGRAL = {"gpus_per_node", "world_size"}
_POSITIVE = {"efficiency", "price_usd_per_gpu_hour", "gpus_per_node", "world_size", "time_scale"}
_POSITIVE_SUFFIXES = ("_gbps", "_gb", "_tflops")
_NONNEG_SUFFIXES = ("_us", "_mb", "_bytes", "_fraction", "_doubling")


def _rule(key: str) -> str | None:
    """'positive', 'nonneg' or None (finite only) for a field name."""
    if "stderr" in key or "mape" in key:
        return None
    if key in _POSITIVE or key.endswith(_POSITIVE_SUFFIXES):
        return "positive"
    if key.endswith(_NONNEG_SUFFIXES) or key.startswith("serial_kernels"):
        return "nonneg"
    return None


def _is_number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _check_value(where: str, key: str, value, rule: str | None) -> None:
    if value is None:
        return  # optional fields ("absent"); a required one missing is from_dict's error
    if not _is_number(value):
        if rule is not None:
            raise UserError(f"{where} must be a number, got {value!r}")
        return
    if not math.isfinite(value):
        raise UserError(f"{where} must be finite, got {value}")
    if rule == "positive" and not value > 0:
        raise UserError(f"{where} must be positive, got {value:g}")
    if rule == "nonneg" and value < 0:
        raise UserError(f"{where} must not be negative, got {value:g}")
    if key in _INTEGRAL and value != int(value):
        raise UserError(f"{where} must be a whole number, got {value:g}")
    if key == "price_usd_per_gpu_hour" and value > MAX_PRICE_USD_PER_HOUR:
        raise UserError(f"{where} ${value:g}/GPU-hour is above ${MAX_PRICE_USD_PER_HOUR:g}: a typo?")


def _walk(node, path: str, key: str, source: str, rule: str | None) -> None:
    if isinstance(node, dict):
        for k, value in node.items():
            k = str(k)
            if k not in _FREE_FORM:
                # A dict of figures (peak_tflops: {dtype: TFLOP/s}) passes its rule to its entries.
                _walk(value, f"{path}.{k}" if path else k, k, source, _rule(k) or rule)
    elif isinstance(node, list):
        for i, value in enumerate(node):  # curves and fit lists: finite; their entries' keys decide the rest
            _walk(value, f"{path}[{i}]", key, source, None)
    else:
        _check_value(f"{source}: {path}", key, node, rule)


def check_profile_dict(data: dict, source: str = "profile") -> None:
    """Raise a one-line UserError naming the first field out of range (or not a number)."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: not a JSON object")
    _walk(data, "", "", source, None)
