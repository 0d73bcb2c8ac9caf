"""Modules a quantised checkpoint keeps in 16 bit (model/quant.py KeptModules, ModelSpec's
*_16bit fields): read from a config.json's exclusion lists, set from the format as each engine
runs it, and priced in every place weights are (bytes stored, the published profile's memory
term, the op-level step, prefill).

Expected values are hand calculations written out beside them (Llama 3 8B and Llama 3.1 405B
shapes from their Hugging Face config.json: 32 / 126 layers, d 4096 / 16384, 8 KV heads of 128,
FFN 14336 / 53248, vocabulary 128256); the exclusion lists are shaped as the real configs write
them (named above each).
"""

import dataclasses
import json

import pytest

from inferecon.core.errors import UserError
from inferecon.model import quant
from inferecon.model.catalog import get_model
from inferecon.model.published import get_profile
from inferecon.model.spec import ModelSpec
from inferecon.model.terms import Layouts, evaluate, stored_bytes_per_gpu

LLAMA3_8B = {"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
             "intermediate_size": 14336, "vocab_size": 128256, "hidden_act": "silu", "model_type": "llama"}
# Llama 3 8B by hand: attention 2·4096·4096 + 2·4096·1024 = 41 943 040 a layer, MLP 3·4096·14336 =
# 176 160 768 a layer, x 32 layers = 6 979 321 856; embedding table and lm head 128256·4096 =
# 525 336 576 each.
STACK_8B = 6_979_321_856
TABLE_8B = 525_336_576


def _config(tmp_path, qc, base=LLAMA3_8B):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**base, "quantization_config": qc}))
    return ModelSpec.from_hf_config(path)


def test_int4_weight_bytes_with_a_16bit_lm_head_and_embeddings(tmp_path):
    # TheBloke-style AWQ config (modules_to_not_convert null): AutoAWQ quantises decoder-layer
    # linears only, so the lm head and the embedding table stay 16-bit:
    # 6 979 321 856 · 0.5 + 2 · 525 336 576 · 2 = 3 489 660 928 + 2 101 346 304 = 5 591 007 232 B
    # (every weight at 4 bits would be 8 030 015 008 · 0.5 = 4 015 007 504 B).
    awq = _config(tmp_path, {"bits": 4, "group_size": 128, "modules_to_not_convert": None, "quant_method": "awq",
                             "version": "gemm", "zero_point": True})
    assert (awq.lm_head_16bit, awq.embedding_16bit, awq.attention_16bit_layers) == (True, True, 0)
    assert awq.weight_bytes == 5_591_007_232
    assert STACK_8B * 0.5 + 2 * TABLE_8B * 2 == 5_591_007_232


def test_meta_405b_fp8_modules_to_not_convert(tmp_path):
    # meta-llama/Llama-3.1-405B-FP8 config.json: fbgemm_fp8, and modules_to_not_convert naming
    # every layer's attention projections, the MLPs of layers 0 and 125, and lm_head, one full
    # module path each (no globs).
    names = [f"model.layers.{i}.self_attn.{p}_proj" for i in range(126) for p in "kqvo"]
    names += [f"model.layers.{i}.mlp.{p}_proj" for i in (0, 125) for p in ("down", "gate", "up")] + ["lm_head"]
    base = {**LLAMA3_8B, "hidden_size": 16384, "num_attention_heads": 128, "num_hidden_layers": 126,
            "intermediate_size": 53248}
    m = _config(tmp_path, {"activation_scale_ub": 1200.0, "modules_to_not_convert": names,
                           "quant_method": "fbgemm_fp8"}, base)
    assert (m.weight_bits, m.weight_format) == (8, "fp8")
    assert (m.attention_16bit_layers, m.mlp_16bit_layers, m.lm_head_16bit, m.embedding_16bit) == (126, 2, True, True)
    # By hand, per GPU at TP 8: attention 570 425 344 · 126 · 2 B = 143 747 186 688; MLPs
    # 2 617 245 696 · (124 · 1 + 2 · 2) B = 335 007 449 088; embedding + lm head 2 · 2 101 346 304
    # · 2 B = 8 405 385 216; total 487 160 020 992 B / 8 = 60 895 002 624 B = 56.71 GiB (vLLM
    # reported 56.77 GB (GiB) of weights per GPU for this checkpoint: dstack's benchmark README).
    lay = Layouts(tp_r=1, tp_c=8, pp=1, ep=1, micro_batch=1)
    weights, _ = stored_bytes_per_gpu(m, lay, 1000)
    assert float(weights[0]) == pytest.approx(60_895_002_624, rel=1e-12)
    assert m.weight_bytes == pytest.approx(487_160_020_992, rel=1e-12)
    # The same rule from the sourced table the scorecard uses where it has no config.json.
    kept = get_model("llama-3.1-405b").with_precision(8).with_kept_16bit(
        quant.CHECKPOINT_KEPT["meta-llama/Llama-3.1-405B-FP8"])
    assert kept.weight_bytes == pytest.approx(487_160_020_992, rel=1e-12)


@pytest.mark.parametrize("qc, lm_head, attention", [
    # neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8 (llm-compressor): ignore ["lm_head"]
    ({"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
      "config_groups": {"group_0": {"targets": ["Linear"],
                                    "weights": {"num_bits": 8, "type": "float", "strategy": "channel"},
                                    "input_activations": {"num_bits": 8, "type": "float", "strategy": "token"}}}},
     True, 0),
    # the same with an empty ignore: llm-compressor quantises every Linear, the lm head too
    ({"quant_method": "compressed-tensors", "ignore": [],
      "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int",
                                                                      "strategy": "group", "group_size": 128}}}},
     False, 0),
    # ModelOpt (nvidia/*-FP8 hf_quant_config): exclude_modules ["lm_head"]
    ({"quant_method": "modelopt", "quant_algo": "FP8", "exclude_modules": ["lm_head"]}, True, 0),
    # GPTQ's own flag: lm_head false (ModelCloud gptq-4bit config) / true
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": True, "lm_head": False}, True, 0),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "lm_head": True}, False, 0),
    # gpt-oss's MXFP4 modules_to_not_convert: globs over the layers
    ({"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                          "model.embed_tokens", "lm_head"]}, True, 32),
    # compressed-tensors regular expressions
    ({"quant_method": "compressed-tensors", "ignore": ["lm_head", "re:.*self_attn.*"],
      "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128}}}},
     True, 32),
])
def test_exclusion_lists_as_each_library_writes_them(tmp_path, qc, lm_head, attention):
    m = _config(tmp_path, qc)
    assert (m.lm_head_16bit, m.attention_16bit_layers, m.embedding_16bit) == (lm_head, attention, True)


def test_partial_lists_count_only_whole_layers():
    # Two layers' attention listed, one of them with a projection missing: one layer counts.
    rule = quant.KeptRule(("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                           "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj",
                           "model.layers.1.self_attn.q_proj"), lm_head_default=True, source="t")
    kept = quant.kept_modules(rule, get_model("llama-3-8b").with_precision(4))
    assert (kept.attention_layers, kept.attention_all, kept.mlp_layers) == (1, False, 0)


def test_a_bad_exclusion_list_is_one_line(tmp_path):
    with pytest.raises(UserError, match="modules_to_not_convert must be a list") as e:
        _config(tmp_path, {"quant_method": "awq", "bits": 4, "group_size": 128, "modules_to_not_convert": "lm_head"})
    assert "\n" not in str(e.value)


def test_engine_rules_and_their_sources():
    for engine in ("vllm", "sglang", "trtllm", "nim", "autoawq"):
        k = quant.engine_kept_modules(engine)
        assert k.lm_head and k.embeddings and "http" in k.source
    gpt_fast = quant.engine_kept_modules("gpt-fast")  # every nn.Linear, the output layer too
    assert (gpt_fast.lm_head, gpt_fast.embeddings) == (False, True) and "gpt-fast" in gpt_fast.source
    assert quant.engine_kept_modules("lmdeploy") is None  # no sourced fact: the old rule
    # TensorRT-LLM's FP8 before ModelOpt (v0.10): AMMO's FP8_DEFAULT_CFG has no '*lm_head*' entry.
    for version, lm_head in (("v0.5.0 (TensorRT 9.1.0.4)", False), ("v0.6.1", False), ("v0.7a (pre-release)", False),
                             ("v0.21.0rc2 (trtllm-serve; LLMPerf client)", True)):
        k = quant.engine_kept_modules("trtllm", "fp8", version)
        assert (k.lm_head, k.embeddings) == (lm_head, True), version
    assert quant.engine_kept_modules("trtllm", "w4a16", "v0.7.1").lm_head  # AMMO's INT4 AWQ config disables it


def test_defaults_and_variants_keep_the_old_rule():
    m = get_model("llama-3-8b").with_precision(4)
    assert not m.has_16bit_modules and m.weight_bytes == (STACK_8B + 2 * TABLE_8B) * 0.5
    kept = m.with_kept_16bit(quant.engine_kept_modules("vllm"))
    assert kept.with_precision(4).lm_head_16bit  # same bits: kept
    assert not kept.with_precision(8).has_16bit_modules  # other bits: the checkpoint's rule no longer applies
    assert not kept.with_precision(16).has_16bit_modules
    assert get_model("llama-3-8b").with_kept_16bit(quant.engine_kept_modules("vllm")) == get_model("llama-3-8b")
    all_att = m.with_kept_16bit(quant.KeptModules(attention_all=True))
    assert all_att.with_layers(4).attention_16bit_layers == 4
    with pytest.raises(UserError, match="need quantised weights"):
        dataclasses.replace(get_model("llama-3-8b"), lm_head_16bit=True)


def test_published_memory_term_reads_the_lm_head_at_two_bytes():
    # Llama 3 8B int4 at batch 1 on the published H100 (no op fits): keeping the lm head 16-bit
    # adds 525 336 576 · (2 - 0.5) B = 788 004 864 B to the weights read each step; the embedding
    # table is stored, not read (only b rows of it).
    hw = get_profile("h100-sxm")
    assert hw.op_fits is None and not hw.compute.gemm_fit  # the term model, not a fit, prices it
    m = get_model("llama-3-8b").with_precision(4)
    head = m.with_kept_16bit(quant.KeptModules(lm_head=True))
    lay = Layouts(tp_r=1, tp_c=1, pp=1, ep=1, micro_batch=1)
    a, b = evaluate(m, hw, lay, context=1000), evaluate(head, hw, lay, context=1000)
    extra_s = 788_004_864 / (hw.memory.achieved_gbps * 1e9)
    assert float(b.t_memory_s[0] - a.t_memory_s[0]) == pytest.approx(extra_s, rel=1e-9)
    # Stored: the lm head's 788 004 864 B more (embeddings unchanged: not kept here).
    assert float(b.memory_per_gpu_bytes[0] - a.memory_per_gpu_bytes[0]) == pytest.approx(788_004_864, rel=1e-12)


def test_deepseek_block_fp8_keeps_its_head_16bit():
    # DeepSeek-V3's config.json (quant_method fp8, weight_block_size [128, 128], no exclusion list)
    # and the format fact both say: the head in BF16.
    k = quant.FORMAT_KEPT["fp8-block"]
    assert k.lm_head and "deepseek-ai/DeepSeek-V3" in k.source
    m = get_model("deepseek-v3").with_kept_16bit(k)
    # Its head: 129280 x 7168 = 926 679 040 weights, at 2 bytes instead of 1 (the input table too).
    assert m.weight_bytes - get_model("deepseek-v3").weight_bytes == 2 * 926_679_040


def test_one_rule_for_predict_frontier_and_the_scorecards():
    # deployed_model: the checkpoint the notes name, else what the format keeps, else the engine's rule.
    int4 = get_model("llama-3-8b").with_precision(4)
    # vLLM keeps the lm head and the embeddings: the head's 525 336 576 weights at 2 bytes, not 0.5.
    vllm = quant.deployed_model(int4, "vllm")
    assert vllm.weight_bytes - int4.weight_bytes == pytest.approx(2 * TABLE_8B * 1.5)
    assert vllm.kept_16bit_summary() == "the lm head and the embeddings"
    # gpt-fast quantises the output layer: only the embedding table, which is stored, stays 16-bit.
    assert quant.deployed_model(int4, "gpt-fast").weight_bytes - int4.weight_bytes == pytest.approx(TABLE_8B * 1.5)
    assert quant.deployed_model(int4, "lmdeploy") is int4  # no sourced fact
    assert quant.deployed_model(int4, "") is int4  # no engine, no format rule for int4
    assert quant.deployed_model(get_model("llama-3-8b"), "vllm") == get_model("llama-3-8b")  # 16-bit: unchanged
    # DeepSeek-V3's block FP8 keeps its head whoever runs it, engine or none: 2 x 926 679 040 bytes more.
    ds = get_model("deepseek-v3")
    for engine in ("", "gpt-fast", "lmdeploy"):
        assert quant.deployed_model(ds, engine).weight_bytes - ds.weight_bytes == 2 * 926_679_040
    # The notes name Meta's FFN-only 405B: every layer's attention and two layers' MLPs kept.
    fp8_405b = get_model("llama-3.1-405b").with_precision(8)
    meta = quant.deployed_model(fp8_405b, "vllm", notes="checkpoint meta-llama/Llama-3.1-405B-FP8")
    assert (meta.attention_16bit_layers, meta.mlp_16bit_layers) == (126, 2)
    assert meta.kept_16bit_summary() == "the attention of 126 layers, the MLPs of 2 layers, the lm head and the embeddings"


def test_predict_says_which_modules_it_keeps(capsys):
    from inferecon.cli import main

    assert main(["predict", "--model", "deepseek-v3", "--gpu", "h200", "--json"]) == 0
    err = capsys.readouterr().err
    assert "deepseek-v3 keeps the lm head and the embeddings in 16 bit (DeepSeek-V3 inference/model.py" in err
