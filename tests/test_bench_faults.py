"""Faults: out-of-memory cases are recorded as skipped and the sweep goes on; Ctrl-C keeps
finished cases; bad input gives one line on stderr and exit status 2."""

import io
import math

import pyarrow.parquet as pq
import pytest
import torch

from inferecon import cli
from inferecon.harness.runner import Case, Progress, SkipCase, SweepContext, is_oom, run_sweep
from inferecon.harness.store import RunStore
from inferecon.harness.timing import Measurement
from cli_check import one_line_error

CTX = SweepContext("cpu", "Test CPU", 0, quick=True)


def _ok_case(case_id, calls):
    def run():
        calls.append(case_id)
        return Measurement.from_samples([1e-6, 1.1e-6, 1.2e-6]).record_fields()
    return Case(case_id, {"size": len(calls)}, run)


def _raising_case(case_id, exc, calls):
    def run():
        calls.append(case_id)
        raise exc
    return Case(case_id, {"size": -1}, run)


def _quiet():
    return Progress(stream=io.StringIO())


def test_out_of_memory_is_recorded_as_skipped_and_sweep_continues(tmp_path):
    calls = []
    cases = [
        _ok_case("a", calls),
        _raising_case("oom_torch", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), calls),
        _raising_case("oom_runtime", RuntimeError("CUDA error: out of memory"), calls),
        _raising_case("oom_cpu", RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB"), calls),
        _raising_case("oom_python", MemoryError(), calls),
        _raising_case("unsupported", SkipCase("fp8 needs sm_89"), calls),
        _ok_case("z", calls),
    ]
    store = RunStore(tmp_path / "run", {})
    result = run_sweep(store, "fake", 1, cases, CTX, _quiet())
    assert calls == [c.case_id for c in cases]  # every case was attempted, in order
    assert result.measured == 7 and result.skipped == 5
    df = store.read("fake").set_index("case_id")
    for cid in ("oom_torch", "oom_runtime", "oom_cpu", "oom_python"):
        assert df.loc[cid, "skipped"] == "out of memory"
        assert math.isnan(df.loc[cid, "median_us"]) and df.loc[cid, "reps"] == 0
    assert df.loc["unsupported", "skipped"] == "unsupported: fp8 needs sm_89"
    assert df.loc["a", "skipped"] == df.loc["z", "skipped"] == ""
    assert df.loc["z", "median_us"] == pytest.approx(1.1)


def test_other_errors_stop_the_sweep_after_saving_finished_cases(tmp_path):
    calls = []
    store = RunStore(tmp_path / "run", {})
    cases = [_ok_case("a", calls), _raising_case("bug", ValueError("a bug, not a fault"), calls), _ok_case("c", calls)]
    with pytest.raises(ValueError):
        run_sweep(store, "fake", 1, cases, CTX, _quiet())
    assert store.read("fake")["case_id"].tolist() == ["a"]


def test_is_oom_does_not_swallow_other_runtime_errors():
    assert not is_oom(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert is_oom(torch.OutOfMemoryError("x"))


def test_ctrl_c_keeps_finished_cases_and_resume_runs_only_the_rest(tmp_path):
    calls = []
    cases = [_ok_case("a", calls), _ok_case("b", calls), _raising_case("c", KeyboardInterrupt(), calls),
             _ok_case("d", calls)]
    store = RunStore(tmp_path / "run", {})
    with pytest.raises(KeyboardInterrupt):
        run_sweep(store, "fake", 1, cases, CTX, _quiet())
    assert pq.read_table(store.path("fake")).column("case_id").to_pylist() == ["a", "b"]

    calls.clear()
    resumed = RunStore(tmp_path / "run", {}, resume=True)
    cases = [_ok_case(cid, calls) for cid in ("a", "b", "c", "d")]
    result = run_sweep(resumed, "fake", 1, cases, CTX, _quiet())
    assert calls == ["c", "d"] and result.resumed == 2 and result.measured == 2
    assert resumed.read("fake")["case_id"].tolist() == ["a", "b", "c", "d"]


def test_progress_lines_show_case_count_and_eta():
    stream = io.StringIO()
    calls = []
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        run_sweep(RunStore(d + "/run", {}), "fake", 1, [_ok_case(c, calls) for c in "xyz"], CTX, Progress(stream))
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[fake 1/3] x") and lines[0].endswith("ETA ?")
    assert lines[2].startswith("[fake 3/3] z") and "ETA " in lines[2] and not lines[2].endswith("?")


# --------------------------------------------------------------------------------------------
# Bad input through the CLI: exit status 2 and exactly one line on stderr.


def test_unknown_benchmark(capsys):
    assert "invalid choice: 'nope'" in one_line_error(capsys, ["bench", "nope"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(capsys, tmp_path):
    line = one_line_error(capsys, ["bench", "launch", "--device", "cuda", "--out", str(tmp_path / "r")])
    assert "no CUDA device" in line
    assert not (tmp_path / "r").exists()


def test_resume_needs_out(capsys):
    assert "--resume needs --out" in one_line_error(capsys, ["bench", "launch", "--device", "cpu", "--resume"])


def test_existing_run_without_resume(capsys, tmp_path):
    RunStore(tmp_path / "r", {})
    assert "--resume" in one_line_error(capsys, ["bench", "launch", "--device", "cpu", "--out", str(tmp_path / "r")])


def _run_with_one_case(tmp_path):
    store = RunStore(tmp_path / "r", {"device": "cpu"})
    run_sweep(store, "launch", 1, [_ok_case("kernel_eager", [])], CTX, _quiet())
    return store


def test_corrupt_parquet_on_resume(capsys, tmp_path):
    store = _run_with_one_case(tmp_path)
    data = store.path("launch").read_bytes()
    store.path("launch").write_bytes(data[: len(data) // 3])
    line = one_line_error(capsys, ["bench", "launch", "--device", "cpu", "--out", str(tmp_path / "r"), "--resume"])
    assert "launch.parquet" in line and "not a complete Parquet file" in line


def test_wrong_schema_version_on_resume(capsys, tmp_path):
    store = _run_with_one_case(tmp_path)
    table = pq.read_table(store.path("launch"))
    pq.write_table(table.replace_schema_metadata({b"inferecon.schema_version": b"0"}), store.path("launch"))
    line = one_line_error(capsys, ["bench", "launch", "--device", "cpu", "--out", str(tmp_path / "r"), "--resume"])
    assert "schema version 0" in line


def test_bad_collective_options(capsys, tmp_path):
    line = one_line_error(capsys, ["bench", "collectives", "--device", "cpu", "--timeout-s", "0",
                                    "--out", str(tmp_path / "r")])
    assert "--timeout-s" in line


def test_resume_on_another_device_is_refused(capsys, tmp_path):
    RunStore(tmp_path / "r", {"device": "cuda"})
    before = (tmp_path / "r" / "manifest.json").read_text()
    line = one_line_error(capsys, ["bench", "launch", "--device", "cpu", "--out", str(tmp_path / "r"), "--resume"])
    assert "measured on cuda, not cpu" in line
    assert (tmp_path / "r" / "manifest.json").read_text() == before  # the run is left untouched


# --------------------------------------------------------------------------------------------
# CPU threads: bench pins them like calibrate and validate, so their figures agree.


@pytest.fixture
def restore_threads(monkeypatch):
    import os

    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))  # restored at teardown
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("flag, expected", [([], 1), (["--threads", "2"], 2)], ids=["default", "two"])
def test_bench_pins_cpu_threads(tmp_path, restore_threads, flag, expected):
    from inferecon.harness.store import read_run

    out = tmp_path / "r"
    torch.set_num_threads(2)  # what an unpinned process on a 2-core machine would use
    assert cli.main(["bench", "launch", "--device", "cpu", "--quick", "--out", str(out), "--no-progress", *flag]) == 0
    manifest, _ = read_run(out)
    assert manifest["cpu_threads"] == expected
    assert manifest["metadata"]["cpu"]["torch_threads"] == expected  # in force while measuring
    assert manifest["metadata"]["env"]["OMP_NUM_THREADS"] == str(expected)  # what torchrun ranks inherit


def test_bad_thread_count(capsys, tmp_path, restore_threads):
    line = one_line_error(capsys, ["bench", "launch", "--device", "cpu", "--threads", "0", "--out", str(tmp_path / "r")])
    assert "--threads: must be from 1 to 4,096, got 0" in line
    assert not (tmp_path / "r").exists()
