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
    return int(value)


def _first(sizes: dict, *keys):
    return next((sizes[k] for k in keys if sizes.get(k) is not None), None)


def check_hf_config(cfg: dict, source: str) -> None:
    """Raise a one-line UserError for the first size that is not a whole number in range, or
    the first pair of shapes that do not fit together."""
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
