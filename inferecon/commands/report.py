"""`inferecon report RUN_DIR`: regenerate a run's self-contained report.html from what the run
directory holds — its calibration (as `calibrate` recorded it, else refitted from the raw
measurements), and any validation, regression or frontier results saved there."""

from __future__ import annotations

import tempfile
from pathlib import Path

from inferecon import cli_args
from inferecon.core.text import first_paragraph
from inferecon.core.errors import UserError, existing_dir, load_json

MEASUREMENTS = ("matmul", "memory", "launch", "collectives")
# What each entry of calibration.json's "fits" holds (calibration/build.py writes it).
FIT_FIELDS = ("term", "form", "heldout_mape", "train_mape", "n_points", "params", "stderr", "converged")


def register(sub) -> None:
    p = sub.add_parser("report", help="regenerate RUN_DIR/report.html", description=first_paragraph(__doc__))
    p.add_argument("run_dir", metavar="RUN_DIR", type=cli_args.given("a run directory"))
    p.add_argument("--out", default=None,
                   help="write the page here instead (default RUN_DIR/report.html); the run directory is then "
                        "only read, never written")
    p.set_defaults(func=run)


def _has_results(run_dir: Path) -> bool:
    """Anything a report can show, where the page looks for it (the run and one folder below)."""
    return _reportable({p.name for p in run_dir.glob("*")} | {p.name for p in run_dir.glob("*/*")})


def _check_not_a_parent(run_dir: Path) -> None:
    """One line where `run_dir` holds runs rather than a run's results: nothing of its own the
    page shows, and subfolders that are runs themselves (each has the manifest.json every run
    writes). The page would be drawn from whichever subfolder's files come first, under the
    parent's name: a page of one run that says it is of another."""
    own = {p.name for p in run_dir.glob("*") if p.is_file()}
    if _reportable(own) or any(f"{b}.parquet" in own for b in MEASUREMENTS):
        return
    runs = sorted(p.name for p in run_dir.iterdir() if p.is_dir() and (p / "manifest.json").is_file())
    if runs:
        shown = ", ".join(runs[:10]) + (f" and {len(runs) - 10} more" if len(runs) > 10 else "")
        raise UserError(f"{run_dir}: a folder of {len(runs)} run{'s' if len(runs) > 1 else ''}, not a run: report one "
                        f"of them ({shown}), e.g. `inferecon report {run_dir / runs[0]}`")


def _reportable(names) -> bool:
    return any(n in ("manifest.json", "profile.json", "calibration.json", "regress.md")
               or n.startswith("validation") or (n.startswith("frontier") and n.endswith(".png")) for n in names)


def _recorded_summary(run_dir: Path) -> dict | None:
    """The fit summary `calibrate` wrote (calibration.json): it holds every fit, including those
    of ingested nccl-tests/nvbandwidth files that a refit of the run alone would drop."""
    path = run_dir / "calibration.json"
    if not path.is_file():
        return None
    summary = load_json(path, "calibration summary")
    if not isinstance(summary, dict) or not isinstance(summary.get("fits"), list):
        raise UserError(f"{path}: not a calibration summary written by `inferecon calibrate`")
    for i, fit in enumerate(summary["fits"]):  # the page reads each of these (calibration_report._fit_row)
        missing = [k for k in FIT_FIELDS if not isinstance(fit, dict) or k not in fit]
        if missing or not (isinstance(fit["params"], dict) and isinstance(fit["stderr"], dict)):
            raise UserError(f"{path}: fits[{i}] is not a fit as `inferecon calibrate` writes it "
                            f"({'no ' + ', '.join(missing) if missing else 'params and stderr must be objects'})")
    return summary


def _check_manifest(run_dir: Path) -> None:
    """A manifest the page can read (a JSON object), or one line: a run cut short mid-write
    must not end the page in a traceback."""
    path = run_dir / "manifest.json"
    if path.is_file() and not isinstance(load_json(path, "run manifest"), dict):
        raise UserError(f"{path}: not a run manifest (a JSON object)")


def run(args) -> int:
    from inferecon.core.outpath import check_out_dir, check_out_file, write_text
    from inferecon.report.calibration_report import render_report, write_calibration_outputs

    run_dir = existing_dir(args.run_dir)
    _check_not_a_parent(run_dir)  # before the --out checks: nothing is to be written for a folder of runs
    # Checked before any fit: a page that cannot be written fails in one line.
    out = (check_out_file(args.out) if args.out is not None
           else check_out_dir(run_dir, flag="RUN_DIR") / "report.html")
    if not _has_results(run_dir):
        raise UserError(f"{run_dir}: nothing to report (no measurements, profile, validation, regression or "
                        f"frontier results); run `inferecon calibrate --out {run_dir}` first")
    _check_manifest(run_dir)
    summary = _recorded_summary(run_dir)
    measured = any((run_dir / f"{b}.parquet").exists() for b in MEASUREMENTS)
    if summary is not None or not measured:
        write_text(out, render_report(run_dir, summary or {}))
    elif args.out is None:
        # Refit in place (an older run, or one measured by `bench`): the plots and the page
        # are the run's own outputs.
        from inferecon.calibration.build import profile_from_run

        result = profile_from_run(run_dir)
        if not (run_dir / "profile.json").exists():
            result.profile.save(run_dir / "profile.json")
        write_calibration_outputs(result, run_dir)
    else:
        # Refit for a page elsewhere: plots go to a scratch folder, the run is left untouched.
        from inferecon.calibration.build import profile_from_run

        result = profile_from_run(run_dir)
        with tempfile.TemporaryDirectory(prefix="inferecon-report-") as scratch:
            summary = write_calibration_outputs(result, Path(scratch))
            write_text(out, render_report(run_dir, summary, plot_dir=Path(scratch)))
    print(f"wrote {out}")
    return 0
