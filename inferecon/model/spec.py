"""ModelSpec: the shapes of a decoder-only transformer, and the byte and FLOP counts derived
from them. Dense, GQA/MQA, mixture-of-experts (routed + shared experts, leading dense layers)
and multi-head latent attention (DeepSeek's MLA) are covered.

Counting conventions (documented once, used everywhere):
- Biases, norms and rotary tables are left out: they are < 0.1% of any catalog model.
- `embedding_params` is the input table; the output projection (lm head) is counted apart
  so that tied embeddings share one table. Decoding reads the lm head in full every step
  but only b rows of the input table, so the input table costs memory capacity, not time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from inferecon.core.errors import UserError, load_json
from inferecon.model.spec_checks import check_hf_config, max_context_tokens

# 32-bit is for CPU validation runs (fp32 decoders); GPUs serve 16-bit and below.
WEIGHT_BITS = (32, 16, 8, 4)
KV_BITS = (32, 16, 8, 4)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_ff: int  # hidden size of a dense MLP layer
    vocab_size: int
    mlp_matrices: int = 3  # 3 for gated MLPs (SwiGLU), 2 for GELU MLPs (GPT-3)
    tied_embeddings: bool = False
    learned_positions: int = 0  # rows of a learned position table (GPT-3: 2048)
    # Mixture of experts: routed experts of hidden size d_ff_expert, n_active of them per
    # token, plus always-on shared experts; the first n_dense_layers layers are dense.
    n_experts: int = 0
    n_active_experts: int = 0
    n_shared_experts: int = 0
    d_ff_expert: int = 0
    n_dense_layers: int = 0
    # Multi-head latent attention (MLA): low-rank query/key-value projections; the KV cache
    # holds the kv_lora_rank latent plus the shared rotary key.
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_dim: int = 0
    qk_nope_dim: int = 0
    v_head_dim: int = 0
    # Precision of what is stored and moved.
    weight_bits: int = 16
    kv_bits: int = 16
    act_bits: int = 16
    # How the weights are quantised (model/quant.py: "fp8", "fp8-block", "int8-wo", "w4a16" ...);
    # "" keeps the default of weight_bits (16: bf16, 8: FP8 W8A8, 4: W4A16).
    weight_format: str = ""
    # Modules a quantised checkpoint keeps in 16 bit, as the checkpoint's config.json or the engine
    # that runs the format says (model/quant.py: KeptModules, kept_16bit_modules): the attention
    # projections of that many layers, the MLPs of that many dense layers, the lm head, the input
    # embedding table. All unset: every weight in weight_bits (what inferecon assumed before, and
    # what the paper's parity prices).
    attention_16bit_layers: int = 0
    mlp_16bit_layers: int = 0
    lm_head_16bit: bool = False
    embedding_16bit: bool = False
    kept_16bit_source: str = ""  # which file, field or sourced fact said so
    # Bookkeeping: the published parameter count and where the shapes come from.
    published_params_b: float | None = None
    published_active_params_b: float | None = None
    source: str = ""
    # The longest context the model handles (config.json's max_position_embeddings or its rope
    # scaling's reach); None where unknown. A longer --context is priced with a note, not refused.
    max_context_tokens: int | None = None

    def __post_init__(self):
        for f in ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_head", "vocab_size"):
            if getattr(self, f) <= 0:
                raise UserError(f"model {self.name}: {f} must be positive, got {getattr(self, f)}")
        if self.weight_bits not in WEIGHT_BITS:
            raise UserError(f"weight precision must be one of {WEIGHT_BITS} bits, got {self.weight_bits}")
        if self.kv_bits not in KV_BITS:
            raise UserError(f"KV-cache precision must be one of {KV_BITS} bits, got {self.kv_bits}")
        if self.weight_format:
            from inferecon.model.quant import get_format

            if get_format(self.weight_format).weight_bits != self.weight_bits:
                raise UserError(f"model {self.name}: weight format {self.weight_format} is not "
                                f"{self.weight_bits}-bit")
        if self.has_16bit_modules:
            if self.weight_bits >= 16:
                raise UserError(f"model {self.name}: modules kept in 16 bit need quantised weights "
                                f"(weights are {self.weight_bits}-bit)")
            dense = self.n_layers - self.n_moe_layers
            if not (0 <= self.attention_16bit_layers <= self.n_layers and 0 <= self.mlp_16bit_layers <= dense):
                raise UserError(f"model {self.name}: 16-bit attention layers {self.attention_16bit_layers} / MLP "
                                f"layers {self.mlp_16bit_layers} beyond its {self.n_layers} layers ({dense} dense)")
        if self.is_moe and not (0 < self.n_active_experts <= self.n_experts and self.d_ff_expert > 0):
            raise UserError(f"model {self.name}: MoE needs 0 < active experts <= experts and d_ff_expert > 0")
        if self.n_heads % self.n_kv_heads:
            raise UserError(f"model {self.name}: {self.n_heads} heads not divisible by {self.n_kv_heads} KV heads")

    # -- structure ---------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def n_moe_layers(self) -> int:
        return self.n_layers - self.n_dense_layers if self.is_moe else 0

    # -- parameter counts ----------------------------------------------------------------
    @property
    def attention_params(self) -> int:
        """Per layer."""
        d, h = self.d_model, self.n_heads
        if self.is_mla:
            qk = self.qk_nope_dim + self.qk_rope_dim
            q = d * self.q_lora_rank + self.q_lora_rank * h * qk if self.q_lora_rank else d * h * qk
            kv_down = d * (self.kv_lora_rank + self.qk_rope_dim)
            kv_up = self.kv_lora_rank * h * (self.qk_nope_dim + self.v_head_dim)
            return q + kv_down + kv_up + h * self.v_head_dim * d
        q_and_o = 2 * d * h * self.d_head
        kv = 2 * d * self.n_kv_heads * self.d_head
        return q_and_o + kv

    @property
    def dense_mlp_params(self) -> int:
        return self.mlp_matrices * self.d_model * self.d_ff

    @property
    def expert_params(self) -> int:
        """One routed (or shared) expert."""
        return self.mlp_matrices * self.d_model * self.d_ff_expert

    @property
    def router_params(self) -> int:
        return self.d_model * self.n_experts

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.d_model + self.learned_positions * self.d_model

    @property
    def lm_head_params(self) -> int:
        return self.vocab_size * self.d_model

    @property
    def always_on_params(self) -> int:
        """Weights every token touches in the layer stack: attention, dense MLPs, shared
        experts and routers (the lm head is counted apart)."""
        moe = self.n_moe_layers * (self.n_shared_experts * self.expert_params + self.router_params)
        dense = (self.n_layers - self.n_moe_layers) * self.dense_mlp_params
        return self.n_layers * self.attention_params + dense + moe

    @property
    def routed_expert_params(self) -> int:
        """All routed experts of all MoE layers."""
        return self.n_moe_layers * self.n_experts * self.expert_params

    @property
    def total_params(self) -> int:
        head = 0 if self.tied_embeddings else self.lm_head_params
        return self.always_on_params + self.routed_expert_params + self.embedding_params + head

    @property
    def active_params(self) -> int:
        """Parameters used per token (input embedding included, as model cards count it)."""
        routed = self.n_moe_layers * self.n_active_experts * self.expert_params
        head = 0 if self.tied_embeddings else self.lm_head_params
        return self.always_on_params + routed + self.embedding_params + head

    # -- bytes and FLOPs -----------------------------------------------------------------
    @property
    def weight_bytes_per_param(self) -> float:
        return self.weight_bits / 8

    @property
    def act_bytes(self) -> float:
        return self.act_bits / 8

    @property
    def weight_bytes(self) -> float:
        """Every stored weight, each module at its own precision (the 16-bit ones at 2 bytes)."""
        total = self.total_params * self.weight_bytes_per_param
        if self.has_16bit_modules:
            kept = self.stack_16bit_params + self.embedding_params * self.embedding_kept_16bit
            if not self.tied_embeddings:
                kept += self.lm_head_params * self.lm_head_kept_16bit
            total += kept * (2.0 - self.weight_bytes_per_param)
        return total

    # -- modules kept in 16 bit (model/quant.py KeptModules) ------------------------------
    @property
    def has_16bit_modules(self) -> bool:
        return bool(self.attention_16bit_layers or self.mlp_16bit_layers or self.lm_head_16bit
                    or self.embedding_16bit)

    @property
    def stack_16bit_params(self) -> int:
        """Weights of the layer stack kept in 16 bit: attention projections and dense MLPs."""
        return self.attention_16bit_layers * self.attention_params + self.mlp_16bit_layers * self.dense_mlp_params

    @property
    def lm_head_kept_16bit(self) -> bool:
        """Whether the lm head is read in 16 bit (a tied head is the embedding table)."""
        return self.lm_head_16bit or (self.tied_embeddings and self.embedding_16bit)

    @property
    def embedding_kept_16bit(self) -> bool:
        return self.embedding_16bit or (self.tied_embeddings and self.lm_head_16bit)

    def kept_16bit_summary(self) -> str:
        """The modules kept in 16 bit, in words ('the lm head and the embeddings')."""
        parts = []
        if self.attention_16bit_layers:
            parts.append(f"the attention of {self.attention_16bit_layers} layers")
        if self.mlp_16bit_layers:
            parts.append(f"the MLPs of {self.mlp_16bit_layers} layers")
        if self.lm_head_kept_16bit:
            parts.append("the lm head")
        if self.embedding_kept_16bit:
            parts.append("the embeddings")
        return " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts) or "nothing"

    @property
    def attention_16bit_share(self) -> float:
        return self.attention_16bit_layers / self.n_layers

    @property
    def mlp_16bit_share(self) -> float:
        """Share of the dense MLP layers kept in 16 bit."""
        dense = self.n_layers - self.n_moe_layers
        return self.mlp_16bit_layers / dense if dense else 0.0

    @property
    def kv_bytes_per_token_layer(self) -> float:
        """KV-cache bytes one token adds to one layer (all heads)."""
        if self.is_mla:
            width = self.kv_lora_rank + self.qk_rope_dim  # the compressed latent is what is cached
        else:
            width = 2 * self.n_kv_heads * self.d_head  # K and V
        return width * self.kv_bits / 8

    def kv_bytes(self, context: int, batch: int = 1) -> float:
        return self.kv_bytes_per_token_layer * self.n_layers * context * batch

    @property
    def matmul_flop_per_token(self) -> float:
        """2 FLOP per active weight: the layer stack plus the lm head (not the embedding lookup)."""
        routed = self.n_moe_layers * self.n_active_experts * self.expert_params
        return 2.0 * (self.always_on_params + routed + self.lm_head_params)

    def attention_flop_per_token(self, context: int) -> float:
        """Scores and weighted sum over `context` cached positions, all layers."""
        if self.is_mla:
            # With the up-projections absorbed, scores run over the latent + rotary key and
            # the weighted sum over the latent, per head.
            per_pos = 2 * self.n_heads * (self.kv_lora_rank + self.qk_rope_dim) + 2 * self.n_heads * self.kv_lora_rank
        else:
            per_pos = 4 * self.n_heads * self.d_head
        return float(per_pos) * context * self.n_layers

    def flop_per_token(self, context: int) -> float:
        return self.matmul_flop_per_token + self.attention_flop_per_token(context)

    # -- variants ------------------------------------------------------------------------
    def context_note(self, context: int) -> str | None:
        """A note where `context` is beyond the longest context the model handles: the figures
        are still given (the KV cache is sized as asked), but no such model serves it."""
        if self.max_context_tokens and context > self.max_context_tokens:
            return (f"{self.name}: context {context:,} tokens is beyond the model's {self.max_context_tokens:,} "
                    "(max_position_embeddings or its rope scaling's reach): priced as asked, but the model does "
                    "not serve it")
        return None

    def with_precision(self, weight_bits: int | None = None, kv_bits: int | None = None) -> "ModelSpec":
        changes = {}
        if weight_bits is not None:
            changes["weight_bits"] = int(weight_bits)
            if int(weight_bits) != self.weight_bits:
                changes["weight_format"] = ""  # the checkpoint's format named other bits
                changes.update(_ALL_QUANTISED)  # and so did its 16-bit modules
        if kv_bits is not None:
            changes["kv_bits"] = int(kv_bits)
        return dataclasses.replace(self, **changes)

    def with_format(self, name: str) -> "ModelSpec":
        """The same model with weights in a named format (model/quant.py), its bits included."""
        from inferecon.model.quant import get_format

        fmt = get_format(name)
        keep = {} if fmt.weight_bits == self.weight_bits else _ALL_QUANTISED
        return dataclasses.replace(self, weight_bits=fmt.weight_bits, weight_format=fmt.name, **keep)

    def with_kept_16bit(self, kept) -> "ModelSpec":
        """The same model with the modules a model/quant.KeptModules names kept in 16 bit (the
        attention of every layer where it says all of them)."""
        if self.weight_bits >= 16:
            return self
        att = self.n_layers if kept.attention_all else min(kept.attention_layers, self.n_layers)
        dense = self.n_layers - self.n_moe_layers
        return dataclasses.replace(self, attention_16bit_layers=att, mlp_16bit_layers=min(kept.mlp_layers, dense),
                                   lm_head_16bit=kept.lm_head, embedding_16bit=kept.embeddings,
                                   kept_16bit_source=kept.source)

    def with_layers(self, n_layers: int) -> "ModelSpec":
        """The same model cut to n_layers (kept dense-layer share for MoE)."""
        dense = min(self.n_dense_layers, n_layers)
        att = n_layers if self.attention_16bit_layers == self.n_layers else min(self.attention_16bit_layers, n_layers)
        cut = dataclasses.replace(self, n_layers=n_layers, n_dense_layers=dense, attention_16bit_layers=att,
                                  mlp_16bit_layers=0)
        mlp = min(self.mlp_16bit_layers, cut.n_layers - cut.n_moe_layers)
        return dataclasses.replace(cut, mlp_16bit_layers=mlp)

    # -- Hugging Face config.json ----------------------------------------------------------
    @classmethod
    def from_hf_config(cls, path: str | Path, name: str | None = None) -> "ModelSpec":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        cfg = load_json(path, "config.json")
        if not isinstance(cfg, dict):
            raise UserError(f"{path}: a config.json must be a JSON object")
        from inferecon.model.file_kinds import MODEL, check_kind

        check_kind(cfg, MODEL, str(path))  # a hardware or engine profile given as --model
        if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers keep the LM inside
            cfg = {**cfg, **cfg["text_config"]}
        check_hf_config(cfg, str(path))  # whole, positive sizes; heads, KV heads, experts consistent
        return _from_hf_dict(cfg, name or cfg.get("_name_or_path") or path.parent.name or "hf-model", str(path))


def _from_hf_dict(cfg: dict, name: str, source: str) -> ModelSpec:
    def get(*keys, default=None, required=True):
        for k in keys:
            if k in cfg and cfg[k] is not None:
                value = cfg[k]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise UserError(f"{source}: {k} must be a number, got {value!r}")
                return int(value)
        if required and default is None:
            raise UserError(f"{source}: missing {' / '.join(keys)}")
        return default

    d_model = get("hidden_size", "n_embd", "d_model")
    n_heads = get("num_attention_heads", "n_head")
    n_layers = get("num_hidden_layers", "n_layer")
    n_kv = get("num_key_value_heads", "multi_query_group_num", default=n_heads)
    d_head = get("head_dim", default=d_model // n_heads)
    n_experts = get("num_local_experts", "num_experts", "n_routed_experts", default=0)
    moe = n_experts > 1
    d_ff = get("intermediate_size", "n_inner", "ffn_dim", default=4 * d_model)
    act = str(cfg.get("hidden_act", cfg.get("activation_function", "silu"))).lower()
    gated = act in ("silu", "swiglu", "swish", "geglu") or "llama" in str(cfg.get("model_type", ""))
    first_dense = get("first_k_dense_replace", default=0, required=False) or 0 if moe else 0
    spec = ModelSpec(
        name=str(name),
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        d_head=d_head,
        d_ff=d_ff,
        vocab_size=get("vocab_size"),
        mlp_matrices=3 if gated else 2,
        tied_embeddings=cfg.get("tie_word_embeddings") is True,  # a JSON boolean (spec_checks refuses others)
        learned_positions=get("n_positions", default=0, required=False) or 0
        if str(cfg.get("model_type", "")) in ("gpt2", "gpt3", "openai-gpt") else 0,
        n_experts=n_experts if moe else 0,
        n_active_experts=get("num_experts_per_tok", "num_experts_per_token", "top_k", default=0, required=False) or 0
        if moe else 0,
        n_shared_experts=(get("n_shared_experts", default=0, required=False) or 0) if moe else 0,
        d_ff_expert=(get("moe_intermediate_size", default=d_ff, required=False) or d_ff) if moe else 0,
        n_dense_layers=first_dense,
        q_lora_rank=get("q_lora_rank", default=0, required=False) or 0,
        kv_lora_rank=get("kv_lora_rank", default=0, required=False) or 0,
        qk_rope_dim=get("qk_rope_head_dim", default=0, required=False) or 0,
        qk_nope_dim=get("qk_nope_head_dim", default=0, required=False) or 0,
        v_head_dim=get("v_head_dim", default=0, required=False) or 0,
        source=f"Hugging Face config {source}",
        max_context_tokens=max_context_tokens(cfg, source),
    )
    if spec.is_mla and not (spec.qk_nope_dim and spec.v_head_dim):
        raise UserError(f"{source}: MLA config needs qk_nope_head_dim and v_head_dim")
    if cfg.get("quantization_config") is not None:
        # The checkpoint's own quantisation is the default precision (predict, frontier, specs).
        from inferecon.model.quant import from_quantization_config, kept_modules

        q = from_quantization_config(cfg["quantization_config"], source)
        spec = dataclasses.replace(spec, weight_bits=q.format.weight_bits, weight_format=q.format.name,
                                   kv_bits=q.kv_bits or spec.kv_bits)
        if q.kept is not None:  # the modules its exclusion list (or its method) leaves in 16 bit
            spec = spec.with_kept_16bit(kept_modules(q.kept, spec))
    return spec


# with_precision / with_format to other bits: the checkpoint's 16-bit modules no longer apply.
_ALL_QUANTISED = dict(attention_16bit_layers=0, mlp_16bit_layers=0, lm_head_16bit=False, embedding_16bit=False,
                      kept_16bit_source="")
