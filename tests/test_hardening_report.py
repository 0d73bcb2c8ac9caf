"""`report` reads a run, never rewrites it when the page goes elsewhere, keeps the fits
`calibrate` recorded (ingested nccl-tests included); `calibrate` on CPU says which peaks it
measured."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from inferecon.cli import main

NCCL = "tests/fixtures/ingest/synthetic_all_reduce_perf_8xh100.txt"


def _digest(d: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    """A synthetic CPU run (test_regress.make_run: all four benchmarks) calibrated in place
    together with an 8-GPU nccl-tests file, as an operator would after a measurement."""
    from test_regress import make_run

    run = make_run(tmp_path_factory.mktemp("rep") / "run", seed=5)
    assert main(["calibrate", "--from", str(run), "--nccl-tests", NCCL, "--force"]) == 0
    return run


def _fit_terms(page: str) -> list[str]:
    return [t for t in ("network:all_reduce/w8", "network:all_reduce/w2") if t in page]


@pytest.mark.slow
def test_calibration_records_the_ingested_fit(calibrated_run):
    summary = json.loads((calibrated_run / "calibration.json").read_text())
    assert any(f["term"].startswith("network:all_reduce/w8") for f in summary["fits"])
    assert _fit_terms((calibrated_run / "report.html").read_text()) == ["network:all_reduce/w8",
                                                                         "network:all_reduce/w2"]


@pytest.mark.slow
def test_report_out_elsewhere_leaves_the_run_alone_and_keeps_ingested_fits(calibrated_run, tmp_path, capsys):
    before = _digest(calibrated_run)
    assert main(["report", str(calibrated_run), "--out", str(tmp_path / "page.html")]) == 0
    assert _digest(calibrated_run) == before  # report.html, plots and profile untouched
    page = (tmp_path / "page.html").read_text()
    assert _fit_terms(page) == ["network:all_reduce/w8", "network:all_reduce/w2"]
    assert page.count("data:image/png;base64,") == len(json.loads((calibrated_run / "calibration.json")
                                                                  .read_text())["plots"])


@pytest.mark.slow
def test_report_in_place_keeps_ingested_fits(calibrated_run, capsys):
    assert main(["report", str(calibrated_run)]) == 0
    assert "network:all_reduce/w8" in (calibrated_run / "report.html").read_text()


@pytest.mark.slow
def test_report_of_a_bench_run_elsewhere_refits_without_writing_the_run(tmp_path, capsys):
    from test_regress import make_run

    run = make_run(tmp_path / "bench-run", seed=6)  # measurements only: no calibration.json
    before = _digest(run)
    assert main(["report", str(run), "--out", str(tmp_path / "p.html")]) == 0
    assert _digest(run) == before and not (run / "profile.json").exists()
    page = (tmp_path / "p.html").read_text()
    assert "network:all_reduce/w2" in page and page.count("data:image/png;base64,") == 4


def test_report_of_an_empty_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to report" in err[0]
    assert list((tmp_path / "empty").iterdir()) == []


@pytest.mark.slow
def test_cpu_calibration_does_not_print_a_placeholder_as_measured(tmp_path, capsys):
    from test_regress import make_run

    run = make_run(tmp_path / "cpu-run", seed=7)  # measures fp32 GEMMs only, like a CPU run
    capsys.readouterr()
    assert main(["calibrate", "--from", str(run)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("profile: peak"))
    # No bf16 GEMM was timed: the CPU profile carries no bf16 figure at all (a 16-bit model on
    # it multiplies at the measured fp32 rate); fp32 was measured.
    assert "bf16" not in line, line
    assert re.search(r"fp32 [0-9.e+-]+ \(measured\)", line), line
    from inferecon.model.catalog import get_model
    from inferecon.model.hardware import HardwareProfile
    from inferecon.model.terms import Layouts, compute_dtype, evaluate

    prof = HardwareProfile.load(run / "profile.json")
    assert set(prof.compute.peak_tflops) == {"fp32"}
    m = get_model("llama-3-8b").with_layers(2)
    assert compute_dtype(m, prof) == "fp32"
    r = evaluate(m, prof, Layouts(tp_r=1, tp_c=1, pp=1, ep=1, micro_batch=1), 16)
    assert r.t_arithmetic_s[0] > 0


@pytest.mark.slow
def test_gpu_calibration_labels_datasheet_peaks(tmp_path, capsys):
    from test_regress import H100, make_run

    run = make_run(tmp_path / "gpu-run", seed=8, device_name=H100, gpu_count=8, driver="550.54")
    capsys.readouterr()
    assert main(["calibrate", "--from", str(run)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("profile: peak"))
    # An H100 keeps its datasheet peaks (989 TFLOP/s bf16 dense) and measures the efficiency.
    assert "bf16 989 (datasheet)" in line and "placeholder" not in line
