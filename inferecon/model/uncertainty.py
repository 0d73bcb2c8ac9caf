"""Uncertainty of every prediction: what each profile parameter may be, and the model run
under K draws of them.

A HardwareProfile carries, in its optional `uncertainty` field, one entry per uncertain
quantity (`Uncertain`): the fields of the profile it moves (dotted paths such as
"memory.efficiency" or "compute.gemm_fit.fp32.roofline.tflops"), its distribution and where
that distribution comes from. Published profiles state a range per assumed constant
(model/published.py); calibrated profiles carry each fitted term's held-out error
(calibration/build.py).

Propagation is vectorised like the frontier search: the configurations are tiled K times
and every drawn parameter becomes an array with one value per tiled configuration, so one
call of `terms.evaluate` prices all K draws of all configurations (tens of frontier points
× 200 draws is a few ten thousand configurations: milliseconds). Nothing here imports pandas
or scipy (`inferecon predict` uses it and must start fast).

Two kinds of entry:
- absolute (`relative=False`, one path): the draw is the field's value (e.g. HBM efficiency
  uniform on [0.70, 0.87]);
- relative (`relative=True`): the draw is a multiplier; a path written "1/path" is divided by
  it instead. Scaling a term's time by s is written as multiplying its latencies and dividing
  its rates, e.g. a GEMM fit's t0_us × s, tflops / s, gbps / s.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Real
from typing import Any

import numpy as np

from inferecon.core.errors import UserError
from inferecon.model.engine import PER_LAYER_US, PER_SEQUENCE_US, STEP_OVERHEAD_US, EngineParam, EngineProfile
from inferecon.model.terms import CostOptions, Layouts, evaluate
from inferecon.model.uncertain import Uncertain, _parts, _set, entries

DEFAULT_DRAWS = 200
DEFAULT_SEED = 0
LEVEL = 0.90  # central interval reported everywhere: 5th to 95th percentile
# What a band is reported for (evaluate's keys, seconds and $).
BAND_KEYS = ("tokens_per_s_per_seq", "usd_per_mtok", "t_step_s", "t_arithmetic_s", "t_memory_s",
             "t_network_s", "t_latency_s", "tokens_per_s_per_gpu")


def draw_parameters(items: list[Uncertain], k: int = DEFAULT_DRAWS, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(len(items), k) draws, seeded: the same profile and seed give the same band."""
    if k < 1:
        raise UserError(f"draws must be at least 1, got {k}")
    rng = np.random.default_rng(seed)
    return np.array([u.draw(k, rng) for u in items]).reshape(len(items), k)


def apply(hw, items: list[Uncertain], values) -> Any:
    """A new HardwareProfile with each entry's value (a scalar, or an array with one value per
    tiled configuration) put into its fields. The fields entries move are the ones the profile
    types `float | np.ndarray` (efficiencies, launch and step latencies, the network time
    scale) and the GEMM fit's figures (a dict). The result carries no uncertainty of its own
    (it is one draw)."""
    hw = dataclasses.replace(hw, uncertainty=[])
    for u, v in zip(items, values):
        for p in u.paths:
            if not u.relative:
                fn = lambda cur, v=v: v  # noqa: E731
            elif p.startswith("1/"):
                fn = lambda cur, v=v: cur / v  # noqa: E731
            else:
                fn = lambda cur, v=v: cur * v  # noqa: E731
            hw = _set(hw, _parts(p), fn)
    return hw


# -- engine profiles -------------------------------------------------------------------------------

def fitted_engine_params(engine) -> dict[EngineParam, tuple[float, float]]:
    """{parameter: (value, stderr)} of the fitted engine parameters that carry a standard error
    (calibration/engine_fit.py stores them in fit_quality["parameters"], by EngineParam.key)."""
    params = ((getattr(engine, "fit_quality", None) or {}).get("parameters") or {})
    out = {}
    for key, p in params.items():
        se = p.get("stderr") if isinstance(p, dict) else None
        if p.get("fitted") and isinstance(se, Real) and math.isfinite(se) and se > 0:
            out[EngineParam.from_key(key)] = (float(p["value"]), float(se))
    return out


def has_uncertainty(hw, engine=None) -> bool:
    """Whether anything in the profile (or the engine profile's fit) is said to be uncertain."""
    return bool(hw.uncertainty) or bool(engine is not None and fitted_engine_params(engine))


def draw_engine(engine: EngineProfile | None, draws: int, seed: int, rows: int) -> EngineProfile | None:
    """A new EngineProfile whose fitted parameters are drawn from normal(value, stderr) — the
    fit's covariance diagonal — as arrays of draws x `rows` values (each draw repeated over
    `rows` configurations); the engine itself when nothing in it carries a standard error.
    Overheads stay >= 0, efficiencies > 0."""
    params = fitted_engine_params(engine) if engine is not None else {}
    if not params:
        return engine
    rng = np.random.default_rng([seed, 1])  # its own stream: the profile's draws do not move
    drawn = engine
    # A fixed draw order (efficiencies, then the per-step, per-layer and per-sequence
    # overheads), so that a seed gives the same band.
    order = ([EngineParam.efficiency(b) for b in engine.weight_read_efficiency]
             + [EngineParam(STEP_OVERHEAD_US), EngineParam(PER_LAYER_US), EngineParam(PER_SEQUENCE_US)])
    for param in order:
        if param in params:
            v, se = params[param]
            low = 0.01 if param.is_efficiency else 0.0
            drawn = param.set_in(drawn, np.repeat(np.maximum(rng.normal(v, se, draws), low), rows))
    return drawn


# -- propagation -----------------------------------------------------------------------------------

def evaluate_draws(model, hw, lay: Layouts, context: int, *, draft=None, acceptance: float = 0.0,
                   opts: CostOptions = CostOptions(), engine=None, draws: int = DEFAULT_DRAWS,
                   seed: int = DEFAULT_SEED, keys=BAND_KEYS) -> dict[str, np.ndarray]:
    """Every configuration of `lay` under `draws` draws of the profile's uncertain parameters:
    {key: array (draws, configurations)}. A profile without uncertainty gives `draws`
    identical rows (a band of zero width: nothing was said to be uncertain). An engine profile
    fitted with standard errors has its parameters drawn too (`draw_engine`)."""
    items = entries(hw)
    values = draw_parameters(items, draws, seed)
    n = len(lay)
    out = {k: np.empty((draws, n)) for k in keys}
    gamma = lay.gamma
    # Speculative rows evaluate the draft on a subset of the rows; tiling a group that is all
    # speculative (or all not) keeps every per-configuration parameter array aligned.
    for rows in (np.flatnonzero(gamma == 0), np.flatnonzero(gamma > 0)):
        if rows.size == 0:
            continue
        tiled = lay.subset(np.tile(rows, draws))
        hw_k = apply(hw, items, [np.repeat(v, rows.size) for v in values])
        res = evaluate(model, hw_k, tiled, context, draft=draft if (gamma[rows] > 0).any() else None,
                       acceptance=acceptance, opts=opts, engine=draw_engine(engine, draws, seed, rows.size))
        for k in keys:
            v = np.asarray(getattr(res, k), dtype=float)
            out[k][:, rows] = np.broadcast_to(v, (draws * rows.size,)).reshape(draws, rows.size)
    return out


def quantiles(samples: np.ndarray, level: float = LEVEL):
    """(low, median, high) over the draws (axis 0): the central `level` interval."""
    tail = (1.0 - level) / 2.0
    lo, med, hi = np.quantile(samples, [tail, 0.5, 1.0 - tail], axis=0)
    return lo, med, hi


def pareto_probability(speed: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Share of draws (rows) in which each point (column) is Pareto-optimal among all the
    columns: no other point at least as fast and cheaper, or as cheap and faster."""
    from inferecon.model.frontier import pareto_mask

    hits = np.zeros(speed.shape[1])
    for s, c in zip(speed, cost):
        hits += pareto_mask(s, c)
    return hits / speed.shape[0]


def layouts_of(front) -> Layouts:
    """Layouts of frontier rows (a DataFrame with tp_r, tp_c, pp, ep, batch, gamma)."""
    pp, ep = front["pp"].to_numpy(), front["ep"].to_numpy()
    return Layouts(tp_r=front["tp_r"].to_numpy(), tp_c=front["tp_c"].to_numpy(), pp=pp, ep=ep,
                   micro_batch=front["batch"].to_numpy() // (pp * ep), gamma=front["gamma"].to_numpy())


def concat_layouts(a: Layouts, b: Layouts | None) -> Layouts:
    if b is None or len(b) == 0:
        return a
    return Layouts(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in
                     ("tp_r", "tp_c", "pp", "ep", "micro_batch", "gamma")))


def frontier_band(model, hw, front, context: int, near: Layouts | None = None, *, draft=None,
                  acceptance: float = 0.0, draws: int = DEFAULT_DRAWS, seed: int = DEFAULT_SEED,
                  level: float = LEVEL, engine=None) -> dict[str, np.ndarray]:
    """Columns for the frontier rows: <key>_lo / <key>_median / <key>_hi of speed, cost and
    each term, and p_pareto, the share of draws in which the point stays Pareto-optimal among
    the frontier and its near neighbours (`near`, from frontier.search_near)."""
    lay = concat_layouts(layouts_of(front), near)
    res = evaluate_draws(model, hw, lay, context, draft=draft, acceptance=acceptance, draws=draws, seed=seed,
                         engine=engine)
    m = len(front)
    cols = {}
    for k, v in res.items():
        lo, med, hi = quantiles(v[:, :m], level)
        cols[f"{k}_lo"], cols[f"{k}_median"], cols[f"{k}_hi"] = lo, med, hi
    cols["p_pareto"] = pareto_probability(res["tokens_per_s_per_seq"], res["usd_per_mtok"])[:m]
    return cols


def overlaps_neighbour(speed_lo, speed_hi, cost_lo, cost_hi) -> np.ndarray:
    """True where a frontier point's 90% box (speed × cost) overlaps the box of the point
    before or after it (rows in frontier order): the two cannot be told apart."""
    n = len(speed_lo)
    out = np.zeros(n, dtype=bool)
    for i in range(n - 1):
        j = i + 1
        hit = (speed_lo[i] <= speed_hi[j] and speed_lo[j] <= speed_hi[i]
               and cost_lo[i] <= cost_hi[j] and cost_lo[j] <= cost_hi[i])
        if hit:
            out[i] = out[j] = True
    return out
