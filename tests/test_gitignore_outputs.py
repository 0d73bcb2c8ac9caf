"""The commands' default outputs do not clutter `git status`, and the committed runs under
results/ stay tracked and addable (.gitignore ignores the stamped default folders and
./frontier/, not results/ wholesale)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)


pytestmark = pytest.mark.skipif(shutil.which("git") is None or _git("rev-parse").returncode != 0,
                                reason="not a git checkout")


def _ignored(path: str) -> bool:
    return _git("check-ignore", "-q", "--no-index", path).returncode == 0


def test_default_outputs_are_ignored():
    from inferecon.commands.bench import default_out
    from inferecon.commands.validate import _default_out

    for path in (default_out("NVIDIA H100 80GB HBM3"), _default_out("llama-3-8b", "cpu"),
                 Path("results/calibrate-node-20261202T061500Z"), Path("results/calibrate-files-h100-sxm-20261202T061500Z"),
                 Path("frontier")):  # calibrate's stamped folders (commands/calibrate.py) and frontier's --out default
        assert _ignored(f"{path}/manifest.json"), path


def test_committed_runs_stay_tracked_and_addable():
    tracked = _git("ls-files", "results").stdout.split()
    assert tracked, "no committed runs under results/"
    # No tracked file matches an ignore pattern, and a new file in a committed run's folder or a
    # run named as the committed ones are (no stamp) is not ignored either.
    assert _git("ls-files", "-ci", "--exclude-standard", "results").stdout == ""
    run = Path(tracked[0]).parts[1]
    assert not _ignored(f"results/{run}/new-step/engine.json")
    assert not _ignored("results/vllm-cpu-20991231/manifest.json")
