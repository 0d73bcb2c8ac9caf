"""model/engine_kernel_facts.py: which engine versions ran TensorRT-LLM's per-query-head decode
attention (before XQA), and what that costs a grouped-query model, by hand."""

import dataclasses
import json

import pytest

from inferecon.core.errors import UserError
from inferecon.model.catalog import get_model
from inferecon.model.engine import EngineProfile
from inferecon.model.engine_kernel_facts import TRTLLM_BEFORE_XQA, kernel_facts, with_kernel_facts
from inferecon.model.predict import predict
from inferecon.model.published import get_profile


@pytest.mark.parametrize("engine, version, held", [
    ("trtllm", "v0.5.0 (TensorRT 9.1.0.4)", True),  # the H200 launch post's build
    ("trtllm", "v0.6.1", True),  # the performance table read at commit 138f96d
    ("TRTLLM", "0.6.0", True),
    ("trtllm", "v0.7a (pre-release)", False),  # the Falcon-180B post's v0.7a figure is XQA's 2,941 tok/s/GPU
    ("trtllm", "v0.8.0", False),
    ("trtllm", "1.0.0", False),
    ("vllm", "v0.5.0", False),  # another engine's 0.5 is not TensorRT-LLM's
    ("trtllm", "", False),  # no version stated: no fact
    ("trtllm", "main Mar 2024", False),  # main-branch builds: the sources date none of them
])
def test_the_fact_covers_the_releases_its_sources_show(engine, version, held):
    assert (TRTLLM_BEFORE_XQA in kernel_facts(engine, version)) is held


def test_the_fact_names_its_sources_once():
    eng = with_kernel_facts(EngineProfile(name="trtllm"), kernel_facts("trtllm", "v0.6.1"))
    assert eng.kv_reread_per_query_head is True
    assert sum("XQA-kernel.md" in s and "1,227" in s for s in eng.sources) == 1
    assert with_kernel_facts(eng, kernel_facts("trtllm", "v0.6.1")) is eng  # applied twice: once


def test_per_query_head_reads_cost_the_group_size_in_kv_traffic_by_hand():
    # Llama 3 70B (80 layers, 64 query heads, 8 KV heads, d_head 128) on 4 H100s, batch 64,
    # context 1152, 8-bit KV: each GPU holds 2 KV heads and 16 query heads, so each KV head is
    # read by 8 query heads: 7 extra reads of 64 x 1152 tokens x 80 layers x (K and V x 2 heads
    # x 128 x 1 B = 512 B) = 7 x 3,019,898,880 B = 21,139,292,160 B per GPU per step.
    model = get_model("llama-3-70b").with_precision(8, 8)
    hw = get_profile("h100-sxm")
    kw = dict(tp=4, pp=1, ep=1, batch=64, context=1152, draws=0)
    plain = predict(model, hw, engine=EngineProfile(name="x"), **kw)
    reread = predict(model, hw, engine=EngineProfile(name="x", kv_reread_per_query_head=True), **kw)
    extra_ms = 21_139_292_160 / (hw.memory.achieved_gbps * 1e9) * 1e3
    assert reread.t_memory_ms - plain.t_memory_ms == pytest.approx(extra_ms, rel=1e-9)
    assert reread.t_step_ms > plain.t_step_ms + 0.9 * extra_ms  # memory-bound: the step pays nearly all of it
    # A model whose heads are not grouped (Llama 2 7B shape: as many KV heads as query heads)
    # reads nothing twice.
    mha = dataclasses.replace(get_model("llama-3-8b").with_precision(8, 8), n_kv_heads=32)
    a = predict(mha, hw, engine=EngineProfile(name="x"), **{**kw, "tp": 1})
    b = predict(mha, hw, engine=EngineProfile(name="x", kv_reread_per_query_head=True), **{**kw, "tp": 1})
    assert a.t_memory_ms == pytest.approx(b.t_memory_ms, rel=1e-12)


def test_the_flag_reads_back_from_json_and_refuses_a_non_boolean(tmp_path):
    eng = EngineProfile(name="old-trtllm", kv_reread_per_query_head=True)
    path = eng.save(tmp_path / "engine.json")
    assert EngineProfile.load(path).kv_reread_per_query_head is True
    data = json.loads(path.read_text())
    data["kv_reread_per_query_head"] = "yes"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="kv_reread_per_query_head must be true or false"):
        EngineProfile.load(tmp_path / "bad.json")


def test_predict_says_when_an_engine_reads_kv_per_query_head(tmp_path, capsys):
    from inferecon.cli import main

    path = EngineProfile(name="trtllm-0.6", kv_reread_per_query_head=True).save(tmp_path / "engine.json")
    assert main(["predict", "--model", "llama-3-70b", "--tp", "4", "--engine", str(path), "--draws", "0"]) == 0
    err = capsys.readouterr().err
    assert "one thread block per query head" in err and "up to 8x" in err  # 64 query heads over 8 KV heads
    assert main(["predict", "--model", "llama-3-70b", "--tp", "4", "--draws", "0"]) == 0
    assert "thread block" not in capsys.readouterr().err
