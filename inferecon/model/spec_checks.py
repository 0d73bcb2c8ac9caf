"""Checks of a Hugging Face config.json before a ModelSpec is built from it.

Sizes must be whole positive numbers (`hidden_size: 4096.5` is a broken file, not a
4096-wide model), and the shapes must be consistent: heads split d_model evenly where no
head_dim is given, KV heads split the heads evenly, a token cannot be routed to more experts
than exist, and no more leading dense layers than layers. A config that fails is refused with
one line naming the field; evaluating it would give figures for a model that cannot exist.
"""

from __future__ import annotations

import math
from numbers import Real

from inferecon.core.errors import UserError

# Every size the loader reads (model/spec.py), by whether 0 is a meaningful value.
_POSITIVE = ("hidden_size", "n_embd", "d_model", "num_attention_heads", "n_head", "num_hidden_layers", "n_layer",
             "num_key_value_heads", "multi_query_group_num", "head_dim", "intermediate_size", "n_inner",
             "ffn_dim", "vocab_size", "moe_intermediate_size")
_NONNEG = ("num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok", "num_experts_per_token",
           "top_k", "n_shared_experts", "first_k_dense_replace", "q_lora_rank", "kv_lora_rank",
           "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "n_positions")


# No released model comes near these (the widest d_ff is ~10^5, the largest vocabulary ~2.6x10^5,
# the deepest ~126 layers, the most experts 384); a larger size is a broken file, and evaluating
# it would overflow the byte counts (a 5000-digit hidden_size is an OverflowError otherwise).
MAX_SIZE = 1 << 24
# Flags a config.json writes as JSON booleans; a string "false" is truthy in Python and would be
# read as true, so anything but true/false is refused.
_BOOLEANS = ("tie_word_embeddings", "use_cache", "attention_bias", "mlp_bias", "tie_encoder_decoder")


def _size(cfg: dict, key: str, source: str, positive: bool):
    """The whole number at cfg[key], None where absent; a UserError where it is not one."""
    value = cfg.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise UserError(f"{source}: {key} must be a number, got {value!r}")
    if not math.isfinite(value) or value != int(value):
        raise UserError(f"{source}: {key} must be a whole number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise UserError(f"{source}: {key} must be {'positive' if positive else 'zero or more'}, got {value!r}")
    if value > MAX_SIZE:
        shown = f"{value:g}" if isinstance(value, float) else (f"{value:,}" if value < 10**30 else f"a {len(str(value))}-digit number")
        raise UserError(f"{source}: {key} {shown} is beyond any model's (at most {MAX_SIZE:,}): a broken config?")
    return int(value)


def max_context_tokens(cfg: dict, source: str) -> int | None:
    """The longest context the model was trained or scaled to: max_position_embeddings, or its
    rope scaling's reach (original_max_position_embeddings x factor, as YaRN and linear scaling
    define it), whichever is larger; None where the config states neither."""
    base = _size(cfg, "max_position_embeddings", source, True)
    rope = cfg.get("rope_scaling")
    if rope is not None and not isinstance(rope, dict):
        raise UserError(f"{source}: rope_scaling must be an object or null, got {rope!r}"[:200])
    reach = None
    if rope:
        factor = rope.get("factor")
        original = rope.get("original_max_position_embeddings", base)
        if factor is not None:
            if isinstance(factor, bool) or not isinstance(factor, Real) or not math.isfinite(factor) or factor <= 0:
                raise UserError(f"{source}: rope_scaling.factor must be a positive number, got {factor!r}")
            if isinstance(original, Real) and not isinstance(original, bool) and math.isfinite(original) and original > 0:
                reach = int(original * factor)
    known = [v for v in (base, reach) if v]
    return max(known) if known else None


def _first(sizes: dict, *keys):
    return next((sizes[k] for k in keys if sizes.get(k) is not None), None)


def check_hf_config(cfg: dict, source: str) -> None:
    """Raise a one-line UserError for the first size that is not a whole number in range, or
    the first pair of shapes that do not fit together."""
    for key in _BOOLEANS:
        if key in cfg and cfg[key] is not None and not isinstance(cfg[key], bool):
            raise UserError(f"{source}: {key} must be true or false (a JSON boolean), got {cfg[key]!r}"[:200])
    sizes = {k: _size(cfg, k, source, True) for k in _POSITIVE}
    sizes.update({k: _size(cfg, k, source, False) for k in _NONNEG})
    d_model = _first(sizes, "hidden_size", "n_embd", "d_model")
    heads = _first(sizes, "num_attention_heads", "n_head")
    kv = _first(sizes, "num_key_value_heads", "multi_query_group_num")
    layers = _first(sizes, "num_hidden_layers", "n_layer")
    if d_model and heads and sizes["head_dim"] is None and d_model % heads:
        raise UserError(f"{source}: {heads} attention heads do not divide hidden size {d_model} "
                        f"(and no head_dim is given)")
    if heads and kv and heads % kv:
        raise UserError(f"{source}: {kv} key-value heads do not divide {heads} attention heads")
    if heads and kv and kv > heads:
        raise UserError(f"{source}: {kv} key-value heads exceed {heads} attention heads")
    experts = _first(sizes, "num_local_experts", "num_experts", "n_routed_experts")
    top_k = _first(sizes, "num_experts_per_tok", "num_experts_per_token", "top_k")
    if experts and experts > 1:
        if not top_k:
            raise UserError(f"{source}: a mixture of {experts} experts needs num_experts_per_tok (experts per token) >= 1")
        if top_k > experts:
            raise UserError(f"{source}: {top_k} experts per token exceed the {experts} experts")
    dense = sizes["first_k_dense_replace"]
    if dense and layers and dense > layers:
        raise UserError(f"{source}: first_k_dense_replace {dense} exceeds num_hidden_layers {layers}")
