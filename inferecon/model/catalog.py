"""Named models with the shapes of their published configs (Hugging Face config.json or the
paper). `published_params_b` is the total the authors state; tests check that the counts
derived from the shapes match it within 0.4%. Each model carries the precision it is released
in (DeepSeek-V3: FP8 weights); `--precision` overrides it."""

from __future__ import annotations

from inferecon.core.errors import lookup
from inferecon.model.spec import ModelSpec

_LLAMA3_VOCAB = 128256

MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in [
        ModelSpec(
            name="llama-3-8b", n_layers=32, d_model=4096, n_heads=32, n_kv_heads=8, d_head=128,
            d_ff=14336, vocab_size=_LLAMA3_VOCAB, published_params_b=8.03,
            # 131,072: meta-llama/Llama-3.1-8B config.json max_position_embeddings. The entry stands for Llama
            # 3.1 8B too (alias llama-3.1-8b, same shapes; the scorecard runs it at 22k tokens), so the
            # 3.1 window, not Meta-Llama-3-8B's 8,192 (give its config.json for that window).
            max_context_tokens=131072,
            source="meta-llama/Meta-Llama-3-8B config.json; Llama 3 model card (8.03B)",
        ),
        ModelSpec(
            name="llama-3-70b", n_layers=80, d_model=8192, n_heads=64, n_kv_heads=8, d_head=128,
            d_ff=28672, vocab_size=_LLAMA3_VOCAB, published_params_b=70.6,
            # 131,072: meta-llama/Llama-3.1-70B config.json max_position_embeddings (alias llama-3.1-70b;
            # Meta-Llama-3-70B's own is 8,192, as for the 8B).
            max_context_tokens=131072,
            source="meta-llama/Meta-Llama-3-70B config.json; Llama 3 model card (70.6B)",
        ),
        ModelSpec(
            name="llama-3.1-405b", n_layers=126, d_model=16384, n_heads=128, n_kv_heads=8, d_head=128,
            d_ff=53248, vocab_size=_LLAMA3_VOCAB, published_params_b=405.0,
            max_context_tokens=131072,  # meta-llama/Llama-3.1-405B config.json max_position_embeddings
            source="meta-llama/Llama-3.1-405B config.json; The Llama 3 Herd of Models (405B)",
        ),
        ModelSpec(
            name="mixtral-8x7b", n_layers=32, d_model=4096, n_heads=32, n_kv_heads=8, d_head=128,
            d_ff=14336, vocab_size=32000, n_experts=8, n_active_experts=2, d_ff_expert=14336,
            published_params_b=46.7, published_active_params_b=12.9,
            max_context_tokens=32768,  # mistralai/Mixtral-8x7B-v0.1 config.json max_position_embeddings
            source="mistralai/Mixtral-8x7B-v0.1 config.json; Mixtral of Experts (46.7B, 12.9B active)",
        ),
        ModelSpec(
            name="mixtral-8x22b", n_layers=56, d_model=6144, n_heads=48, n_kv_heads=8, d_head=128,
            d_ff=16384, vocab_size=32768, n_experts=8, n_active_experts=2, d_ff_expert=16384,
            published_params_b=141.0, published_active_params_b=39.0,
            max_context_tokens=65536,  # mistralai/Mixtral-8x22B-v0.1 config.json max_position_embeddings
            source="mistralai/Mixtral-8x22B-v0.1 config.json; Mistral announcement (141B, 39B active)",
        ),
        ModelSpec(
            name="mistral-large-2", n_layers=88, d_model=12288, n_heads=96, n_kv_heads=8, d_head=128,
            d_ff=28672, vocab_size=32768, published_params_b=123.0,
            max_context_tokens=131072,  # mistralai/Mistral-Large-Instruct-2407 config.json max_position_embeddings
            source="mistralai/Mistral-Large-Instruct-2407 config.json; Mistral announcement (123B)",
        ),
        ModelSpec(
            name="deepseek-v3", n_layers=61, d_model=7168, n_heads=128, n_kv_heads=128, d_head=128,
            d_ff=18432, vocab_size=129280, n_experts=256, n_active_experts=8, n_shared_experts=1,
            d_ff_expert=2048, n_dense_layers=3, q_lora_rank=1536, kv_lora_rank=512,
            qk_rope_dim=64, qk_nope_dim=128, v_head_dim=128,
            published_params_b=671.0, published_active_params_b=37.0, weight_bits=8, weight_format="fp8-block",
            # 163,840: deepseek-ai/DeepSeek-V3 config.json max_position_embeddings (= its YaRN rope_scaling
            # original_max_position_embeddings 4,096 x factor 40).
            max_context_tokens=163840,
            source="deepseek-ai/DeepSeek-V3 config.json; DeepSeek-V3 Technical Report (671B, 37B active; "
            "the 14B multi-token-prediction module is not counted; released in FP8, so 8-bit weights by default; "
            "quantization_config: fp8 with weight_block_size [128, 128])",
        ),
        ModelSpec(
            name="qwen3-32b", n_layers=64, d_model=5120, n_heads=64, n_kv_heads=8, d_head=128,
            d_ff=25600, vocab_size=151936, published_params_b=32.8,
            # 40,960: Qwen/Qwen3-32B config.json max_position_embeddings (the card: 32,768 native, 131,072
            # only with YaRN enabled, which the config does not set).
            max_context_tokens=40960,
            source="Qwen/Qwen3-32B config.json; Qwen3 model card (32.8B)",
        ),
        ModelSpec(
            name="qwen3-235b-a22b", n_layers=94, d_model=4096, n_heads=64, n_kv_heads=4, d_head=128,
            d_ff=12288, vocab_size=151936, n_experts=128, n_active_experts=8, d_ff_expert=1536,
            published_params_b=235.0, published_active_params_b=22.0,
            max_context_tokens=40960,  # Qwen/Qwen3-235B-A22B config.json max_position_embeddings (as Qwen3-32B)
            source="Qwen/Qwen3-235B-A22B config.json; Qwen3 Technical Report (235B, 22B active)",
        ),
        ModelSpec(
            name="gpt-3-175b", n_layers=96, d_model=12288, n_heads=96, n_kv_heads=96, d_head=128,
            d_ff=49152, vocab_size=50257, mlp_matrices=2, tied_embeddings=True, learned_positions=2048,
            max_context_tokens=2048,  # the paper, section 2.1: "All models use a context window of nctx = 2048 tokens"
            published_params_b=175.0,
            source="Language Models are Few-Shot Learners, Table 2.1 (175B)",
        ),
    ]
}

# Short names people type.
ALIASES = {
    "llama-3.1-8b": "llama-3-8b",
    "llama-3.1-70b": "llama-3-70b",
    "llama-3-405b": "llama-3.1-405b",
    "gpt-3": "gpt-3-175b",
    "deepseek-r1": "deepseek-v3",
}


def get_model(name: str) -> ModelSpec:
    return lookup("model", name, MODELS, ALIASES, "or pass a Hugging Face config.json path")


def resolve_model(name_or_path: str) -> ModelSpec:
    """A catalog name, or a path to a local Hugging Face config.json (or its folder)."""
    from pathlib import Path

    p = Path(name_or_path)
    if name_or_path.endswith(".json") or p.is_dir() or p.is_file():
        return ModelSpec.from_hf_config(p)
    return get_model(name_or_path)
