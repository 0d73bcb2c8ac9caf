"""The CPU chain: calibrate --device cpu --quick -> profile.json -> frontier, refits with
--from, ingest, report regeneration, --compare, and bad input."""

import json
import subprocess
import sys

import pytest

from inferecon.cli import main
from inferecon.model.hardware import HardwareProfile

FIX = "tests/fixtures/ingest/"


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "run"
    assert main(["calibrate", "--device", "cpu", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


def test_cpu_chain_writes_a_valid_profile_and_report(cpu_run, tmp_path, capsys):
    prof = HardwareProfile.load(cpu_run / "profile.json")
    assert prof.provenance.kind == "calibrated" and prof.provenance.run_id == "run"
    q = prof.provenance.fit_quality
    # Every term measured on the CPU is fitted and scored on held-out cases.
    assert "memory" in q and q["memory"]["heldout_mape"] is not None
    assert "arithmetic:fp32" in q and q["arithmetic:fp32"]["heldout_mape"] is not None
    assert any(k.startswith("network:all_reduce/w2/") for k in q)  # 2 gloo ranks via torchrun
    assert "latency:kernel_eager" in q
    assert prof.memory.achieved_gbps > 0.5 and prof.compute.gemm_fit["fp32"]
    summary = json.loads((cpu_run / "calibration.json").read_text())
    assert summary["measured_s"] > 0 and len(summary["plots"]) == 4
    page = (cpu_run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "held-out" in page
    # The calibrated profile drives the frontier like a published one.
    assert main(["frontier", "--model", "tests/fixtures/hf/llama-3-8b.json", "--hardware",
                 str(cpu_run / "profile.json"), "--max-gpus", "2", "--out", str(tmp_path)]) == 0
    assert "calibrated profile" in capsys.readouterr().out


def test_refit_from_run_with_ingested_files_and_report(cpu_run, tmp_path):
    out = tmp_path / "refit"
    assert main(["calibrate", "--from", str(cpu_run), "--out", str(out),
                 "--nccl-tests", FIX + "all_reduce_perf_8xh100.txt", "--nvbandwidth", FIX + "nvbandwidth.txt"]) == 0
    prof = HardwareProfile.load(out / "profile.json")
    fits = {(c.collective, c.world_size) for c in prof.network.collectives}
    assert ("all_reduce", 8) in fits and ("all_reduce", 2) in fits
    (cpu_run / "validation.json").write_text('{"mape_calibrated": 0.1}')
    assert main(["report", str(cpu_run), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "Validation" in page and "mape_calibrated" in page
    (cpu_run / "validation.json").unlink()


def test_compare_needs_a_published_match_or_gpu(cpu_run, tmp_path, capsys):
    r = subprocess.run([sys.executable, "-m", "inferecon.cli", "frontier", "--model", "llama-3-8b", "--hardware",
                        str(cpu_run / "profile.json"), "--compare", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no published profile matches" in r.stderr
    assert main(["frontier", "--model", "llama-3-8b", "--hardware", str(cpu_run / "profile.json"), "--compare",
                 "--gpu", "h100-sxm", "--max-gpus", "8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "max speed:" in out and "moved most:" in out


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "inferecon.cli", *args], capture_output=True, text=True, timeout=120)


def test_bad_input(tmp_path):
    r = _cli("calibrate", "--from", str(tmp_path / "nope"))
    assert r.returncode == 2 and "not a run directory" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"schema_version": 7}))
    r = _cli("frontier", "--model", "llama-3-8b", "--hardware", str(bad), "--out", str(tmp_path))
    assert r.returncode == 2 and "schema_version 7" in r.stderr
    r = _cli("calibrate", "--from", str(tmp_path), "--nccl-tests", str(tmp_path / "missing.txt"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
