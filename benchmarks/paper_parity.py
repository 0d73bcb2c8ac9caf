"""inferecon against the paper's reference code (Erdil 2025; its outputs in the project's
reference notes): max speed and the frontier's $/M tokens at 20/40/60/100 tok/s per sequence,
every row of that table, run with the paper's assumptions (published H100 profile, $2.10 per
GPU-hour as in the paper's code, pipeline parallelism allowed).

    python benchmarks/paper_parity.py            # the table, as in the README
"""

from __future__ import annotations

import math
import sys

# The reference table and the row function live in the package (tests import them from there).
from inferecon.validation.paper_parity import REFERENCE, SPEEDS, inferecon_row


def _fmt(x):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def main() -> int:
    out = sys.stdout
    out.write("| model | context | draft | max tok/s: inferecon / paper | " +
              " | ".join(f"$/M @{s}: inferecon / paper" for s in SPEEDS) + " |\n")
    out.write("|---|---|---|---|" + "---|" * len(SPEEDS) + "\n")
    for name, bits, context, draft, ref_max, ref_costs in REFERENCE:
        top, costs = inferecon_row(name, bits, context, draft)
        label = name + (f", {bits}-bit" if bits != 16 else "")
        cells = [f"{top:.1f} / {ref_max} ({top / ref_max - 1:+.0%})"]
        for s, ref in zip(SPEEDS, ref_costs):
            ours = costs[s]
            ratio = f" ({ours / ref - 1:+.0%})" if ref and not math.isnan(ours) else ""
            cells.append(f"{_fmt(ours)} / {_fmt(ref)}{ratio}")
        out.write(f"| {label} | {context} | {'8B, α 0.8' if draft else '—'} | " + " | ".join(cells) + " |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
