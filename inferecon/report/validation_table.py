"""The table `inferecon validate` prints: each case's measured step beside every profile's
prediction, its four terms, its error and (when drawn) its 90% interval."""

from __future__ import annotations

import math


def _fmt_pct(x) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:+.1f}%"


def validation_table(table: list[dict], labels: list[str]) -> str:
    """Measured against predicted step time per case, one column group per profile label."""
    out = []
    head = f"{'batch':>5} {'context':>7} {'measured ms':>11} {'iqr':>6}"
    band = any(f"{label}_step_lo_us" in table[0] for label in labels)
    for label in labels:
        head += (f" | {label + ' ms':>14} " + (f"{'90% interval':>15} " if band else "")
                 + f"{'arith':>7} {'mem':>7} {'net':>7} {'lat':>7} {'error':>7}")
    if "full_measured_step_us" in table[0]:
        head += f" | {'full extrap ms':>14}" + "".join(f" {label[:5] + ' err':>10}" for label in labels)
    out.append(head)
    for r in table:
        line = f"{r['batch']:>5} {r['context']:>7} {r['measured_step_us'] / 1e3:>11.3f} " \
               f"{100 * r['measured_iqr_us'] / r['measured_step_us']:>5.1f}%"
        for label in labels:
            lo, hi = r.get(f"{label}_step_lo_us"), r.get(f"{label}_step_hi_us")
            span = (f"{lo / 1e3:.2f}-{hi / 1e3:.2f}" if lo is not None else "—") if band else None
            line += (f" | {r[f'{label}_step_us'] / 1e3:>14.3f} " + (f"{span:>15} " if band else "")
                     + f"{r[f'{label}_arithmetic_us'] / 1e3:>7.3f}"
                     f" {r[f'{label}_memory_us'] / 1e3:>7.3f} {r[f'{label}_network_us'] / 1e3:>7.3f}"
                     f" {r[f'{label}_latency_us'] / 1e3:>7.3f} {_fmt_pct(r[f'{label}_error_pct']):>7}")
        if "full_measured_step_us" in r:
            full = r["full_measured_step_us"]
            # No figure where the layer fit failed: the reason is printed under the table.
            line += f" | {full / 1e3:>14.3f}" if math.isfinite(full) else f" | {'—':>14}"
            line += "".join(f" {_fmt_pct(r.get(f'{label}_full_error_pct')):>10}" for label in labels)
        out.append(line)
    return "\n".join(out)
