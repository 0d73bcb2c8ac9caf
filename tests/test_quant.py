"""Quantisation formats and config.json quantization_config (model/quant.py).

The quantization_config blocks below are copied from public Hugging Face checkpoints (the repo
named above each); what each should mean is what the engines do with it (vLLM's quantisation
docs): FP8 block scales -> block-scaled FP8 GEMMs, AWQ/GPTQ -> 4-bit weight-only, 16-bit
multiplies; compressed-tensors FP8 with input activations -> W8A8 FP8.
"""

import json

import pytest

from inferecon.core.errors import UserError
from inferecon.model import quant
from inferecon.model.published import get_profile
from inferecon.model.spec import ModelSpec
from inferecon.model.terms import compute_dtype

# deepseek-ai/DeepSeek-V3 config.json
DEEPSEEK_V3 = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}
# TheBloke/Llama-2-7B-AWQ config.json
AWQ = {"bits": 4, "group_size": 128, "quant_method": "awq", "version": "gemm", "zero_point": True}
# TheBloke/Llama-2-7B-GPTQ config.json
GPTQ = {"bits": 4, "group_size": 128, "damp_percent": 0.01, "desc_act": False, "sym": True,
        "true_sequential": True, "model_name_or_path": None, "model_file_base_name": "model", "quant_method": "gptq"}
# neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8 config.json (llm-compressor, FP8 dynamic)
CT_FP8 = {"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {"group_0": {
    "targets": ["Linear"],
    "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True, "dynamic": False},
    "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "symmetric": True, "dynamic": True}}},
    "ignore": ["lm_head"], "kv_cache_scheme": None}
# neuralmagic/Meta-Llama-3.1-8B-Instruct-quantized.w4a16 config.json
CT_W4A16 = {"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"group_0": {
    "targets": ["Linear"],
    "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": True},
    "input_activations": None}}, "ignore": ["lm_head"]}


def test_deepseek_fp8_is_block_scaled_w8a8():
    q = quant.from_quantization_config(DEEPSEEK_V3)
    assert q.format.name == "fp8-block" and q.format.block_shape == (128, 128)
    assert q.format.weight_bits == 8 and not q.format.weight_only
    assert q.format.compute_dtype(get_profile("h100-sxm").compute.peak_tflops) == "fp8"
    # An A100 has no FP8 tensor cores: the weights are dequantised and multiplied in 16 bit.
    assert q.format.compute_dtype(get_profile("a100").compute.peak_tflops) == "bf16"


@pytest.mark.parametrize("qc", [AWQ, GPTQ, CT_W4A16])
def test_4bit_checkpoints_are_weight_only(qc):
    q = quant.from_quantization_config(qc)
    assert (q.format.name, q.format.weight_bits, q.format.group_size) == ("w4a16", 4, 128)
    assert q.format.weight_only
    assert q.format.compute_dtype(get_profile("h100-sxm").compute.peak_tflops) == "bf16"


def test_compressed_tensors_fp8_is_per_tensor_w8a8():
    q = quant.from_quantization_config(CT_FP8)
    assert q.format.name == "fp8" and q.format.act_dtype == "fp8" and q.kv_bits is None


def test_compressed_tensors_kv_cache_scheme_sets_kv_bits():
    qc = dict(CT_FP8, kv_cache_scheme={"num_bits": 8, "type": "float", "strategy": "tensor"})
    assert quant.from_quantization_config(qc).kv_bits == 8


def test_gptq_8bit_is_int8_weight_only():
    q = quant.from_quantization_config(dict(GPTQ, bits=8))
    assert q.format.name == "int8-wo" and q.format.weight_only
    # 8-bit weight-only multiplies in 16 bit even where the GPU has FP8 (old rule: FP8).
    m = ModelSpec("t", 2, 64, 4, 4, 16, 128, 100).with_format("int8-wo")
    assert compute_dtype(m, get_profile("h100-sxm")) == "bf16"


@pytest.mark.parametrize("qc, words", [
    ({"quant_method": "hqq"}, "quant_method 'hqq'"),
    ({"quant_method": "gptq", "bits": 3}, "3-bit"),
    ({"quant_method": "fp8", "weight_block_size": [128]}, "weight_block_size"),
    ({"quant_method": "compressed-tensors"}, "config_groups"),
    ("fp8", "must be a JSON object"),
])
def test_bad_quantization_config_is_one_line(qc, words):
    with pytest.raises(UserError, match=words) as e:
        quant.from_quantization_config(qc)
    assert "\n" not in str(e.value)


def _config(tmp_path, qc):
    cfg = {"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
           "intermediate_size": 14336, "vocab_size": 128256, "hidden_act": "silu", "model_type": "llama"}
    if qc is not None:
        cfg["quantization_config"] = qc
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def test_config_json_quantization_sets_default_precision(tmp_path):
    plain = ModelSpec.from_hf_config(_config(tmp_path, None))
    assert (plain.weight_bits, plain.weight_format) == (16, "")
    awq = ModelSpec.from_hf_config(_config(tmp_path, AWQ))
    assert (awq.weight_bits, awq.weight_format) == (4, "w4a16")
    # Half a byte per weight but the lm head and embedding table, which AWQ leaves 16-bit:
    # 6 979 321 856 layer-stack weights · 0.5 + 2 · 128256 · 4096 · 2 B = 5 591 007 232 B
    # (tests/test_quant_modules.py).
    assert awq.weight_bytes == 5_591_007_232
    kv8 = ModelSpec.from_hf_config(_config(tmp_path, dict(CT_FP8, kv_cache_scheme={"num_bits": 8, "type": "float"})))
    assert (kv8.weight_bits, kv8.kv_bits, kv8.weight_format) == (8, 8, "fp8")


def test_with_precision_to_other_bits_drops_the_format():
    m = ModelSpec("t", 2, 64, 4, 4, 16, 128, 100).with_format("fp8-block")
    assert quant.format_of(m).name == "fp8-block"
    assert quant.format_of(m.with_precision(8)).name == "fp8-block"
    assert quant.format_of(m.with_precision(4)).name == "w4a16"
    assert quant.format_of(m.with_precision(16)).name == "bf16"


def test_default_formats_keep_the_old_bits_rule():
    # h100-sxm-paper parity depends on it: 8 -> fp8 where the GPU has FP8, else 16-bit.
    m = ModelSpec("t", 2, 64, 4, 4, 16, 128, 100)
    h100, a100 = get_profile("h100-sxm"), get_profile("a100")
    assert [compute_dtype(m.with_precision(b), h100) for b in (16, 8, 4)] == ["bf16", "fp8", "bf16"]
    assert [compute_dtype(m.with_precision(b), a100) for b in (16, 8, 4)] == ["bf16", "bf16", "bf16"]


def test_format_mismatching_bits_is_refused():
    with pytest.raises(UserError, match="not 16-bit"):
        ModelSpec("t", 2, 64, 4, 4, 16, 128, 100, weight_format="w4a16")


@pytest.mark.parametrize("label, name", [
    ("fp8", "fp8"), ("int8 weight-only", "int8-wo"), ("int8 weight-only (RTN Marlin)", "int8-wo"),
    ("awq int4", "w4a16"), ("int4 g32 weight-only", "w4a16"), ("fp4 (routed experts)", "nvfp4-experts"), ("nvfp4", "nvfp4"),
    ("bf16", "bf16"), ("fp16", "bf16")])
def test_benchmark_labels(label, name):
    assert quant.parse_format_label(label).name == name


def test_predict_and_frontier_default_to_the_checkpoints_precision(tmp_path, capsys):
    # An AWQ config.json: predict without --precision prices 4-bit weights, as frontier does;
    # DeepSeek-V3 (released in FP8) is 8-bit in both.
    from inferecon.cli import main

    path = _config(tmp_path, AWQ)
    assert main(["predict", "--model", str(path), "--gpu", "h100", "--batch", "1", "--draws", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[0])["weight_bits"] == 4
    assert main(["predict", "--model", "deepseek-v3", "--gpu", "h200", "--tp", "8", "--batch", "1", "--draws", "0",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[0])["weight_bits"] == 8


def test_nvfp4_experts_keep_deepseeks_block_scaled_fp8_elsewhere():
    # DeepSeek-V3/R1's checkpoint ships its weights in FP8 with 128 x 128 block scales
    # (config.json weight_block_size [128, 128]); NVIDIA's FP4 checkpoint requantises only the
    # routed experts, so the rest keeps that format, not per-tensor FP8.
    from inferecon.model.quant import get_format

    fmt = get_format("nvfp4-experts")
    assert fmt.non_expert_format == "fp8-block"
    assert get_format(fmt.non_expert_format).block_shape == (128, 128)
