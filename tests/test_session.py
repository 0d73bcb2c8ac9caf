"""harness.session: one manifest shape for every measuring command, older shapes read into it,
one final status per run, SIGTERM stopping like Ctrl-C, records written whole."""

from __future__ import annotations

import json
import os
import signal

import pytest

from inferecon.core.errors import UserError
from inferecon.harness.session import RunManifest, RunSession, signals_deferred, sigterm_as_interrupt
from inferecon.harness.store import SCHEMA_VERSION, normalize_manifest, read_manifest, read_run


def _manifest(**changes) -> RunManifest:
    fields = dict(run_kind="bench", device="cpu", device_name="Test CPU", gpu_count=0, host_class="Test CPU, 2 cores",
                  cpu_threads=1, quick=True, metadata={"python": "3.x", "nvml": {"available": False}},
                  command_line=("inferecon", "bench", "launch"), sections={"benchmarks_requested": ["launch"]})
    fields.update(changes)
    return RunManifest(**fields)


def _rec(case_id):
    return {"benchmark": "launch", "benchmark_version": 1, "case_id": case_id, "device": "cpu",
            "device_name": "Test CPU", "gpu_count": 0, "samples_us": [1.0, 2.0, 3.0], "median_us": 2.0,
            "iqr_us": 1.0, "reps": 3, "noisy": False, "throttled": False, "skipped": ""}


def test_manifest_on_disk_has_the_one_shape(tmp_path):
    RunSession.open(tmp_path / "run", _manifest())
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    # Identity at the top level, the machine under metadata, the kind's own section beside them.
    assert {k: m[k] for k in ("run_kind", "device", "device_name", "gpu_count", "host_class", "cpu_threads")} == {
        "run_kind": "bench", "device": "cpu", "device_name": "Test CPU", "gpu_count": 0,
        "host_class": "Test CPU, 2 cores", "cpu_threads": 1}
    assert m["metadata"] == {"python": "3.x", "nvml": {"available": False}}
    assert m["benchmarks_requested"] == ["launch"] and m["command_line"] == ["inferecon", "bench", "launch"]
    assert "purpose" not in m and "python" not in m and m["status"] == "running"
    assert read_manifest(tmp_path / "run") == m  # the new shape reads back unchanged


def test_a_section_cannot_overwrite_the_identity():
    with pytest.raises(ValueError, match="device_name"):
        _manifest(sections={"device_name": "other"})
    with pytest.raises(ValueError, match="run_kind"):
        _manifest(run_kind="profile")


def test_older_manifest_shapes_read_into_the_one_shape():
    # calibrate before the session: `purpose`, metadata nested, no host class.
    old_calibrate = {"schema_version": 1, "purpose": "calibrate", "device": "cpu", "device_name": "X", "gpu_count": 0,
                     "metadata": {"cpu": {"model": "X"}}, "cpu_threads": 1}
    m = normalize_manifest(old_calibrate)
    assert m["run_kind"] == "calibrate" and "purpose" not in m and m["metadata"] == {"cpu": {"model": "X"}}
    assert "host_class" not in m  # absent stays absent: a resume does not compare it
    # validate before the session: collect_metadata spread over the top level.
    old_validate = {"schema_version": 1, "run_kind": "validate", "validate": {"model": "tiny-llama"}, "device": "cpu",
                    "device_name": "X", "gpu_count": 0, "inferecon_version": "0.1.0", "python": "3.11.2",
                    "platform": "Linux", "cpu": {"model": "X", "cores": 2}, "env": {}, "torch_version": "2.5",
                    "nvml": {"available": False}}
    m = normalize_manifest(old_validate)
    assert m["metadata"]["cpu"] == {"model": "X", "cores": 2} and m["metadata"]["torch_version"] == "2.5"
    assert m["metadata"]["device_name"] == "X" and m["device_name"] == "X"  # identity kept at the top too
    assert not {"python", "platform", "cpu", "env", "torch_version", "nvml"} & set(m)
    assert m["validate"] == {"model": "tiny-llama"}
    # The standalone collectives module: metadata at the top level, kind inferred from its section.
    m = normalize_manifest({"collectives": {"nproc_per_node": 2}, "nvml": {"available": False}, "device": "cpu"})
    assert m["run_kind"] == "bench" and m["metadata"]["nvml"] == {"available": False}


def test_an_old_validate_run_resumes_and_is_rewritten_in_the_one_shape(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    old = {"schema_version": SCHEMA_VERSION, "run_kind": "validate", "validate": {"model": "m"}, "device": "cpu",
           "device_name": "Test CPU", "gpu_count": 0, "host_class": "Test CPU, 2 cores", "cpu_threads": 1,
           "python": "3.11", "cpu": {"model": "Test CPU"}, "start_time": "2026-01-01T00:00:00+00:00",
           "status": "interrupted", "command_line": ["first"]}
    (run / "manifest.json").write_text(json.dumps(old))
    seen = []
    session = RunSession.open(run, _manifest(run_kind="validate", sections={"validate": {"model": "m"}}),
                              resume=True, same_run=lambda d, m: seen.append(m["validate"]))
    assert seen == [{"model": "m"}]  # the command's own check saw the old run's section
    session.finish()
    m = read_manifest(run)
    assert m["status"] == "complete" and m["command_line"] == ["first"] and m["metadata"]["cpu"] == {"model": "Test CPU"}
    assert "cpu" not in json.loads((run / "manifest.json").read_text())  # rewritten nested


def test_resume_is_refused_before_the_commands_own_check(tmp_path):
    RunSession.open(tmp_path / "r", _manifest())
    called = []
    with pytest.raises(UserError, match="is a bench run, not a validate run"):
        RunSession.open(tmp_path / "r", _manifest(run_kind="validate"), resume=True,
                        same_run=lambda d, m: called.append(1))
    assert not called
    with pytest.raises(UserError, match="measured with 1 CPU thread"):
        RunSession.open(tmp_path / "r", _manifest(cpu_threads=2), resume=True)


def test_running_stamps_interrupted_or_failed_once(tmp_path):
    s = RunSession.open(tmp_path / "a", _manifest())
    with pytest.raises(KeyboardInterrupt):
        with s.running():
            s.append("launch", _rec("x"))
            raise KeyboardInterrupt
    s.finish("complete")  # a later finish does not overwrite what happened
    m, tables = read_run(tmp_path / "a")
    assert m["status"] == "interrupted" and m["end_time"] and list(tables["launch"]["case_id"]) == ["x"]

    s = RunSession.open(tmp_path / "b", _manifest())
    with pytest.raises(RuntimeError):
        with s.running():
            raise RuntimeError("boom")
    assert read_manifest(tmp_path / "b")["status"] == "failed"


def test_an_attached_session_appends_but_never_stamps(tmp_path):
    owner = RunSession.open(tmp_path / "run", _manifest())
    rank0 = RunSession.attach(tmp_path / "run")
    rank0.append("launch", _rec("y"))
    rank0.finish("interrupted")
    assert read_manifest(tmp_path / "run")["status"] == "running"
    assert read_manifest(tmp_path / "run")["run_kind"] == "bench"  # attaching keeps the owner's manifest
    owner.finish()
    assert read_manifest(tmp_path / "run")["status"] == "complete"


def test_sigterm_inside_running_is_a_keyboard_interrupt_and_the_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes of the main thread
                pass
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_signal_during_a_write_lands_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
            done.append("written")  # not cut short: the signal waits for the block's end
    assert done == ["written"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
