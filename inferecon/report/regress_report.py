"""The text of `inferecon regress`: the gate's verdicts, what changed on the node and the
impact on the model, as Markdown (regress.md and the terminal)."""

from __future__ import annotations

import math


def _f(x, fmt):
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def render(report: dict, show_all: bool) -> str:
    """The report of one regression check (`report` as `inferecon regress --json` writes it)."""
    cfg = report["config"]
    lines = [f"# Regression check: {report['candidate']} vs {report['baseline']}", ""]
    if report.get("baseline_picked"):
        lines += [f"baseline picked automatically: {report['baseline']} (newest saved baseline(s) of this GPU model and count)", ""]
    lines.append(f"tolerance {100 * cfg['tolerance']:g}%, {100 * cfg['confidence']:g}% bootstrap CI of the ratio of "
                 f"medians ({cfg['resamples']} resamples, seed {cfg['seed']}, drift {100 * cfg['drift']:g}%); "
                 f"ratio > 1 = slower (times compared)")
    counts = report["counts"]
    lines += ["", "cases: " + ", ".join(f"{v} {counts[v]}" for v in counts), ""]
    rows = [c for c in report["cases"] if show_all or c["verdict"] != "unchanged"]
    if rows:
        lines.append("| verdict | benchmark | case | baseline µs | candidate µs | change | CI of ratio | reason |")
        lines.append("|---|---|---|---:|---:|---:|---|---|")
        for c in rows:
            ci = f"[{_f(c['ci_low'], '.3f')}, {_f(c['ci_high'], '.3f')}]" if math.isfinite(c["ci_low"]) else "-"
            lines.append(f"| {c['verdict']} | {c['benchmark']} | {c['case_id']} | {_f(c['median_us_a'], '.4g')} | "
                         f"{_f(c['median_us_b'], '.4g')} | {_f(c['change_pct'], '+.1f')}% | {ci} | {c['reason']} |")
    if not show_all and counts["unchanged"]:
        lines.append(f"\n{counts['unchanged']} unchanged cases not listed (--all lists them)")
    lines += ["", "## What changed on the node"]
    diff = report["manifest_diff"]
    lines += [f"- {k}: {a} → {b}" for k, a, b in diff] if diff else ["- nothing recorded differs (driver, CUDA, NCCL, torch, clocks, power limit, host)"]
    lines += ["", "## Impact on the model"]
    imp = report.get("model_impact")
    if imp is None:
        lines.append("- skipped (--no-model)")
    elif "error" in imp:
        lines.append(f"- not available for {imp['model']}: {imp['error']}")
    else:
        a, b = imp["max_tok_s"]
        ca, cb = imp["min_usd_per_mtok"]
        lines.append(f"- max tok/s for {imp['model']}: {a:.4g} → {b:.4g}, {100 * imp['max_tok_s_change']:+.1f}%")
        lines.append(f"- min $/M tokens: {ca:.4g} → {cb:.4g}, {100 * imp['min_usd_per_mtok_change']:+.1f}%")
        terms = ", ".join(f"{k} {imp['terms_ms_a'][k]:.3g} → {imp['terms_ms_b'][k]:.3g} ms" for k in imp["terms_ms_a"])
        lines.append(f"- baseline's fastest configuration, per step: {terms}; moved most: {imp['moved']}")
        lines.append(f"- (profiles fitted to {imp['baseline_run']} and the candidate: point estimates that carry "
                     f"both runs' noise; the case verdicts above say which changes are real)")
    lines += ["", f"**{report['verdict_line']}**"]
    return "\n".join(lines) + "\n"
