"""Weight quantisation formats as serving engines run them, and reading a config.json's
`quantization_config`.

Bits per weight alone do not say how a GEMM runs: an FP8 checkpoint with one scale per tensor
runs W8A8 FP8 GEMMs (activations quantised on the fly), DeepSeek-V3's FP8 with 128 x 128 block
scales runs block-scaled FP8 GEMMs (slower kernels: the scales are applied per K block), an
INT8 or INT4 weight-only checkpoint (GPTQ, AWQ, RTN Marlin, bitsandbytes) dequantises to 16 bit
and multiplies at the 16-bit rate (W8A16, W4A16). `QuantFormat` names one of those; the cost
model asks it which dtype the tensor cores multiply in (`compute_dtype`) and which op-level
GEMM fit applies (`gemm_key`).

A ModelSpec without a named format keeps what inferecon has always assumed for its bits (the
paper's parity depends on it): 16 bit -> bf16, 8 bit -> FP8 W8A8 with per-tensor scales, 4 bit
-> W4A16 (group scales), 32 bit -> fp32 (CPU validation runs).

Sources for the config.json layouts read here (field names as the libraries write them):
- FP8 (`quant_method: "fp8"`): vLLM/transformers FineGrainedFP8 and DeepSeek-V3's own config
  (`fmt: "e4m3"`, `activation_scheme: "dynamic"`, `weight_block_size: [128, 128]`).
- compressed-tensors (`quant_method: "compressed-tensors"`, llm-compressor): `config_groups`
  of `weights` / `input_activations` schemes (num_bits, type "int" | "float", strategy
  "tensor" | "channel" | "group" | "block" | "tensor_group", group_size, block_structure),
  optional `kv_cache_scheme`.
- AWQ (`quant_method: "awq"`, `bits`, `group_size`) and GPTQ (`quant_method: "gptq"`,
  `bits`, `group_size`, `desc_act`).
- NVIDIA ModelOpt (`quant_method: "modelopt"`, `quant_algo`: FP8, NVFP4, W4A16_AWQ ...),
  bitsandbytes (`load_in_8bit` / `load_in_4bit`) and MXFP4 (gpt-oss).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from inferecon.core.errors import UserError


@dataclass(frozen=True)
class QuantFormat:
    name: str  # one of FORMATS' keys
    weight_bits: int
    # Dtype the tensor cores multiply in when the GPU has it ("fp8", "int8", "fp4"); None: the
    # activations stay 16-bit and the weights are dequantised (weight-only, or 16/32-bit models).
    act_dtype: str | None
    scales: str  # "none", "tensor", "channel", "group", "block"
    description: str
    group_size: int | None = None
    block_shape: tuple[int, int] | None = None
    source: str = ""  # which file and field said so ("" for a default of the bits)
    # Checkpoints that quantise only the routed experts (NVIDIA's DeepSeek-R1-FP4: NVFP4 experts,
    # FP8 attention and dense layers) name the format of everything else here; "" = this one.
    # weight_bits is the experts' (they are almost all of the bytes).
    non_expert_format: str = ""

    @property
    def weight_only(self) -> bool:
        return self.act_dtype is None and self.weight_bits < 16

    def compute_dtype(self, peaks: dict) -> str:
        """The dtype the GEMMs multiply in on a GPU with these datasheet peaks: the format's
        activation dtype where the GPU has tensor cores for it, else 16-bit (an FP8 checkpoint
        on an A100 is dequantised, as vLLM's Marlin FP8 path does); fp32 for 32-bit models and
        for devices with no 16-bit figure (a CPU calibration that timed fp32 GEMMs only)."""
        if self.weight_bits == 32:
            return "fp32"
        if self.act_dtype is not None and self.act_dtype in peaks:
            return self.act_dtype
        if "bf16" not in peaks and "fp32" in peaks:
            return "fp32"
        return "bf16"

    @property
    def gemm_key(self) -> str:
        """Key of the op-level GEMM fit this format's GEMMs use (model/ops.py)."""
        return self.name


FORMATS: dict[str, QuantFormat] = {f.name: f for f in (
    QuantFormat("fp32", 32, None, "none", "32-bit weights and activations (CPU validation runs)"),
    QuantFormat("bf16", 16, None, "none", "16-bit weights and activations"),
    QuantFormat("fp8", 8, "fp8", "tensor", "FP8 W8A8, per-tensor (or per-channel) weight scales, "
                "activations quantised per token or tensor on the fly"),
    QuantFormat("fp8-block", 8, "fp8", "block", "FP8 W8A8 with 128 x 128 weight block scales and 1 x 128 "
                "activation scales (DeepSeek-V3's format)", block_shape=(128, 128)),
    QuantFormat("int8", 8, "int8", "channel", "INT8 W8A8 (SmoothQuant-style), per-channel weight scales"),
    QuantFormat("int8-wo", 8, None, "channel", "INT8 weight-only (W8A16): dequantised to 16 bit in the GEMM"),
    QuantFormat("w4a16", 4, None, "group", "4-bit integer weight-only (W4A16: AWQ, GPTQ, RTN Marlin), group "
                "scales; multiplies at the 16-bit rate", group_size=128),
    QuantFormat("nvfp4", 4, "fp4", "group", "NVFP4 W4A4, 16-element FP8 group scales (Blackwell tensor cores)",
                group_size=16),
    # The layers left out of NVFP4 keep DeepSeek-V3/R1's own FP8, 128 x 128 block scales (its
    # config.json: weight_block_size [128, 128]), which engines run with block-scaled FP8 GEMMs.
    QuantFormat("nvfp4-experts", 4, "fp4", "group", "NVFP4 routed experts; attention, dense layers and shared "
                "experts in DeepSeek's block-scaled FP8 (NVIDIA's DeepSeek-R1-FP4)", group_size=16,
                non_expert_format="fp8-block"),
    QuantFormat("mxfp4", 4, None, "group", "MXFP4 weights, 32-element power-of-two scales; weight-only on GPUs "
                "without FP4 tensor cores", group_size=32),
)}

# What a bare bit count has always meant in inferecon (no named format).
DEFAULT_FOR_BITS = {32: "fp32", 16: "bf16", 8: "fp8", 4: "w4a16"}


def default_format(weight_bits: int) -> QuantFormat:
    try:
        return FORMATS[DEFAULT_FOR_BITS[int(weight_bits)]]
    except KeyError:
        raise UserError(f"no weight format for {weight_bits}-bit weights (known: "
                        f"{', '.join(str(b) for b in DEFAULT_FOR_BITS)} bits)") from None


def get_format(name: str) -> QuantFormat:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        raise UserError(f"unknown weight format {name!r} (known: {', '.join(FORMATS)})")
    return FORMATS[key]


_ALIASES = {"fp16": "bf16", "16": "bf16", "fp8-tensor": "fp8", "fp8-per-tensor": "fp8", "w8a8-fp8": "fp8",
            "w8a8": "int8", "w8a8-int8": "int8", "w8a16": "int8-wo", "int8-weight-only": "int8-wo",
            "awq": "w4a16", "gptq": "w4a16", "int4-wo": "w4a16", "w4a16-awq": "w4a16", "fp4": "nvfp4"}


def format_of(model) -> QuantFormat:
    """The format a ModelSpec's weights are in: its named one where it has one that matches its
    bits (with_precision to other bits drops a stale name), else the default for its bits."""
    name = getattr(model, "weight_format", "") or ""
    if name:
        fmt = get_format(name)
        if fmt.weight_bits == model.weight_bits:
            return fmt
    return default_format(model.weight_bits)


# -- a config.json's quantization_config ----------------------------------------------------------
@dataclass(frozen=True)
class CheckpointQuant:
    """What a checkpoint's quantization_config says: the weight format, the KV-cache bits where
    it sets them (None: the engine's default, 16-bit), and which modules it leaves in 16 bit
    (`kept`; read against the model's module names by `kept_modules`)."""

    format: QuantFormat
    kv_bits: int | None = None
    kept: "KeptRule | None" = None


# -- modules a quantised checkpoint leaves in 16 bit ------------------------------------------
@dataclass(frozen=True)
class KeptModules:
    """Which modules stay 16-bit in a quantised deployment (ModelSpec.with_kept_16bit): the
    attention projections of `attention_layers` layers (all of them where `attention_all`), the
    MLPs of `mlp_layers` dense layers, the lm head, the input embedding table."""

    attention_layers: int = 0
    attention_all: bool = False
    mlp_layers: int = 0
    lm_head: bool = False
    embeddings: bool = False
    source: str = ""


@dataclass(frozen=True)
class KeptRule:
    """A config.json's exclusion list (`modules_to_not_convert`, `ignore`, `exclude_modules`,
    `ignored_layers`, `llm_int8_skip_modules`) and what its method does with the lm head when the
    list does not name it; matched against a model's module names by `kept_modules`."""

    patterns: tuple[str, ...]
    lm_head_default: bool  # the lm head stays 16-bit when no pattern names it
    source: str


# Where the list is, per method; the first field present is read.
_EXCLUDE_FIELDS = ("modules_to_not_convert", "ignore", "exclude_modules", "ignored_layers", "exclude",
                   "llm_int8_skip_modules")


def _kept_rule(qc: dict, method: str, where: str) -> KeptRule:
    field, raw = next(((f, qc[f]) for f in _EXCLUDE_FIELDS if qc.get(f) is not None), (None, []))
    if not isinstance(raw, (list, tuple)) or not all(isinstance(p, str) for p in raw):
        raise UserError(f"{where}.{field} must be a list of module names, got {raw!r}")
    if method == "gptq":
        # GPTQ's own flag: `lm_head: true` checkpoints quantise it (vLLM's GPTQConfig lm_head_quantized).
        lm_default = not bool(qc.get("lm_head", False))
    elif field is None or method in ("awq", "fp8", "fbgemm-fp8", "bitsandbytes"):
        # No list, or a method whose loaders never quantise the lm head (AutoAWQ and vLLM quantise
        # decoder-layer linears only; transformers adds the output layer to modules_to_not_convert):
        # the lm head stays 16-bit (LM_HEAD_16BIT_SOURCES).
        lm_default = True
    else:
        # compressed-tensors (`targets: ["Linear"]` less `ignore`), ModelOpt's exclude_modules,
        # MXFP4's modules_to_not_convert: the list says.
        lm_default = False
    src = f"{where}.{field}" if field else f"{where} ({method}: no exclusion list)"
    return KeptRule(tuple(raw), lm_default, src)


def _matches(name: str, pattern: str) -> bool:
    """Whether an exclusion entry names module `name`, in each library's spelling: 're:' regular
    expressions (compressed-tensors), globs (ModelOpt's '*lm_head*', MXFP4's
    'model.layers.*.self_attn'), dotted names or their dotted parts (transformers'
    modules_to_not_convert, 'lm_head.weight' included)."""
    p = pattern.strip()
    if p.startswith("re:"):
        return re.match(p[3:], name) is not None
    if any(c in p for c in "*?["):
        return fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, p + ".*")
    p = p.removesuffix(".weight")
    return f".{p}." in f".{name}."


def _matcher(patterns):
    """A fast `any(_matches(name, p) for p in patterns)`: plain dotted names by set lookup of the
    name's contiguous dotted runs (an exclusion list names every projection of 126 layers)."""
    plain = {p.strip().removesuffix(".weight") for p in patterns
             if not p.strip().startswith("re:") and not any(c in p for c in "*?[")}
    other = [p for p in patterns if p.strip().removesuffix(".weight") not in plain]

    def listed(name: str) -> bool:
        parts = name.split(".")
        runs = {".".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)}
        return bool(runs & plain) or any(_matches(name, p) for p in other)

    return listed


def _attention_names(model, i: int) -> list[str]:
    if model.is_mla:
        projs = ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj") if model.q_lora_rank else \
            ("q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")
    else:
        projs = ("q_proj", "k_proj", "v_proj", "o_proj")
    return [f"model.layers.{i}.self_attn.{p}" for p in projs]


def kept_modules(rule: KeptRule, model) -> KeptModules:
    """The modules of `model` (Hugging Face's module names: model.layers.N.self_attn.q_proj,
    model.layers.N.mlp.gate_proj, lm_head, model.embed_tokens) a config's rule leaves in 16 bit:
    a layer's attention (or dense MLP) counts where every one of its projections is listed. The
    input embedding table stays 16-bit under every method read here (each quantises linear
    layers only: vLLM's VocabParallelEmbedding, transformers' nn.Embedding are left as they are)."""
    listed = _matcher(rule.patterns)
    att = sum(all(listed(n) for n in _attention_names(model, i)) for i in range(model.n_layers))
    dense_ids = range(model.n_dense_layers) if model.is_moe else range(model.n_layers)
    projs = ("gate_proj", "up_proj", "down_proj")[3 - model.mlp_matrices:]
    mlp = sum(all(listed(f"model.layers.{i}.mlp.{p}") for p in projs) for i in dense_ids)
    lm_head = rule.lm_head_default or listed("lm_head")
    return KeptModules(attention_layers=att, attention_all=att == model.n_layers, mlp_layers=mlp, lm_head=lm_head,
                       embeddings=True, source=rule.source)


# Which formats keep the lm head (and the input embeddings) in 16 bit as each engine runs them,
# where no config.json says: (lm head 16-bit, embeddings 16-bit, source).
LM_HEAD_16BIT_SOURCES: dict[str, tuple[bool, bool, str]] = {
    # vLLM builds a quantised method for LinearBase and FusedMoE layers only; the lm head is a
    # ParallelLMHead (a VocabParallelEmbedding) and stays 16-bit (RTN, FP8, AWQ, GPTQ alike).
    "vllm": (True, True, "vLLM quantization/rtn.py RTNConfig.get_quant_method: LinearBase and FusedMoE only "
                         "(https://github.com/vllm-project/vllm/blob/main/vllm/model_executor/layers/quantization/rtn.py)"),
    # SGLang's quantisation configs follow vLLM's (LinearBase layers only); its public points run
    # DeepSeek's FP8 checkpoint, whose lm head and embeddings are stored in BF16.
    "sglang": (True, True, "SGLang srt/layers/quantization (LinearBase layers only); DeepSeek-V3's FP8 checkpoint "
                           "keeps its head in BF16 (FORMAT_KEPT['fp8-block']: https://github.com/deepseek-ai/"
                           "DeepSeek-V3/blob/main/inference/model.py)"),
    # TensorRT-LLM and NIM quantise with NVIDIA ModelOpt, whose default configs disable the
    # "*lm_head*" quantizers (as AMMO's INT8/INT4 configs did before it; AMMO's FP8: AMMO_FP8_SOURCE).
    "trtllm": (True, True, "ModelOpt modelopt/torch/quantization/config.py _default_disabled_quantizer_cfg "
                           "'*lm_head*': enable False (https://github.com/NVIDIA/TensorRT-Model-Optimizer)"),
    "nim": (True, True, "NIM's TensorRT-LLM engines, ModelOpt default config: '*lm_head*' disabled "
                        "(https://github.com/NVIDIA/TensorRT-Model-Optimizer)"),
    # AutoAWQ quantises the linear layers of each decoder layer (get_named_linears(self.modules[i])).
    "autoawq": (True, True, "AutoAWQ awq/quantize/quantizer.py: linears of the decoder layers only "
                            "(https://github.com/casper-hansen/AutoAWQ/blob/main/awq/quantize/quantizer.py)"),
    # gpt-fast's quantize.py and torchao's quantize_ (default filter _is_linear) replace every
    # nn.Linear, the output layer included; nn.Embedding is left in 16 bit.
    "gpt-fast": (False, True, "gpt-fast quantize.py replace_linear_weight_only_int8_per_channel / replace_linear_int4: "
                              "every nn.Linear incl. the output layer (https://github.com/pytorch-labs/gpt-fast/blob/main/"
                              "quantize.py); torchao quantize_ default filter _is_linear (https://github.com/pytorch/ao/"
                              "blob/main/torchao/quantization/quant_api.py)"),
}

# Formats whose checkpoints keep the lm head 16-bit whoever runs them. DeepSeek-V3/R1's block-scaled
# FP8: its reference inference code builds every Linear in FP8 but the head, in the default dtype
# (BF16); the technical report keeps the embedding and output head in BF16 (sec. 3.3.1).
FORMAT_KEPT: dict[str, KeptModules] = {
    "fp8-block": KeptModules(lm_head=True, embeddings=True,
                             source="DeepSeek-V3 inference/model.py: self.head = ColumnParallelLinear(..., dtype="
                                    "torch.get_default_dtype()) (https://github.com/deepseek-ai/DeepSeek-V3/blob/main/"
                                    "inference/model.py); https://arxiv.org/abs/2412.19437 sec. 3.3.1"),
}

# Checkpoints that keep more than the lm head in 16 bit, by Hugging Face name.
CHECKPOINT_KEPT: dict[str, KeptModules] = {
    # Meta's FP8 405B quantises the FFN of layers 1..124 only: its config.json's
    # quantization_config (fbgemm_fp8) lists every layer's self_attn projections, the MLPs of the
    # first and last layers, and lm_head in modules_to_not_convert (The Llama 3 Herd of Models,
    # sec. 6.2: no quantisation of attention nor of the first and last Transformer layers).
    "meta-llama/Llama-3.1-405B-FP8": KeptModules(attention_all=True, mlp_layers=2, lm_head=True, embeddings=True,
                                                 source="meta-llama/Llama-3.1-405B-FP8 config.json modules_to_not_convert "
                                                        "(https://huggingface.co/meta-llama/Llama-3.1-405B-FP8); "
                                                        "https://arxiv.org/abs/2407.21783 sec. 6.2"),
}


# TensorRT-LLM before v0.10 quantised with AMMO, ModelOpt's predecessor: its FP8_DEFAULT_CFG has no
# "*lm_head*" entry (its INT8 and INT4 configs have one), so FP8 engines of that era quantised the
# lm head too; the embedding table, not a Linear, stayed 16-bit.
AMMO_FP8_SOURCE = ("nvidia-ammo 0.5/0.7 ammo.torch.quantization FP8_DEFAULT_CFG: no '*lm_head*' entry, unlike its "
                   "INT8/INT4 configs (https://developer.nvidia.com/downloads/assets/cuda/files/nvidia-ammo/"
                   "nvidia_ammo-0.7.1.tar.gz)")
_MODELOPT_FROM = (0, 10)  # the first TensorRT-LLM release on nvidia-modelopt rather than nvidia-ammo


def engine_kept_modules(engine: str, fmt: str = "", version: str = "") -> KeptModules | None:
    """The modules an engine leaves in 16 bit when it runs a quantised format (`fmt`, a FORMATS
    name) with no config.json to say (LM_HEAD_16BIT_SOURCES; TensorRT-LLM's AMMO era for FP8:
    AMMO_FP8_SOURCE); None for an engine with no sourced fact."""
    name = str(engine).strip().lower()
    if name == "trtllm" and fmt in ("fp8", "") and _version(version) and _version(version) < _MODELOPT_FROM:
        return KeptModules(lm_head=False, embeddings=True, source=AMMO_FP8_SOURCE)
    fact = LM_HEAD_16BIT_SOURCES.get(name)
    if fact is None:
        return None
    lm_head, embeddings, source = fact
    return KeptModules(lm_head=lm_head, embeddings=embeddings, source=source)


def deployed_model(model, engine_name: str, engine_version: str = "", notes: str = ""):
    """A quantised ModelSpec with the modules its deployment keeps in 16 bit, decided from the
    sources, never from a measured figure: what its config.json says where it has one (the spec
    read it already), else the checkpoint `notes` name (CHECKPOINT_KEPT: Meta's FFN-only FP8
    405B), else the format as the engine runs it (engine_kept_modules). Unchanged for 16-bit
    weights and where no source says (lmdeploy, an engine profile of no known engine). predict,
    frontier and both public scorecards price a deployment through this one rule; a format whose
    checkpoints keep modules whoever runs them (FORMAT_KEPT: DeepSeek-V3's head) comes before the
    engine's rule."""
    if model.weight_bits >= 16 or model.has_16bit_modules:
        return model
    text = str(notes or "")
    fmt = format_of(model).name
    kept = next((k for name, k in CHECKPOINT_KEPT.items() if name in text), None) or FORMAT_KEPT.get(fmt) or \
        engine_kept_modules(engine_name, fmt, engine_version)
    return model if kept is None else model.with_kept_16bit(kept)


def engine_deployed_model(model, engine):
    """deployed_model for predict and frontier: the engine an engine profile names (its name, and
    the version of the op-DB tables it was fitted from where it was: op_fits), or none (--engine
    not given: only what the checkpoint's format keeps, FORMAT_KEPT)."""
    if engine is None:
        return deployed_model(model, "")
    version = engine.op_fits.engine_version if engine.op_fits is not None else ""
    return deployed_model(model, engine.name, version)


def _version(text: str) -> tuple[int, int] | None:
    """(major, minor) of a version as benchmark tables write it ('v0.6.1', 'v0.7a (pre-release)')."""
    m = re.search(r"v?(\d+)\.(\d+)", str(text or ""))
    return (int(m.group(1)), int(m.group(2))) if m else None


def from_quantization_config(qc, source: str = "config.json") -> CheckpointQuant:
    """Parse a Hugging Face `quantization_config` (dict). Unknown methods and unsupported bit
    widths are a UserError naming the field."""
    where = f"{source}: quantization_config"
    if not isinstance(qc, dict):
        raise UserError(f"{where} must be a JSON object")
    method = str(qc.get("quant_method", "")).strip().lower().replace("_", "-")
    q = _checkpoint_format(qc, method, where)
    import dataclasses

    family = "gptq" if method.startswith("gptq") else method
    return dataclasses.replace(q, kept=_kept_rule(qc, family, where))


def _checkpoint_format(qc: dict, method: str, where: str) -> CheckpointQuant:
    if method == "fp8":
        return CheckpointQuant(_fp8(qc, where))
    if method == "fbgemm-fp8":
        # Meta's FP8 checkpoints: FP8 weights with one scale per output row, activations quantised
        # per token on the fly (FBGEMM's rowwise W8A8; transformers FbgemmFp8Config).
        return CheckpointQuant(_with_source(FORMATS["fp8"], f"{where} (fbgemm_fp8, rowwise scales)"))
    if method == "compressed-tensors":
        return _compressed_tensors(qc, where)
    if method in ("awq", "gptq", "awq-marlin", "gptq-marlin"):
        bits = _int(qc.get("bits", qc.get("w_bit")), f"{where}.bits")
        group = qc.get("group_size", qc.get("q_group_size"))
        return CheckpointQuant(_weight_only(bits, group, f"{where} ({method})"))
    if method == "modelopt":
        return _modelopt(qc, where)
    if method == "bitsandbytes":
        if qc.get("load_in_4bit"):
            return CheckpointQuant(_with_source(FORMATS["w4a16"], f"{where} (bitsandbytes 4-bit)"))
        if qc.get("load_in_8bit"):
            return CheckpointQuant(_with_source(FORMATS["int8-wo"], f"{where} (bitsandbytes 8-bit)"))
        raise UserError(f"{where}: bitsandbytes without load_in_4bit or load_in_8bit")
    if method == "mxfp4":
        return CheckpointQuant(_with_source(FORMATS["mxfp4"], f"{where} (mxfp4)"))
    known = "fp8, fbgemm_fp8, compressed-tensors, awq, gptq, modelopt, bitsandbytes, mxfp4"
    raise UserError(f"{where}: quant_method {qc.get('quant_method')!r} is not one inferecon prices (known: {known})")


def _with_source(fmt: QuantFormat, source: str, **changes) -> QuantFormat:
    import dataclasses

    return dataclasses.replace(fmt, source=source, **changes)


def _int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise UserError(f"{where} must be a whole number, got {value!r}")
    return int(value)


def _fp8(qc: dict, where: str) -> QuantFormat:
    block = qc.get("weight_block_size")
    if block is not None:
        if not (isinstance(block, (list, tuple)) and len(block) == 2):
            raise UserError(f"{where}.weight_block_size must be two whole numbers, got {block!r}")
        shape = (_int(block[0], f"{where}.weight_block_size"), _int(block[1], f"{where}.weight_block_size"))
        return _with_source(FORMATS["fp8-block"], f"{where} (fp8, weight_block_size {list(shape)})", block_shape=shape)
    return _with_source(FORMATS["fp8"], f"{where} (fp8, per-tensor scales)")


def _weight_only(bits: int, group, where: str) -> QuantFormat:
    group_size = None if group in (None, -1) else _int(group, f"{where} group_size")
    if bits == 4:
        return _with_source(FORMATS["w4a16"], where, group_size=group_size)
    if bits == 8:
        return _with_source(FORMATS["int8-wo"], where, group_size=group_size)
    raise UserError(f"{where}: {bits}-bit weights are not priced (4- and 8-bit weight-only are)")


def _compressed_tensors(qc: dict, where: str) -> CheckpointQuant:
    groups = qc.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise UserError(f"{where}.config_groups must be a non-empty object")
    formats = []
    for gname, group in groups.items():
        gwhere = f"{where}.config_groups.{gname}"
        if not isinstance(group, dict) or not isinstance(group.get("weights"), dict):
            raise UserError(f"{gwhere}.weights must be an object")
        formats.append(_ct_group(group["weights"], group.get("input_activations"), gwhere))
    # Mixed groups (e.g. attention in FP8, experts in 4 bit) are priced by their widest format;
    # inferecon has one weight format per model.
    fmt = max(formats, key=lambda f: f.weight_bits)
    kv_bits = None
    kv = qc.get("kv_cache_scheme")
    if isinstance(kv, dict):
        kv_bits = _int(kv.get("num_bits"), f"{where}.kv_cache_scheme.num_bits")
        if kv_bits not in (8, 16):
            raise UserError(f"{where}.kv_cache_scheme: {kv_bits}-bit KV cache is not priced (8 or 16)")
    return CheckpointQuant(fmt, kv_bits)


def _ct_group(weights: dict, acts, where: str) -> QuantFormat:
    bits = _int(weights.get("num_bits"), f"{where}.weights.num_bits")
    kind = str(weights.get("type", "int")).lower()
    strategy = str(weights.get("strategy", "tensor")).lower()
    src = f"{where} (compressed-tensors {kind}{bits}, {strategy} scales)"
    act_bits = None
    if isinstance(acts, dict):
        act_bits = _int(acts.get("num_bits"), f"{where}.input_activations.num_bits")
    if kind == "float" and bits == 8:
        if act_bits is None:
            # FP8 weight-only: Marlin dequantises to 16 bit (vLLM's FP8 on GPUs without FP8 too).
            raise UserError(f"{where}: FP8 weights without input_activations (FP8 weight-only) are not priced")
        if strategy == "block":
            block = weights.get("block_structure") or [128, 128]
            return _with_source(FORMATS["fp8-block"], src, block_shape=(int(block[0]), int(block[1])))
        return _with_source(FORMATS["fp8"], src)
    if kind == "float" and bits == 4:
        return _with_source(FORMATS["nvfp4"], src, group_size=weights.get("group_size") or 16)
    if kind == "int" and bits == 8 and act_bits == 8:
        return _with_source(FORMATS["int8"], src)
    if kind == "int" and act_bits in (None, 16):
        return _weight_only(bits, weights.get("group_size"), src)
    raise UserError(f"{where}: {kind}{bits} weights with {act_bits}-bit activations are not priced")


_MODELOPT = {"fp8": "fp8", "fp8-block": "fp8-block", "nvfp4": "nvfp4", "w4a16-awq": "w4a16", "w4a8-awq": "w4a16",
             "int8-sq": "int8", "int8-wo": "int8-wo", "int4-wo": "w4a16", "w8a16": "int8-wo", "w4a16": "w4a16"}


def _modelopt(qc: dict, where: str) -> CheckpointQuant:
    algo = str(qc.get("quant_algo", "")).strip().lower().replace("_", "-")
    if algo not in _MODELOPT:
        raise UserError(f"{where}: modelopt quant_algo {qc.get('quant_algo')!r} is not priced "
                        f"(known: {', '.join(sorted(_MODELOPT))})")
    kv = str(qc.get("kv_cache_quant_algo") or "").lower()
    return CheckpointQuant(_with_source(FORMATS[_MODELOPT[algo]], f"{where} (modelopt {algo})"),
                           8 if kv in ("fp8", "int8") else None)


def parse_format_label(label: str) -> QuantFormat | None:
    """A free-text precision label as benchmark tables write it ("fp8", "int8 weight-only",
    "awq int4", "int4 g32 weight-only", "fp4 (routed experts)") -> format, None when the label
    says nothing a format can be read from."""
    s = str(label or "").lower()
    if not s or s in ("nan",):
        return None
    if "fp4" in s and "expert" in s:
        return FORMATS["nvfp4-experts"]
    if "fp4" in s or "nvfp4" in s:
        return FORMATS["nvfp4"]
    if "awq" in s or "gptq" in s or "int4" in s or "w4a16" in s:
        return FORMATS["w4a16"]
    if "int8" in s and ("weight-only" in s or "weight only" in s or "w8a16" in s):
        return FORMATS["int8-wo"]
    if "int8" in s:
        return FORMATS["int8"]
    if "fp8" in s and "block" in s:
        return FORMATS["fp8-block"]
    if "fp8" in s:
        return FORMATS["fp8"]
    if s in ("bf16", "fp16", "float16", "bfloat16"):
        return FORMATS["bf16"]
    return None
