"""Calibration outputs of a run directory: the per-term plots, a summary dict (held-out errors,
what was kept published, timings) and report.html, one self-contained page that also shows
any validation, regression or frontier results found in the run."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from inferecon.core.errors import UserError
from inferecon.core.outpath import write_text
from inferecon.report import calibration_plots as cp


def _fmt(x, unit="", digits=3):
    if x is None:
        return "-"
    try:
        return f"{float(x):.{digits}g}{unit}"
    except (TypeError, ValueError):
        return html.escape(str(x))


def write_calibration_outputs(result, out: Path, measured_s=None, fit_s=None) -> dict:
    out = Path(out)
    t = result.tables
    prof = result.profile
    from inferecon.report.plotting import optional_plot

    plots = []
    mem_fit = next((f for f in result.fits if f.term == "memory"), None)
    file_fits = getattr(result, "file_fits", None) or []
    # Without matplotlib the profile and tables stand; the plots are named as not drawn once.
    for make, *inputs in ((cp.plot_gemm, t.get("matmul"), prof.compute.gemm_fit or {}),
                          (cp.plot_memory, t.get("memory"), mem_fit),
                          (cp.plot_network, t.get("collectives"), prof.network.collectives),
                          (cp.plot_latency, t.get("launch")), (cp.plot_ingested, file_fits)):
        drawn = optional_plot(make, *inputs, out)
        if drawn is None:
            break
        plots += drawn
    summary = {
        "profile": str(out / "profile.json"),
        "run_id": prof.provenance.run_id,
        "measured_s": measured_s,
        "fit_s": fit_s,
        "missing_benchmarks": result.missing,
        "kept_published": result.kept_published,
        "fits": [{"term": r.term, "form": r.form, "heldout_mape": r.heldout_mape, "train_mape": r.train_mape,
                  "n_points": r.n_points, "converged": r.converged, "params": r.params, "stderr": r.stderr}
                 for r in result.fits],
        "plots": [p.name for p in plots],
        "ingested": [ff.summary() for ff in file_fits],
    }
    write_text(out / "report.html", render_report(out, summary))
    return summary


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}"><figcaption>{html.escape(path.name)}</figcaption></figure>'


def _published_comparison(prof) -> str:
    from inferecon.calibration.build import published_base

    if prof.name.endswith("-from-files"):
        return ("<p>A profile from operators' files: the network terms below come from the files, "
                "every other term is the published profile's.</p>")
    base = published_base(prof.display_name)
    rows = []
    if base is not None:
        for dtype, peak in prof.compute.peak_tflops.items():
            if dtype in base.compute.peak_tflops:
                rows.append((f"{dtype} matmul peak", f"{base.compute.peak_tflops[dtype]:.0f} TFLOP/s (datasheet) "
                             f"x {base.compute.efficiency:.0%} cap", f"{peak * prof.compute.efficiency:.0f} TFLOP/s measured"))
        rows.append(("HBM read", f"{base.memory.bandwidth_gbps:.0f} GB/s x {base.memory.efficiency:.0%} cap",
                     f"{prof.memory.achieved_gbps:.0f} GB/s measured"))
        rows.append(("kernel launch", f"{base.latency.kernel_launch_us:.1f} µs (paper)",
                     f"{prof.latency.kernel_launch_us:.2f} µs measured"))
    else:
        rows.append(("compute", "no datasheet for this device",
                     ", ".join(f"{k} {v:.3g} TFLOP/s" for k, v in prof.compute.peak_tflops.items())))
        rows.append(("memory read", "-", f"{prof.memory.achieved_gbps:.1f} GB/s measured"))
        rows.append(("kernel launch", "-", f"{prof.latency.kernel_launch_us:.2f} µs measured"))
    body = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>" for a, b, c in rows)
    return f"<table><tr><th>term</th><th>published</th><th>this node</th></tr>{body}</table>"


def render_report(run_dir: Path, summary: dict, plot_dir: Path | None = None) -> str:
    """The page for `run_dir`; the fit plots named in `summary` are read from `plot_dir`
    (default: the run directory itself)."""
    from inferecon.model.hardware import HardwareProfile

    run_dir = Path(run_dir)
    plot_dir = Path(plot_dir) if plot_dir is not None else run_dir
    parts = []
    manifest = {}
    mpath = run_dir / "manifest.json"
    if mpath.exists():
        manifest = json.loads(mpath.read_text())
    title = f"inferecon report — {manifest.get('device_name', run_dir.name)}"
    parts.append(f"<h1>{html.escape(title)}</h1>")
    meta = manifest.get("metadata", {})
    facts = {"run": run_dir.name, "device": manifest.get("device"), "GPUs": manifest.get("gpu_count"),
             "torch": meta.get("torch_version"), "CUDA": meta.get("torch_cuda_version"),
             "NCCL": meta.get("nccl_version"), "driver": (meta.get("nvml") or {}).get("driver_version"),
             "started": manifest.get("start_time"), "ended": manifest.get("end_time"),
             "status": manifest.get("status"), "inferecon": manifest.get("inferecon_version")}
    parts.append("<table>" + "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>"
                                     for k, v in facts.items() if v is not None) + "</table>")
    if (run_dir / "profile.json").exists():
        prof = HardwareProfile.load(run_dir / "profile.json")
        parts.append("<h2>Calibrated terms against published figures</h2>" + _published_comparison(prof))
    if summary:
        timing = []
        if summary.get("measured_s") is not None:
            timing.append(f"measured in {summary['measured_s']:.1f} s")
        if summary.get("fit_s") is not None:
            timing.append(f"fitted in {summary['fit_s']:.1f} s")
        parts.append("<h2>Fits (errors on held-out cases)</h2>" + (f"<p>{', '.join(timing)}</p>" if timing else ""))
        rows = "".join(_fit_row(f) for f in summary.get("fits", []))
        parts.append("<table><tr><th>term</th><th>form</th><th>held-out MAPE</th><th>train MAPE</th><th>points</th>"
                     f"<th>parameters ± std. error</th><th>converged</th></tr>{rows}</table>")
        notes = [f"kept: {k}" for k in summary.get("kept_published", [])] + \
                [f"run lacks {m} measurements" for m in summary.get("missing_benchmarks", [])]
        if notes:
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
        if summary.get("ingested"):
            parts.append("<h2>Operators' files</h2>" + _ingested_table(summary["ingested"]))
        for name in summary.get("plots", []):
            if (plot_dir / name).exists():
                parts.append(_img(plot_dir / name))
    parts += _optional_sections(run_dir)
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px}"
             "img{max-width:100%}figure{margin:1em 0}figcaption{font-size:11px;color:#666}pre{background:#f6f6f6;padding:8px}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n"


def _fit_row(f: dict) -> str:
    held = None if f["heldout_mape"] is None else 100 * f["heldout_mape"]
    params = ", ".join(f"{k}={_fmt(v)}±{_fmt(f['stderr'].get(k))}" for k, v in f["params"].items())
    ok = "yes" if f["converged"] else "NO: published kept"
    return (f"<tr><td>{html.escape(f['term'])}</td><td>{html.escape(f['form'])}</td><td>{_fmt(held, '%')}</td>"
            f"<td>{_fmt(100 * f['train_mape'], '%')}</td><td>{f['n_points']}</td><td>{html.escape(params)}</td>"
            f"<td>{ok}</td></tr>")


def _text(path: Path) -> str:
    """A file shown on the page as it is, or one line where it is not text."""
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file, so not one inferecon wrote") from None


def _optional_sections(run_dir: Path) -> list[str]:
    """Validation, regression and frontier outputs, wherever a command left them in the run
    directory (or one folder below it)."""
    import pandas as pd

    parts = []
    found = {p.name: p for p in sorted(run_dir.glob("*")) if p.is_file()}
    found.update({p.name: p for p in sorted(run_dir.glob("*/*")) if p.is_file() and p.name not in found})
    validation = sorted(n for n in found if n.startswith("validation"))
    if validation:
        parts.append("<h2>Validation: predicted vs measured decode</h2>")
        for name in validation:
            p = found[name]
            if name.endswith(".json"):
                parts.append(f"<h3>{html.escape(name)}</h3><pre>{html.escape(_text(p))}</pre>")
            elif name.endswith(".csv"):
                try:
                    table = pd.read_csv(p)
                except (ValueError, UnicodeDecodeError) as exc:  # pandas' parse and empty-file errors are ValueErrors
                    raise UserError(f"{p}: not a readable CSV ({str(exc).splitlines()[0]})") from None
                parts.append(f"<h3>{html.escape(name)}</h3>"
                             + table.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
            elif name.endswith(".png"):
                parts.append(_img(p))
    if "regress.md" in found:
        parts.append("<h2>Regression check</h2>")
        parts.append(f"<pre>{html.escape(_text(found['regress.md']))}</pre>")
    frontiers = [n for n in found if n.startswith("frontier") and n.endswith(".png")]
    if frontiers:
        parts.append("<h2>Frontiers</h2>" + "".join(_img(found[n]) for n in frontiers))
    return parts


def _bytes(b) -> str:
    b = float(b)
    for unit, k in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= k:
            return f"{b / k:.3g} {unit}"
    return f"{b:.0f} B"


def _pieces(entry) -> str:
    return "; ".join(f"[{_bytes(p['min_bytes'])}..] α {p['alpha_us']:.3g} µs, β {p['beta_gbps']:.3g} GB/s"
                     for p in entry["pieces"])


def _ingested_table(entries) -> str:
    head = ("<tr><th>file (line)</th><th>collective</th><th>world (from)</th><th>nodes (from)</th><th>messages</th>"
            "<th>rows</th><th>fit: α, β per piece</th><th>protocol breaks</th><th>held-out MAPE</th>"
            "<th>unreadable rows</th><th>in profile</th></tr>")
    rows = []
    for e in entries:
        bad = ", ".join(f"line {b['line']}: {b['reason']}" for b in e["unreadable_rows"]) or "-"
        held = "-" if e["heldout_mape"] is None else f"{100 * e['heldout_mape']:.1f}%"
        breaks = ", ".join(_bytes(b) for b in e["breaks_bytes"]) or "-"
        where = "yes" if e["in_profile"] else f"no: {e['why_not']}"
        cells = [f"{Path(e['file']).name} ({e['table_line']})<br><small>sha256 {e['sha256'][:16]}…</small>",
                 e["collective"], f"{e['world_size']} ({e['world_from']})", f"{e['nodes']} ({e['nodes_from']})",
                 f"{_bytes(e['min_bytes'])} – {_bytes(e['max_bytes'])}", str(e["rows_used"]), _pieces(e), breaks,
                 held, bad, where]
        rows.append("<tr>" + "".join(f"<td>{c if i == 0 else html.escape(c)}</td>" for i, c in enumerate(cells))
                    + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def file_report_text(file_fits, link_fits) -> str:
    """The per-file report `calibrate` prints: what each table is, where its world size and
    node count came from, its fit and held-out error, and the rows it could not read."""
    lines = ["\ningested files"]
    for ff in file_fits:
        e = ff.summary()
        held = "-" if e["heldout_mape"] is None else f"{100 * e['heldout_mape']:.1f}%"
        lines.append(f"{Path(e['file']).name} (table at line {e['table_line']}, sha256 {e['sha256'][:12]}): "
                     f"{e['collective']} over {e['world_size']} ranks ({e['world_from']}) on {e['nodes']} "
                     f"node{'s' if e['nodes'] != 1 else ''} "
                     f"({e['nodes_from']}), {_bytes(e['min_bytes'])}..{_bytes(e['max_bytes'])}, "
                     f"{e['rows_used']} sizes, {e['mode']}")
        lines.append(f"    fit: {_pieces(e)}; breaks: {', '.join(_bytes(b) for b in e['breaks_bytes']) or 'none'}; "
                     f"held-out {held}, train {100 * e['train_mape']:.1f}%"
                     + ("" if e["in_profile"] else f"; not in the profile ({e['why_not']})"))
        for b in e["unreadable_rows"]:
            lines.append(f"    line {b['line']}: not read ({b['reason']})")
    for r in link_fits:
        if r.term.startswith("link:"):
            files = ", ".join(Path(f).name for f in r.extra.get("files", []))
            lines.append(f"{r.term}: {r.params['gbps']:.1f} GB/s per direction, median of {r.n_points} GPU pairs "
                         f"({files})")
    return "\n".join(lines)
