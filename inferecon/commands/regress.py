"""`inferecon regress`: did the node get slower (or faster) at anything the cost model
depends on? Compares two runs case by case, says what changed in their manifests and what it
does to a reference model's frontier. Exit 0 unchanged/improved, 1 regression beyond
tolerance, 2 unusable input, 3 incomplete (a run lacks cases the other has, or was
interrupted), 4 inconclusive (the node's between-run drift exceeds the tolerance, or too few
cases could be judged)."""

from __future__ import annotations

from inferecon.core.text import first_paragraph

import json
import math
import sys
from pathlib import Path

from inferecon import cli_args
from inferecon.core.errors import RequestError, UserError, existing_dir
from inferecon.report.regress_report import render


def register(sub) -> None:
    p = sub.add_parser("regress", help="regression gate: compare a run with a baseline (exit 1 on a regression)",
                       description=first_paragraph(__doc__))
    p.add_argument("--baseline", metavar="RUN_A", action="append", default=None, type=cli_args.given("a run directory"),
                   help="baseline run directory (default: newest saved baseline of the candidate's GPU model and "
                        "count); repeat it with several runs of the same node to widen each CI by their measured "
                        "between-run spread")
    p.add_argument("--candidate", metavar="RUN_B", default=None, type=cli_args.given("a run directory"),
                   help="the run to check")
    p.add_argument("--tolerance", default="3%", help="smallest slowdown that counts, e.g. 3%% or 0.03 (default 3%%)")
    p.add_argument("--confidence", type=float, default=0.99, help="bootstrap CI level (default 0.99)")
    p.add_argument("--drift", default="0%",
                   help="between-run spread of this node (σ of log ratio) added to each CI, e.g. 2%% (default 0%%)")
    p.add_argument("--resamples", type=cli_args.int_in(100, 100_000), default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=cli_args.int_in(0, 2**32 - 1), default=0, help="bootstrap seed (default 0)")
    p.add_argument("--force", action="store_true",
                   help="compare runs of different GPU models; save an incomplete run as a baseline")
    p.add_argument("--all", action="store_true", help="list unchanged cases too")
    p.add_argument("--json", action="store_true", help="print a machine-readable object instead of the table")
    p.add_argument("--out", metavar="DIR", default=None, type=cli_args.given("a folder, e.g. results/run1"),
                   help="where regress.md and regress.json go (default: the candidate run directory)")
    p.add_argument("--model", default="llama-3-70b", type=cli_args.given("a model, e.g. llama-3-70b"),
                   help="reference model for the impact (default llama-3-70b)")
    p.add_argument("--context", type=cli_args.CONTEXT_TOKENS, default=4096, help="context for the impact (default 4096)")
    p.add_argument("--max-gpus", type=cli_args.MAX_GPUS, default=64, help="largest instance in the impact search (default 64)")
    p.add_argument("--no-model", action="store_true", help="skip the model impact (no profile fits)")
    p.add_argument("--save-baseline", metavar="RUN_DIR", default=None, type=cli_args.given("a run directory"),
                   help="save RUN_DIR under --baselines-dir as <gpu>-x<count>-driver<ver>-<date> and exit")
    p.add_argument("--baseline-runs", type=cli_args.BASELINE_RUNS, default=1, metavar="N",
                   help="without --baseline: use the newest N saved baselines of this GPU model and count as one "
                        "baseline set (default 1; 3+ lets the gate see the node's run-to-run spread)")
    p.add_argument("--baselines-dir", default=None, type=cli_args.given("a folder"),
                   help="where baselines live (default results/baselines)")
    p.set_defaults(func=run)


def parse_fraction(text: str, flag: str) -> float:
    """'3%' or '0.03' -> 0.03; a bare number >= 1 is refused as ambiguous."""
    s = str(text).strip()
    try:
        if s.endswith("%"):
            return float(s[:-1]) / 100
        v = float(s)
    except ValueError:
        raise UserError(f"{flag} must be a percentage like 3% or a fraction like 0.03, got {text!r}") from None
    if v >= 1:
        raise UserError(f"{flag} {text!r} is ambiguous: write {v:g}% or {v / 100:g}")
    if v < 0:  # said as typed: "-3" read as a fraction would be reported as -300%
        raise UserError(f"{flag} {text!r}: must be 0 or more, a percentage like 3% or a fraction like 0.03")
    return v


# ------------------------------------------------------------------------------------------
# Manifest differences


def _gpu_values(meta: dict, key: str):
    vals = [g.get(key) for g in (meta.get("nvml", {}) or {}).get("gpus", []) or []]
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    uniq = sorted(set(map(str, vals)))
    return uniq[0] if len(uniq) == 1 else "/".join(uniq)


def manifest_facts(m: dict) -> dict:
    """The facts of a run that can explain a speed change, flat and printable."""
    meta = m.get("metadata", {}) or {}
    nv = meta.get("nvml", {}) or {}
    cpu = meta.get("cpu", {}) or {}
    facts = {
        "device_name": m.get("device_name"), "gpu_count": m.get("gpu_count"),
        "driver": nv.get("driver_version"), "cuda_driver": nv.get("cuda_driver_version"),
        "cuda (torch)": meta.get("torch_cuda_version"), "nccl": meta.get("nccl_version"),
        "torch": meta.get("torch_version"), "inferecon": m.get("inferecon_version"),
        "python": meta.get("python"), "host": m.get("host"), "cpu": cpu.get("model"),
        "cpu cores": cpu.get("logical_cores"), "torch threads": cpu.get("torch_threads"),
        "platform": meta.get("platform"),
    }
    for key, label in (("sm_clock_max_mhz", "max SM clock MHz"), ("mem_clock_max_mhz", "max memory clock MHz"),
                       ("applications_sm_clock_mhz", "application SM clock MHz"), ("power_limit_w", "power limit W"),
                       ("ecc_mode", "ECC"), ("persistence_mode", "persistence mode"), ("mig_mode", "MIG"),
                       ("nvlink_active_links", "NVLink links"), ("name", "GPU names")):
        facts[label] = _gpu_values(meta, key)
    for k, v in sorted((meta.get("env") or {}).items()):
        facts[f"env {k}"] = v
    return facts


def manifest_diff(a: dict, b: dict) -> list[tuple[str, object, object]]:
    fa, fb = manifest_facts(a), manifest_facts(b)
    return [(k, fa.get(k), fb.get(k)) for k in dict.fromkeys([*fa, *fb]) if str(fa.get(k)) != str(fb.get(k))]


# ------------------------------------------------------------------------------------------
# Model impact


def model_impact(run_a: Path, run_b: Path, model_name: str, context: int, max_gpus: int) -> dict:
    """Fit each run's profile and compare a reference model's frontier under both. Returns
    {"error": why} when it cannot (a profile that does not fit the model, say): the gate's
    verdict does not depend on it."""
    import warnings

    from inferecon.calibration.build import profile_from_run
    from inferecon.model.catalog import resolve_model
    from inferecon.model.compare import compare
    from inferecon.model.frontier import SearchSpace, search

    try:
        model = resolve_model(model_name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fits of noisy CPU runs warn; the numbers say enough
            pa = profile_from_run(run_a).profile
            pb = profile_from_run(run_b).profile
        space = SearchSpace(max_gpus=max_gpus)
        fa, fb = search(model, pa, context, space), search(model, pb, context, space)
        d = compare(model, pa, pb, fa, fb, context)
    except UserError as exc:
        return {"model": model_name, "error": str(exc)}
    except Exception as exc:  # a fit that blows up must not hide the case verdicts
        return {"model": model_name, "error": f"{type(exc).__name__}: {exc}"}
    return {"model": model.name, "context": context, "max_gpus": max_gpus, "baseline_run": str(run_a),
            "max_tok_s": [d.max_speed_a, d.max_speed_b], "max_tok_s_change": d.max_speed_change,
            "min_usd_per_mtok": [d.min_cost_a, d.min_cost_b], "min_usd_per_mtok_change": d.min_cost_b / d.min_cost_a - 1,
            "moved": d.moved_term, "terms_ms_a": {k: 1e3 * v for k, v in d.terms_a.items()},
            "terms_ms_b": {k: 1e3 * v for k, v in d.terms_b.items()}}


# ------------------------------------------------------------------------------------------
# Output


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


# ------------------------------------------------------------------------------------------


def _same_run(a, b) -> bool:
    """Two (manifest, tables) are one run, wherever it was copied (a saved baseline is a copy of
    a run directory): the same host and start time, and the same measurements."""
    (man_a, tab_a), (man_b, tab_b) = a, b
    if (man_a.get("host"), man_a.get("start_time")) != (man_b.get("host"), man_b.get("start_time")):
        return False
    return set(tab_a) == set(tab_b) and all(tab_a[k].equals(tab_b[k]) for k in tab_a)


def _check_distinct_runs(bases, runs, cand, run_b) -> None:
    """The same run given twice answers no question: as two baselines it shows no between-run
    spread (the gate would call the node steadier than it is), as baseline and candidate it can
    only compare with itself. Said in one line instead of an unexplained verdict."""
    for i, (b, r) in enumerate(zip(bases, runs)):
        for b0, r0 in zip(bases[:i], runs[:i]):
            if b.resolve() == b0.resolve() or _same_run(r, r0):
                raise UserError(f"--baseline {b} and {b0} are the same run (host {r[0].get('host')}, started "
                                f"{r[0].get('start_time')}): a run given twice shows no between-run spread; "
                                "give distinct runs")
        if _same_run(r, run_b):
            raise UserError(f"--candidate {cand} is a copy of the baseline {b} (host {r[0].get('host')}, started "
                            f"{r[0].get('start_time')}, the same measurements): a run compared with itself says "
                            "nothing about the node")


def run(args) -> int:
    from dataclasses import asdict

    from inferecon.regress import baselines
    from inferecon.regress.gate import GateConfig, compare_bench_runs, decide
    from inferecon.harness.store import read_manifest, read_run
    from inferecon.core.outpath import check_out_dir, write_text

    root = Path(args.baselines_dir) if args.baselines_dir else baselines.DEFAULT_DIR
    if root.exists():  # absent is fine: no baseline saved yet (pick_newest says so)
        existing_dir(root, "directory", flag="--baselines-dir")
    if args.save_baseline:
        if args.candidate or args.baseline:
            raise UserError("--save-baseline RUN_DIR saves a baseline; run the check separately")
        dest = baselines.save(args.save_baseline, root, allow_incomplete=args.force)
        print(f"saved baseline {dest}")
        return 0
    if not args.candidate:
        raise UserError("--candidate RUN_DIR is required (or --save-baseline RUN_DIR)")
    cand = existing_dir(args.candidate, flag="--candidate")
    drift = parse_fraction(args.drift, "--drift")
    if not (math.isfinite(drift) and drift >= 0):
        raise UserError(f"--drift must be a spread of 0% or more, got {args.drift!r}")
    try:
        cfg = GateConfig(tolerance=parse_fraction(args.tolerance, "--tolerance"), confidence=args.confidence,
                         resamples=args.resamples, seed=args.seed, drift=drift)
    except RequestError as exc:
        raise cli_args.flag_error(exc) from None
    if args.context < 1 or args.max_gpus < 1:
        raise UserError("--context and --max-gpus must be at least 1")
    if not args.no_model:  # a misspelt --model is bad input, not a note in the report after the work
        from inferecon.model.catalog import resolve_model

        resolve_model(args.model)
    picked = args.baseline is None  # --baseline-runs is bounded where it is parsed (cli_args.BASELINE_RUNS)
    if picked:
        bases = baselines.pick_newest(read_manifest(cand), root, exclude=cand, count=args.baseline_runs)
        if len(bases) < args.baseline_runs:  # fewer than asked: the gate sees less spread than the user expects
            print(f"inferecon: note: --baseline-runs {args.baseline_runs}: only {len(bases)} saved baseline(s) of "
                  f"this GPU model and count under {root}; using {len(bases)}", file=sys.stderr)
    else:
        bases = [Path(b) for b in args.baseline]
    out = Path(args.out) if args.out else cand
    for base in bases:
        existing_dir(base, flag="--baseline")
        if base.resolve() == cand.resolve():
            raise UserError("--baseline and --candidate are the same run directory")
        if out.resolve() == base.resolve():
            raise UserError("--out is a baseline run: a baseline is never written to")
    check_out_dir(out)  # before reading and bootstrapping the runs: one line if it cannot be written

    runs_a = [read_run(b) for b in bases]  # UserError (exit 2) on a truncated or foreign Parquet file
    man_b, tables_b = read_run(cand)
    _check_distinct_runs(bases, runs_a, cand, (man_b, tables_b))
    base, man_a = bases[-1], runs_a[-1][0]  # the manifest diff and the model impact use the last baseline
    name_b, n_b = baselines.identity(man_b)
    for b, (m, _) in zip(bases, runs_a):
        name_a, n_a = baselines.identity(m)
        if name_a != name_b and not args.force:
            raise UserError(f"the runs are from different devices ({name_a!r} in {b} vs {name_b!r}): a speed change "
                            f"would be the hardware, not the upgrade; pass --force to compare anyway")
    gate = compare_bench_runs([t for _, t in runs_a], tables_b, cfg)

    notes = []
    if n_a != n_b:
        notes.append(f"GPU count differs ({n_a} vs {n_b}): collectives of other world sizes are missing, not compared")
    # A run that did not finish (interrupted, or still "running" after a kill) lacks cases.
    interrupted = [(f"baseline {b}" if len(bases) > 1 else "baseline", str(m.get("status")))
                   for b, (m, _) in zip(bases, runs_a) if m.get("status") != "complete"]
    if man_b.get("status") != "complete":
        interrupted.append(("candidate", str(man_b.get("status"))))
    counts = gate.counts()
    verdict = decide(gate, interrupted)
    report = {
        "baseline": ", ".join(map(str, bases)), "candidate": str(cand), "baseline_picked": picked,
        "exit_status": verdict.exit_status, "verdict": verdict.word, "verdict_line": verdict.line,
        "cases_judged": verdict.judged, "cases_measured_in_both": verdict.measured,
        "between_run_drift": verdict.drift,
        "config": asdict(cfg), "counts": counts,
        "cases": [{**asdict(c), "change_pct": c.change_pct} for c in gate.ordered()],
        "manifest_diff": [(k, a, b) for k, a, b in manifest_diff(man_a, man_b)],
        "notes": notes,
        "model_impact": None if args.no_model else model_impact(base, cand, args.model, args.context, args.max_gpus),
    }
    text = render(report, args.all)
    if notes:
        text += "\n" + "\n".join(f"note: {n}" for n in notes) + "\n"
    write_text(out / "regress.json", json.dumps(_jsonable(report), indent=2, default=str) + "\n")
    write_text(out / "regress.md", text)
    if args.json:
        print(json.dumps(_jsonable(report), indent=2, default=str))
    else:
        print(text, end="")
        print(f"wrote {out / 'regress.md'} and {out / 'regress.json'}")
    return report["exit_status"]
