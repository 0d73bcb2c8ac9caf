"""The published H100 network constants checked against public nccl-tests tables from real
clusters: every table under ../shared/reference/measured (or --dir) is ingested and fitted
(α + bytes/β, 1-4 pieces, nested k-fold held-out error over its message sizes), and the fit
and the published profile's prediction (`model.network.collective_time_s`) are printed at
8 B, 1 MB, 64 MB and 1 GB with their ratio (published / fitted time; > 1: the published
profile is slower than the cluster).

    python benchmarks/bench_public_network.py [--dir DIR] [--gpu h100-sxm] [--markdown]

A size outside a table's measured range is printed as "-": the fit is not extrapolated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# The rows (fits and published predictions) live in the package; this script only prints them.
from inferecon.validation.public_network import SIZES, link_rows, rows

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "measured"


def _name(filename: str) -> str:
    return filename.removeprefix("nccl-tests_").removesuffix(".txt")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--gpu", default="h100-sxm")
    ap.add_argument("--markdown", action="store_true", help="a README table")
    args = ap.parse_args(argv)
    if not args.dir.is_dir():
        print(f"{args.dir}: not a folder of public measurements", file=sys.stderr)
        return 2
    table = rows(args.dir, args.gpu)
    head = ["file", "profile", "op", "ranks", "nodes", "sizes", "held-out"] + [f"{s} fit / pub. µs (ratio)" for s, _ in SIZES]
    lines = []
    for name, t, ff, cells, prof in table:
        held = "-" if ff.result.heldout_mape is None else f"{100 * ff.result.heldout_mape:.1f}%"
        c = ["-" if x is None else f"{x[0]:.4g} / {x[1]:.4g} ({x[1] / x[0]:.2f})" for x in cells]
        lines.append([_name(name), prof, t.op, str(t.world), str(t.nodes), str(ff.result.n_points), held] + c)
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in lines:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(head)]
        for r in [head] + lines:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    links = link_rows(args.dir, args.gpu)
    print("\nGPU link matrices: median GB/s per direction over GPU pairs (published: NVLink x efficiency)")
    for name, op, n, med, pub in links:
        vs = f", published {pub:.0f} (ratio {pub / med:.2f})" if pub else " (no published host-link figure)"
        print(f"  {name}: {op} {med:.1f} GB/s over {n} pairs{vs}")
    ratios = np.array([x[1] / x[0] for _, _, _, cells, _ in table for x in cells if x is not None])
    print(f"\n{len(table)} tables; published/fitted time ratio over {len(ratios)} (table, size) points: "
          f"median {np.median(ratios):.2f}, range {ratios.min():.2f}-{ratios.max():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
