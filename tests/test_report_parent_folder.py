"""`inferecon report` given a folder of runs (results/, say) refuses in one line naming the runs
inside: it wrote a page from whichever subfolder's files came first, under the parent's name,
and exited 0. A run whose results sit one folder below its own manifest is still a run."""

from __future__ import annotations

import json

from inferecon import cli


def _run(folder, manifest=True):
    folder.mkdir(parents=True)
    if manifest:
        (folder / "manifest.json").write_text(json.dumps({"run_id": folder.name, "status": "complete"}))
    (folder / "validation.csv").write_text("case,predicted_ms,measured_ms\na,1.0,1.1\n")


def test_a_folder_of_runs_is_refused_naming_them(tmp_path, capsys):
    parent = tmp_path / "results"
    for name in ("run-b", "run-a"):
        _run(parent / name)
    (parent / "notes").mkdir()  # a folder that is not a run is not listed
    rc = cli.main(["report", str(parent)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == (f"inferecon: error: {parent}: a folder of 2 runs, not a run: report one of them (run-a, run-b), "
                        f"e.g. `inferecon report {parent / 'run-a'}`")
    assert not (parent / "report.html").exists()


def test_a_run_with_results_one_folder_below_is_still_reported(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"run_id": "run", "status": "complete"}))
    _run(run / "validate", manifest=False)
    assert cli.main(["report", str(run), "--out", str(tmp_path / "page.html")]) == 0
    assert "validation.csv" in (tmp_path / "page.html").read_text()
