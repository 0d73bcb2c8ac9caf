"""The two set-up commands, as `make` would run them (dry run: nothing is installed here; the
fresh-clone timings in the README come from the real thing)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def _dry_run(target: str, *variables: str, env_extra: dict | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "MAKEFLAGS")}
    env.update(env_extra or {})
    # -B: print every command as on a fresh clone, whatever stamps this checkout holds.
    r = subprocess.run(["make", "-n", "-B", target, *variables], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_make_run_makes_a_venv_and_installs_only_the_frontier():
    out = _dry_run("run")
    assert "-m venv .venv" in out
    assert ".venv/bin/python -m pip install -q -e .\n" in out
    assert "torch" not in out and "[test]" not in out and "pytest" not in out
    assert ".venv/bin/python -m inferecon frontier" in out


def test_make_test_adds_pytest_and_pinned_torch_with_an_optional_index():
    out = _dry_run("test", "TORCH_PIP_ARGS=--index-url file:///cpu-wheels")
    # The test extras include the per-op database (issue 20: the tests read the real tables).
    assert "-e '.[test,opdb]'" in out
    assert "--index-url file:///cpu-wheels torch==2.13.0" in out
    assert ".venv/bin/python -m pytest -q" in out
    # Without the variable no index is named: the default path has no host in it.
    assert "--index-url" not in _dry_run("test")


def test_an_active_venv_is_used_instead_of_making_one(tmp_path):
    (tmp_path / "env" / "bin").mkdir(parents=True)
    (tmp_path / "env" / "bin" / "python").write_text("")  # an active venv has its interpreter
    out = _dry_run("run", env_extra={"VIRTUAL_ENV": str(tmp_path / "env")})
    assert "-m venv" not in out
    assert f"{tmp_path / 'env'}/bin/python -m pip install -q -e ." in out


def test_ci_runs_the_readme_test_command_and_readme_stands_alone():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and ".venv" in readme and "docs/setup.md" in readme
    # Why a venv is made (a stock Debian/Ubuntu Python refuses pip into itself) is in the set-up page.
    assert "externally-managed" in (ROOT / "docs" / "setup.md").read_text()
    assert "../shared" not in readme
