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


# A change below this fraction (of the step, or of a figure) rounds to +0.0% where the lines
# print percentages to 0.1%: it is said as no change, not named as the part that "moved most".
UNCHANGED_FRACTION = 5e-4


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
    # One line per profile whose own fitted collective lines a decode step does not read
    # (decode_collectives_note), None where it reads them all: (note for A, note for B).
    notes: tuple[str | None, str | None] = (None, None)

    @property
    def max_speed_change(self) -> float:
        return self.max_speed_b / self.max_speed_a - 1

    @property
    def moved_term(self) -> str:
        """The part of the step (compute, network, latency) whose time changed most, in
        seconds, for the same configuration; "nothing" where no part changed by more than
        UNCHANGED_FRACTION of the step (naming one would say a term moved that did not)."""
        step = sum(self.terms_a.values())
        moved = {t: abs(self.terms_b[t] - self.terms_a[t]) for t in GROUPS}
        if all(m <= UNCHANGED_FRACTION * step for m in moved.values()):
            return "nothing"
        return max(GROUPS, key=moved.get)

    @property
    def unchanged(self) -> bool:
        """True where every figure the lines print (max speed, min cost, the cost at each
        matched speed, each part of the step) is within UNCHANGED_FRACTION of A's."""
        pairs = [(self.max_speed_a, self.max_speed_b), (self.min_cost_a, self.min_cost_b)]
        pairs += [(ca, cb) for _, ca, cb in self.cost_at_speed if np.isfinite(ca) and np.isfinite(cb)]
        same = all(abs(b / a - 1) <= UNCHANGED_FRACTION for a, b in pairs if a)
        return same and self.moved_term == "nothing"

    def lines(self, label_a: str, label_b: str) -> list[str]:
        out = [] if not self.unchanged else [
            f"nothing moved: the {label_b} frontier is the {label_a} one (every figure below within "
            f"{100 * UNCHANGED_FRACTION:.2f}%)"]
        out += [f"max speed: {self.max_speed_a:.1f} tok/s ({label_a}) -> {self.max_speed_b:.1f} tok/s ({label_b}), "
               f"{100 * self.max_speed_change:+.1f}%",
               f"min cost: ${self.min_cost_a:.3f} -> ${self.min_cost_b:.3f} per M tokens, "
               f"{100 * (self.min_cost_b / self.min_cost_a - 1):+.1f}%"]
        for speed, ca, cb in self.cost_at_speed:
            out.append(f"cost at {speed:.0f} tok/s: ${ca:.3f} -> ${cb:.3f} ({100 * (cb / ca - 1):+.1f}%)")
        terms = ", ".join(f"{t} {1e3 * self.terms_a[t]:.3f} -> {1e3 * self.terms_b[t]:.3f} ms" for t in GROUPS)
        moved = self.moved_term
        out.append(f"same configuration ({label_a}'s fastest), per step: {terms}; "
                   + ("no part moved" if moved == "nothing" else f"moved most: {moved}"))
        out += [f"note ({label}): {note}" for label, note in zip((label_a, label_b), self.notes) if note]
        return out


def decode_collectives_note(hw: HardwareProfile) -> str | None:
    """One line where the profile's own fitted collective lines (nccl-tests files, a node's
    eager timings) do not price a decode step: HardwareProfile.decode_view puts the engine's
    all-reduce lines (network.decode_collectives, timed inside a CUDA graph) in their
    collective and scope, and model/network.py then reads only those there, at every message
    size. None where a decode step reads every fitted line. Which lines win is the model's
    rule (docs/model.md); this only says so, so that a file that moves nothing is not a
    mystery."""
    view = hw.decode_view
    if view is hw:
        return None
    joined = {(c.collective, c.scope) for c in view.network.collectives[len(hw.network.collectives):]}
    unread = [c for c in hw.network.collectives if (c.collective, c.scope) in joined and c.world_size >= 2]
    if not unread:
        return None
    by_op: dict[tuple[str, str], set[int]] = {}
    for c in unread:
        by_op.setdefault((c.collective, c.scope), set()).add(c.world_size)
    what = "; ".join(f"{op} over {'/'.join(str(w) for w in sorted(ws))} ranks "
                     f"{'inside a node' if scope == 'intra' else 'across nodes'}"
                     for (op, scope), ws in sorted(by_op.items()))
    beyond = " and collectives across nodes" if all(scope == "intra" for _, scope in joined) else ""
    return (f"the fitted NCCL lines ({what}) do not price decode steps: there the engine's own all-reduce "
            "lines apply (network.decode_collectives, custom all-reduce inside CUDA graphs) at every message "
            f"size; the NCCL lines still price prefill{beyond}")


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
        notes=(decode_collectives_note(a), decode_collectives_note(b)),
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
