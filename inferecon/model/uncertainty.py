"""Uncertainty of every prediction: what each profile parameter may be, and the model run
under K draws of them.

A HardwareProfile carries, in its optional `uncertainty` field, one entry per uncertain
quantity (`Uncertain`): the fields of the profile it moves (dotted paths such as
"memory.efficiency" or "compute.gemm_fit.fp32.roofline.tflops"), its distribution and where
that distribution comes from. Published profiles state a range per assumed constant
(calibration/published.py); calibrated profiles carry each fitted term's held-out error
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
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from inferecon.errors import UserError
from inferecon.model.terms import CostOptions, Layouts, evaluate

DEFAULT_DRAWS = 200
DEFAULT_SEED = 0
LEVEL = 0.90  # central interval reported everywhere: 5th to 95th percentile
DISTRIBUTIONS = ("uniform", "normal", "lognormal", "samples")
# What a band is reported for (evaluate's keys, seconds and $).
BAND_KEYS = ("tokens_per_s_per_seq", "usd_per_mtok", "t_step_s", "t_arithmetic_s", "t_memory_s",
             "t_network_s", "t_latency_s", "tokens_per_s_per_gpu")
# A normal's MAPE is sd · sqrt(2/π): a held-out MAPE m is a relative sd of m · sqrt(π/2).
MAPE_TO_SD = math.sqrt(math.pi / 2.0)


@dataclass(frozen=True)
class Uncertain:
    """One uncertain quantity of a profile and its distribution.

    dist "uniform": low..high; "normal": mean, sd (truncated at > 0 for positive fields);
    "lognormal": median · exp(N(0, sigma)); "samples": draws taken from `samples` (e.g. a
    bootstrap distribution), with replacement."""

    name: str
    paths: tuple[str, ...]
    dist: str
    source: str
    relative: bool = False
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    sd: float | None = None
    median: float | None = None
    sigma: float | None = None
    samples: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        d["paths"] = list(self.paths)
        if self.samples is not None:
            d["samples"] = list(self.samples)
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str = "uncertainty") -> "Uncertain":
        if not isinstance(data, dict):
            raise UserError(f"{where}: must be an object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"{where}: unknown field {unknown[0]!r}")
        for key in ("name", "paths", "dist", "source"):
            if key not in data:
                raise UserError(f"{where}: missing field {key!r}")
        paths = data["paths"]
        if isinstance(paths, str) or not isinstance(paths, list) or not paths or \
                not all(isinstance(p, str) and p for p in paths):
            raise UserError(f"{where}.paths: must be a non-empty list of field paths")
        values = dict(data, paths=tuple(paths))
        if data.get("samples") is not None:
            if not isinstance(data["samples"], list):
                raise UserError(f"{where}.samples: must be a list of numbers")
            values["samples"] = tuple(data["samples"])
        u = cls(**values)
        u.check(where)
        return u

    def check(self, where: str = "uncertainty") -> None:
        """One-line errors for a distribution that cannot be drawn from."""
        if self.dist not in DISTRIBUTIONS:
            raise UserError(f"{where}: dist {self.dist!r} is not one of {', '.join(DISTRIBUTIONS)}")
        need = {"uniform": ("low", "high"), "normal": ("mean", "sd"), "lognormal": ("median", "sigma"),
                "samples": ()}[self.dist]
        for key in need:
            v = getattr(self, key)
            if not (isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)):
                raise UserError(f"{where}: {self.dist} needs a finite number {key!r}, got {v!r}")
        if self.dist == "uniform" and not self.low <= self.high:
            raise UserError(f"{where}: uniform low {self.low:g} is above high {self.high:g}")
        if self.dist == "normal" and self.sd < 0:
            raise UserError(f"{where}: normal sd must not be negative, got {self.sd:g}")
        if self.dist == "lognormal" and (self.sigma < 0 or self.median <= 0):
            raise UserError(f"{where}: lognormal needs median > 0 and sigma >= 0")
        if self.dist == "samples":
            s = self.samples or ()
            if not s or not all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in s):
                raise UserError(f"{where}: samples must be a non-empty list of finite numbers")
        # Every field an entry may move is a rate, a latency, a fraction or a multiplier: none
        # is negative, and a multiplier of zero would divide a rate by zero.
        lowest = {"uniform": self.low, "samples": min(self.samples or (1.0,)), "normal": self.mean,
                  "lognormal": self.median}[self.dist]
        if lowest < 0 or (self.relative and lowest <= 0):
            raise UserError(f"{where}: draws must be {'positive' if self.relative else 'non-negative'} "
                            f"(lowest {lowest:g})")
        if not self.relative and len(self.paths) != 1:
            raise UserError(f"{where}: an absolute entry sets one field; use relative=true to move several")
        if not self.relative and any(p.startswith("1/") for p in self.paths):
            raise UserError(f"{where}: '1/' paths need relative=true")

    def describe(self) -> str:
        """One line: what moves, its 90% range, and where the range comes from."""
        z = 1.6449  # the normal's 95th percentile
        if self.dist == "uniform":
            span = f"{self.low:g}-{self.high:g} (uniform)"
        elif self.dist == "normal":
            span = f"{self.mean - z * self.sd:.3g}-{self.mean + z * self.sd:.3g} (normal, 90%)"
        elif self.dist == "lognormal":
            span = (f"{self.median * math.exp(-z * self.sigma):.3g}-{self.median * math.exp(z * self.sigma):.3g} "
                    f"(lognormal, 90%)")
        else:
            lo, hi = np.quantile(np.asarray(self.samples, float), [0.05, 0.95])
            span = f"{lo:.3g}-{hi:.3g} ({len(self.samples)} samples, 90%)"
        what = "x time" if self.relative else self.paths[0]
        return f"{self.name}: {what} {span}; {self.source}"

    def draw(self, k: int, rng: np.random.Generator) -> np.ndarray:
        if self.dist == "uniform":
            v = rng.uniform(self.low, self.high, k)
        elif self.dist == "normal":
            v = rng.normal(self.mean, self.sd, k)
        elif self.dist == "lognormal":
            v = self.median * np.exp(rng.normal(0.0, self.sigma, k))
        else:
            v = rng.choice(np.asarray(self.samples, dtype=float), size=k, replace=True)
        # A multiplier or a physical rate/latency is positive: a normal's far tail is cut at
        # 1% of its centre rather than giving a negative bandwidth.
        floor = 0.01 * abs(self.mean if self.dist == "normal" else 1.0)
        return np.maximum(v, floor) if (self.relative or self.dist == "normal") else v


def relative_sd_entry(name: str, paths: tuple[str, ...], rel_sd: float, source: str) -> Uncertain:
    """A time multiplier with median 1 and relative spread `rel_sd` (lognormal: never negative,
    and a 100% error reads as "× or ÷ 2", not "could be zero")."""
    return Uncertain(name=name, paths=tuple(paths), dist="lognormal", relative=True, median=1.0,
                     sigma=float(math.log1p(max(0.0, rel_sd))), source=source)


# -- paths into a profile ------------------------------------------------------------------------

def _parts(path: str) -> list[str]:
    return path.removeprefix("1/").split(".")


def get_value(hw, path: str):
    obj = hw
    for part in _parts(path):
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            if part not in {f.name for f in dataclasses.fields(obj)}:
                raise UserError(f"uncertainty path {path!r}: no field {part!r}")
            obj = getattr(obj, part)
        elif isinstance(obj, dict):
            if part not in obj:
                raise UserError(f"uncertainty path {path!r}: no field {part!r}")
            obj = obj[part]
        else:
            raise UserError(f"uncertainty path {path!r}: {part!r} is below a number")
    return obj


def _set(obj, parts, fn):
    head, rest = parts[0], parts[1:]
    if dataclasses.is_dataclass(obj):
        cur = getattr(obj, head)
        return dataclasses.replace(obj, **{head: fn(cur) if not rest else _set(cur, rest, fn)})
    new = dict(obj)
    new[head] = fn(obj[head]) if not rest else _set(obj[head], rest, fn)
    return new


def entries(hw) -> list[Uncertain]:
    """The profile's uncertain quantities, each checked against the profile: every path names
    a numeric field (a profile file that does not is refused in one line)."""
    out = []
    for i, data in enumerate(getattr(hw, "uncertainty", None) or []):
        u = data if isinstance(data, Uncertain) else Uncertain.from_dict(data, f"uncertainty[{i}]")
        for p in u.paths:
            v = get_value(hw, p)
            if not (isinstance(v, Real) and not isinstance(v, bool)):
                raise UserError(f"uncertainty[{i}] ({u.name}): path {p!r} is not a number (got {v!r})")
        out.append(u)
    return out


def draw_parameters(items: list[Uncertain], k: int = DEFAULT_DRAWS, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(len(items), k) draws, seeded: the same profile and seed give the same band."""
    if k < 1:
        raise UserError(f"draws must be at least 1, got {k}")
    rng = np.random.default_rng(seed)
    return np.array([u.draw(k, rng) for u in items]).reshape(len(items), k)


def apply(hw, items: list[Uncertain], values) -> Any:
    """The profile with each entry's value (a scalar, or an array with one value per tiled
    configuration) put into its fields. The result carries no uncertainty of its own (it is
    one draw, and its fields may now be arrays)."""
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

class DrawnEngine:
    """An engine profile whose overheads and weight-read efficiencies are arrays, one value per
    tiled configuration (the cost model reads only these three things from an engine)."""

    def __init__(self, name: str, step_overhead_us, per_layer_us, weight_read_efficiency: dict):
        self.name = name
        self.step_overhead_us = step_overhead_us
        self.per_layer_us = per_layer_us
        self.weight_read_efficiency = weight_read_efficiency

    def weight_efficiency(self, weight_bits: int):
        return self.weight_read_efficiency.get(str(int(weight_bits)), 1.0)


def _engine_params(engine) -> dict[str, tuple[float, float]]:
    """{parameter: (value, stderr)} of the fitted engine parameters that carry a standard error
    (calibration/engine_fit.py stores them in fit_quality["parameters"])."""
    params = ((getattr(engine, "fit_quality", None) or {}).get("parameters") or {})
    out = {}
    for name, p in params.items():
        se = p.get("stderr") if isinstance(p, dict) else None
        if p.get("fitted") and isinstance(se, Real) and math.isfinite(se) and se > 0:
            out[name] = (float(p["value"]), float(se))
    return out


def has_uncertainty(hw, engine=None) -> bool:
    """Whether anything in the profile (or the engine profile's fit) is said to be uncertain."""
    return bool(hw.uncertainty) or bool(engine is not None and _engine_params(engine))


def draw_engine(engine, draws: int, seed: int, rows: int):
    """The engine with each fitted parameter drawn from normal(value, stderr) — the fit's
    covariance diagonal — repeated over `rows` configurations per draw; the engine itself
    when nothing in it carries a standard error. Overheads stay >= 0, efficiencies > 0."""
    params = _engine_params(engine) if engine is not None else {}
    if not params:
        return engine
    rng = np.random.default_rng([seed, 1])  # its own stream: the profile's draws do not move

    def drawn(name, value, low):
        if name not in params:
            return value
        v, se = params[name]
        return np.repeat(np.maximum(rng.normal(v, se, draws), low), rows)

    eff = {bits: drawn(f"weight_read_efficiency[{bits}]", e, 0.01) for bits, e in engine.weight_read_efficiency.items()}
    return DrawnEngine(engine.name, drawn("step_overhead_us", engine.step_overhead_us, 0.0),
                       drawn("per_layer_us", engine.per_layer_us, 0.0), eff)


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
            out[k][:, rows] = np.broadcast_to(np.asarray(res[k], dtype=float), (draws * rows.size,)).reshape(draws, rows.size)
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
