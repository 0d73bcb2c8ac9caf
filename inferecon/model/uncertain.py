"""What each uncertain profile parameter may be: the `Uncertain` entry type, its checks, and
the dotted field paths it moves.

This is data of the profile (hardware.py reads and checks it); drawing from the entries and
running the cost model under the draws is uncertainty.py's job, which imports this module and
the cost terms — so the profile never depends on the cost model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from inferecon.core.errors import UserError

DISTRIBUTIONS = ("uniform", "normal", "lognormal", "samples")
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
        elif isinstance(obj, (list, tuple)) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]  # a list of fits (op_fits.gemm.0.tflops)
        else:
            raise UserError(f"uncertainty path {path!r}: {part!r} is below a number")
    return obj


def _set(obj, parts, fn):
    head, rest = parts[0], parts[1:]
    if dataclasses.is_dataclass(obj):
        cur = getattr(obj, head)
        return dataclasses.replace(obj, **{head: fn(cur) if not rest else _set(cur, rest, fn)})
    if isinstance(obj, (list, tuple)):
        new = list(obj)
        i = int(head)
        new[i] = fn(obj[i]) if not rest else _set(obj[i], rest, fn)
        return new
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
