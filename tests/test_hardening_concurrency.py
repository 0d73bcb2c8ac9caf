"""Two processes on one run directory: the second is refused in one line while the first writes
(a lock file, harness/session.py), and the first's run ends complete with only its own cases."""

import json
import subprocess
import sys
import time

import pytest

from cli_check import one_line_error

HOLD = ("import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
        "print('held', flush=True); time.sleep(120)")


def test_a_second_writer_is_refused_while_the_first_holds_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out / ".inferecon.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for extra in ([], ["--resume"]):
            line = one_line_error(capsys, ["bench", "launch", "--device", "cpu", "--quick", "--no-progress",
                                           "--out", str(out)] + extra)
            assert "being written by another inferecon process" in line, line
        assert not (out / "manifest.json").exists()  # refused before anything was written
    finally:
        holder.kill()
        holder.wait()
    # The holder gone (killed: the kernel drops its lock), the run directory is free again.
    from inferecon import cli

    assert cli.main(["bench", "launch", "--device", "cpu", "--quick", "--no-progress", "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_two_bench_processes_on_one_out(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "inferecon.cli", "bench", "launch", "--device", "cpu", "--quick", "--no-progress",
           "--out", str(out)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "manifest.json").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    first_out, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    if "being written by another" not in second.stderr:
        # Only when the first finished before the second started is the second allowed: a
        # resume of a complete run. Anything else is the mixed run the lock exists to stop.
        assert json.loads((out / "manifest.json").read_text()).get("resumes"), second.stderr
    else:
        assert second.returncode == 2 and second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == "complete" and not manifest.get("resumes")
