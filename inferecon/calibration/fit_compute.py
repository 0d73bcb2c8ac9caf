"""Arithmetic term: achieved GEMM throughput as a function of shape and dtype.

Decode GEMMs are skinny (M = tokens in flight, N and K in the thousands) and memory-bound up
to M of a few hundred on an H100, so one utilisation percentage cannot describe them. Two
candidate forms are fitted to every dtype's measured shapes (model/gemm.py evaluates them):

- a roofline with fitted compute rate F, weight-streaming rate B and fixed overhead t0;
- the same three numbers added instead of overlapped (CPUs do not hide loads behind FMAs);
- the measured efficiency against that roofline, interpolated between measured shapes.

The form kept is the one with the lower k-fold held-out error on the measured shapes: the
roofline wins when kernels behave like the bound (few parameters, extrapolates), the
interpolation wins when kernel selection makes steps a line cannot follow. Both errors are
stored, so the choice can be audited.
"""

from __future__ import annotations

import numpy as np

from inferecon.calibration.fit import FitResult, fit_relative, kfold_heldout_mape, mape, usable
from inferecon.model.gemm import ELEMENT_BYTES, gemm_time_s, roofline_us

NAMES = ["tflops", "gbps", "t0_us"]


def _roofline(elem, additive=False):
    def f(p, x):
        m, n, k = x
        return roofline_us(dict(zip(NAMES, p)), m, n, k, elem, additive=additive)

    return f


def _fit_roofline(x, y, elem, additive=False):
    m, n, k = x
    flop_rate = float(np.max(2 * m * n * k / y)) / 1e6  # TFLOP/s of the best case
    byte_rate = float(np.max((n * k + m * k + m * n) * elem / y)) / 1e3  # GB/s of the best case
    p0 = np.array([flop_rate, byte_rate, float(np.min(y)) * 0.05])
    return fit_relative(_roofline(elem, additive), x, y, p0, NAMES, lower=[1e-9, 1e-6, 0.0])


def _entry(x, y, elem, form):
    """The stored fit of one dtype: both parameter sets and the interpolation table, with
    `form` saying which one predicts."""
    roof, _, _, _ = _fit_roofline(x, y, elem)
    add, _, _, _ = _fit_roofline(x, y, elem, additive=True)
    roof = dict(zip(NAMES, map(float, roof)))
    m, n, k = x
    eff = roofline_us(roof, m, n, k, elem) / y
    return {"form": form, "roofline": roof, "additive": dict(zip(NAMES, map(float, add))),
            "interp": {"log_m_log_nk": np.column_stack([np.log(m), np.log(n * k)]).tolist(),
                       "efficiency": eff.tolist()}}


def fit_gemm(matmul_df) -> tuple[dict, dict[str, FitResult], dict[str, float]]:
    """(gemm_fit for the profile, {dtype: FitResult}, {dtype: best square TFLOP/s})."""
    df = usable(matmul_df)
    fits, results, peaks = {}, {}, {}
    if df is None or len(df) == 0:
        return fits, results, peaks
    for dtype, g in df.groupby("dtype"):
        square = g[g["shape_kind"] == "square"]
        if len(square):
            peaks[dtype] = float(square["tflops"].max())
        if len(g) < 3:
            continue
        elem = ELEMENT_BYTES.get(dtype, 2.0)
        x = tuple(g[c].to_numpy(float) for c in ("m", "n", "k"))
        y = g["median_us"].to_numpy(float)
        def predict(form, train, test):
            sub = tuple(a[train] for a in x)
            entry = _entry(sub, y[train], elem, form)
            return gemm_time_s({dtype: entry}, dtype, *(a[test] for a in x)) * 1e6

        forms = ("roofline", "additive", "interp")
        held = {form: kfold_heldout_mape(lambda tr, te, f=form: predict(f, tr, te), len(y), y) for form in forms}
        scored = {f: v for f, v in held.items() if v is not None}
        form = min(scored, key=scored.get) if scored else "roofline"
        params, err, ok, msg = _fit_roofline(x, y, elem, additive=form == "additive")
        entry = _entry(x, y, elem, form)
        train = mape(gemm_time_s({dtype: entry}, dtype, *x) * 1e6, y)
        fits[dtype] = entry
        results[dtype] = FitResult(
            f"arithmetic:{dtype}", form, dict(zip(NAMES, map(float, params))), err, train,
            held.get(form), len(y), converged=ok, message=msg,
            extra={"heldout_mape_by_form": held})
    return fits, results, peaks
