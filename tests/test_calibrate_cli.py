"""The CPU chain: calibrate --device cpu --quick -> profile.json -> frontier, refits with
--from, ingest, report regeneration, --compare, and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inferecon.model.published import get_profile
from inferecon.cli import main
from inferecon.model.hardware import HardwareProfile

FIX = "tests/fixtures/ingest/"


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "run"
    assert main(["calibrate", "--device", "cpu", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.slow
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
    # One plot per fitted term: GEMM per dtype the CPU times (fp32 and bf16), memory, network, latency.
    plots = {"fit_gemm_fp32.png", "fit_gemm_bf16.png", "fit_memory.png", "fit_network.png", "fit_latency.png"}
    assert summary["measured_s"] > 0 and {Path(p).name for p in summary["plots"]} == plots
    page = (cpu_run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(plots) and "held-out" in page
    # The calibrated profile drives the frontier like a published one.
    assert main(["frontier", "--model", "tests/fixtures/hf/llama-3-8b.json", "--hardware",
                 str(cpu_run / "profile.json"), "--max-gpus", "2", "--out", str(tmp_path)]) == 0
    assert "calibrated profile" in capsys.readouterr().out


@pytest.mark.slow
def test_refit_from_run_with_ingested_files_and_report(cpu_run, tmp_path):
    out = tmp_path / "refit"
    files = ["--nccl-tests", FIX + "synthetic_all_reduce_perf_8xh100.txt", "--nvbandwidth", FIX + "nvbandwidth.txt"]
    # An H100 file does not silently join a CPU run's profile.
    r = _cli("calibrate", "--from", str(cpu_run), "--out", str(out), *files)
    assert r.returncode == 2 and "has no published GPU profile" in r.stderr and "--force" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert main(["calibrate", "--from", str(cpu_run), "--out", str(out), "--force", *files]) == 0
    prof = HardwareProfile.load(out / "profile.json")
    fits = {(c.collective, c.world_size) for c in prof.network.collectives}
    assert ("all_reduce", 8) in fits and ("all_reduce", 2) in fits
    (cpu_run / "validation.json").write_text('{"mape_calibrated": 0.1}')
    assert main(["report", str(cpu_run), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "Validation" in page and "mape_calibrated" in page
    (cpu_run / "validation.json").unlink()


@pytest.mark.slow
def test_files_join_a_gpu_run_of_their_gpu_and_node_size(cpu_run, tmp_path):
    # The CPU run relabelled as an 8 x H100 node: its manifest is what --from checks files against.
    import shutil

    run = tmp_path / "h100-run"
    shutil.copytree(cpu_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(device="cuda", device_name="NVIDIA H100 80GB HBM3", gpu_count=8)
    (run / "manifest.json").write_text(json.dumps(manifest))
    r = _cli("calibrate", "--from", str(run), "--out", str(tmp_path / "a"),
             "--nccl-tests", FIX + "all_gather_perf_2nodes.txt")  # 2 nodes of 2 GPUs
    assert r.returncode == 2 and "2 GPUs per node, the h100-sxm profile has 8; refused" in r.stderr
    r = _cli("calibrate", "--from", str(run), "--out", str(tmp_path / "b"),
             "--nccl-tests", FIX + "synthetic_all_reduce_perf_8xh100.txt")
    assert r.returncode == 0, r.stderr
    assert "all_reduce over 8 ranks (device list) on 1 node (device list)" in r.stdout
    prof = HardwareProfile.load(tmp_path / "b" / "profile.json")
    assert ("all_reduce", 8, "intra") in {(c.collective, c.world_size, c.scope) for c in prof.network.collectives}


@pytest.mark.slow
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


@pytest.mark.slow
def test_bad_input(tmp_path):
    r = _cli("calibrate", "--from", str(tmp_path / "nope"))
    assert r.returncode == 2 and "no such run directory" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"schema_version": 7}))
    r = _cli("frontier", "--model", "llama-3-8b", "--hardware", str(bad), "--out", str(tmp_path))
    assert r.returncode == 2 and "schema_version 7" in r.stderr
    r = _cli("calibrate", "--from", str(tmp_path), "--nccl-tests", str(tmp_path / "missing.txt"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


_NO_TORCH = ("import sys; sys.modules['torch'] = None; from inferecon.cli import main; "
             "sys.exit(main(sys.argv[1:]))")


def _cli_without_torch(*args):
    return subprocess.run([sys.executable, "-c", _NO_TORCH, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_profile_from_files_alone_needs_no_torch(tmp_path):
    out = tmp_path / "files"
    r = _cli_without_torch("calibrate", "--nccl-tests", FIX + "mpirun_tag_output_all_reduce_2x8.txt",
                           "--nccl-tests", FIX + "srun_label_all_gather_16.txt",
                           "--nccl-tests", FIX + "sendrecv_no_devices.txt:send_recv:16:2",
                           "--nvbandwidth", FIX + "p2p_bandwidth_4gpu.txt", "--gpu", "h100-sxm", "--out", str(out))
    assert r.returncode == 0, r.stderr
    # The per-file report: where world and nodes came from, the fit, the row it could not read.
    assert "all_reduce over 16 ranks (device list) on 2 nodes (device list)" in r.stdout
    assert "all_gather over 16 ranks (count column) on 2 nodes (assumed (8 GPUs per node))" in r.stdout
    assert "send_recv over 16 ranks (user)" in r.stdout
    assert "line 34: not read" in r.stdout
    prof = HardwareProfile.load(out / "profile.json")
    published = get_profile("h100-sxm")  # the rest stays the published profile's
    assert prof.name == "h100-sxm-from-files"
    assert (prof.compute, prof.memory, prof.latency) == (published.compute, published.memory, published.latency)
    keys = {(c.collective, c.world_size, c.scope) for c in prof.network.collectives}
    assert keys == {("all_reduce", 16, "inter"), ("all_gather", 16, "inter"), ("send_recv", 16, "inter")}
    q = prof.provenance.fit_quality["network:all_reduce/w16/inter/eager"]
    assert q["file"].endswith("mpirun_tag_output_all_reduce_2x8.txt") and len(q["sha256"]) == 64
    assert 34 not in q["lines_used"] and len(q["lines_used"]) == 11
    # The 4-GPU p2p file: 12 unidirectional pairs at 381..385 and 12 bidirectional at 750 / 2 = 375
    # per direction: the median of the 24 is (375 + 381) / 2 = 378 GB/s of the H100's 450.
    assert prof.network.intra.efficiency == pytest.approx(378 / 450, rel=1e-6)
    page = (out / "report.html").read_text()
    assert "Operators' files" in page and page.count("data:image/png;base64,") >= 3
    assert {"ingest_all_reduce.png", "ingest_all_gather.png", "ingest_send_recv.png"} <= {p.name for p in out.iterdir()}


@pytest.mark.slow
def test_profile_from_files_bad_input_is_one_line(tmp_path, capsys):
    for args, message in [
        (["--nccl-tests", FIX + "all_reduce_unreadable.txt", "--gpu", "h100-sxm"], "unreadable rows at lines 4, 5"),
        (["--nccl-tests", FIX + "sendrecv_no_devices.txt", "--gpu", "h100-sxm"], "FILE:send_recv:WORLD"),
        (["--nccl-tests", FIX + "synthetic_all_reduce_perf_8xh100.txt", "--gpu", "h200"], "not NVIDIA H200"),
        (["--nccl-tests", FIX + "all_gather_perf_2nodes.txt", "--gpu", "h100-sxm"], "2 GPUs per node"),
        (["--nccl-tests", FIX + "srun_label_all_gather_16.txt"], "give --gpu"),
        (["--nccl-tests", FIX + "synthetic_all_reduce_perf_8xh100.txt", "--quick"], "measures nothing"),
    ]:
        assert main(["calibrate", *args, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)
    r = _cli_without_torch("calibrate", "--nccl-tests", FIX + "all_reduce_unreadable.txt", "--gpu", "h100-sxm")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    # Forced, the H100 table joins an H200 profile and the profile says so.
    r = _cli_without_torch("calibrate", "--nccl-tests", FIX + "synthetic_all_reduce_perf_8xh100.txt", "--gpu", "h200",
                           "--force", "--out", str(tmp_path / "forced"))
    assert r.returncode == 0 and "forced in: measured on NVIDIA H100 80GB HBM3" in r.stdout
