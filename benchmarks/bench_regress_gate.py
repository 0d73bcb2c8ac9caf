"""The regression gate's own quality: false positives on repeated identical runs and the
detection rate of injected slowdowns.

    python benchmarks/bench_regress_gate.py --runs 20 --runs-dir /tmp/regress_runs   # measure + evaluate
    python benchmarks/bench_regress_gate.py --runs-dir /tmp/regress_runs --reuse     # evaluate existing runs

1. N sentinel runs (`inferecon calibrate --device cpu --quick`), one after another, each in
   its own process: nothing changes between them, so every regression verdict between two of
   them is a false positive. All N·(N−1)/2 pairs are compared, baseline = earlier run.
2. Detection, by multiplying raw samples by (1 + s), s = 2%, 5%, 10%:
   - "copy":  run i against a slowed copy of itself (the issue's definition: no between-run
              noise, so an upper bound on what the gate can see);
   - "pair":  run i against a slowed copy of another run j (between-run noise included: what
              an operator actually gets);
   - "subset": run i against a copy of run j with a random 20% of cases slowed; a hit is a
              slowed case flagged, a false alarm an unslowed one.
   Rates are given per case (of all matched cases, and of those that got a verdict) and per
   run/pair (any regression verdict = the gate's exit status 1).
3. Between-run vs within-run spread of each case's median (why the drift term exists).

Writes benchmarks/results/regress_gate.json (rates for every configuration tried) and prints
a table. The bootstrap medians of each run are computed once and shared by all its pairs.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inferecon.regress.gate import (  # noqa: E402
    GateConfig, _samples, bootstrap_medians, compare_case, index_cases, pool_rows)
from inferecon.harness.store import read_run  # noqa: E402

SLOWDOWNS = (0.02, 0.05, 0.10)


def measure(runs_dir: Path, n: int, reuse: bool) -> list[Path]:
    runs_dir.mkdir(parents=True, exist_ok=True)
    dirs = []
    for i in range(1, n + 1):
        d = runs_dir / f"run-{i:02d}"
        done = (d / "manifest.json").is_file() and '"complete"' in (d / "manifest.json").read_text()
        if not (reuse and done):
            if d.exists():
                raise SystemExit(f"{d} exists: pass --reuse to use it, or choose another --runs-dir")
            t0 = time.monotonic()
            subprocess.run([sys.executable, "-m", "inferecon", "calibrate", "--device", "cpu", "--quick",
                            "--out", str(d), "--no-progress"], check=True, stdout=subprocess.DEVNULL)
            print(f"run {i}/{n}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
        dirs.append(d)
    return dirs


class Run:
    """A run's cases with two independent bootstrap streams of each case's median."""

    def __init__(self, path: Path, idx: int, cfg: GateConfig):
        self.path = path
        _, tables = read_run(path)
        self.cases = index_cases(tables)
        self.boot = {}
        for key, row in self.cases.items():
            x = _samples(row)
            if x.size >= cfg.min_samples:
                self.boot[key] = [bootstrap_medians(x, cfg.resamples, np.random.default_rng([cfg.seed, idx, side, zlib.crc32("/".join(key).encode())]))
                                  for side in (0, 1)]


def _scaled(row: dict, factor: float) -> dict:
    return {**row, "samples_us": np.asarray(row["samples_us"], dtype=float) * factor}


def gate(a: Run, b: Run, cfg: GateConfig, slow: dict | None = None, same: bool = False):
    """Verdicts of every case in both runs; `slow` maps case -> factor applied to b."""
    out = {}
    for key in sorted(set(a.cases) & set(b.cases)):
        f = (slow or {}).get(key, 1.0)
        ra, rb = a.cases[key], _scaled(b.cases[key], f) if f != 1.0 else b.cases[key]
        ba = a.boot.get(key, [None, None])[0]
        bb = b.boot.get(key, [None, None])[1]
        out[key] = compare_case(key[0], key[1], ra, rb, cfg, ba, None if bb is None else bb * f).verdict
    return out


def evaluate(runs: list[Run], cfg: GateConfig, rng_seed: int = 1) -> dict:
    pairs = list(itertools.combinations(range(len(runs)), 2))
    res: dict = {"config": dataclasses.asdict(cfg), "pairs": len(pairs)}
    # -- false positives --------------------------------------------------------------
    fp_pairs = fp_cases = n_cases = verdict_cases = unchanged = 0
    for i, j in pairs:
        v = gate(runs[i], runs[j], cfg)
        reg = sum(x == "regression" for x in v.values())
        fp_pairs += reg > 0
        fp_cases += reg
        n_cases += len(v)
        verdict_cases += sum(x in ("regression", "improvement", "unchanged") for x in v.values())
        unchanged += sum(x == "unchanged" for x in v.values())
    res["false_positive"] = {"pair_rate": fp_pairs / len(pairs), "case_rate": fp_cases / n_cases,
                             "case_rate_of_verdicts": fp_cases / max(verdict_cases, 1),
                             "verdict_share": verdict_cases / n_cases, "unchanged_share": unchanged / n_cases,
                             "pairs_flagged": fp_pairs, "cases_flagged": fp_cases, "cases": n_cases}
    # -- detection --------------------------------------------------------------------
    det = {}
    rng = np.random.default_rng(rng_seed)
    for s in SLOWDOWNS:
        row = {}
        for mode in ("copy", "pair"):
            todo = [(i, i) for i in range(len(runs))] if mode == "copy" else pairs
            hit_runs = hit = total = eligible = 0
            for i, j in todo:
                slow = {k: 1 + s for k in runs[j].cases}
                v = gate(runs[i], runs[j], cfg, slow)
                reg = sum(x == "regression" for x in v.values())
                hit_runs += reg > 0
                hit += reg
                total += len(v)
                eligible += sum(x != "noisy" for x in v.values())
            row[mode] = {"run_rate": hit_runs / len(todo), "case_rate": hit / total,
                         "case_rate_of_verdicts": hit / max(eligible, 1), "verdict_share": eligible / total}
        # a random 20% of cases slowed in a copy of another run
        hits = slowed = false = unslowed = runs_hit = 0
        for i, j in pairs:
            keys = sorted(runs[j].cases)
            pick = {keys[k] for k in rng.choice(len(keys), max(1, len(keys) // 5), replace=False)}
            v = gate(runs[i], runs[j], cfg, {k: 1 + s for k in pick})
            hits += sum(v.get(k) == "regression" for k in pick)
            slowed += len(pick)
            false += sum(x == "regression" for k, x in v.items() if k not in pick)
            unslowed += len(v) - len(pick & set(v))
            runs_hit += any(v.get(k) == "regression" for k in pick)
        row["subset"] = {"slowed_case_rate": hits / slowed, "false_alarm_case_rate": false / max(unslowed, 1),
                         "run_rate": runs_hit / len(pairs)}
        det[f"{int(round(100 * s))}%"] = row
    res["detection"] = det
    return res


def evaluate_sets(runs: list[Run], k: int, cfg: GateConfig) -> dict:
    """Baseline = k consecutive runs (`--baseline` repeated), candidate = the next run: each
    CI includes the k runs' between-run spread. False positives on the unslowed candidate
    ("0%"), detection with every case of the candidate slowed by s."""
    out = {"k": k, "comparisons": len(runs) - k}
    for s in (0.0,) + SLOWDOWNS:
        runs_flagged = flagged = total = verdicts = 0
        for c in range(k, len(runs)):
            base, cand = runs[c - k:c], runs[c]
            hit = 0
            for key in sorted(cand.cases):
                rows = [r.cases[key] for r in base if key in r.cases]
                if not rows:
                    continue
                v = compare_case(key[0], key[1], pool_rows(rows), _scaled(cand.cases[key], 1 + s), cfg).verdict
                hit += v == "regression"
                verdicts += v != "noisy"
                total += 1
            flagged += hit
            runs_flagged += hit > 0
        out["0%" if s == 0 else f"{int(round(100 * s))}%"] = {
            "run_rate": runs_flagged / out["comparisons"], "case_rate": flagged / max(total, 1),
            "verdict_share": verdicts / max(total, 1), "cases": total}
    return out


def spread(runs: list[Run]) -> list[dict]:
    """Per case: σ of log(median) across runs vs the median within-run bootstrap σ."""
    out = []
    for key in sorted(set.intersection(*(set(r.boot) for r in runs))):
        meds = np.log([np.median(_samples(r.cases[key])) for r in runs])
        within = np.median([np.std(np.log(r.boot[key][0])) for r in runs])
        noisy = np.mean([bool(r.cases[key].get("noisy")) for r in runs])
        n = int(np.median([len(_samples(r.cases[key])) for r in runs]))
        out.append({"case": "/".join(key), "n_samples": n, "noisy_share": round(float(noisy), 2),
                    "between_sigma": round(float(np.std(meds, ddof=1)), 4), "within_sigma": round(float(within), 4)})
    return out


CONFIGS = {
    # name: overrides of GateConfig; "default" must match GateConfig's defaults
    "default": {},
    "whole-CI-beyond-tol": {"rule": "whole"},
    "flag-not-veto": {"noisy_flag": "ci"},
    "conf95%": {"confidence": 0.95},
    "width10%": {"max_ci_width": 0.10},
    "min-samples-10": {"min_samples": 10},
    "drift1%": {"drift": 0.01},
    "drift2%": {"drift": 0.02},
    "drift5%": {"drift": 0.05},
    "drift10%": {"drift": 0.10},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="number of sentinel runs (default 20)")
    ap.add_argument("--runs-dir", default="/tmp/regress_runs", help="where the runs live (kept out of git)")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs in --runs-dir instead of refusing")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names of configurations to evaluate")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "regress_gate.json"))
    args = ap.parse_args(argv)

    dirs = measure(Path(args.runs_dir), args.runs, args.reuse)
    t0 = time.monotonic()
    results = {}
    base_runs = None
    for name in args.configs.split(","):
        cfg = GateConfig(**CONFIGS[name])
        # bootstrap medians depend only on resamples/seed/min_samples: share them across configs
        if base_runs is None:
            base_runs = [Run(d, i, cfg) for i, d in enumerate(dirs)]
        results[name] = evaluate(base_runs, cfg)
        fp, det = results[name]["false_positive"], results[name]["detection"]
        print(f"{name:24s} FP pairs {100 * fp['pair_rate']:5.1f}%  FP cases {100 * fp['case_rate']:5.2f}%  "
              f"verdicts {100 * fp['verdict_share']:4.0f}%  | " + "  ".join(
                  f"{k}: copy run {100 * d['copy']['run_rate']:.0f}%/case {100 * d['copy']['case_rate']:.0f}% "
                  f"pair run {100 * d['pair']['run_rate']:.0f}%/case {100 * d['pair']['case_rate']:.0f}%"
                  for k, d in det.items()))
    sets = {}
    for k in (3, 5):
        sets[f"k{k}"] = evaluate_sets(base_runs, k, GateConfig())
        print(f"baseline of {k} runs (default config, {sets[f'k{k}']['comparisons']} candidates): " + "  ".join(
            f"{name}: runs flagged {100 * d['run_rate']:.0f}%, cases {100 * d['case_rate']:.1f}%, verdicts "
            f"{100 * d['verdict_share']:.0f}%" for name, d in sets[f"k{k}"].items() if name not in ("k", "comparisons")))
    sp = spread(base_runs)
    ratio = [s["between_sigma"] / s["within_sigma"] for s in sp if s["within_sigma"] > 0]
    print(f"\nbetween-run σ(log median) / within-run bootstrap σ: median {np.median(ratio):.1f}x "
          f"(range {min(ratio):.1f}-{max(ratio):.1f}x over {len(ratio)} cases)")
    for s in sp:
        print(f"  {s['case']:48s} n={s['n_samples']:4d} noisy {s['noisy_share']:.2f}  between {100 * s['between_sigma']:6.2f}%  "
              f"within {100 * s['within_sigma']:6.2f}%")
    out = {"runs": len(dirs), "runs_dir": str(args.runs_dir), "host_note": "shared 2-core CPU VM, other jobs running",
           "command": "python benchmarks/bench_regress_gate.py " + " ".join(argv or sys.argv[1:]),
           "evaluate_s": round(time.monotonic() - t0, 1), "configs": results, "baseline_sets": sets, "spread": sp}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
