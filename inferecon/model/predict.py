"""One deployment through the cost model: speed, cost, the time of each term, and memory per
GPU (weights, KV cache, free), or why it does not fit.

`predict(...)` is the one entry point (the `predict` command, the engine-result checks and the
accuracy scorecard all call it); it returns a plain dict whose keys are the `--json` fields.
Units are in the names: *_ms milliseconds, *_gb 1e9 bytes, usd_per_mtok $ per million tokens.

This module must stay light: `inferecon predict` answers in well under half a second, so
nothing here imports pandas, matplotlib or scipy.
"""

from __future__ import annotations

import numpy as np

from inferecon.core.errors import UserError
from inferecon.model.engine import EngineProfile
from inferecon.model.hardware import HardwareProfile
from inferecon.model.spec import ModelSpec
from inferecon.model.terms import CostOptions, Layouts, evaluate

# The fields of one prediction, in the order `predict` prints them.
FIELDS = (
    "model", "gpu", "profile", "engine", "n_gpu", "tp", "pp", "ep", "batch", "micro_batch", "context",
    "weight_bits", "kv_bits", "draft", "gamma", "acceptance",
    "tokens_per_s_per_seq", "tokens_per_s_per_gpu", "usd_per_mtok", "ms_per_token", "t_step_ms",
    "t_arithmetic_ms", "t_memory_ms", "t_network_ms", "t_latency_ms", "dominant", "tokens_per_step",
    "mfu", "hbm_per_gpu_gb", "usable_per_gpu_gb", "weights_per_gpu_gb", "kv_per_gpu_gb", "free_per_gpu_gb",
    "feasible", "infeasible_reason", "price_usd_per_gpu_hour",
    # 90% interval over draws of the profile's uncertain parameters (model/uncertainty.py);
    # None with draws=0.
    "interval_draws", "tokens_per_s_per_seq_lo", "tokens_per_s_per_seq_hi", "usd_per_mtok_lo", "usd_per_mtok_hi",
    "t_step_ms_lo", "t_step_ms_hi", "t_arithmetic_ms_lo", "t_arithmetic_ms_hi", "t_memory_ms_lo", "t_memory_ms_hi",
    "t_network_ms_lo", "t_network_ms_hi", "t_latency_ms_lo", "t_latency_ms_hi",
)
_INTERVAL_KEYS = {"tokens_per_s_per_seq": 1.0, "usd_per_mtok": 1.0, "t_step_s": 1e3, "t_arithmetic_s": 1e3,
                  "t_memory_s": 1e3, "t_network_s": 1e3, "t_latency_s": 1e3}


def check_layout(model: ModelSpec, tp: int, pp: int, ep: int, batch: int, context: int,
                 gamma: int = 0) -> int:
    """The micro-batch (sequences per ep rank per micro-batch) of a request, or a UserError
    naming what is impossible about it."""
    for name, value in (("tp", tp), ("pp", pp), ("ep", ep), ("batch", batch), ("context", context)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise UserError(f"--{name} must be a whole number >= 1, got {value!r}")
    if gamma < 0:
        raise UserError(f"--gamma must be >= 0, got {gamma}")
    if tp > model.n_heads:
        raise UserError(f"--tp {tp} is more than {model.name}'s {model.n_heads} attention heads")
    if model.n_heads % tp or (model.n_kv_heads % tp and tp % model.n_kv_heads):
        # Engines split heads evenly (and KV heads evenly, or replicate each over tp / kv GPUs).
        raise UserError(f"--tp {tp} does not split {model.name}'s {model.n_heads} attention heads "
                        f"({model.n_kv_heads} KV heads) evenly over the GPUs")
    if pp > model.n_layers:
        raise UserError(f"--pp {pp} is more than {model.name}'s {model.n_layers} layers")
    if ep > 1 and not model.is_moe:
        raise UserError(f"--ep {ep}: {model.name} is dense; expert parallelism needs a mixture-of-experts model")
    if model.is_moe and model.n_experts % ep:
        raise UserError(f"--ep {ep} does not divide {model.name}'s {model.n_experts} experts")
    if gamma > 0 and pp > 1:
        raise UserError("speculative decoding needs --pp 1 (the draft must see every token the target emits)")
    if batch % (pp * ep):
        raise UserError(f"--batch {batch} is not a multiple of pp x ep = {pp * ep}: each pipeline micro-batch "
                        f"and each expert-parallel rank needs a whole number of sequences")
    return batch // (pp * ep)


def stored_per_gpu_bytes(model: ModelSpec, tp: int, pp: int, ep: int, batch: int, context: int) -> tuple[float, float]:
    """(weight bytes, KV-cache bytes) one GPU holds.

    Weights: attention, dense layers, shared experts, embeddings and the lm head are split
    over tp within a stage and replicated on every ep rank (data-parallel attention); the
    routed experts are split over ep x tp. KV: each ep rank keeps the cache of its batch/ep
    sequences for its stage's layers; tp splits the KV heads but never below one head per GPU
    (GQA heads are replicated beyond that), and MLA's shared latent is held whole by every GPU."""
    head = 0 if model.tied_embeddings else model.lm_head_params
    replicated = model.always_on_params + model.embedding_params + head
    weights = (replicated / (pp * tp) + model.routed_expert_params / (pp * ep * tp)) * model.weight_bytes_per_param
    share = 1.0 if model.is_mla else max(1.0 / tp, 1.0 / model.n_kv_heads)
    kv = (batch / ep) * context * (model.n_layers / pp) * model.kv_bytes_per_token_layer * share
    return float(weights), float(kv)


def predict(model: ModelSpec, hw: HardwareProfile, *, tp: int, batch: int, context: int, pp: int = 1,
            ep: int = 1, draft: ModelSpec | None = None, acceptance: float = 0.0, gamma: int = 0,
            engine: EngineProfile | None = None, opts: CostOptions = CostOptions(),
            draws: int = 200, seed: int = 0) -> dict:
    """One configuration: `batch` sequences decoded together on tp x pp x ep GPUs (1D tensor
    parallelism), each with `context` tokens of context. `model` carries its weight and KV
    precision (ModelSpec.with_precision). Returns a plain dict with the keys of FIELDS; with
    draws > 0 the *_lo / *_hi keys hold the 90% interval over that many parameter draws."""
    micro = check_layout(model, tp, pp, ep, batch, context, gamma)
    if (draft is None) != (gamma == 0):
        raise UserError("speculative decoding needs both a draft model and --gamma >= 1")
    if not 0.0 <= acceptance <= 1.0:
        raise UserError(f"--acceptance must be in [0, 1], got {acceptance}")
    lay = Layouts(tp_r=1, tp_c=tp, pp=pp, ep=ep, micro_batch=micro, gamma=gamma)
    res = {k: np.asarray(v)[0] for k, v in
           evaluate(model, hw, lay, context, draft=draft, acceptance=acceptance if draft else 0.0, opts=opts,
                    engine=engine).items()}

    weights, kv = stored_per_gpu_bytes(model, tp, pp, ep, batch, context)
    if draft is not None:
        dw, dkv = stored_per_gpu_bytes(draft, tp, pp, ep, batch, context)
        weights, kv = weights + dw, kv + dkv
    hbm = hw.memory.capacity_gb * 1e9
    usable = hbm * opts.hbm_usable_fraction
    feasible = bool(res["feasible"]) and weights + kv <= usable
    reason = None
    if not feasible:
        reason = (f"weights {weights / 1e9:.1f} GB + KV cache {kv / 1e9:.1f} GB per GPU exceed the "
                  f"{usable / 1e9:.1f} GB usable of {hbm / 1e9:.0f} GB HBM "
                  f"({opts.hbm_usable_fraction:.0%}; the rest is CUDA context, activations, workspace)")
    speed = float(res["tokens_per_s_per_seq"])
    from inferecon.model.uncertainty import evaluate_draws, has_uncertainty, quantiles

    # A profile saved without uncertainty (and no fitted engine) has no interval, not a zero-width one.
    uncertain = bool(draws) and has_uncertainty(hw, engine)
    interval = {"interval_draws": int(draws) if uncertain else None}
    for key, unit in _INTERVAL_KEYS.items():
        name = key[:-2] + "_ms" if unit == 1e3 else key
        interval[f"{name}_lo"] = interval[f"{name}_hi"] = None
    if uncertain:
        sampled = evaluate_draws(model, hw, lay, context, draft=draft, acceptance=acceptance if draft else 0.0,
                                 opts=opts, engine=engine, draws=draws, seed=seed, keys=tuple(_INTERVAL_KEYS))
        for key, unit in _INTERVAL_KEYS.items():
            lo, _, hi = quantiles(sampled[key][:, 0])
            name = key[:-2] + "_ms" if unit == 1e3 else key
            interval[f"{name}_lo"], interval[f"{name}_hi"] = float(lo) * unit, float(hi) * unit
    return {
        "model": model.name, "gpu": hw.name, "profile": hw.provenance.kind,
        "engine": engine.name if engine is not None else None,
        "n_gpu": int(res["n_gpu"]), "tp": tp, "pp": pp, "ep": ep, "batch": batch, "micro_batch": micro,
        "context": context, "weight_bits": model.weight_bits, "kv_bits": model.kv_bits,
        "draft": draft.name if draft is not None else None, "gamma": gamma,
        "acceptance": float(acceptance) if draft is not None else None,
        "tokens_per_s_per_seq": speed, "tokens_per_s_per_gpu": float(res["tokens_per_s_per_gpu"]),
        "usd_per_mtok": float(res["usd_per_mtok"]), "ms_per_token": 1e3 / speed,
        "t_step_ms": float(res["t_step_s"]) * 1e3,
        "t_arithmetic_ms": float(res["t_arithmetic_s"]) * 1e3, "t_memory_ms": float(res["t_memory_s"]) * 1e3,
        "t_network_ms": float(res["t_network_s"]) * 1e3, "t_latency_ms": float(res["t_latency_s"]) * 1e3,
        "dominant": str(res["dominant"]), "tokens_per_step": float(res["tokens_per_step"]),
        "mfu": float(res["mfu"]),
        "hbm_per_gpu_gb": hbm / 1e9, "usable_per_gpu_gb": usable / 1e9,
        "weights_per_gpu_gb": weights / 1e9, "kv_per_gpu_gb": kv / 1e9,
        "free_per_gpu_gb": (usable - weights - kv) / 1e9,
        "feasible": feasible, "infeasible_reason": reason,
        "price_usd_per_gpu_hour": hw.price_usd_per_gpu_hour,
    } | interval

