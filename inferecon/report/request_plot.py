"""The request frontier's plot (`frontier --input-len I --output-len O`), written to PNG: two
panels over the same speed axis (output tokens/s per user, 1 / TPOT), $ per million requests on
the left and TTFT on the right, one curve per model x GPU, the SLA limits drawn as dashed lines
(TPOT as the speed 1000 / TPOT-limit on both panels, TTFT on the right). Each point is a row of
request_frontier.csv: a configuration meeting the limits."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_request_frontiers(fronts: dict[str, pd.DataFrame], path: str | Path, ttft_ms: float | None = None,
                           tpot_ms: float | None = None, title: str = "") -> Path:
    from inferecon.report.plotting import pyplot, save_png

    plt = pyplot()  # Agg (files only), a writable cache, or one line where matplotlib is missing

    fig, (cost_ax, ttft_ax) = plt.subplots(1, 2, figsize=(11, 4.8))
    for label, df in fronts.items():
        df = df.sort_values("tokens_per_s_per_seq")
        speed = df["tokens_per_s_per_seq"]
        (line,) = cost_ax.step(speed, df["usd_per_m_requests"], where="post", label=label, lw=1.6)
        cost_ax.scatter(speed, df["usd_per_m_requests"], s=10, color=line.get_color())
        # TTFT is no monotone function of speed along the frontier: points, joined thinly.
        ttft_ax.plot(speed, df["ttft_ms"], "o-", ms=3, lw=0.8, color=line.get_color(), label=label)
    if tpot_ms:
        for ax in (cost_ax, ttft_ax):
            ax.axvline(1e3 / tpot_ms, ls="--", color="0.3", lw=1, label=f"TPOT limit {tpot_ms:g} ms")
    if ttft_ms:
        ttft_ax.axhline(ttft_ms, ls=":", color="0.3", lw=1, label=f"TTFT limit {ttft_ms:g} ms")
    for ax in (cost_ax, ttft_ax):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("speed (output tokens/s per user, 1 / TPOT)")
        ax.grid(True, which="both", alpha=0.3)
    cost_ax.set_ylabel("cost ($ per million requests)")
    ttft_ax.set_ylabel("time to first token (ms)")
    cost_ax.legend(fontsize=7)
    ttft_ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_png(plt, fig, path)
