"""The same run given twice to regress (as two baselines, or a copy as the candidate) is refused
in one line saying why, instead of an unexplained INCONCLUSIVE or a steadier-than-real node."""

import shutil

from cli_check import one_line_error
from test_regress import make_run


def test_a_copy_of_the_baseline_as_candidate(tmp_path, capsys):
    a = make_run(tmp_path / "a", seed=1)
    shutil.copytree(a, tmp_path / "copy")
    line = one_line_error(capsys, ["regress", "--no-model", "--baseline", str(a), "--candidate", str(tmp_path / "copy")])
    assert "is a copy of the baseline" in line and "the same measurements" in line, line


def test_the_same_baseline_twice(tmp_path, capsys):
    a, b = make_run(tmp_path / "a", seed=1), make_run(tmp_path / "b", seed=2)
    shutil.copytree(a, tmp_path / "a2")
    for twice in ([a, a], [a, tmp_path / "a2"]):
        argv = ["regress", "--no-model"] + [x for p in twice for x in ("--baseline", str(p))] + ["--candidate", str(b)]
        line = one_line_error(capsys, argv)
        assert "are the same run" in line and "no between-run spread" in line, line


def test_distinct_runs_with_one_start_time_are_still_compared(tmp_path, capsys):
    # Two runs stamped with the same start (test fixtures, clock-less hosts) but other data are
    # two runs: the check goes by the measurements too, so the gate still answers.
    from inferecon import cli

    a, b = make_run(tmp_path / "a", seed=1), make_run(tmp_path / "b", seed=2)
    assert cli.main(["regress", "--no-model", "--baseline", str(a), "--candidate", str(b)]) == 0
