"""Engines without CUDA graphs (model/engine.py BUILTIN_ENGINES["eager"]): the host launches
every kernel of every layer, so a step takes at least layers x kernels per layer x host time
per launch; checked by hand on the published A100."""

import importlib.util
import json
from pathlib import Path

import pytest

from inferecon.cli import main
from inferecon.core.errors import UserError
from inferecon.model.catalog import get_model
from inferecon.model.engine import EngineProfile, get_engine
from inferecon.model.predict import predict
from inferecon.model.published import get_profile

# The figures the eager engine carries, as their sources give them: 42 kernels per Hugging Face
# Llama decoder layer (transformers 4.46.3, counted by scripts/count_layer_kernels.py) at 4.0 us
# of host time each (the same script's --time on this project's CPU): 168 us per layer.
KERNELS, HOST_US = 42, 4.0
A100 = get_profile("a100-sxm-80gb")


def test_the_eager_engine_names_its_figures_and_their_sources():
    e = get_engine("eager")
    assert (e.host_kernels_per_layer, e.host_launch_us) == (KERNELS, HOST_US)
    assert e.host_us_per_layer == KERNELS * HOST_US == 168.0
    assert any("transformers 4.46.3" in s for s in e.sources) and any("count_layer_kernels" in s for s in e.sources)
    assert (e.step_overhead_us, e.per_layer_us, e.weight_read_efficiency) == (0.0, 0.0, {})


def test_a_host_bound_step_is_the_hosts_launch_time():
    # Llama 3 8B, 4-bit weights, batch 1, context 4096 on one A100: the GPU's step is about
    # 3.2 ms of reads plus 32 x 29.9 us of kernels, under the host's 32 layers x 42 x 4.0 us =
    # 5,376 us, so the step is the host's; the excess over the GPU's step is latency.
    m = get_model("llama-3-8b").with_precision(4, 16)
    gpu = predict(m, A100, tp=1, batch=1, context=4096)
    eager = predict(m, A100, tp=1, batch=1, context=4096, engine=get_engine("eager"))
    assert gpu.t_step_ms < 5.376
    assert eager.t_step_ms == pytest.approx(32 * KERNELS * HOST_US / 1e3, rel=1e-9)
    assert eager.t_latency_ms - gpu.t_latency_ms == pytest.approx(5.376 - gpu.t_step_ms, rel=1e-9)
    assert (eager.t_memory_ms, eager.t_network_ms) == (gpu.t_memory_ms, gpu.t_network_ms)


def test_a_gpu_bound_step_hides_the_host():
    # Llama 3 70B bf16 on 4 A100s, batch 64, context 8192: the GPU's step is tens of ms,
    # far above the host's 80 x 168 us = 13.4 ms: the eager engine changes nothing.
    m = get_model("llama-3-70b")
    gpu = predict(m, A100, tp=4, batch=64, context=8192)
    eager = predict(m, A100, tp=4, batch=64, context=8192, engine=get_engine("eager"))
    assert gpu.t_step_ms > 80 * KERNELS * HOST_US / 1e3
    assert eager.t_step_ms == pytest.approx(gpu.t_step_ms, rel=1e-12)


def test_a_speculative_round_launches_the_drafts_layers_too():
    # Llama 3 70B with a Llama 3 8B draft, gamma 4, batch 1 on 8 H100s, 4-bit: the round's host
    # launches 80 + 4 x 32 = 208 layers x 168 us = 34.944 ms, above the GPU's round.
    m, d = get_model("llama-3-70b").with_precision(4, 16), get_model("llama-3-8b").with_precision(4, 16)
    p = predict(m, get_profile("h100-sxm"), tp=8, batch=1, context=1024, draft=d, gamma=4, acceptance=0.8,
                engine=get_engine("eager"))
    assert p.t_step_ms == pytest.approx(208 * KERNELS * HOST_US / 1e3, rel=1e-9)


def test_an_engine_run_eagerly_keeps_its_own_figures():
    e = EngineProfile("vllm-fit", step_overhead_us=300.0, weight_read_efficiency={"4": 0.5}).run_eagerly()
    assert (e.step_overhead_us, e.weight_read_efficiency, e.host_us_per_layer) == (300.0, {"4": 0.5}, 168.0)
    assert e.name == "vllm-fit (eager)"


def test_files_and_the_command_line_take_it(tmp_path, capsys):
    path = get_engine("eager").save(tmp_path / "engine.json")
    assert EngineProfile.load(path) == get_engine("eager")
    data = json.loads(path.read_text())
    data["host_launch_us"] = -1.0
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="host_launch_us must be a finite number >= 0"):
        EngineProfile.load(tmp_path / "bad.json")
    assert main(["predict", "--model", "llama-3-8b", "--gpu", "a100", "--engine", "eager", "--batch", "1",
                 "--precision", "4", "--draws", "0"]) == 0
    assert "engine: eager" in capsys.readouterr().out
    assert main(["predict", "--model", "llama-3-8b", "--gpu", "a100", "--engine", "eagre", "--batch", "1"]) == 2
    assert "built-in engine: eager" in capsys.readouterr().err
    with pytest.raises(UserError, match="unknown engine 'vlm'"):
        get_engine("vlm")


@pytest.mark.slow  # importing transformers takes seconds
def test_the_kernel_count_of_a_real_llama_layer():
    pytest.importorskip("transformers", minversion="4.46")
    import transformers

    if transformers.__version__ != "4.46.3":
        pytest.skip("the recorded count is transformers 4.46.3's")
    script = Path(__file__).resolve().parents[1] / "scripts" / "count_layer_kernels.py"
    spec = importlib.util.spec_from_file_location("count_layer_kernels", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    two, four = mod.decode_step_counts(2, "sdpa"), mod.decode_step_counts(4, "sdpa")
    assert sum((four.kernels - two.kernels).values()) / 2 == KERNELS
