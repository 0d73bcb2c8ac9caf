"""The speed-versus-cost plot of one or more frontiers (log axes), written to PNG."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_frontiers(frontiers: dict[str, pd.DataFrame], path: str | Path, title: str = "") -> Path:
    from inferecon.report.plotting import pyplot, save_png

    plt = pyplot()  # Agg (files only), a writable cache, or one line where matplotlib is missing

    fig, ax = plt.subplots(figsize=(7.5, 5))
    banded = False  # the legend names the shading once
    for label, df in frontiers.items():
        df = df.sort_values("tokens_per_s_per_seq")
        (line,) = ax.step(df["tokens_per_s_per_seq"], df["usd_per_mtok"], where="post", label=label, lw=1.6)
        ax.scatter(df["tokens_per_s_per_seq"], df["usd_per_mtok"], s=10, color=line.get_color())
        if "speed_lo" in df:
            _band(ax, df, line.get_color(), first=not banded)
            banded = True
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("speed (output tokens/s per sequence)")
    ax.set_ylabel("cost ($ per million output tokens)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return save_png(plt, fig, path)


def _band(ax, df: pd.DataFrame, color, first: bool = False) -> None:
    """The 90% band, shaded: in a draw a point moves along speed × cost = const (both scale
    with the step time), so the band runs from each point's slow-and-dear end (speed_lo,
    usd_per_mtok_hi) to its fast-and-cheap end (speed_hi, usd_per_mtok_lo)."""
    slow = list(zip(df["speed_lo"], df["usd_per_mtok_hi"]))
    fast = list(zip(df["speed_hi"], df["usd_per_mtok_lo"]))
    ax.fill(*zip(*(slow + fast[::-1])), color=color, alpha=0.18, lw=0,
            label="shaded: 90% band (parameter draws)" if first else "_nolegend_")
