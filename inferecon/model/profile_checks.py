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
MIN_PRICE_USD_PER_HOUR = 0.001
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


# Physical bounds by unit suffix: beyond them a figure is a typo or a unit slip, and the model
# would print it as a speed (a β of 1e-300 GB/s gives 2.6e300 ms per step; a launch of 1e308 µs
# overflows to a ZeroDivisionError). Generous: 1 MB/s to 100 TB/s covers gloo over Ethernet to
# HBM a decade from now; 10 s covers any collective's latency; 100 PFLOP/s per GPU, 100 TB of
# memory per GPU. The FLOP/s floor is 1 MFLOP/s, not 1 GFLOP/s: a 2-core AVX2 CPU timed bf16 GEMMs
# through torch's scalar fallback at 0.38 GFLOP/s (tests/fixtures/engines/vllm_real/profile.json),
# a real measurement that a profile must be able to hold.
_BOUNDS = {"_gbps": (1e-3, 1e5), "_us": (0.0, 1e7), "_tflops": (1e-6, 1e5), "_gb": (1e-3, 1e5)}
# Shares of a peak: an efficiency above 1 is more than the datasheet allows (t_memory 0.035 ms
# instead of 3.5 for a typo'd 75 -> 0.75 ... 75.0); a fraction is 0 (disabled) to 1.
_SHARES = {"efficiency": (0.0, 1.0, True), "bandwidth_fraction": (0.0, 1.0, True),
           "net_bandwidth_fraction": (0.0, 1.0, False)}
_TIME_SCALE_MAX = 100.0
COLLECTIVE_MODELS = ("nccl", "paper")  # model/network.py
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv", "broadcast")
SCOPES = ("intra", "inter")  # model/hardware.py INTRA, INTER
MODES = ("eager", "graph")
_COLLECTIVE_KEYS = {"collective", "world_size", "scope", "alpha_us", "beta_gbps", "alpha_stderr_us",
                    "beta_stderr_gbps", "heldout_mape", "mode", "min_bytes", "max_bytes"}


def _bounds(key: str, value: float, where: str) -> None:
    if "stderr" in key or "mape" in key:
        return
    for suffix, (lo, hi) in _BOUNDS.items():
        if key.endswith(suffix) and not lo <= value <= hi:
            unit = {"_gbps": "GB/s", "_us": "µs", "_tflops": "TFLOP/s", "_gb": "GB"}[suffix]
            raise UserError(f"{where} {value:g} {unit} is outside the physical range [{lo:g}, {hi:g}] {unit}")
    if key in _SHARES:
        lo, hi, lo_open = _SHARES[key]
        if value > hi or (value <= lo if lo_open else value < lo):
            raise UserError(f"{where} {value:g} must be a share of the peak in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
                            " (an efficiency above 1 is faster than the datasheet)")
    if key == "time_scale" and value > _TIME_SCALE_MAX:
        raise UserError(f"{where} {value:g} is above {_TIME_SCALE_MAX:g}: a saved profile has 1")


def _choice(where: str, value, choices) -> None:
    if value is not None and value not in choices:
        from inferecon.core.errors import suggest

        hint = suggest(str(value), list(choices)) if isinstance(value, str) else ""
        raise UserError(f"{where} {value!r} is not one of {', '.join(choices)}{hint}")


def _check_schema(data: dict, source: str) -> None:
    """Names the cost model matches on: a typo there would silently drop a fitted line."""
    net = data.get("network")
    if net is None:
        return
    if not isinstance(net, dict):
        raise UserError(f"{source}: network must be an object")
    _choice(f"{source}: network.collective_model", net.get("collective_model"), COLLECTIVE_MODELS)
    for key in ("collectives", "decode_collectives"):
        _check_fits(net.get(key) or [], f"{source}: network.{key}")


def _check_fits(fits, where_list: str) -> None:
    if not isinstance(fits, list):
        raise UserError(f"{where_list} must be a list")
    for i, c in enumerate(fits):
        where = f"{where_list}[{i}]"
        if not isinstance(c, dict):
            raise UserError(f"{where} must be an object")
        unknown = sorted(set(map(str, c)) - _COLLECTIVE_KEYS)
        if unknown:
            from inferecon.core.errors import suggest

            raise UserError(f"{where}: unknown field {unknown[0]!r}{suggest(unknown[0], sorted(_COLLECTIVE_KEYS))}")
        _choice(f"{where}.collective", c.get("collective"), COLLECTIVES)
        _choice(f"{where}.scope", c.get("scope"), SCOPES)
        _choice(f"{where}.mode", c.get("mode"), MODES)
        ws = c.get("world_size")
        if _is_number(ws) and not 1 <= ws <= 65_536:
            raise UserError(f"{where}.world_size {ws:g} is outside [1, 65,536]")


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
    if key == "price_usd_per_gpu_hour" and value < MIN_PRICE_USD_PER_HOUR:
        raise UserError(f"{where} ${value:g}/GPU-hour is below ${MIN_PRICE_USD_PER_HOUR:g}: every cost would print as $0.00")
    _bounds(key, value, where)


def _numbers_pass(values: list, key: str) -> bool:
    """Whether a list of plain numbers (None: absent) passes what _check_value asks of each entry
    (finite, inside the key's unit bounds), checked at once: an op-DB profile's measured grids hold
    tens of thousands. False sends the list the slow way, which names the first failing entry."""
    present = [v for v in values if v is not None]
    if key in _INTEGRAL or key == "price_usd_per_gpu_hour" or not all(type(v) in (int, float) for v in present):
        return False
    if not present:
        return True
    try:
        if not math.isfinite(math.fsum(present)):  # finite only if every entry is
            return False
        _bounds(key, min(present), "")
        _bounds(key, max(present), "")
    except (UserError, OverflowError):
        return False
    return True


def _walk(node, path: str, key: str, source: str, rule: str | None) -> None:
    if isinstance(node, dict):
        for k, value in node.items():
            k = str(k)
            if k not in _FREE_FORM:
                # A dict of figures (peak_tflops: {dtype: TFLOP/s}) passes its rule to its entries.
                # Its entries are checked in its unit (peak_tflops.bf16 in TFLOP/s).
                unit_key = k if _rule(k) or rule is None else key
                _walk(value, f"{path}.{k}" if path else k, unit_key, source, _rule(k) or rule)
    elif isinstance(node, list):
        if _numbers_pass(node, key):  # a curve or grid row: nothing to name, no walk one by one
            return
        for i, value in enumerate(node):  # curves and fit lists: finite; their entries' keys decide the rest
            _walk(value, f"{path}[{i}]", key, source, None)
    else:
        _check_value(f"{source}: {path}", key, node, rule)


def check_profile_dict(data: dict, source: str = "profile") -> None:
    """Raise a one-line UserError naming the first field out of range (or not a number)."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: not a JSON object")
    _walk(data, "", "", source, None)
    _check_schema(data, source)
