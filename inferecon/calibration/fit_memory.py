"""Memory term: sustained HBM (or DRAM) read bandwidth, and the read-bandwidth curve over
transfer size.

Form: t(bytes) = t0 + bytes / B, fitted on the reads large enough to stream from memory
rather than cache (at least 4x the L2 / last-level cache where it is known, else the upper
half of the sizes). B is what decode weight and KV reads achieve; t0 absorbs launch and ramp.
Below that size the curve is kept as measured points (cache effects are not a line)."""

from __future__ import annotations

import numpy as np

from inferecon.calibration.fit import FitResult, fit_relative, kfold_heldout_mape, mape, usable


def _line(p, x):
    t0_us, gbps = p
    return t0_us + x / (gbps * 1e3)  # bytes / (GB/s) -> µs: bytes / (gbps * 1e9) * 1e6


def fit_read_bandwidth(memory_df, cache_bytes: float | None = None) -> FitResult | None:
    df = usable(memory_df)
    if df is None or len(df) == 0:
        return None
    reads = df[df["op"] == "read"].sort_values("bytes")
    form_note = ""
    if len(reads) == 0:
        # Ingested nvbandwidth has only copies: copy bandwidth (read + write bytes) is a few
        # percent under pure reads on HBM, a conservative stand-in that says so.
        reads = df[df["op"] == "copy"].sort_values("bytes")
        form_note = " (copies: no read-only measurement)"
    if len(reads) == 0:
        return None
    sizes = reads["bytes_moved"].to_numpy(float)
    times = reads["median_us"].to_numpy(float)
    if cache_bytes:
        stream = sizes >= 4 * cache_bytes
    else:
        stream = sizes >= np.median(sizes)
    if stream.sum() < 2:
        stream = sizes >= sizes[-min(2, len(sizes))]
    x, y = sizes[stream], times[stream]
    curve = [[float(b), float(g)] for b, g in zip(reads["bytes_moved"], reads["gbps"])]
    if len(np.unique(x)) < 2:
        # One streaming size: bandwidth is its median, no line to fit, no held-out score.
        gbps = float(np.median(x / y) / 1e3)
        return FitResult("memory", "single-point" + form_note, {"t0_us": 0.0, "gbps": gbps}, {"t0_us": float("nan"), "gbps": float("nan")},
                         0.0, None, len(x), extra={"curve": curve})
    p0 = np.array([max(1e-3, float(y.min()) * 0.1), float(x.max() / y.max() / 1e3)])
    names = ["t0_us", "gbps"]
    params, err, ok, msg = fit_relative(_line, x, y, p0, names, lower=[0.0, 1e-6])

    def fit_predict(train, test):
        p, _, _, _ = fit_relative(_line, x[train], y[train], p0, names, lower=[0.0, 1e-6])
        return _line(p, x[test])

    held = kfold_heldout_mape(fit_predict, len(x), y)
    return FitResult("memory", "t0 + bytes/B on streaming reads" + form_note, dict(zip(names, map(float, params))), err,
                     mape(_line(params, x), y), held, len(x), converged=ok, message=msg,
                     extra={"curve": curve, "stream_min_bytes": float(x.min())})
