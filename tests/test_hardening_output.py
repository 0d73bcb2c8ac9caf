"""Standard output that fails (full disk, closed descriptor, a reader gone) and streams that cannot
encode the tables' symbols: one line on stderr, a non-zero exit, the command's files complete."""

import errno
import io
import os
import subprocess
import sys

import pandas as pd
import pytest

from inferecon import cli


class FailingStdout(io.StringIO):
    """A stdout whose writes fail after `ok` of them, with `err` (what /dev/full, >&- or a closed pipe give)."""

    def __init__(self, err: int, ok: int = 0):
        super().__init__()
        self.err, self.ok = err, ok

    def write(self, s):
        if self.ok <= 0:
            raise OSError(self.err, os.strerror(self.err))
        self.ok -= 1
        return super().write(s)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EBADF, errno.EIO])
@pytest.mark.parametrize("argv", [["specs"], ["predict", "--model", "llama-3-8b"], ["--help"],
                                  ["predict", "--model", "llama-3-8b", "--json"]])
def test_failing_stdout_is_one_line_and_non_zero(monkeypatch, capsys, argv, err):
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdout", FailingStdout(err, ok=0 if argv == ["--help"] else 1))
    rc = cli.main(argv)
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert rc != 0
    assert len(lines) == 1 and "could not write to standard output" in lines[0], captured.err
    assert "Traceback" not in captured.err


def test_a_gone_reader_still_gets_the_files_written(monkeypatch, capsys, tmp_path):
    # The frontier prints its table before it writes the CSV: a pipe closed at the first line
    # (`frontier ... | head -1`) must not cost the files.
    monkeypatch.setattr(sys, "stdout", FailingStdout(errno.EPIPE, ok=0))
    rc = cli.main(["frontier", "--model", "llama-3-8b", "--max-gpus", "1", "--context", "0", "--out", str(tmp_path)])
    assert rc == 141  # as a shell reports a writer stopped by a closed pipe; quietly
    assert capsys.readouterr().err == ""
    df = pd.read_csv(tmp_path / "frontier.csv")
    assert len(df) > 0 and (tmp_path / "frontier.png").stat().st_size > 0


def test_full_disk_stdout_in_a_real_process(tmp_path):
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "inferecon.cli", "specs"], stdout=full, stderr=subprocess.PIPE,
                           text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "disk is full" in r.stderr, r.stderr


def test_closed_stdout_in_a_real_process():
    r = subprocess.run([sys.executable, "-m", "inferecon.cli", "specs"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=120, preexec_fn=lambda: os.close(1))
    assert r.returncode == 2 and "closed" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_ascii_locale_gets_ascii_stand_ins():
    # LC_ALL=C with UTF-8 mode off: stdout is ASCII; the tables' "×" and "µ" must not raise.
    env = dict(os.environ, LC_ALL="C", PYTHONUTF8="0")
    env.pop("PYTHONIOENCODING", None)
    r = subprocess.run([sys.executable, "-m", "inferecon.cli", "specs"], capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode("ascii")  # raises if anything but ASCII came out
    assert "8 x 400 Gb/s" in out  # "8 × 400 Gb/s" in the published DGX H100 source line
    assert "4 us launch" in out  # "4 µs"
