"""The text table of `inferecon frontier`: the frontier of one model on one profile."""

from __future__ import annotations

import numpy as np


def _thin(df, rows):
    """At most `rows` rows spread evenly over log speed, always keeping both ends."""
    if len(df) <= rows:
        return df
    logs = np.log(df["tokens_per_s_per_seq"].to_numpy())
    targets = np.linspace(logs[0], logs[-1], rows)
    idx = sorted({int(np.argmin(np.abs(logs - t))) for t in targets})
    return df.iloc[idx]


def frontier_table(df, label, hw, rows: int) -> str:
    """The text table `inferecon frontier` prints for one model on one profile: at most `rows`
    frontier points, spread over log speed, with their 90% band when the frontier has one."""
    band = "speed_lo" in df
    lines = [f"\n{label}: {len(df)} Pareto-optimal configurations "
             f"(${hw.price_usd_per_gpu_hour:.2f}/GPU-hour, {hw.provenance.kind} profile)"]
    if band:
        lines.append(f"90% intervals from {int(df['band_draws'].iloc[0])} draws of the profile's uncertain parameters; "
                     "P(opt): share of draws in which the point stays Pareto-optimal; "
                     "~: its interval overlaps a neighbour's")
    head = (f"{'tok/s/seq':>9} " + (f"{'90% tok/s':>13} " if band else "") + f"{'$/Mtok':>9} "
            + (f"{'90% $/Mtok':>15} {'P(opt)':>6}  " if band else "") + f"{'GPUs':>5} {'TP':>5} {'PP':>3} {'EP':>3} {'batch':>6} "
            f"{'γ':>2} {'tok/s/GPU':>9} {'MFU':>6} {'dominant':>10} | {'arith':>7} {'memory':>7} "
            f"{'network':>7} {'latency':>7} ms/step")
    lines.append(head)
    for r in _thin(df, rows).itertuples():
        tp = f"{r.tp_r}x{r.tp_c}" if r.tp_r > 1 else f"{r.tp}"
        bs = bc = ""
        if band:
            bs = f"{_span(r.speed_lo, r.speed_hi, 1):>13} "
            bc = f"{_span(r.usd_per_mtok_lo, r.usd_per_mtok_hi, 3):>15} {r.p_pareto:6.2f}{'~' if r.overlaps_neighbour else ' '} "
        lines.append(
            f"{r.tokens_per_s_per_seq:9.1f} {bs}{r.usd_per_mtok:9.3f} {bc}{r.n_gpu:5d} {tp:>5} {r.pp:3d} {r.ep:3d} "
            f"{r.batch:6d} {r.gamma:2d} {r.tokens_per_s_per_gpu:9.1f} {r.mfu:6.1%} {r.dominant:>10} | "
            f"{r.t_arithmetic_s * 1e3:7.3f} {r.t_memory_s * 1e3:7.3f} {r.t_network_s * 1e3:7.3f} "
            f"{r.t_latency_s * 1e3:7.3f}")
    return "\n".join(lines)


def _span(lo, hi, digits) -> str:
    return f"{lo:.{digits}f}-{hi:.{digits}f}"
