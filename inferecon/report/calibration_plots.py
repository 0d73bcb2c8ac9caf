"""One plot per fitted term: the measured points, the fitted curve, and the residuals."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    from inferecon.report.plotting import pyplot

    return pyplot()  # Agg, a writable cache, or one line where matplotlib is missing


def _two_panel(title):
    plt = _plt()
    fig, (ax, res) = plt.subplots(2, 1, figsize=(7.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.set_title(title, fontsize=10)
    res.axhline(0, color="k", lw=0.8)
    res.set_ylabel("pred/meas − 1")
    for a in (ax, res):
        a.grid(True, which="both", alpha=0.3)
    return plt, fig, ax, res


def _save(plt, fig, path):
    from inferecon.report.plotting import save_png

    return save_png(plt, fig, path, dpi=110)  # every calibration plot at dpi 110


def plot_gemm(matmul_df, gemm_fit: dict, out_dir: Path) -> list[Path]:
    from inferecon.calibration.fit import usable
    from inferecon.model.gemm import gemm_time_s

    df = usable(matmul_df)
    paths = []
    if df is None or not gemm_fit:
        return paths
    for dtype, entry in gemm_fit.items():
        g = df[df["dtype"] == dtype]
        if len(g) == 0:
            continue
        plt, fig, ax, res = _two_panel(f"GEMM time by M, {dtype} (fit: {entry['form']})")
        for (n, k), s in g.groupby(["n", "k"]):
            s = s.sort_values("m")
            line = ax.loglog(s["m"], s["median_us"], "o", ms=4, label=f"N={n} K={k}")[0]
            mm = np.geomspace(max(1, s["m"].min()), s["m"].max(), 50)
            ax.loglog(mm, gemm_time_s(gemm_fit, dtype, mm, n, k) * 1e6, "-", color=line.get_color(), lw=1)
            pred = gemm_time_s(gemm_fit, dtype, s["m"], s["n"], s["k"]) * 1e6
            res.semilogx(s["m"], pred / s["median_us"] - 1, "o", ms=4, color=line.get_color())
        ax.set_ylabel("time (µs)")
        res.set_xlabel("M (tokens in the GEMM)")
        ax.legend(fontsize=6, ncol=2)
        paths.append(_save(plt, fig, out_dir / f"fit_gemm_{dtype}.png"))
    return paths


def plot_memory(memory_df, fit, out_dir: Path) -> list[Path]:
    from inferecon.calibration.fit import usable

    df = usable(memory_df)
    if df is None or fit is None or len(df) == 0:
        return []
    plt, fig, ax, res = _two_panel(f"memory bandwidth by size (sustained read {fit.params['gbps']:.1f} GB/s)")
    for op, s in df.groupby("op"):
        s = s.sort_values("bytes_moved")
        ax.semilogx(s["bytes_moved"], s["gbps"], "o-" if op != "read" else "o", ms=4, label=op, lw=0.8)
    reads = df[df["op"] == "read"] if (df["op"] == "read").any() else df[df["op"] == "copy"]
    x = np.geomspace(reads["bytes_moved"].min(), reads["bytes_moved"].max(), 60)
    t0, gbps = fit.params["t0_us"], fit.params["gbps"]
    t0 = 0.0 if not np.isfinite(t0) else t0
    ax.semilogx(x, x / (t0 + x / (gbps * 1e3)) / 1e3, "k-", lw=1.2, label="fit t0 + bytes/B")
    stream_min = fit.extra.get("stream_min_bytes", 0)
    s = reads[reads["bytes_moved"] >= stream_min]
    pred = t0 + s["bytes_moved"] / (gbps * 1e3)
    res.semilogx(s["bytes_moved"], pred / s["median_us"] - 1, "ko", ms=4)
    ax.set_ylabel("GB/s")
    res.set_xlabel("bytes moved")
    ax.legend(fontsize=7)
    return [_save(plt, fig, out_dir / "fit_memory.png")]


def plot_network(coll_df, fits, out_dir: Path) -> list[Path]:
    from inferecon.calibration.fit import usable

    df = usable(coll_df)
    if df is None or len(df) == 0 or not fits:
        return []
    plt, fig, ax, res = _two_panel("collectives: time by message size, α + bytes/β fits")
    for (op, world, scope), g in df.groupby(["op", "world_size", "scope"]):
        mine = [f for f in fits if (f.collective, f.world_size, f.scope) == (op, world, scope)]
        if not mine:
            continue
        g = g[g["mode"] == mine[0].mode].sort_values("bytes")
        line = ax.loglog(g["bytes"], g["median_us"], "o", ms=4, label=f"{op} w{world} {scope} {mine[0].mode}")[0]

        def predict(b):
            b = np.asarray(b, float)
            out = np.zeros_like(b)
            for f in sorted(mine, key=lambda f: f.min_bytes):
                out = np.where(b >= f.min_bytes, f.alpha_us + b / (f.beta_gbps * 1e3), out)
            return out

        x = np.geomspace(max(1, g["bytes"].min()), g["bytes"].max(), 80)
        ax.loglog(x, predict(x), "-", color=line.get_color(), lw=1)
        res.semilogx(g["bytes"], predict(g["bytes"]) / g["median_us"] - 1, "o", ms=4, color=line.get_color())
    ax.set_ylabel("time per call (µs)")
    res.set_xlabel("message bytes (nccl-tests convention)")
    ax.legend(fontsize=6)
    return [_save(plt, fig, out_dir / "fit_network.png")]


def plot_latency(launch_df, out_dir: Path) -> list[Path]:
    from inferecon.calibration.fit import usable

    df = usable(launch_df)
    if df is None or len(df) == 0:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.5))
    for i, row in enumerate(df.itertuples()):
        s = np.asarray(row.samples_us, float)
        ax.plot(np.full(len(s), i) + np.random.default_rng(i).uniform(-0.2, 0.2, len(s)), s, ".", ms=3, alpha=0.5)
        ax.plot([i - 0.3, i + 0.3], [row.median_us] * 2, "k-", lw=2)
    ax.set_xticks(range(len(df)))
    ax.set_xticklabels(df["op"])
    ax.set_ylabel("µs per launch / sync")
    ax.set_title("fixed latency: raw samples and their median", fontsize=10)
    ax.grid(True, alpha=0.3)
    return [_save(plt, fig, out_dir / "fit_latency.png")]


def plot_ingested(file_fits, out_dir: Path) -> list[Path]:
    """One plot per collective: every ingested table's measured points and its fitted curve
    (pieces meet at the breaks the fit found), residuals below."""
    by_op: dict[str, list] = {}
    for ff in file_fits:
        by_op.setdefault(ff.table.op, []).append(ff)
    paths = []
    for op, group in sorted(by_op.items()):
        plt, fig, ax, res = _two_panel(f"{op}: operators' tables, measured (points) and fitted (lines)")
        for ff in group:
            df = ff.table.frame().sort_values("bytes")
            t = ff.table
            label = (f"{Path(t.path).name[:48]} w{t.world}n{t.nodes}, held-out "
                     + ("-" if ff.result.heldout_mape is None else f"{100 * ff.result.heldout_mape:.1f}%"))
            line = ax.loglog(df["bytes"], df["median_us"], "o", ms=3, label=label)[0]

            def predict(b, fits=ff.fits):
                b = np.asarray(b, float)
                out = np.zeros_like(b)
                for f in sorted(fits, key=lambda f: f.min_bytes):
                    out = np.where(b >= f.min_bytes, f.alpha_us + b / (f.beta_gbps * 1e3), out)
                return out

            x = np.geomspace(df["bytes"].min(), df["bytes"].max(), 120)
            ax.loglog(x, predict(x), "-", color=line.get_color(), lw=1)
            res.semilogx(df["bytes"], predict(df["bytes"]) / df["median_us"] - 1, "o", ms=3, color=line.get_color())
        ax.set_ylabel("time per call (µs)")
        res.set_xlabel("message bytes (nccl-tests size column)")
        ax.legend(fontsize=5)
        paths.append(_save(plt, fig, out_dir / f"ingest_{op}.png"))
    return paths
