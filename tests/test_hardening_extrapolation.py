"""A prediction whose collective group leaves the world sizes the profile's collectives were
fitted at says so (model/network.py extrapolation_note), instead of applying the fit unchanged."""

import json

from inferecon import cli
from inferecon.model.published import get_profile

# One fitted all-reduce line across nodes, at 16 ranks (2 nodes of 8), as a calibration from
# one 16-rank nccl-tests table leaves it.
FIT = {"collective": "all_reduce", "world_size": 16, "scope": "inter", "alpha_us": 40.0, "beta_gbps": 20.0}


def _profile(tmp_path):
    d = get_profile("h100-sxm").to_dict()
    d["network"]["collectives"] = [FIT]
    d["network"]["decode_collectives"] = []  # a calibration's profile has no engine lines of the published one
    p = tmp_path / "profile.json"
    p.write_text(json.dumps(d))
    return str(p)


def test_beyond_the_fitted_world_is_noted(tmp_path, capsys):
    hw = _profile(tmp_path)
    assert cli.main(["predict", "--model", "llama-3-70b", "--hardware", hw, "--tp", "64", "--batch", "64", "--json"]) == 0
    err = capsys.readouterr().err
    assert "measured over 16 ranks; 64 ranks is outside" in err and "extrapolated" in err, err


def test_inside_the_fitted_world_or_scope_without_fits_is_quiet(tmp_path, capsys):
    hw = _profile(tmp_path)
    for tp in ("16", "8"):  # 16: the fitted world; 8: inside a node, where nothing was fitted
        assert cli.main(["predict", "--model", "llama-3-70b", "--hardware", hw, "--tp", tp, "--batch", "64", "--json"]) == 0
        assert "extrapolated" not in capsys.readouterr().err


def test_frontier_flags_its_extrapolated_points(tmp_path, capsys):
    import pandas as pd

    hw = _profile(tmp_path)
    assert cli.main(["frontier", "--model", "llama-3-70b", "--hardware", hw, "--max-gpus", "64", "--out", str(tmp_path / "f")]) == 0
    out = capsys.readouterr().out
    df = pd.read_csv(tmp_path / "f" / "frontier.csv")
    group = df[["tp", "ep"]].max(axis=1)
    beyond = (group > 8) & (group != 16)  # across nodes (8 GPUs each), at a world other than the fitted 16
    assert beyond.any()  # the search reaches 64 GPUs: some points do leave the fit
    assert (df["collectives_extrapolated"] == beyond).all()
    assert f"{int(beyond.sum())} of {len(df)} frontier points" in out and "extrapolated" in out


def _interval_width(hw, tp, tmp_path):
    """Relative width hi/lo of predict's 90% step-time interval, through the command as a user runs it."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(["predict", "--model", "llama-3-70b", "--hardware", hw, "--tp", str(tp), "--batch", "64",
                         "--json"]) == 0
    row = json.loads(buf.getvalue().splitlines()[0])
    lo, hi = row["t_step_ms_lo"], row["t_step_ms_hi"]
    return hi / lo


def test_beyond_the_fitted_world_widens_the_interval(tmp_path, capsys):
    # The same 16-rank fit, and the same fit stated at 64 ranks (then 64 ranks is measured, not
    # extrapolated): only the first widens predict's interval, and the note says by how much.
    hw16 = _profile(tmp_path)
    d = get_profile("h100-sxm").to_dict()
    d["network"]["collectives"] = [dict(FIT, world_size=64)]
    (tmp_path / "p64").mkdir()
    hw64 = tmp_path / "p64" / "profile.json"
    hw64.write_text(json.dumps(d))
    extrapolated, measured = _interval_width(hw16, 64, tmp_path), _interval_width(str(hw64), 64, tmp_path)
    assert extrapolated > measured * 1.01, (extrapolated, measured)
    err = capsys.readouterr().err
    assert "90% interval draws the network term x/÷" in err and "16-to-64-rank" in err
    # Farther from the fitted world, wider: 32 ranks is one doubling from 16, 64 two.
    assert _interval_width(hw16, 32, tmp_path) < extrapolated
