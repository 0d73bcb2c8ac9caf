"""`frontier --compare` says that nothing moved when nothing did, and names the part that moved
most only when one did; calibrate and compare say in one line when a profile's fitted NCCL
lines do not price decode steps (the engine's all-reduce lines apply there, docs/model.md).

The walkthrough's case: nccl-tests files on a published H100 profile printed +0.0% everywhere
and "moved most: compute" (the first of three parts that had all moved 0 ms)."""

from __future__ import annotations

from pathlib import Path

from inferecon import cli
from inferecon.model.compare import FrontierDelta

SYNTHETIC = Path(__file__).parent / "fixtures" / "ingest" / "synthetic_all_reduce_perf_8xh100.txt"


def _delta(terms_b: dict[str, float], speed_b: float = 100.0) -> FrontierDelta:
    terms_a = {"compute": 3e-3, "network": 1e-3, "latency": 2e-3}  # a 6 ms step
    return FrontierDelta(max_speed_a=100.0, max_speed_b=speed_b, min_cost_a=0.5, min_cost_b=0.5,
                         cost_at_speed=[(50.0, 0.8, 0.8)], terms_a=terms_a, terms_b=terms_b)


def test_same_terms_say_nothing_moved():
    d = _delta({"compute": 3e-3, "network": 1e-3, "latency": 2e-3})
    assert d.moved_term == "nothing" and d.unchanged
    text = "\n".join(d.lines("published", "calibrated"))
    assert text.startswith("nothing moved: the calibrated frontier is the published one")
    assert "no part moved" in text and "moved most" not in text


def test_a_moved_part_is_named():
    # The network part 1 -> 1.5 ms (half a ms of a 6 ms step): it moved, the others did not.
    d = _delta({"compute": 3e-3, "network": 1.5e-3, "latency": 2e-3}, speed_b=92.3)
    assert d.moved_term == "network" and not d.unchanged
    text = "\n".join(d.lines("published", "calibrated"))
    assert "moved most: network" in text and "nothing moved" not in text


def test_a_change_below_the_printed_precision_is_no_move():
    # 1 ns on a 6 ms step: +0.0% in every printed figure, not "moved most: compute".
    d = _delta({"compute": 3e-3 + 1e-9, "network": 1e-3, "latency": 2e-3})
    assert d.moved_term == "nothing"


def test_nccl_files_on_a_published_h100_say_why_nothing_moved(tmp_path, capsys):
    """calibrate --nccl-tests onto h100-sxm: the 8-rank all_reduce lines are eager NCCL, and a
    decode step inside a node reads the published profile's engine all-reduce lines instead."""
    assert cli.main(["calibrate", "--nccl-tests", str(SYNTHETIC), "--gpu", "h100-sxm", "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    note = "the fitted NCCL lines (all_reduce over 8 ranks inside a node) do not price decode steps"
    assert f"note: {note}" in out
    assert cli.main(["frontier", "--model", "llama-3-70b", "--gpu", "h100-sxm", "--hardware",
                     str(tmp_path / "c" / "profile.json"), "--compare", "--draws", "0", "--max-gpus", "8",
                     "--rows", "2", "--out", str(tmp_path / "f")]) == 0
    out = capsys.readouterr().out
    assert "nothing moved: the calibrated frontier is the published one" in out
    assert "moved most" not in out
    assert f"note (calibrated): {note}" in out and "the NCCL lines still price prefill and collectives across nodes" in out
