"""Output paths: checked before any work, written atomically, one line on every fault.

Faults are real where the runner allows: a path under /proc (cannot be created, even by
root), a file where a directory is expected, a read-only tmpfs mount, and a full tmpfs disk
(tests/hardening_fs.py says what happens where mounting is not allowed).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardening_fs import enospc, fill, read_only_dir, small_disk
from inferecon.core import outpath
from inferecon.cli import main
from inferecon.core.errors import UserError


def _digest(d: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


def _main(argv, capsys):
    """(exit status, stdout, stderr) of an in-process `inferecon` call."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------------------
# The check itself


def test_existing_file_is_not_a_directory(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(UserError, match="a file, not a directory"):
        outpath.check_out_dir(f)
    with pytest.raises(UserError, match=f"{f} is a file, not a directory"):
        outpath.check_out_dir(f / "sub" / "deeper")


def test_proc_path_cannot_be_created():
    with pytest.raises(UserError, match="cannot write there"):
        outpath.check_out_dir("/proc/inferecon-test/run")


def test_creatable_dir_passes_and_leaves_no_trace(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    assert outpath.check_out_dir(target) == target
    assert not (tmp_path / "a").exists()  # the probe removed what it made
    target.mkdir(parents=True)
    outpath.check_out_dir(target)
    assert list(target.iterdir()) == []


def test_read_only_dir_is_refused(tmp_path):
    with read_only_dir(tmp_path / "ro") as ro:
        if ro is None:
            pytest.skip("no read-only directory can be made here (root without mount)")
        with pytest.raises(UserError, match="cannot write there"):
            outpath.check_out_dir(ro / "run")
        with pytest.raises(UserError, match="cannot write there"):
            outpath.check_out_dir(ro)


def test_out_file_must_not_be_a_directory(tmp_path):
    with pytest.raises(UserError, match="a directory, not a file"):
        outpath.check_out_file(tmp_path)
    assert outpath.check_out_file(tmp_path / "page.html") == tmp_path / "page.html"


# ---------------------------------------------------------------------------------------
# Atomic writes


def test_written_files_are_readable_by_others(tmp_path):
    outpath.write_text(tmp_path / "x.json", "{}")
    assert (tmp_path / "x.json").stat().st_mode & 0o044 == 0o044  # not mkstemp's private 0600


def test_full_disk_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch):
    with small_disk(tmp_path / "disk", "256k") as disk:
        if disk is None:
            disk = tmp_path
            outpath.write_text(disk / "a.txt", "previous\n")
            monkeypatch.setattr(outpath.os, "fsync", enospc)
        else:
            outpath.write_text(disk / "a.txt", "previous\n")
            fill(disk)
        with pytest.raises(UserError) as exc:
            outpath.write_text(disk / "a.txt", "new content " * 10_000)
        assert "disk full" in str(exc.value) and "previous file is intact" in str(exc.value)
        assert (disk / "a.txt").read_text() == "previous\n"
        assert not list(disk.glob(".a.txt.*"))  # no temp file left behind
        with pytest.raises(UserError, match="disk full; nothing was written"):
            outpath.write_text(disk / "b.txt", "x" * 100_000)
        assert not (disk / "b.txt").exists()


def test_run_store_on_a_full_disk_keeps_every_finished_case(tmp_path):
    from inferecon.harness.store import RunStore, read_run

    with small_disk(tmp_path / "disk", "64k") as disk:
        if disk is None:
            pytest.skip("no tmpfs can be mounted here; test_store covers a failing write")
        store = RunStore(disk / "run", {"device": "cpu"})
        rng = np.random.default_rng(0)  # incompressible samples: each case adds ~4 KB to the table
        rec = {"benchmark_version": 1, "device": "cpu", "device_name": "x", "gpu_count": 0, "reps": 200,
               "median_us": 1.0, "iqr_us": 0.0, "noisy": False, "throttled": False}
        stored = 0
        with pytest.raises(UserError, match="disk full; the previous file is intact"):
            for i in range(10_000):  # each case rewrites the whole table: the disk fills
                store.append("memory", {**rec, "case_id": f"c{i}", "samples_us": rng.random(500).tolist()})
                stored += 1
        _, tables = read_run(disk / "run")
        assert stored > 0 and tables["memory"]["case_id"].tolist() == [f"c{i}" for i in range(stored)]


# ---------------------------------------------------------------------------------------
# Every command: a bad --out is one line, exit 2, before any work


def _bad_paths(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    return {"existing file": (f, "a file, not a directory"),
            "file as parent": (f / "out", "is a file, not a directory"),
            "under /proc": (Path("/proc/inferecon-test/out"), "cannot write there")}


@pytest.mark.parametrize("kind", ["existing file", "file as parent", "under /proc"])
def test_frontier_bad_out_fails_before_the_search(kind, tmp_path, capsys):
    path, message = _bad_paths(tmp_path)[kind]
    rc, out, err = _main(["frontier", "--model", "llama-3-70b", "--out", path], capsys)
    assert rc == 2 and message in _one_line(err)
    assert out == ""  # nothing was searched or printed first


def test_frontier_read_only_out(tmp_path, capsys):
    with read_only_dir(tmp_path / "ro") as ro:
        if ro is None:
            pytest.skip("no read-only directory can be made here")
        rc, out, err = _main(["frontier", "--model", "llama-3-70b", "--out", ro / "f"], capsys)
        assert rc == 2 and "cannot write there" in _one_line(err) and out == ""


def test_frontier_on_a_full_disk_keeps_the_previous_results(tmp_path, capsys, monkeypatch):
    with small_disk(tmp_path / "disk", "2m") as disk:
        base = disk if disk is not None else tmp_path
        out = base / "f"
        assert _main(["frontier", "--model", "llama-3-70b", "--out", out], capsys)[0] == 0
        before = _digest(out)
        if disk is not None:
            fill(disk)
        else:
            monkeypatch.setattr(outpath.os, "fsync", enospc)
        rc, _, err = _main(["frontier", "--model", "llama-3-70b", "--context", "2048", "--out", out], capsys)
        assert rc == 2 and "disk full; the previous file is intact" in _one_line(err)
        assert _digest(out) == before and set(before) == {"frontier.csv", "frontier.png"}


def _synthetic_run(path: Path) -> Path:
    from test_regress import make_run

    return make_run(path, seed=3)


@pytest.mark.parametrize("kind", ["existing file", "file as parent", "under /proc"])
def test_regress_and_calibrate_from_and_report_bad_out(kind, tmp_path, capsys):
    path, message = _bad_paths(tmp_path)[kind]
    a = _synthetic_run(tmp_path / "a")
    b = _synthetic_run(tmp_path / "b")
    rc, out, err = _main(["regress", "--no-model", "--baseline", a, "--candidate", b, "--out", path], capsys)
    assert rc == 2 and message in _one_line(err) and out == ""
    rc, out, err = _main(["calibrate", "--from", a, "--out", path], capsys)
    assert rc == 2 and message in _one_line(err) and out == ""
    # report --out names a page: its folder must be a writable directory.
    page = path if kind != "existing file" else path / "page.html"
    rc, out, err = _main(["report", a, "--out", page], capsys)
    page_message = "cannot write there" if kind == "under /proc" else "a file, not a directory"
    assert rc == 2 and page_message in _one_line(err) and out == ""


def test_report_out_naming_a_directory(tmp_path, capsys):
    run = _synthetic_run(tmp_path / "run")
    rc, out, err = _main(["report", run, "--out", tmp_path], capsys)
    assert rc == 2 and "a directory, not a file" in _one_line(err)


@pytest.mark.slow
def test_report_page_on_a_full_disk_is_not_truncated(tmp_path, capsys, monkeypatch):
    with small_disk(tmp_path / "disk", "4m") as disk:
        base = disk if disk is not None else tmp_path
        run = _synthetic_run(base / "run")
        assert _main(["calibrate", "--from", run], capsys)[0] == 0
        page = (run / "report.html").read_bytes()
        before = _digest(run)
        (run / "validation.json").write_text('{"mape": 0.1}')  # something new for the page to show
        if disk is not None:
            fill(disk)
        else:
            monkeypatch.setattr(outpath.os, "fsync", enospc)
        rc, _, err = _main(["report", run], capsys)
        assert rc == 2 and "disk full" in _one_line(err)
        assert (run / "report.html").read_bytes() == page  # the previous page, whole
        after = _digest(run)
        after.pop("validation.json")
        assert {k: v for k, v in after.items() if not k.startswith("filler")} == before


# Measuring commands: torch is imported and a device resolved, then the run directory is
# checked before the first case. Run as real processes (they pin threads and signals).


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "inferecon", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("command,kind", [
    (["bench", "memory", "--device", "cpu", "--quick"], "file as parent"),
    (["calibrate", "--device", "cpu", "--quick"], "under /proc"),
    (["validate", "--hardware", "PROFILE", "--model", "tiny-llama", "--device", "cpu", "--quick"], "existing file"),
])
@pytest.mark.slow
def test_measuring_commands_refuse_bad_out_before_measuring(command, kind, tmp_path):
    pytest.importorskip("torch")
    # validate on the CPU takes a CPU calibration (a GPU's profile is refused first, for itself):
    # the real one the vLLM CPU loop calibrated, committed as a fixture.
    prof = Path(__file__).parent / "fixtures" / "engines" / "vllm_real" / "profile.json"
    command = [str(prof) if c == "PROFILE" else c for c in command]
    path, message = _bad_paths(tmp_path)[kind]
    r = _cli(*command, "--out", path)
    assert r.returncode == 2 and message in _one_line(r.stderr)
    assert r.stdout == ""  # no case measured, no summary printed


def test_save_baseline_bad_dir_and_full_disk(tmp_path, capsys, monkeypatch):
    run = _synthetic_run(tmp_path / "run")
    f = tmp_path / "a-file"
    f.write_text("x")
    rc, _, err = _main(["regress", "--save-baseline", run, "--baselines-dir", f], capsys)
    assert rc == 2 and "--baselines-dir" in _one_line(err) and "a file, not a directory" in err
    with small_disk(tmp_path / "disk", "32k") as disk:  # smaller than the run's tables
        if disk is None:  # no mount: a copy that fails as a full disk would
            import shutil

            disk = tmp_path / "d"
            monkeypatch.setattr(shutil, "copy2", enospc)
        rc, _, err = _main(["regress", "--save-baseline", run, "--baselines-dir", disk / "baselines"], capsys)
        assert rc == 2 and "nothing was saved" in _one_line(err)
        assert list((disk / "baselines").iterdir()) == []  # no partial baseline left


@pytest.mark.parametrize("command", ["calibrate", "validate"])
def test_engine_result_commands_refuse_bad_out(command, tmp_path, capsys):
    runs = "tests/fixtures/engines/vllm_bench_serve_llama-3.1-8b_c8.json"
    path, message = _bad_paths(tmp_path)["file as parent"]
    rc, out, err = _main([command, "--engine-results", runs, "--out", path], capsys)
    assert rc == 2 and message in _one_line(err) and not (tmp_path / "a-file").is_dir()
