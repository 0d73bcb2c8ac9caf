"""Names that keep models and profiles apart in the frontier's table, CSV, plot and --compare."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from inferecon.model.published import get_profile
from inferecon.cli import main
from inferecon.core.errors import UserError
from inferecon.model.catalog import resolve_model
from inferecon.model.frontier import SearchSpace, search
from inferecon.model.names import model_display_names, profile_labels

LLAMA_8B = json.loads(Path("tests/fixtures/hf/llama-3-8b.json").read_text())


def _config(path: Path, **changes) -> Path:
    cfg = {k: v for k, v in LLAMA_8B.items() if k != "_name_or_path"}
    cfg.update(changes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture
def curves(monkeypatch):
    """The curves the frontier command hands to its plot, by label."""
    seen = {}

    def capture(frontiers, path, title=""):
        seen.update(frontiers)
        Path(path).write_bytes(b"png")
        return Path(path)

    monkeypatch.setattr("inferecon.report.frontier_plot.plot_frontiers", capture)
    return seen


def test_two_configs_in_one_folder_get_their_file_names(tmp_path, curves, capsys):
    a = _config(tmp_path / "configs" / "llama-a.json")
    b = _config(tmp_path / "configs" / "llama-b.json", num_hidden_layers=16)
    assert main(["frontier", "--model", f"{a},{b}", "--max-gpus", "8", "--out", str(tmp_path / "o")]) == 0
    df = pd.read_csv(tmp_path / "o" / "frontier.csv")
    assert set(df["model"]) == {"llama-a", "llama-b"}
    assert sorted(curves) == ["llama-a on h100-sxm", "llama-b on h100-sxm"]  # both curves drawn
    # 16 layers decode faster than 32: the names point at the right rows.
    top = df.groupby("model")["tokens_per_s_per_seq"].max()
    assert top["llama-b"] > top["llama-a"]


def test_config_json_in_folders_named_by_folder_then_model_type(tmp_path):
    a = _config(tmp_path / "x" / "config.json")
    b = _config(tmp_path / "y" / "config.json")
    specs = [resolve_model(str(p)) for p in (a, b)]
    assert model_display_names([str(a), str(b)], specs) == ["x", "y"]
    # Same folder name twice (…/m/config.json under two parents): the model_type separates
    # them when it differs, then the path as given.
    c = _config(tmp_path / "p" / "m" / "config.json", model_type="llama")
    d = _config(tmp_path / "q" / "m" / "config.json", model_type="mistral")
    specs = [resolve_model(str(p)) for p in (c, d)]
    assert model_display_names([str(c), str(d)], specs) == ["m (llama)", "m (mistral)"]
    e = _config(tmp_path / "r" / "m" / "config.json", model_type="llama")
    specs = [resolve_model(str(p)) for p in (c, e)]
    assert model_display_names([str(c), str(e)], specs) == [str(c), str(e)]


def test_name_or_path_and_explicit_names(tmp_path, curves, capsys):
    a = _config(tmp_path / "a.json", _name_or_path="meta-llama/Meta-Llama-3-8B")
    b = _config(tmp_path / "b.json")
    assert main(["frontier", "--model", f"{a},{b},llama-3-8b", "--max-gpus", "8",
                 "--out", str(tmp_path / "o1")]) == 0
    assert set(pd.read_csv(tmp_path / "o1" / "frontier.csv")["model"]) == {"meta-llama/Meta-Llama-3-8B", "b",
                                                                          "llama-3-8b"}
    assert main(["frontier", "--model", f"{a},{b}", "--name", "first,second", "--max-gpus", "8",
                 "--out", str(tmp_path / "o2")]) == 0
    assert set(pd.read_csv(tmp_path / "o2" / "frontier.csv")["model"]) == {"first", "second"}


@pytest.mark.parametrize("argv,message", [
    (["--model", "llama-3-8b,llama-3-8b"], "given twice"),
    (["--model", "{a},{a}"], "given twice"),
    (["--model", "{a},{b}", "--name", "x"], "1 name(s) for 2 model(s)"),
    (["--model", "{a},{b}", "--name", "x,x"], "distinct"),
    (["--model", "{a}", "--gpu", "h100,h100-sxm"], "--gpu h100-sxm is given twice"),  # an alias is the same GPU
])
def test_ambiguous_names_are_refused(argv, message, tmp_path, capsys):
    a, b = _config(tmp_path / "a.json"), _config(tmp_path / "b.json")
    argv = [x.format(a=a, b=b) for x in argv]
    assert main(["frontier", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def _calibrated(path: Path, run_id: str, memory_efficiency: float) -> Path:
    """A profile as calibrate writes one for an H100 node: same name for every node."""
    d = get_profile("h100-sxm").to_dict()
    d["name"] = "h100-sxm-calibrated"
    d["display_name"] = "NVIDIA H100 80GB HBM3 (calibrated)"
    d["memory"]["efficiency"] = memory_efficiency
    d["provenance"] = {"kind": "calibrated", "run_id": run_id, "sources": [f"inferecon run {run_id}"],
                       "versions": {}, "fit_quality": {}, "notes": []}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d))
    return path


def test_two_calibrated_profiles_of_one_gpu_model_stay_apart_in_compare(tmp_path, curves, capsys):
    fast = _calibrated(tmp_path / "node1" / "profile.json", "node1-run", 0.75)
    slow = _calibrated(tmp_path / "node2" / "profile.json", "node2-run", 0.40)
    assert main(["frontier", "--model", "llama-3-70b", "--hardware", str(fast), "--hardware", str(slow),
                 "--compare", "--max-gpus", "64", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    df = pd.read_csv(tmp_path / "o" / "frontier.csv")
    labels = set(df["profile_label"])
    assert labels == {"h100-sxm", "h100-sxm-calibrated [node1-run]", "h100-sxm-calibrated [node2-run]"}
    assert len(curves) == 3
    # Each comparison prints its own profile's max speed, computed here without the command.
    model = resolve_model("llama-3-70b")
    from inferecon.model.hardware import HardwareProfile

    for path, label in ((fast, "node1-run"), (slow, "node2-run")):
        own = search(model, HardwareProfile.load(path), 4096, SearchSpace(max_gpus=64))
        block = out.split(f"h100-sxm-calibrated [{label}] (calibrated)\n")[-1]
        speed_line = next(line for line in block.splitlines() if "max speed" in line)
        assert f"-> {own['tokens_per_s_per_seq'].max():.1f} tok/s (calibrated)" in speed_line
    # The slower node really is slower: the two blocks differ.
    assert df[df["profile_label"].str.contains("node2")]["tokens_per_s_per_seq"].max() < \
        df[df["profile_label"].str.contains("node1")]["tokens_per_s_per_seq"].max()


def test_profile_labels_fall_back_to_the_file_then_a_number():
    cal = get_profile("h100-sxm")
    import dataclasses

    from inferecon.model.hardware import Provenance

    a = dataclasses.replace(cal, name="x-calibrated", provenance=Provenance(kind="calibrated", run_id="r1"))
    b = dataclasses.replace(cal, name="x-calibrated", provenance=Provenance(kind="calibrated", run_id="r1"))
    assert profile_labels([a, b], ["n1/profile.json", "n2/profile.json"]) == [
        "x-calibrated [r1] [n1/profile.json]", "x-calibrated [r1] [n2/profile.json]"]
    assert profile_labels([cal, cal], [None, None]) == ["h100-sxm #1", "h100-sxm #2"]
    with pytest.raises(UserError, match="given twice"):
        model_display_names(["llama-3-8b", "llama-3-8b"], [resolve_model("llama-3-8b")] * 2)
