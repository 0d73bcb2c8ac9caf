"""Tables, plot and files for serving-engine runs: predicted vs measured per-token time
(`validate --engine-results`) and the engine-profile fit (`calibrate --engine-results`)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path


def _pct(x) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:+.1f}%"


def _ms(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def _short(source: str, width: int = 38) -> str:
    return source if len(source) <= width else "…" + source[-(width - 1):]


def comparison_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """rows from engine_fit.score_engine_runs (plus fitted/held-out keys); columns are
    (label, ms key, error key) of each prediction shown next to the measurement."""
    head = (f"{'run':38s} {'engine':>7} {'model':>12} {'gpu':>9} {'tp':>3} {'batch':>5} {'in':>6} {'out':>5} "
            f"{'bits':>4} {'measured ms':>11}")
    for label, _, _ in columns:
        head += f" | {label + ' ms':>13} {'error':>7}"
    head += f" | {'dominant':>9}"
    lines = [head]
    for r in rows:
        line = (f"{_short(r['source']):38s} {r['engine'][:7]:>7} {r['model'][:12]:>12} {r['gpu'][:9]:>9} {r['tp']:>3} "
                f"{r['batch']:>5} {r['input_len']:>6.0f} {r['output_len']:>5.0f} {r['weight_bits']:>4} "
                f"{r['measured_ms']:>11.3f}")
        for _, key, err in columns:
            line += f" | {_ms(r.get(key)):>13} {_pct(r.get(err)):>7}"
        line += f" | {r['dominant']:>9}"
        lines.append(line)
    return "\n".join(lines)


def fit_summary(fit) -> str:
    lines = [f"engine profile {fit.profile.name!r} on {fit.profile.hardware} from {len(fit.rows)} run(s)",
             f"{'parameter':30s} {'value':>10} {'± stderr':>9}     status"]
    for p in fit.params:
        unit = " µs" if p.name.endswith("_us") else ""
        status = "fitted" if p.fitted else f"published value kept: {p.note}"
        err = f"{p.stderr:9.3f}" if p.stderr is not None else f"{'':9s}"
        lines.append(f"{p.name:30s} {p.value:>10.3f} {err}{unit:3s}  {status}")
    held = "—" if fit.mape_heldout_pct is None else f"{fit.mape_heldout_pct:.1f}%"
    lines.append(f"MAPE hardware profile alone {fit.mape_hardware_pct:.1f}%; with the engine profile "
                 f"{fit.mape_fitted_pct:.1f}% on its own runs, {held} held out (leave one run out)")
    return "\n".join(lines)


def write_rows_csv(rows: list[dict], path: Path) -> Path:
    from inferecon.core.outpath import atomic_path

    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:  # one line, old file kept, on a full disk
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def write_json(data, path: Path) -> Path:
    from inferecon.core.outpath import write_text

    write_text(path, json.dumps(data, indent=2, default=str) + "\n")
    return path


def plot_predicted_vs_measured(rows: list[dict], series: list[tuple[str, str]], path: Path, title: str) -> Path:
    """Predicted against measured ms per output token, one marker per series (label, key),
    with the y = x line and ±20% band."""
    from inferecon.report.plotting import pyplot, save_png

    plt = pyplot()  # Agg, a writable cache, or one line where matplotlib is missing

    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    measured = [r["measured_ms"] for r in rows]
    values = list(measured)
    for (label, key), marker in zip(series, "os^D"):
        pairs = [(r["measured_ms"], r[key]) for r in rows if r.get(key) is not None]
        if pairs:
            ax.scatter([m for m, _ in pairs], [p for _, p in pairs], marker=marker, label=label, alpha=0.8)
            values += [p for _, p in pairs]
    lo, hi = min(values) * 0.8, max(values) * 1.25
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="predicted = measured")
    ax.fill_between([lo, hi], [lo * 0.8, hi * 0.8], [lo * 1.2, hi * 1.2], color="grey", alpha=0.15, label="±20%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured ms per output token")
    ax.set_ylabel("predicted ms per output token")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return save_png(plt, fig, path, dpi=110)
