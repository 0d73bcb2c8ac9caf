"""inferecon validate: the decode kernel (numerics of the TP split, layer scaling), the glue to
the cost model, the CLI end to end on CPU (one rank and a 2-rank gloo world), bad input, and
GPU-only checks (CUDA graphs, published comparison) marked `gpu`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inferecon import cli  # noqa: E402
from inferecon.validation import decode as v  # noqa: E402
from inferecon.kernels import decode  # noqa: E402
from inferecon.sweeps import decode as decode_world  # noqa: E402
from inferecon.model.catalog import get_model  # noqa: E402
from inferecon.model.hardware import HardwareProfile  # noqa: E402
from proc_tree import alive, descendants
from plotcheck import assert_points_plotted

FIXTURES = Path(__file__).parent / "fixtures" / "validate"
CPU_PROFILE = FIXTURES / "cpu_profile.json"
CUDA = torch.cuda.is_available()

SMALL = decode.DecoderShape(n_layers=2, d_model=256, n_heads=8, n_kv_heads=2, d_head=32, d_ff=512,
                            vocab=1000, dtype="fp32")
# MoE with one KV head: at tp = 2 the head is replicated on both ranks, the experts split.
SMALL_MOE_MQA = decode.DecoderShape(n_layers=2, d_model=256, n_heads=8, n_kv_heads=1, d_head=32, d_ff=512,
                                    vocab=1000, n_experts=8, n_active_experts=2, n_shared_experts=1,
                                    d_ff_expert=256, n_dense_layers=1, dtype="fp32")


# --------------------------------------------------------------------------------------------
# The kernel


@pytest.mark.parametrize("shape", [SMALL, SMALL_MOE_MQA], ids=["gqa-dense", "mqa-moe"])
@pytest.mark.slow
def test_tp2_step_equals_tp1_step(shape, tmp_path):
    """Same seed, same weights: the 2-rank gloo step (column/row-parallel split, all-reduces,
    vocab-parallel argmax) computes the one-rank step's hidden state and tokens."""
    case = decode.DecodeCase(layers=2, batch=4, context=64)
    ref = decode.Decoder(shape, case.batch, case.context, "cpu")
    ref.step()
    dump = tmp_path / "rank0.pt"
    decode_world.run_torchrun(shape, [case], 2, "cpu", tmp_path, quick=True, fixed_reps=3, dump=str(dump))
    got = torch.load(dump)
    # fp32 with different summation order (partial sums over ranks): ~1e-6 observed.
    assert torch.allclose(got["hidden"], ref.hidden.float(), atol=1e-4, rtol=1e-4)
    assert torch.equal(got["tokens"], ref.next_tokens)


def test_kv_heads_per_rank_split_and_replicate():
    gqa = decode.DecoderShape(n_layers=1, d_model=64, n_heads=8, n_kv_heads=4, d_head=8, d_ff=64, vocab=10)
    assert [decode._kv_heads_of_rank(gqa, 2, r) for r in range(2)] == [(0, 2), (2, 4)]
    assert [decode._kv_heads_of_rank(gqa, 8, r) for r in range(8)] == [(0, 1), (0, 1), (1, 2), (1, 2),
                                                                       (2, 3), (2, 3), (3, 4), (3, 4)]
    with pytest.raises(Exception, match="does not divide"):
        gqa.check_tp(3)


def test_moe_reads_only_routed_experts():
    """Grouped per expert: an expert no token is routed to is never multiplied."""
    shape = decode.DecoderShape(n_layers=1, d_model=64, n_heads=4, n_kv_heads=4, d_head=16, d_ff=64, vocab=50,
                                n_experts=16, n_active_experts=2, d_ff_expert=32, dtype="fp32")
    dec = decode.Decoder(shape, batch=1, context=8, device="cpu")
    calls = []
    orig = dec._swiglu
    dec._swiglu = lambda x, gu, d: (calls.append(x.shape[0]), orig(x, gu, d))[1]
    dec.step()
    assert len(calls) == 2 and sum(calls) == 2  # one token, top-2: two experts, one row each


def test_fit_layers_recovers_a_line():
    a, b = decode.fit_layers({1: 3.0 + 2.0, 4: 3.0 + 8.0})
    assert a == pytest.approx(3.0) and b == pytest.approx(2.0)
    assert decode.extrapolate({2: 7.0, 4: 11.0}, 80) == pytest.approx(3.0 + 2.0 * 80)


@pytest.mark.slow
def test_a_step_is_linear_in_layers_by_flop_count():
    """What layer extrapolation rests on: the work of one decode step is a + b·L. Counted with
    torch's FLOP counter instead of timed on a shared CPU (the time of a step is the machine's;
    the line through 1 and 2 layers is test_fit_layers_recovers_a_line).

    By hand, batch 4 at context 256 (+1 new token), d 512, 8 heads x 64, 4 KV heads, d_ff 1536:
    per layer the GEMMs QKV 2·4·(512 + 2·256)·512 + O 2·4·512·512 + gate/up 2·4·3072·512 +
    down 2·4·512·1536 = 25,165,824 FLOP and attention 2 x 2·4·8·64·257 = 2,105,344 FLOP;
    once per step the LM head 2·4·2048·512 = 8,388,608 FLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    shape = decode.DecoderShape(n_layers=4, d_model=512, n_heads=8, n_kv_heads=4, d_head=64, d_ff=1536,
                                vocab=2048, dtype="fp32")
    for layers in (1, 2, 4):
        dec = decode.Decoder(shape.with_layers(layers), 4, 256, "cpu")
        with FlopCounterMode(display=False) as counter:
            dec.step()
        assert counter.get_total_flops() == 8_388_608 + layers * (25_165_824 + 2_105_344)


# --------------------------------------------------------------------------------------------
# Glue to the cost model


def test_predict_of_the_measured_layers_by_hand():
    # Llama 3 8B in bf16 cut to the 4 layers a validation run measures, tp = 2, batch 8,
    # context 512, on published H100 figures (not the profile's constants):
    spec = v.spec_for_dtype(get_model("llama-3-8b"), "bf16")
    from inferecon.model.published import get_profile

    got = v.predict(spec.with_layers(4), get_profile("h100-sxm"), batch=8, context=512, tp=2)
    # The H100 SXM's decode figures the published profile adopts (aiconfigurator-core 0.12.0,
    # h100_sxm vLLM 0.24.0 tables): a decode GEMM's intercept 2.53 us, attention floor 11.99 us
    # and elementwise 7.36 us per layer, bf16 streaming at 0.833 of HBM, vLLM's all-reduce on 2
    # GPUs from 64 KiB to 1 MiB: alpha 4.23 us, 258 GB/s.
    # launch: 4 x 2.53 + 11.99 + 7.36 = 29.47 us per layer x 4 layers = 117.88 us.
    assert got.t_latency_s == pytest.approx(4 * (4 * 2.53 + 11.99 + 7.36) * 1e-6, rel=1e-9)
    # network: 2 all-reduces per layer of 8 tokens x 4096 x 2 B = 65,536 B over 2 GPUs, inside
    # the decode step's graph: vLLM's 4.23 us + 65,536 B / 258 GB/s = 4.23 + 0.254 us; x 8 = 35.87 us.
    per_ar = 4.23e-6 + 65536 / 258e9
    assert got.t_network_s == pytest.approx(8 * per_ar, rel=1e-9)
    # memory: per layer q, o 4096^2, k, v 4096 x 1024, gate, up, down 4096 x 14336 = 218.1 M
    # weights; 4 layers + the 128,256 x 4096 LM head = 1,397.7 M x 2 B / 2 GPUs = 1.3977 GB,
    # plus KV 8 x 512 x 4 layers x 2 x 1024 x 2 B / 2 = 33.6 MB, over 3.35 TB/s x 0.833:
    # 512.9 us (activations add < 0.2%).
    weights = (4 * (2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336) + 128256 * 4096) * 2 / 2
    kv = 8 * 512 * 4 * 2 * 1024 * 2 / 2
    assert got.t_memory_s == pytest.approx((weights + kv) / (3.35e12 * 0.833), rel=5e-3)
    assert got.t_arithmetic_s < got.t_memory_s  # batch 8 decode: memory-bound
    assert got.t_step_s == pytest.approx(got.t_latency_s + got.t_network_s + got.t_memory_s, rel=1e-9)
    full = v.predict(spec, get_profile("h100-sxm"), 8, 512, 2).t_step_s
    assert full > 5 * got.t_step_s  # 32 layers vs 4


def test_decoder_shape_from_spec():
    s = v.decoder_shape(get_model("mixtral-8x7b"), "bf16")
    assert (s.n_experts, s.n_active_experts, s.d_ff_expert, s.n_kv_heads) == (8, 2, 14336, 8)
    with pytest.raises(Exception, match="MLA"):
        v.decoder_shape(get_model("deepseek-v3"), "bf16")
    with pytest.raises(Exception, match="SwiGLU"):
        v.decoder_shape(get_model("gpt-3-175b"), "bf16")


def test_published_profile_matching():
    hw = HardwareProfile.load(CPU_PROFILE)
    assert v.published_for_device("cpu", "AMD EPYC", hw, None) == (None, "no published CPU profile")
    p, _ = v.published_for_device("cuda", "NVIDIA H100 80GB HBM3", hw, None)
    assert p.name == "h100-sxm"
    assert v.published_for_device("cuda", "NVIDIA H100 PCIe", hw, None)[0] is None
    assert v.published_for_device("cuda", "NVIDIA H200", hw, None)[0].name == "h200"


def test_plan_layers():
    shape = v.decoder_shape(get_model("llama-3-8b"), "bf16")
    assert v.plan_layers(shape, None, [1], [512], 1, 1e12).layers == (32,)
    assert v.plan_layers(shape, 8, [1], [512], 1, 1e12).layers == (4, 8)
    small = v.plan_layers(shape, None, [1], [512], 1, 4e9)  # 8B in bf16 does not fit in 4 GB
    assert small.extrapolated and small.measured < 32 and "do not fit" in small.reason
    with pytest.raises(Exception, match="at least 2"):
        v.plan_layers(shape, 1, [1], [512], 1, 1e12)


# --------------------------------------------------------------------------------------------
# The command on CPU


def _run_cli(args, capsys):
    rc = cli.main(["validate", *args])
    out, err = capsys.readouterr()
    return rc, out, err


REQUIRED = ["model", "layers_measured", "n_layers_full", "batch", "context", "tp", "dtype", "median_us", "iqr_us",
            "samples_us", "tokens_per_s_per_seq", "tokens_per_s_per_gpu", "device", "device_name", "benchmark"]


def test_validate_cpu_end_to_end(tmp_path, capsys, saved_figures):
    out = tmp_path / "run"
    rc, stdout, err = _run_cli(["--hardware", str(CPU_PROFILE), "--model", "tiny-llama", "--layers", "2",
                                "--batch", "1,4", "--context", "128", "--quick", "--out", str(out)], capsys)
    assert rc == 0, err
    import pandas as pd

    from inferecon.harness.store import read_run

    manifest, tables = read_run(out)
    df = tables["decode"]
    assert not set(REQUIRED) - set(df.columns)
    assert sorted(df["layers_measured"].unique()) == [1, 2]  # two layer counts: 2 and 2 // 2
    assert (df["n_layers_full"] == 4).all() and (df["device"] == "cpu").all()
    table = pd.read_csv(out / "validation.csv")
    assert len(table) == 2 and (table["layers_measured"] == 2).all()
    # The error % and the MAPE are what the table's own columns say.
    err_pct = 100 * (table["calibrated_step_us"] - table["measured_step_us"]) / table["measured_step_us"]
    assert np.allclose(err_pct, table["calibrated_error_pct"])
    summary = json.loads((out / "validation.json").read_text())
    assert summary["mape_pct"]["calibrated"] == pytest.approx(table["calibrated_error_pct"].abs().mean())
    assert summary["published_profile"] is None and summary["published_reason"] == "no published CPU profile"
    assert "full_measured_step_us" in table and summary["full_model_mape_pct"]["calibrated"] is not None
    (fig,) = saved_figures  # the plot shows the table: each case at (measured, predicted) ms
    assert_points_plotted(fig, table["measured_step_us"] / 1e3, table["calibrated_step_us"] / 1e3)
    assert "MAPE calibrated" in stdout and "no published CPU profile" in stdout
    assert manifest["status"] == "complete" and manifest["validation"]["cases"] == 2


@pytest.mark.slow
def test_validate_tp2_gloo(tmp_path, capsys):
    out = tmp_path / "tp2"
    rc, stdout, err = _run_cli(["--hardware", str(CPU_PROFILE), "--model", "tiny-llama", "--layers", "2", "--tp", "2",
                                "--batch", "2", "--context", "128", "--quick", "--out", str(out)], capsys)
    assert rc == 0, err
    import pandas as pd

    table = pd.read_csv(out / "validation.csv")
    assert (table["tp"] == 2).all()
    assert (table["calibrated_network_us"] > 0).all()  # the prediction charges the all-reduces
    df = pd.read_parquet(out / "decode.parquet")
    assert (df["tp"] == 2).all()
    assert np.allclose(df["tokens_per_s_per_gpu"], df["batch"] / (df["median_us"] * 1e-6) / 2)


@pytest.mark.parametrize("args, message", [
    (["--model", "no-such-model"], "unknown model"),
    (["--model", "tiny-llama", "--tp", "3"], "does not divide"),
    (["--model", "tiny-llama", "--layers", "0"], "--layers: must be from 1 to 10,000, got 0"),
    (["--model", "tiny-llama", "--batch", "0,8"], "--batch: must be from 1 to 1,048,576, got 0"),
    (["--model", "tiny-llama", "--context", "x"], "--context: must be a whole number from 1"),
    (["--model", "deepseek-v3"], "MLA"),
    (["--model", "tiny-llama", "--hardware", "/nonexistent/profile.json"], "no such profile"),
    (["--model", "tiny-llama", "--hardware", str(FIXTURES / "malformed_profile.json")], "missing field"),
])
def test_bad_input_is_one_line(args, message, tmp_path, capsys):
    if "--hardware" not in args:
        args = ["--hardware", str(CPU_PROFILE), *args]
    rc, out, err = _run_cli([*args, "--out", str(tmp_path / "x")], capsys)
    assert rc == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # nothing measured, nothing written


# --------------------------------------------------------------------------------------------
# GPU only


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_graph_replay_matches_eager_step():
    shape = decode.DecoderShape(n_layers=2, d_model=1024, n_heads=16, n_kv_heads=4, d_head=64, d_ff=2816,
                                vocab=32000, dtype="bf16")
    dec = decode.Decoder(shape, batch=8, context=1024, device="cuda")
    dec.step()
    eager = dec.next_tokens.clone()
    m = decode._time_step(dec, "cuda", quick=True, fixed_reps=None)
    assert m.extra["cuda_graph"]
    assert torch.equal(dec.next_tokens, eager)  # the replayed graph computed the same step


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_validate_gpu_both_mapes(tmp_path, capsys):
    from inferecon.model.published import get_profile

    name = torch.cuda.get_device_name()
    if v.published_for_device("cuda", name, get_profile("h100-sxm"), None)[0] is None:
        pytest.skip(f"no published profile for {name}")
    # The published profile stands in for a calibrated one: the run must still show both.
    hw = tmp_path / "hw.json"
    get_profile("h100-sxm").save(hw)
    out = tmp_path / "gpu"
    rc, stdout, err = _run_cli(["--hardware", str(hw), "--model", "llama-3-8b", "--layers", "4", "--batch", "1,64",
                                "--context", "512,8192", "--quick", "--out", str(out), "--published", "h100"], capsys)
    assert rc == 0, err
    summary = json.loads((out / "validation.json").read_text())
    assert all(math.isfinite(summary["mape_pct"][k]) for k in ("calibrated", "published"))
    import pandas as pd

    assert pd.read_parquet(out / "decode.parquet")["cuda_graph"].all()


def test_compare_extrapolates_and_refuses_a_negative_slope():
    """Synthetic measurements: t = 1 ms + 2 ms/layer extrapolates to 4 layers exactly; a case
    whose 1-layer step was slower than its 2-layer one gets no full-model figure."""
    spec = v.VALIDATION_MODELS["tiny-llama"]
    plan = v.LayerPlan(n_layers_full=4, layers=(1, 2), reason="--layers 2")
    rec = lambda L, b, us: {"layers_measured": L, "batch": b, "context": 128, "median_us": us,  # noqa: E731
                            "iqr_us": 1.0, "noisy": False, "dtype": "fp32"}
    rows = [rec(1, 1, 3000.0), rec(2, 1, 5000.0), rec(1, 8, 6000.0), rec(2, 8, 5000.0)]
    hw = HardwareProfile.load(CPU_PROFILE)
    table = v.compare(v.spec_for_dtype(spec, "fp32"), rows, plan, 1, {"calibrated": hw})
    good, bad = table
    assert good["full_measured_step_us"] == pytest.approx(9000.0) and good["layer_fit_ok"]
    assert good["calibrated_full_error_pct"] == pytest.approx(
        100 * (good["calibrated_full_step_us"] - 9000.0) / 9000.0)
    assert not bad["layer_fit_ok"] and math.isnan(bad["full_measured_step_us"])
    assert v.mape(table, "calibrated", full=True) == pytest.approx(abs(good["calibrated_full_error_pct"]))


# --------------------------------------------------------------------------------------------
# Interrupted and resumed; memory; a failed layer fit


REPO = Path(__file__).resolve().parents[1]
_RESUMABLE = ["--hardware", str(CPU_PROFILE), "--model", "tiny-llama", "--layers", "2", "--batch", "1,2,4,8",
              "--context", "128", "--quick"]


def _decode_rows(out: Path) -> int:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(out / "decode.parquet").metadata.num_rows
    except Exception:  # not written yet
        return 0


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGKILL"])
@pytest.mark.slow
def test_interrupted_validate_keeps_finished_cases_and_resumes(tmp_path, capsys, sig):
    """A real validate stopped after its first stored case (of 8) keeps what finished;
    --resume measures the rest: every case once, the first ones exactly as measured."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from inferecon.harness.store import read_run

    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "inferecon.cli", "validate", *_RESUMABLE, "--out", str(out)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _decode_rows(out) < 1:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    manifest, tables = read_run(out)
    before = tables["decode"]
    assert 1 <= len(before) < 8, "the signal must land midway"
    if sig == "SIGKILL":
        assert manifest["status"] == "running"
    else:
        assert proc.returncode == 130, err
        assert manifest["status"] == "interrupted"
        assert f"{len(before)} finished case(s) saved" in err and "--resume" in err and "Traceback" not in err

    rc, stdout, err = _run_cli([*_RESUMABLE, "--out", str(out), "--resume"], capsys)
    assert rc == 0, err
    assert f"resuming: {len(before)} of 8 cases already stored" in err
    manifest, tables = read_run(out)
    after = tables["decode"]
    assert manifest["status"] == "complete" and len(manifest["resumes"]) == 1
    assert len(after) == 8 and after["case_id"].is_unique
    kept = after.set_index("case_id").loc[list(before["case_id"])]
    for (_, b), (_, a) in zip(before.iterrows(), kept.iterrows()):
        assert list(a["samples_us"]) == list(b["samples_us"])  # not measured again
    import pandas as pd

    assert len(pd.read_csv(out / "validation.csv")) == 4  # one row per (batch, context)


def test_resume_with_another_model_or_plan_is_refused(tmp_path, capsys):
    out = tmp_path / "r"
    rc, _, err = _run_cli([*_RESUMABLE[:-5], "--batch", "1", "--context", "128", "--quick", "--out", str(out)], capsys)
    assert rc == 0, err
    before = (out / "decode.parquet").read_bytes()
    for change, message in ((["--model", "tiny-moe"], "validates model tiny-llama, this command asks for tiny-moe"),
                            (["--batch", "2"], "validates batches [1], this command asks for [2]")):
        args = ["--hardware", str(CPU_PROFILE), "--model", "tiny-llama", "--layers", "2", "--batch", "1",
                "--context", "128", "--quick"]
        for i in range(0, len(change), 2):
            args[args.index(change[i]) + 1] = change[i + 1]
        rc, _, err = _run_cli([*args, "--out", str(out), "--resume"], capsys)
        assert rc == 2 and message in err and err.count("\n") == 1, err
    assert (out / "decode.parquet").read_bytes() == before  # refused before anything was measured
    rc, _, err = _run_cli([*_RESUMABLE, "--resume"], capsys)
    assert rc == 2 and "--resume needs --out" in err


def _memory_between_one_and_two_layers(model: str) -> tuple[float, object]:
    shape = v.decoder_shape(get_model(model), "fp32")
    need = lambda n: shape.with_layers(n).weight_bytes() + shape.with_layers(n).kv_bytes(8, 512)  # noqa: E731
    return (need(1) + need(2)) / 2, shape


def test_memory_that_leaves_one_layer_is_named_as_the_cause(tmp_path, capsys, monkeypatch):
    """llama-3-70b on a CPU whose memory holds one layer but not two: the cause is memory."""
    mem, shape = _memory_between_one_and_two_layers("llama-3-70b")
    with pytest.raises(Exception, match="only 1 layer fits") as exc:
        v.plan_layers(shape, None, [1, 8], [128, 512], 1, mem)
    assert "--layers must be at least 2" not in str(exc.value) and "more memory" in str(exc.value)
    monkeypatch.setattr(v, "device_memory_bytes", lambda device: mem)
    rc, _, err = _run_cli(["--hardware", str(CPU_PROFILE), "--model", "llama-3-70b", "--out", str(tmp_path / "x")],
                          capsys)
    assert rc == 2 and err.count("\n") == 1
    assert "80-layer model: only 1 layer fits" in err and f"{mem / 1e9:.1f} GB per rank" in err
    assert not (tmp_path / "x").exists()
    # Asked for by the user, one layer is still the user's choice to correct.
    with pytest.raises(Exception, match="--layers must be at least 2"):
        v.plan_layers(shape, 1, [1], [128], 1, 1e15)


def test_llama_70b_on_this_cpu_names_memory(tmp_path, capsys):
    """Unpatched, on this machine: whatever its memory, the refusal is about memory."""
    _, shape = _memory_between_one_and_two_layers("llama-3-70b")
    if v.device_memory_bytes("cpu") > shape.with_layers(2).weight_bytes() * 1.5:
        pytest.skip("this machine holds two layers of llama-3-70b in fp32: validate would measure them")
    rc, _, err = _run_cli(["--hardware", str(CPU_PROFILE), "--model", "llama-3-70b", "--out", str(tmp_path / "x")],
                          capsys)
    assert rc == 2 and "GB per rank" in err and "--layers must be at least 2" not in err, err


def test_failed_layer_fit_prints_its_reason_not_nan(tmp_path, capsys, monkeypatch):
    """Step times where the 2-layer step was measured faster than the 1-layer one (a loaded
    machine): no full-model figure, and the reason, in the table, the JSON and the MAPE line."""
    times_us = {1: 5000.0, 2: 4000.0}  # per layer count, at every batch

    def fake_measure_case(shape, case, device, group=decode.TPGroup(), quick=False, fixed_reps=None, seed=0):
        t = times_us[case.layers]
        return {"case_id": case.case_id(1, shape.dtype), "layers_measured": case.layers, "batch": case.batch,
                "context": case.context, "tp": 1, "dtype": shape.dtype, "samples_us": [t] * 5, "median_us": t,
                "iqr_us": 0.0, "reps": 5, "noisy": False, "cuda_graph": False, "timer": "fake",
                "tokens_per_s_per_seq": 1e6 / t, "tokens_per_s_per_gpu": case.batch * 1e6 / t}

    monkeypatch.setattr(decode, "measure_case", fake_measure_case)
    out = tmp_path / "run"
    rc, stdout, err = _run_cli(["--hardware", str(CPU_PROFILE), "--model", "tiny-llama", "--layers", "2",
                                "--batch", "1", "--context", "128", "--out", str(out)], capsys)
    assert rc == 0, err
    assert "nan" not in stdout.lower()
    assert "the 2-layer step (4.000 ms) measured no slower than the 1-layer step (5.000 ms)" in stdout
    assert "full-model MAPE (extrapolated): none: no case had a positive per-layer slope" in stdout
    summary = json.loads((out / "validation.json").read_text())
    assert "no full-model figure" in summary["layer_fit_notes"]["batch 1 context 128"]


@pytest.mark.parametrize("how", ["sigterm-to-validate"])  # "terminal-ctrl-c" passes too (75 s a run)
@pytest.mark.slow
def test_interrupted_tp2_validate_keeps_rank0_cases_and_resumes(tmp_path, capsys, how):
    """--tp 2 under torchrun: rank 0 saves each case as it finishes, so a Ctrl-C (to the whole
    foreground group, as a terminal sends it) or a SIGTERM to validate alone (forwarded to
    torchrun once) keeps them, no rank outlives the run, and --resume measures only the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from inferecon.harness.store import read_run

    out = tmp_path / "tp2"
    args = ["--hardware", str(CPU_PROFILE), "--model", "tiny-llama", "--layers", "2", "--tp", "2",
            "--batch", "1,2,4,8", "--context", "128", "--quick", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "inferecon.cli", "validate", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    tree = []
    try:
        deadline = time.monotonic() + 180
        while not decode_world.saved_rows(out):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        tree = descendants(proc.pid)
        if how == "terminal-ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        t0 = time.monotonic()
        while any(alive(p) for p in tree) and time.monotonic() - t0 < 60:
            time.sleep(0.1)
        left = [p for p in tree if alive(p)]
    finally:
        for p in descendants(proc.pid) + [p for p in tree if alive(p)]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert proc.returncode == 130, err[-2000:]
    assert not left, "ranks outlived the interrupted run"
    manifest, tables = read_run(out)
    before = tables["decode"]
    assert manifest["status"] == "interrupted" and 1 <= len(before) < 8
    assert f"{len(before)} finished case(s) saved" in err

    rc, _, err = _run_cli([*args, "--resume"], capsys)
    assert rc == 0, err
    manifest, tables = read_run(out)
    after = tables["decode"]
    assert len(after) == 8 and after["case_id"].is_unique and (after["tp"] == 2).all()
    kept = after.set_index("case_id").loc[list(before["case_id"])]
    for (_, b), (_, a) in zip(before.iterrows(), kept.iterrows()):
        assert list(a["samples_us"]) == list(b["samples_us"])
