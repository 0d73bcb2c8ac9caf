"""The frontier and specs commands end to end, and their one-line errors."""

import subprocess
import sys

import pandas as pd
import pytest

from inferecon.cli import main
from plotcheck import assert_points_plotted


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "inferecon.cli", *args], capture_output=True, text=True, timeout=120)


def test_frontier_writes_table_csv_and_png(tmp_path, capsys, saved_figures):
    assert main(["frontier", "--model", "llama-3-70b", "--gpu", "h100-sxm", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Pareto-optimal" in out and "dominant" in out
    df = pd.read_csv(tmp_path / "frontier.csv")
    assert {"tokens_per_s_per_seq", "usd_per_mtok", "n_gpu", "tp", "pp", "ep", "batch", "dominant",
            "t_arithmetic_s", "t_memory_s", "t_network_s", "t_latency_s", "mfu"} <= set(df.columns)
    # A frontier: faster points cost more.
    df = df.sort_values("tokens_per_s_per_seq")
    assert df["usd_per_mtok"].is_monotonic_increasing
    # The plot shows the table: every frontier row is a point at (speed, cost).
    (fig,) = saved_figures
    assert_points_plotted(fig, df["tokens_per_s_per_seq"], df["usd_per_mtok"])


def test_one_gpu_frontier_fastest_point_by_hand(tmp_path):
    # Llama 3 8B on one published H100 at context 0, batch 1: every weight but the input
    # embedding table read once (8.03e9 - 128256 x 4096 params, 2 bytes) at 0.833 of 3.35 TB/s,
    # plus 32 layers x (8 x 4096 + 2 x 14336) activations of 2 bytes; per layer 4 GEMM intercepts
    # of 2.53 µs + an 11.99 µs attention floor + 7.36 µs of elementwise kernels = 29.47 µs (the
    # H100 SXM's decode figures in aiconfigurator-core 0.12.0's vLLM 0.24.0 tables, which the
    # published profile adopts); no network. Cost: one GPU-step at $2/hour per token.
    from inferecon.model.catalog import get_model

    m = get_model("llama-3-8b")
    assert main(["frontier", "--model", "llama-3-8b", "--max-gpus", "1", "--context", "0", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "frontier.csv").sort_values("tokens_per_s_per_seq", ascending=False)
    fastest = df.iloc[0]
    weights = (m.total_params - 128256 * 4096) * 2
    act = 32 * (8 * 4096 + 2 * 14336) * 2
    step = (weights + act) / (3.35e12 * 0.833) + 32 * (4 * 2.53 + 11.99 + 7.36) * 1e-6
    assert fastest["batch"] == 1 and fastest["n_gpu"] == 1
    assert fastest["tokens_per_s_per_seq"] == pytest.approx(1 / step, rel=1e-6)
    assert fastest["usd_per_mtok"] == pytest.approx(step * 2.0 / 3600 * 1e6, rel=1e-6)
    assert fastest["t_network_s"] == 0


def test_no_latency_counterfactual_runs_from_the_cli(tmp_path):
    assert main(["frontier", "--model", "llama-3-70b", "--no-latency", "--context", "0", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "frontier.csv")
    assert (df["t_latency_s"] == 0).all()
    # Beyond the 64-head cap of 1D tensor parallelism and the 512-GPU default.
    assert df["n_gpu"].max() > 512 and df["tp"].max() > 64


def test_several_models_and_gpus_share_one_csv_and_plot(tmp_path, capsys):
    assert main(["frontier", "--model", "llama-3-8b,mixtral-8x7b", "--gpu", "h100-sxm", "--gpu", "a100",
                 "--context", "2048", "--precision", "8", "--price", "3", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "frontier.csv")
    assert set(zip(df["model"], df["gpu"])) == {("llama-3-8b", "h100-sxm"), ("mixtral-8x7b", "h100-sxm"),
                                                ("llama-3-8b", "a100-sxm-80gb"), ("mixtral-8x7b", "a100-sxm-80gb")}
    assert (df["weight_bits"] == 8).all()
    assert "$3.00/GPU-hour" in capsys.readouterr().out


def test_spec_decode_and_hf_config_and_calibrated_profile_path(tmp_path):
    from inferecon.model.published import get_profile

    prof = get_profile("h200").save(tmp_path / "profile.json")
    cfg = "tests/fixtures/hf/llama-3-8b.json"
    assert main(["frontier", "--model", "llama-3-70b", "--spec-decode", cfg, "--acceptance", "0.7",
                 "--hardware", str(prof), "--max-gpus", "16", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "frontier.csv")
    assert (df["gpu"] == "h200").all() and (df["n_gpu"] <= 16).all()
    assert (df["gamma"] > 0).any()


def test_specs_lists_gpus_models_and_sources():
    r = run_cli("specs")
    assert r.returncode == 0
    for word in ("h100-sxm", "b200", "deepseek-v3", "qwen3-235b-a22b", "source:", "datasheet"):
        assert word in r.stdout


@pytest.mark.parametrize("args,message", [
    (["--model", "llama-3-7b"], "unknown model 'llama-3-7b' (did you mean llama-3-70b"),
    (["--model", "llama-3-70b", "--gpu", "h10"], "unknown GPU 'h10'"),
    (["--model", "tests/fixtures/hf/truncated.json"], "not valid JSON"),
    (["--model", "llama-3-70b", "--context", "5000000"], "does not fit"),
    (["--model", "llama-3-70b", "--context", "-1"], "argument --context"),
    (["--model", "llama-3-70b", "--price", "-1"], "argument --price"),
    (["--model", "llama-3-70b", "--max-gpus", "0"], "argument --max-gpus"),
    (["--model", "llama-3-70b", "--spec-decode", "llama-3-8b", "--acceptance", "1.5"], "argument --acceptance"),
    (["--model", "llama-3-70b", "--precision", "3"], "invalid choice"),
    (["--model", "llama-3-70b", "--hardware", "nope.json"], "no such profile file"),
])
def test_bad_input_is_one_line_exit_2(args, message, tmp_path):
    r = run_cli("frontier", *args, "--out", str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_engine_profile_adds_its_overheads_to_the_frontier(tmp_path):
    # One H100, Llama 3 8B, batch 1, context 0, an engine of 300 µs per step, 4 µs per layer
    # and 80% weight-read efficiency at 16 bits: the weights' read time / 0.8 (HBM at 0.833 of
    # 3.35 TB/s), and latency 32 x 29.47 µs (the profile's per-layer kernels, see the test above)
    # + 32 x 4 µs + 300 µs.
    from inferecon.model.catalog import get_model
    from inferecon.model.engine import EngineProfile

    eng = EngineProfile(name="slow-engine", step_overhead_us=300.0, per_layer_us=4.0,
                        weight_read_efficiency={"16": 0.8}).save(tmp_path / "engine.json")
    m = get_model("llama-3-8b")
    assert main(["frontier", "--model", "llama-3-8b", "--max-gpus", "1", "--context", "0", "--draws", "0",
                 "--engine", str(eng), "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "frontier.csv").sort_values("tokens_per_s_per_seq", ascending=False)
    fastest = df.iloc[0]
    weights = (m.total_params - 128256 * 4096) * 2
    act = 32 * (8 * 4096 + 2 * 14336) * 2
    step = (weights / 0.8 + act) / (3.35e12 * 0.833) + (32 * (4 * 2.53 + 11.99 + 7.36) + 32 * 4 + 300) * 1e-6
    assert fastest["batch"] == 1 and fastest["engine"] == "slow-engine"
    assert fastest["tokens_per_s_per_seq"] == pytest.approx(1 / step, rel=1e-6)
