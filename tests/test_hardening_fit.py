"""A serving run the model says cannot fit in its GPUs' memory is named and left out of the
validation's MAPE, not scored as if the prediction applied to it."""

import json
from pathlib import Path

from cli_check import one_line_error
from inferecon import cli

RUN = json.loads((Path(__file__).parent / "fixtures" / "engines" / "vllm_bench_serve_llama-3.1-8b_c8.json").read_text())


def _runs(tmp_path, *model_ids):
    paths = []
    for i, m in enumerate(model_ids):
        p = tmp_path / f"run{i}.json"
        p.write_text(json.dumps({**RUN, "model_id": m}))
        paths.append(str(p))
    return paths


def test_a_run_that_cannot_fit_is_named_and_not_scored(tmp_path, capsys):
    # Llama-3.1-70B in 16-bit on one H100: 141 GB of weights in 80 GB (by hand: 70.6e9 x 2 B).
    paths = _runs(tmp_path, "meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-8B-Instruct")
    assert cli.main(["validate", "--engine-results", *paths, "--gpu", "h100-sxm", "--out", str(tmp_path / "v")]) == 0
    out = capsys.readouterr()
    assert "run0.json: llama-3-70b at tp 1, concurrency 8 does not fit" in out.err and "left out of the MAPE" in out.err
    assert "MAPE over 1 run(s)" in out.out
    saved = json.loads((tmp_path / "v" / "engine_validation.json").read_text())
    assert saved["coverage_90"]["cases"] <= 1


def test_no_run_that_fits_is_one_line(tmp_path, capsys):
    paths = _runs(tmp_path, "meta-llama/Llama-3.1-70B-Instruct")
    line = one_line_error(capsys, ["validate", "--engine-results", *paths, "--gpu", "h100-sxm", "--out", str(tmp_path / "v")])
    assert "no run fits in its GPUs' memory" in line


def test_calibrate_does_not_fit_a_run_that_cannot_fit(tmp_path, capsys):
    paths = _runs(tmp_path, "meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-8B-Instruct")
    assert cli.main(["calibrate", "--engine-results", *paths, "--gpu", "h100-sxm", "--out", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err
    assert "run0.json: llama-3-70b at tp 1, concurrency 8 does not fit" in err and "not fitted" in err
    rows = (tmp_path / "c" / "engine_fit.csv").read_text().splitlines()
    assert len(rows) == 2 and "run1.json" in rows[1]  # the header and the one run that fits
    line = one_line_error(capsys, ["calibrate", "--engine-results", paths[0], "--gpu", "h100-sxm", "--out", str(tmp_path / "d")])
    assert "no engine run fits" in line
