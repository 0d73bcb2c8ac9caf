"""Time of a GEMM y[M,N] = x[M,K] · W[N,K]^T from a calibrated, shape-dependent fit.

Calibration (calibration/fit_compute.py) measures decode-shaped GEMMs and stores, per dtype,
one of two forms in `HardwareProfile.compute.gemm_fit` — whichever predicted held-out shapes
better on that node:

- "roofline": t = t0 + max(2MNK / F, bytes / B), bytes = (NK + MK + MN) · element size;
  F, B, t0 fitted. Three numbers that extrapolate sensibly to unmeasured shapes.
- "additive": t = t0 + 2MNK / F + bytes / B — the same three numbers, for processors that
  do not overlap loading W with multiplying (CPUs, small GEMMs with one wave of blocks);
- "interp": measured efficiency against that roofline bound, interpolated linearly in
  (log M, log NK) between measured shapes (nearest measured shape outside their hull). It
  follows kernel-selection steps a line cannot, but extrapolates flat.

This module only evaluates the stored fit; it never fits (the model does not depend on the
calibration code) and never imports torch.
"""

from __future__ import annotations

import numpy as np

ELEMENT_BYTES = {"fp8": 1.0, "bf16": 2.0, "fp16": 2.0, "tf32": 4.0, "fp32": 4.0}


def roofline_us(params: dict, m, n, k, elem_bytes: float, additive: bool = False):
    m, n, k = (np.asarray(a, dtype=float) for a in (m, n, k))
    flop_us = 2.0 * m * n * k / (params["tflops"] * 1e6)
    bytes_us = (n * k + m * k + m * n) * elem_bytes / (params["gbps"] * 1e3)
    if additive:
        return params["t0_us"] + flop_us + bytes_us
    return params["t0_us"] + np.maximum(flop_us, bytes_us)


def gemm_time_s(gemm_fit: dict, dtype: str, m, n, k):
    """Seconds per GEMM for arrays of shapes, or None when the fit has no entry for `dtype`."""
    entry = (gemm_fit or {}).get(dtype)
    if entry is None:
        return None
    elem = ELEMENT_BYTES.get(dtype, 2.0)
    m, n, k = np.broadcast_arrays(*(np.maximum(np.asarray(a, dtype=float), 1.0) for a in (m, n, k)))
    if entry["form"] == "additive":
        return roofline_us(entry["additive"], m, n, k, elem, additive=True) * 1e-6
    base = roofline_us(entry["roofline"], m, n, k, elem)
    if entry["form"] == "roofline":
        return base * 1e-6
    pts = np.asarray(entry["interp"]["log_m_log_nk"], dtype=float)
    eff = np.asarray(entry["interp"]["efficiency"], dtype=float)
    q = np.column_stack([np.log(m).ravel(), np.log(n * k).ravel()])
    e = _interp2(pts, eff, q).reshape(m.shape)
    # Efficiency relative to the fitted roofline; the interpolant only reshapes it by shape.
    return base / np.clip(e, 1e-3, None) * 1e-6


def _interp2(points, values, query):
    from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

    near = NearestNDInterpolator(points, values)
    if len(points) >= 3 and np.linalg.matrix_rank(points - points.mean(axis=0)) == 2:
        lin = LinearNDInterpolator(points, values)(query)
        return np.where(np.isfinite(lin), lin, near(query))
    return near(query)
