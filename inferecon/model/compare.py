"""Where two frontiers of the same model differ (published vs calibrated specs, or a node's
profile before and after an upgrade), and which cost term moved."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from inferecon.model.hardware import HardwareProfile
from inferecon.model.spec import ModelSpec
from inferecon.model.terms import Layouts, evaluate

# Memory and arithmetic overlap, and a calibrated profile splits them differently (its GEMM
# fit includes the weight reads), so they are compared as one: the step's compute part.
GROUPS = ("compute", "network", "latency")


def _groups(res) -> dict[str, float]:
    net, lat = float(res.t_network_s[0]), float(res.t_latency_s[0])
    return {"compute": float(res.t_step_s[0]) - net - lat, "network": net, "latency": lat}


@dataclass
class FrontierDelta:
    max_speed_a: float
    max_speed_b: float
    min_cost_a: float
    min_cost_b: float
    # Cost of the cheapest point reaching each speed, on both frontiers: (speed, cost_a, cost_b).
    cost_at_speed: list[tuple[float, float, float]]
    # Step time of A's fastest configuration under each profile, by part (GROUPS), seconds.
    terms_a: dict[str, float]
    terms_b: dict[str, float]

    @property
    def max_speed_change(self) -> float:
        return self.max_speed_b / self.max_speed_a - 1

    @property
    def moved_term(self) -> str:
        """The part of the step (compute, network, latency) whose time changed most, in
        seconds, for the same configuration."""
        return max(GROUPS, key=lambda t: abs(self.terms_b[t] - self.terms_a[t]))

    def lines(self, label_a: str, label_b: str) -> list[str]:
        out = [f"max speed: {self.max_speed_a:.1f} tok/s ({label_a}) -> {self.max_speed_b:.1f} tok/s ({label_b}), "
               f"{100 * self.max_speed_change:+.1f}%",
               f"min cost: ${self.min_cost_a:.3f} -> ${self.min_cost_b:.3f} per M tokens, "
               f"{100 * (self.min_cost_b / self.min_cost_a - 1):+.1f}%"]
        for speed, ca, cb in self.cost_at_speed:
            out.append(f"cost at {speed:.0f} tok/s: ${ca:.3f} -> ${cb:.3f} ({100 * (cb / ca - 1):+.1f}%)")
        terms = ", ".join(f"{t} {1e3 * self.terms_a[t]:.3f} -> {1e3 * self.terms_b[t]:.3f} ms" for t in GROUPS)
        out.append(f"same configuration ({label_a}'s fastest), per step: {terms}; moved most: {self.moved_term}")
        return out


def _cheapest_at(front: pd.DataFrame, speed: float) -> float:
    ok = front["tokens_per_s_per_seq"] >= speed
    return float(front.loc[ok, "usd_per_mtok"].min()) if ok.any() else float("nan")


def compare(model: ModelSpec, a: HardwareProfile, b: HardwareProfile, front_a: pd.DataFrame,
            front_b: pd.DataFrame, context: int, draft=None, acceptance: float = 0.0) -> FrontierDelta:
    top = min(front_a["tokens_per_s_per_seq"].max(), front_b["tokens_per_s_per_seq"].max())
    low = max(front_a["tokens_per_s_per_seq"].min(), front_b["tokens_per_s_per_seq"].min())
    speeds = np.geomspace(low, top, 3) if top > low else np.array([top])
    fastest = front_a.iloc[0]
    lay = Layouts(tp_r=[fastest["tp_r"]], tp_c=[fastest["tp_c"]], pp=[fastest["pp"]], ep=[fastest["ep"]],
                  micro_batch=[fastest["batch"] // (fastest["pp"] * fastest["ep"])], gamma=[fastest["gamma"]])
    ra = evaluate(model, a, lay, context, draft=draft, acceptance=acceptance)
    rb = evaluate(model, b, lay, context, draft=draft, acceptance=acceptance)
    return FrontierDelta(
        max_speed_a=float(front_a["tokens_per_s_per_seq"].max()),
        max_speed_b=float(front_b["tokens_per_s_per_seq"].max()),
        min_cost_a=float(front_a["usd_per_mtok"].min()),
        min_cost_b=float(front_b["usd_per_mtok"].min()),
        cost_at_speed=[(float(s), _cheapest_at(front_a, s), _cheapest_at(front_b, s)) for s in speeds],
        terms_a=_groups(ra),
        terms_b=_groups(rb),
    )


def _verdict(a: tuple[float, float], b: tuple[float, float]) -> str:
    if a[1] < b[0] or b[1] < a[0]:
        return "differ beyond the bands (the 90% intervals do not overlap)"
    return "within the bands (the 90% intervals overlap: not a measurable difference)"


def band_lines(front_a: pd.DataFrame, front_b: pd.DataFrame, label_a: str, label_b: str) -> list[str]:
    """Whether two frontiers with bands (speed_lo/hi, usd_per_mtok_lo/hi columns) differ beyond
    their uncertainty, at the fastest point and at the cheapest point of each."""
    if "speed_lo" not in front_a or "speed_lo" not in front_b:
        return []
    fa = front_a.loc[front_a["tokens_per_s_per_seq"].idxmax()]
    fb = front_b.loc[front_b["tokens_per_s_per_seq"].idxmax()]
    ca = front_a.loc[front_a["usd_per_mtok"].idxmin()]
    cb = front_b.loc[front_b["usd_per_mtok"].idxmin()]
    sa, sb = (fa["speed_lo"], fa["speed_hi"]), (fb["speed_lo"], fb["speed_hi"])
    ua, ub = (ca["usd_per_mtok_lo"], ca["usd_per_mtok_hi"]), (cb["usd_per_mtok_lo"], cb["usd_per_mtok_hi"])
    return [f"max speed, 90% interval: {sa[0]:.1f}-{sa[1]:.1f} ({label_a}) vs {sb[0]:.1f}-{sb[1]:.1f} tok/s "
            f"({label_b}): {_verdict(sa, sb)}",
            f"min cost, 90% interval: ${ua[0]:.3f}-{ua[1]:.3f} ({label_a}) vs ${ub[0]:.3f}-{ub[1]:.3f} per M tokens "
            f"({label_b}): {_verdict(ua, ub)}"]
