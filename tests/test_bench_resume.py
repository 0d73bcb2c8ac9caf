"""A sweep killed midway (Ctrl-C or SIGKILL) keeps every finished case, and --resume measures
only the rest: nothing lost, nothing measured twice."""

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
from inferecon.harness.runner import SweepContext
from inferecon.harness.store import read_run
from inferecon.kernels import matmul

REPO = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # not written yet
        return 0


def _start_and_kill(out: Path, sig: int):
    """Start a quick CPU matmul sweep, send `sig` once at least one case is stored."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "inferecon.cli", "bench", "matmul", "--device", "cpu", "--quick",
         "--out", str(out), "--no-progress"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    table = out / "matmul.parquet"
    deadline = time.monotonic() + 60
    while _rows(table) < 1:
        assert proc.poll() is None, f"sweep ended before a case was stored: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return proc.returncode, stdout, stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
@pytest.mark.slow
def test_killed_sweep_resumes_without_loss_or_repeat(tmp_path, sig, capsys):
    out = tmp_path / "run"
    planned = {c.case_id for c in matmul.cases(SweepContext("cpu", "x", 0, True), True)}
    rc, _, stderr = _start_and_kill(out, sig)
    manifest, tables = read_run(out)  # the interrupted run is readable as is
    before = tables["matmul"]
    assert 1 <= len(before) < len(planned), "the kill must land midway"
    if sig == signal.SIGINT:
        assert rc == 130
        assert manifest["status"] == "interrupted" and manifest["end_time"]
        assert "--resume" in stderr  # tells the user how to continue
    else:
        assert rc == -signal.SIGKILL
        assert manifest["status"] == "running"  # died without a word, as SIGKILL does

    assert cli.main(["bench", "matmul", "--device", "cpu", "--quick", "--out", str(out),
                     "--resume", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"{len(before)} of {len(planned)} cases already stored" in err
    manifest, tables = read_run(out)
    after = tables["matmul"]
    assert manifest["status"] == "complete" and len(manifest["resumes"]) == 1
    assert after["case_id"].is_unique and set(after["case_id"]) == planned
    # The cases stored before the kill are kept exactly as measured, not measured again.
    kept = after.set_index("case_id").loc[list(before["case_id"])]
    for (_, b), (_, a) in zip(before.iterrows(), kept.iterrows()):
        assert list(a["samples_us"]) == list(b["samples_us"])
        assert a["median_us"] == b["median_us"]
    assert not list(out.glob(".*.tmp"))
    json.loads((out / "manifest.json").read_text())  # manifest intact
