"""`inferecon predict` and model/predict.py: one deployment, checked against hand calculations
from the published model shapes and datasheet figures."""

import json
import subprocess
import sys

import pytest

from inferecon.model.published import get_profile
from inferecon.cli import main
from inferecon.core.errors import UserError
from inferecon.model.catalog import get_model
from inferecon.model.engine import EngineProfile
from inferecon.model.predict import FIELDS, predict, stored_per_gpu_bytes

H100 = get_profile("h100-sxm")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "inferecon.cli", *args], capture_output=True, text=True, timeout=120)


# -- memory per GPU, by hand ----------------------------------------------------------------
# Llama 3 70B (config.json: 80 layers, d 8192, 64 heads, 8 KV heads, d_head 128, d_ff 28672,
# vocab 128256, untied): attention 2*8192*8192 + 2*8192*1024 = 150,994,944 per layer, MLP
# 3*8192*28672 = 704,643,072 per layer, x 80 = 68,451,041,280; embedding + lm head
# 2*128256*8192 = 2,101,346,304; total 70,552,387,584 parameters.
LLAMA70_PARAMS = 70_552_387_584


def test_weights_and_kv_per_gpu_dense_by_hand():
    m = get_model("llama-3-70b").with_precision(8, 16)
    w, kv = stored_per_gpu_bytes(m, tp=4, pp=1, ep=1, batch=16, context=8192)
    assert w == pytest.approx(LLAMA70_PARAMS * 1 / 4, rel=1e-9)  # 1 byte per weight over 4 GPUs
    # KV per token per layer: K and V, 8 heads x 128 x 2 bytes = 4096 B; 8 KV heads over tp 4.
    assert kv == pytest.approx(16 * 8192 * 80 * 4096 / 4, rel=1e-9)
    # tp 16 > 8 KV heads: each GPU still keeps one whole head (1/8 of the cache), not 1/16.
    _, kv16 = stored_per_gpu_bytes(m, tp=16, pp=1, ep=1, batch=16, context=8192)
    assert kv16 == pytest.approx(16 * 8192 * 80 * 4096 / 8, rel=1e-9)
    # pp 2: half the layers per GPU, every sequence's cache for them.
    w2, kv2 = stored_per_gpu_bytes(m, tp=4, pp=2, ep=1, batch=16, context=8192)
    assert (w2, kv2) == pytest.approx((w / 2, kv / 2), rel=1e-9)


def test_weights_and_kv_per_gpu_moe_by_hand():
    # Mixtral 8x7B: attention 2*4096*4096 + 2*4096*1024 = 41,943,040 and router 4096*8 = 32,768
    # per layer (x 32 = 1,343,225,856), embedding + lm head 2*32000*4096 = 262,144,000: the
    # replicated part is 1,605,369,856. Experts 8 x 3*4096*14336 x 32 layers = 45,097,156,608.
    m = get_model("mixtral-8x7b")
    w, kv = stored_per_gpu_bytes(m, tp=2, pp=1, ep=2, batch=8, context=1000)
    assert w == pytest.approx((1_605_369_856 / 2 + 45_097_156_608 / 4) * 2, rel=1e-9)
    # Each of the 2 ep ranks keeps its 4 sequences; 8 KV heads over tp 2.
    assert kv == pytest.approx(4 * 1000 * 32 * 4096 / 2, rel=1e-9)


def test_predict_reports_memory_and_fit():
    r = predict(get_model("llama-3-70b").with_precision(8, 16), H100, tp=4, batch=16, context=8192)
    assert FIELDS == tuple(r.to_dict())
    assert r.weights_per_gpu_gb == pytest.approx(17.638, abs=1e-3)
    assert r.kv_per_gpu_gb == pytest.approx(10.737, abs=1e-3)
    assert r.usable_per_gpu_gb == pytest.approx(72.0)  # 90% of 80 GB
    assert r.free_per_gpu_gb == pytest.approx(72.0 - 17.638 - 10.737, abs=2e-3)
    assert r.feasible and r.infeasible_reason is None
    assert r.n_gpu == 4 and r.micro_batch == 16

    big = predict(get_model("llama-3-70b"), H100, tp=1, batch=1, context=1024)  # 141 GB of bf16 on one GPU
    assert not big.feasible
    assert "141.1 GB" in big.infeasible_reason and "72.0 GB usable" in big.infeasible_reason


def test_speed_of_a_memory_bound_step_by_hand():
    # Llama 3 8B bf16, one H100, batch 1, context 1024. Weights read per step: 32 layers x
    # (41,943,040 + 176,160,768) + lm head 525,336,576 = 7,504,658,432 params x 2 B =
    # 15.009 GB at 0.833 of 3350 GB/s (2790.6 GB/s: the bf16 decode GEMMs' streaming share in
    # aiconfigurator-core 0.12.0's H100 SXM vLLM 0.24.0 table, which the published profile
    # adopts) = 5.379 ms; KV 1024 x 32 x 4096 B = 0.134 GB = 0.048 ms.
    # Launch latency and collectives come on top (no network on one GPU).
    r = predict(get_model("llama-3-8b"), H100, tp=1, batch=1, context=1024)
    assert r.t_memory_ms == pytest.approx(5.379 + 0.048, rel=0.01)
    assert r.t_network_ms == 0.0
    assert r.t_memory_ms < r.t_step_ms < r.t_memory_ms + 1.0
    assert r.dominant == "memory"
    # Batch 1, no speculation: one token per sequence per step.
    assert r.ms_per_token == pytest.approx(r.t_step_ms)
    assert r.tokens_per_s_per_seq == pytest.approx(r.tokens_per_s_per_gpu)
    # $2/GPU-hour for one GPU-step per token.
    assert r.usd_per_mtok == pytest.approx(2.0 / 3600 * r.t_step_ms * 1e-3 * 1e6, rel=1e-6)


def test_engine_profile_adds_its_overheads():
    m = get_model("llama-3-8b")
    base = predict(m, H100, tp=1, batch=1, context=1024)
    eng = predict(m, H100, tp=1, batch=1, context=1024,
                  engine=EngineProfile("test", step_overhead_us=100.0, per_layer_us=1.0))
    # 100 µs per step + 32 layers x 1 µs.
    assert eng.t_step_ms - base.t_step_ms == pytest.approx(0.132, rel=1e-6)
    assert eng.engine == "test"
    # 50 µs per sequence: batch 8 on one GPU adds 8 x 50 µs = 0.4 ms a step; pp 2 with
    # micro-batches of 2 holds 2 x 2 = 4 a step (0.2 ms); Mixtral at ep 2: each rank's
    # scheduler holds 4 of the 8 sequences (0.2 ms).
    mixtral = get_model("mixtral-8x7b")
    for mm, kw, added_ms in ((m, {"tp": 1, "batch": 8}, 0.4), (m, {"tp": 1, "pp": 2, "batch": 4}, 0.2),
                             (mixtral, {"tp": 1, "ep": 2, "batch": 8}, 0.2)):
        plain = predict(mm, H100, context=1024, **kw)
        per_seq = predict(mm, H100, context=1024, engine=EngineProfile("test", per_sequence_us=50.0), **kw)
        assert per_seq.t_step_ms - plain.t_step_ms == pytest.approx(added_ms, rel=1e-6), kw
    # Half the weight-read bandwidth doubles the 5.379 ms weight read of the step above.
    slow = predict(m, H100, tp=1, batch=1, context=1024,
                   engine=EngineProfile("test", weight_read_efficiency={"16": 0.5}))
    assert slow.t_step_ms - base.t_step_ms == pytest.approx(5.379, rel=0.01)
    # An efficiency for another format leaves 16-bit weights alone.
    other = predict(m, H100, tp=1, batch=1, context=1024,
                    engine=EngineProfile("test", weight_read_efficiency={"4": 0.5}))
    assert other.t_step_ms == pytest.approx(base.t_step_ms)


@pytest.mark.parametrize("kwargs,message", [
    (dict(tp=4, pp=4, batch=6), "6 sequences are not a multiple of pp x ep = 4"),
    (dict(tp=1, ep=2, batch=2), "expert parallelism needs a mixture-of-experts model"),
    (dict(tp=128, batch=1), "more than llama-3-70b's 64 attention heads"),
    (dict(tp=3, batch=1), "does not split llama-3-70b's 64 attention heads"),
    (dict(tp=1, pp=81, batch=81), "more than llama-3-70b's 80 layers"),
    (dict(tp=1, batch=0), "batch must be a whole number >= 1"),
    # Mistral Large 2 has 96 attention heads: 64 GPUs cannot each hold 1.5 of them.
    (dict(model="mistral-large-2", tp=64, batch=1), "64 GPUs does not split mistral-large-2's 96 attention heads"),
])
def test_impossible_layouts_are_refused(kwargs, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("+", r"\+")):
        predict(get_model(kwargs.pop("model", "llama-3-70b")), H100, context=1024, **kwargs)


def test_cli_json_one_object_per_batch(capsys):
    assert main(["predict", "--model", "llama-3-70b", "--gpu", "h100", "--tp", "4", "--batch", "1,16",
                 "--context", "8192", "--precision", "8", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["batch"] for r in rows] == [1, 16]
    assert all(r["weight_bits"] == 8 and r["tp"] == 4 and r["gpu"] == "h100-sxm" for r in rows)
    # More sequences per step: slower per sequence, cheaper per token.
    assert rows[1]["tokens_per_s_per_seq"] < rows[0]["tokens_per_s_per_seq"]
    assert rows[1]["usd_per_mtok"] < rows[0]["usd_per_mtok"]


@pytest.mark.parametrize("layout, load, batch", [
    (["--model", "llama-3-8b", "--pp", "2"], [], 2),
    (["--model", "mixtral-8x7b", "--gpu", "a100", "--tp", "2", "--ep", "2"],
     ["--input-len", "1000", "--output-len", "100", "--request-rate", "3"], 2),
    (["--model", "llama-3-8b", "--pp", "2", "--ep", "1"], ["--input-len", "1000", "--output-len", "100",
                                                          "--concurrency", "8"], 2),
])
def test_the_default_batch_is_one_sequence_per_micro_batch_and_rank(capsys, layout, load, batch):
    # Without --batch, pp 2 or ep 2 used to be refused over a batch of 1 nobody asked for.
    assert main(["predict", *layout, *load, "--json", "--draws", "0"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert row["batch"] == batch
    assert ("request" in row) == bool(load)


def test_cli_table_names_terms_memory_and_why_not(capsys):
    assert main(["predict", "--model", "llama-3-70b", "--batch", "1,1024", "--context", "8192", "--tp", "4"]) == 0
    out = capsys.readouterr().out
    for word in ("tok/s/seq", "$/Mtok", "arith", "memory", "network", "latency", "dominant", "weights", "free"):
        assert word in out
    assert "batch 1024 does not fit" in out


def test_cli_spec_decode_and_engine_file(tmp_path, capsys):
    eng = EngineProfile("vllm", step_overhead_us=50.0).save(tmp_path / "engine.json")
    assert main(["predict", "--model", "llama-3-70b", "--tp", "8", "--spec-decode", "llama-3-8b",
                 "--acceptance", "0.8", "--gamma", "4", "--engine", str(eng), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    # (1 - 0.8^5) / (1 - 0.8) = 3.3616 tokens per round (Leviathan et al. 2023).
    assert r["tokens_per_step"] == pytest.approx(3.3616)
    assert r["draft"] == "llama-3-8b" and r["engine"] == "vllm"


@pytest.mark.parametrize("args,message", [
    (["--model", "llama-3-70b", "--tp", "4", "--pp", "4", "--batch", "6"], "--batch 6: 6 sequences are not a multiple of pp x ep"),
    (["--model", "mistral-large-2", "--tp", "64"], "--tp 64: tensor parallelism over 64 GPUs does not split"),
    (["--model", "llama-3-70b", "--batch", "a,b"], "argument --batch: must be a whole number from 1 to 1,048,576"),
    (["--model", "llama-3-70b", "--gpu", "h10"], "unknown GPU 'h10'"),
    (["--model", "llama-3-70b", "--acceptance", "0.5"], "--acceptance and --gamma need --spec-decode"),
    (["--model", "llama-3-70b", "--engine", "no/such/engine.json"], "no such engine profile"),
])
def test_cli_errors_are_one_line(args, message):
    r = run_cli("predict", *args)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_predict_imports_neither_pandas_nor_matplotlib():
    code = ("import sys; from inferecon.cli import main; main(['predict', '--model', 'llama-3-70b', '--json']); "
            "print([m for m in ('pandas', 'matplotlib', 'scipy', 'torch') if m in sys.modules], file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_closed_pipe_ends_quietly():
    # More output than a pipe buffers (~64 KB), and a reader that stops after 100 bytes.
    batches = ",".join(str(b) for b in range(1, 1001))
    p = subprocess.Popen([sys.executable, "-m", "inferecon.cli", "predict", "--model", "llama-3-8b", "--batch", batches],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.read(100)
    p.stdout.close()
    err = p.stderr.read().decode()
    p.stderr.close()
    assert p.wait(timeout=120) == 141
    for noise in ("Traceback", "BrokenPipeError", "Exception ignored"):
        assert noise not in err


def test_engine_profile_of_another_gpu_is_noted(tmp_path):
    eng = EngineProfile("vllm", step_overhead_us=50.0, hardware="a100-sxm-80gb").save(tmp_path / "engine.json")
    r = run_cli("predict", "--model", "llama-3-8b", "--gpu", "h100", "--engine", str(eng), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["engine"] == "vllm"
    assert "was fitted against a100-sxm-80gb, not h100-sxm" in r.stderr
    r = run_cli("predict", "--model", "llama-3-8b", "--gpu", "a100", "--engine", str(eng), "--json")
    assert "fitted against" not in r.stderr



def test_frontier_searches_only_layouts_predict_accepts():
    # Mistral Large 2 (config.json: 96 attention heads, 8 KV heads): 1D tp 64 would give each
    # GPU 1.5 heads, so predict refuses it; the frontier must not search it either. tp 32 (3
    # heads each) is fine for both.
    from inferecon.model.frontier import SearchSpace, layouts_for

    m = get_model("mistral-large-2")
    assert (m.n_heads, m.n_kv_heads) == (96, 8)
    rows = layouts_for(m, H100, SearchSpace())
    one_d = {int(c) for r, c, _, _ in rows if r == 1}
    assert 64 not in one_d and 32 in one_d
    with pytest.raises(UserError, match="does not split"):
        predict(m, H100, tp=64, batch=1, context=1024, draws=0)
    for r, c, pp, ep in rows:
        if r == 1:  # predict prices 1D layouts: each one the frontier offers is accepted
            predict(m, H100, tp=int(c), pp=int(pp), ep=int(ep), batch=int(pp * ep), context=1024, draws=0)
