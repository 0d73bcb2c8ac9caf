"""The environment a command meets: no matplotlib (the CSV still written, the plot named as not
drawn in one line), a HOME whose matplotlib cache cannot be written (a temporary one instead of
warnings on stderr)."""

import os
import subprocess
import sys

import pandas as pd

from inferecon.report import plotting

BLOCK_MPL = "import sys; sys.modules['matplotlib'] = None; sys.modules['matplotlib.pyplot'] = None\n"


def _run_without_matplotlib(argv):
    code = BLOCK_MPL + f"from inferecon.cli import main; raise SystemExit(main({argv!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_frontier_without_matplotlib_writes_its_csv(tmp_path):
    r = _run_without_matplotlib(["frontier", "--model", "llama-3-8b", "--max-gpus", "1", "--context", "0",
                                 "--out", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    notes = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(notes) == 1 and "plot not drawn" in notes[0] and "matplotlib" in notes[0], r.stderr
    assert len(pd.read_csv(tmp_path / "frontier.csv")) > 0
    assert not (tmp_path / "frontier.png").exists()  # absent, not an empty file


def test_pyplot_refuses_in_one_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    try:
        plotting.pyplot()
    except plotting.PlotUnavailable as exc:
        assert "matplotlib" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("pyplot() imported a blocked matplotlib")


def test_unwritable_config_dir_gets_a_temporary_one(tmp_path):
    # Root bypasses file modes, so "HOME cannot be written" is what os.access reports for
    # everything outside the temporary folder; matplotlib itself asks os.access too.
    code = ("import os, sys, tempfile; real = os.access; tmp = tempfile.gettempdir()\n"
            "os.access = lambda p, m, **kw: str(p).startswith(tmp) and real(p, m)\n"
            "from inferecon.report.plotting import pyplot; pyplot()\n"
            "print(os.environ['MPLCONFIGDIR'])")
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    env["HOME"] = "/"  # outside the temporary folder: reported unwritable above
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "inferecon-mpl-" in r.stdout
    assert "Matplotlib" not in r.stderr and "not a writable directory" not in r.stderr, r.stderr
