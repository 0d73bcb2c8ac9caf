"""A run directory holds one machine and one kind of run: a --resume that would add rows of
another machine (device, device model, GPU count, host class, CPU threads) or merge one
command's cases into another command's run is refused in one line, before anything in the
run is touched. Run files are created readable by others (0644 under the usual umask)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from inferecon import cli
from inferecon.core.errors import UserError
from inferecon.harness.store import check_same_run, read_run, run_kind
from cli_check import one_line_error

REPO = Path(__file__).resolve().parents[1]


def _snapshot(run: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """A real one-benchmark CPU run (launch: one measured case, two skipped)."""
    out = tmp_path_factory.mktemp("identity") / "bench"
    assert cli.main(["bench", "launch", "--device", "cpu", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


def _copy_with(run: Path, dest: Path, **manifest_fields) -> Path:
    """The run as if measured elsewhere: the same files, the manifest saying another machine."""
    dest.mkdir()
    for p in run.iterdir():
        (dest / p.name).write_bytes(p.read_bytes())
    m = json.loads((dest / "manifest.json").read_text())
    m.update(manifest_fields)
    (dest / "manifest.json").write_text(json.dumps(m))
    return dest


def test_bench_manifest_records_its_identity(bench_run):
    from inferecon.harness.device import cpu_model, host_class

    manifest, tables = read_run(bench_run)
    assert manifest["run_kind"] == "bench" and run_kind(manifest) == "bench"
    assert manifest["device"] == "cpu" and manifest["device_name"] == cpu_model() and manifest["gpu_count"] == 0
    assert manifest["host_class"] == host_class() and f"{os.cpu_count()} cores" in manifest["host_class"]
    assert manifest["cpu_threads"] == 1  # bench pins one thread by default, as calibrate and validate
    assert (tables["launch"]["device_name"] == cpu_model()).all()


@pytest.mark.parametrize("field, value, message", [
    ("device_name", "Intel(R) Xeon(R) Platinum 8480+", "this machine has"),
    ("gpu_count", 8, "measured with 8 GPU(s), this machine has 0"),
    ("host_class", "Intel(R) Xeon(R) Platinum 8480+, 224 cores, 2016 GiB", "host"),
    ("device", "cuda", "measured on cuda, not cpu"),
])
def test_bench_resume_on_another_machine_is_refused(bench_run, tmp_path, capsys, field, value, message):
    run = _copy_with(bench_run, tmp_path / "elsewhere", **{field: value})
    before = _snapshot(run)
    line = one_line_error(capsys, ["bench", "launch", "--device", "cpu", "--quick", "--out", str(run), "--resume"])
    assert message in line and "--resume" in line and "choose another --out" in line
    assert str(value) in line
    assert _snapshot(run) == before  # refused before the store touched anything


def test_bench_resume_with_other_threads_is_refused(bench_run, tmp_path, capsys):
    run = _copy_with(bench_run, tmp_path / "threads")
    line = one_line_error(capsys, ["bench", "launch", "--device", "cpu", "--quick", "--out", str(run),
                                    "--resume", "--threads", "2"])
    assert "measured with 1 CPU thread(s), this run uses 2" in line


def test_bench_resume_on_the_same_machine_is_accepted(bench_run, tmp_path, capsys):
    run = _copy_with(bench_run, tmp_path / "same")
    assert cli.main(["bench", "launch", "--device", "cpu", "--quick", "--out", str(run), "--resume",
                     "--no-progress"]) == 0
    manifest, tables = read_run(run)
    assert manifest["status"] == "complete" and len(manifest["resumes"]) == 1
    assert tables["launch"]["case_id"].is_unique  # nothing measured twice


def _rows(path: Path) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:
        return 0


@pytest.fixture(scope="module")
def interrupted_calibration(tmp_path_factory):
    """A real `calibrate --quick` stopped with Ctrl-C after its first matmul case."""
    out = tmp_path_factory.mktemp("identity") / "calibration"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "inferecon.cli", "calibrate", "--quick", "--device", "cpu",
                             "--out", str(out), "--no-progress"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _rows(out / "matmul.parquet") < 1:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    return out


@pytest.mark.slow
def test_bench_resume_on_a_calibrate_run_is_refused(interrupted_calibration, capsys):
    run = interrupted_calibration
    before = _snapshot(run)
    line = one_line_error(capsys, ["bench", "matmul", "--device", "cpu", "--quick", "--out", str(run), "--resume"])
    assert "is a calibrate run, not a bench run" in line
    assert f"inferecon calibrate --resume --out {run}" in line  # says how to continue it
    assert _snapshot(run) == before
    assert read_run(run)[0]["status"] == "interrupted"


def test_calibrate_resume_on_a_bench_run_is_refused(bench_run, tmp_path, capsys):
    run = _copy_with(bench_run, tmp_path / "b")
    before = _snapshot(run)
    line = one_line_error(capsys, ["calibrate", "--quick", "--device", "cpu", "--out", str(run), "--resume"])
    assert "is a bench run, not a calibrate run" in line
    assert _snapshot(run) == before


def test_validate_resume_on_a_bench_run_is_refused(bench_run, tmp_path, capsys):
    run = _copy_with(bench_run, tmp_path / "v")
    before = _snapshot(run)
    profile = REPO / "tests" / "fixtures" / "validate" / "cpu_profile.json"
    line = one_line_error(capsys, ["validate", "--hardware", str(profile), "--model", "tiny-llama", "--layers", "2",
                                    "--batch", "1", "--context", "128", "--quick", "--out", str(run), "--resume"])
    assert "is a bench run, not a validate run" in line
    assert _snapshot(run) == before


# --------------------------------------------------------------------------------------------
# The rule itself, on manifests


def test_kind_of_older_manifests_is_inferred():
    assert run_kind({"benchmarks_requested": ["matmul"]}) == "bench"
    assert run_kind({"purpose": "calibrate", "benchmarks_requested": None}) == "calibrate"
    assert run_kind({"validate": {"model": "x"}}) == "validate"
    assert run_kind({"collectives": {"nproc_per_node": 2}}) == "bench"  # the standalone collectives module
    assert run_kind({}) is None


def test_fields_missing_on_either_side_are_not_compared():
    old = {"run_kind": "bench", "device": "cpu", "device_name": "A", "gpu_count": 0}
    check_same_run("r", old, {})  # the collectives' ranks attach with an empty manifest
    check_same_run("r", {"device": "cpu"}, {**old, "host_class": "x"})  # an older manifest
    with pytest.raises(UserError, match="measured on 'A', this machine has 'B'"):
        check_same_run("r", old, {**old, "device_name": "B"})


# --------------------------------------------------------------------------------------------
# File modes


def test_run_files_are_readable_by_others(bench_run):
    umask = os.umask(0o022)
    os.umask(umask)
    expected = 0o666 & ~umask
    modes = {p.name: p.stat().st_mode & 0o777 for p in bench_run.iterdir()}
    assert set(modes) >= {"manifest.json", "launch.parquet"}
    assert all(m == expected for m in modes.values()), modes
    if umask == 0o022:
        assert expected == 0o644


# --------------------------------------------------------------------------------------------
# One manifest shape for every measuring command (harness.session)

_IDENTITY_KEYS = {"run_kind", "device", "device_name", "gpu_count", "host_class", "cpu_threads", "quick",
                  "command_line", "inferecon_version", "metadata", "status", "start_time", "end_time"}


def _on_disk(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())  # as written, not as read back


@pytest.mark.slow
def test_bench_calibrate_and_validate_write_one_manifest_shape(bench_run, interrupted_calibration, tmp_path):
    from inferecon.harness.device import host_class

    out = tmp_path / "validate"
    profile = REPO / "tests" / "fixtures" / "validate" / "cpu_profile.json"
    assert cli.main(["validate", "--hardware", str(profile), "--model", "tiny-llama", "--layers", "2", "--batch", "1",
                     "--context", "16", "--quick", "--out", str(out), "--no-progress"]) == 0
    for run, kind in ((bench_run, "bench"), (interrupted_calibration, "calibrate"), (out, "validate")):
        m = _on_disk(run)
        assert _IDENTITY_KEYS <= set(m), (kind, _IDENTITY_KEYS - set(m))
        assert m["run_kind"] == kind and "purpose" not in m
        assert m["host_class"] == host_class() and m["cpu_threads"] == 1
        # The machine's description only under metadata (validate spread it over the top level).
        assert {"nvml", "cpu", "env", "platform"} <= set(m["metadata"]) and not {"nvml", "cpu", "env"} & set(m)
    assert _on_disk(out)["validate"]["model"] == "tiny-llama"
    assert _on_disk(bench_run)["benchmarks_requested"] == ["launch"]
