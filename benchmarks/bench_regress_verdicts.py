"""The regression gate's run-level verdicts (what `inferecon regress` exits with) on repeated
identical runs and on slowed copies of them.

    python benchmarks/bench_regress_verdicts.py --runs-dir DIR [--json OUT.json]

DIR holds N complete sentinel runs (`inferecon calibrate --device cpu --quick --out DIR/run-XX`,
one after another; `bench_regress_gate.py --runs N --runs-dir DIR` makes them too). Nothing
changes between them, so:
- identical: every pair (baseline = earlier run) — any REGRESSION is a false alarm;
- slowed pair: run j's raw samples x (1 + s) against run i — REGRESSION is a detection;
- slowed copy: run i against itself x (1 + s) — no between-run noise, the upper bound;
- 3-run baselines: runs i, i+1, i+2 against each later run, identical and slowed.
Each comparison goes through the command's own code (compare_bench_runs, then decide), so the
counts are of the verdicts an operator would see.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inferecon.regress.gate import GateConfig, compare_bench_runs, decide  # noqa: E402
from inferecon.harness.store import read_run  # noqa: E402

SLOWDOWNS = (0.05, 0.10, 0.20)


def slowed(tables: dict, s: float) -> dict:
    out = {}
    for bench, df in tables.items():
        df = df.copy()
        df["samples_us"] = [[x * (1 + s) for x in row] for row in df["samples_us"]]
        out[bench] = df
    return out


def verdict(base, cand, cfg) -> tuple[str, float | None]:
    v = decide(compare_bench_runs(base, cand, cfg), [])
    return v.word, v.drift


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs-dir", required=True)
    ap.add_argument("--json", default=None, help="write the counts here")
    ap.add_argument("--tolerance", type=float, default=0.03)
    args = ap.parse_args()
    cfg = GateConfig(tolerance=args.tolerance)
    dirs = sorted(d for d in Path(args.runs_dir).iterdir() if (d / "manifest.json").is_file())
    runs = []
    for d in dirs:
        manifest, tables = read_run(d)
        if manifest.get("status") == "complete":
            runs.append(tables)
    n = len(runs)
    if n < 2:
        raise SystemExit(f"{args.runs_dir}: {n} complete run(s); need 2 or more")
    results: dict[str, Counter] = {}
    drifts = []

    def count(key, word):
        results.setdefault(key, Counter())[word] += 1

    for i, j in itertools.combinations(range(n), 2):
        word, drift = verdict(runs[i], runs[j], cfg)
        count("identical pair", word)
        if drift is not None:
            drifts.append(drift)
        for s in SLOWDOWNS:
            count(f"pair, {s:.0%} slower", verdict(runs[i], slowed(runs[j], s), cfg)[0])
    for i in range(n):
        for s in SLOWDOWNS:
            count(f"copy, {s:.0%} slower", verdict(runs[i], slowed(runs[i], s), cfg)[0])
    for i in range(n - 3):
        base = runs[i:i + 3]
        for j in range(i + 3, n):
            count("3-run baseline, identical", verdict(base, runs[j], cfg)[0])
            for s in SLOWDOWNS:
                count(f"3-run baseline, {s:.0%} slower", verdict(base, slowed(runs[j], s), cfg)[0])

    words = ("UNCHANGED", "IMPROVED", "REGRESSION", "INCONCLUSIVE", "INCOMPLETE")
    print(f"{n} runs, tolerance {args.tolerance:.0%}; between-run drift of the identical pairs: "
          f"median {100 * sorted(drifts)[len(drifts) // 2]:.1f}%, range {100 * min(drifts):.1f}–{100 * max(drifts):.1f}%")
    print(f"{'comparison':32s} {'n':>4s} " + " ".join(f"{w:>12s}" for w in words))
    for key, c in results.items():
        total = sum(c.values())
        print(f"{key:32s} {total:4d} " + " ".join(f"{c[w]:>12d}" for w in words))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": n, "tolerance": args.tolerance, "drift_identical_pairs": drifts,
                                               "verdicts": {k: dict(v) for k, v in results.items()}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
