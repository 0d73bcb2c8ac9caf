"""`inferecon report RUN_DIR`: regenerate a run's self-contained report.html from what the run
directory holds — its calibration (refitted from the raw measurements), and any validation,
regression or frontier results saved there."""

from __future__ import annotations

from inferecon.cli_text import first_paragraph

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("report", help="regenerate RUN_DIR/report.html", description=first_paragraph(__doc__))
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", default=None, help="where to write the page (default RUN_DIR/report.html)")
    p.set_defaults(func=run)


def run(args) -> int:
    from inferecon.errors import UserError
    from inferecon.report.calibration_report import render_report, write_calibration_outputs

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    summary = {}
    if list(run_dir.glob("*.parquet")) and any(
            (run_dir / f"{b}.parquet").exists() for b in ("matmul", "memory", "launch", "collectives")):
        from inferecon.calibration.build import profile_from_run

        result = profile_from_run(run_dir)
        if not (run_dir / "profile.json").exists():
            result.profile.save(run_dir / "profile.json")
        summary = write_calibration_outputs(result, run_dir)
    out = Path(args.out) if args.out else run_dir / "report.html"
    out.write_text(render_report(run_dir, summary))
    print(f"wrote {out}")
    return 0
