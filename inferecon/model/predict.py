"""One deployment through the cost model: speed, cost, the time of each term, and memory per
GPU (weights, KV cache, free), or why it does not fit.

`predict(...)` is the one entry point (the `predict` command, the engine-result checks and the
accuracy scorecard all call it); it returns a typed `Prediction`, whose `to_dict()` is the
`--json` object. Units are in the names: *_ms milliseconds, *_gb 1e9 bytes, usd_per_mtok $ per
million tokens.

This module must stay light: `inferecon predict` answers in well under half a second, so
nothing here imports pandas, matplotlib or scipy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from inferecon.model.engine import EngineProfile
from inferecon.model.hardware import HardwareProfile
from inferecon.model.layout import RequestError, layout_problem
from inferecon.model.spec import ModelSpec
from inferecon.model.terms import CostOptions, Layouts, evaluate, stored_bytes_per_gpu


@dataclass(frozen=True)
class Prediction:
    """One configuration's figures, in the order `predict --json` writes them."""

    model: str
    gpu: str
    profile: str  # "published" or "calibrated"
    engine: str | None
    n_gpu: int
    tp: int
    pp: int
    ep: int
    batch: int
    micro_batch: int
    context: int
    weight_bits: int
    kv_bits: int
    draft: str | None
    gamma: int
    acceptance: float | None
    tokens_per_s_per_seq: float
    tokens_per_s_per_gpu: float
    usd_per_mtok: float
    ms_per_token: float
    t_step_ms: float
    t_arithmetic_ms: float
    t_memory_ms: float
    t_network_ms: float
    t_latency_ms: float
    dominant: str
    tokens_per_step: float
    mfu: float
    hbm_per_gpu_gb: float
    usable_per_gpu_gb: float
    weights_per_gpu_gb: float
    kv_per_gpu_gb: float
    free_per_gpu_gb: float
    feasible: bool
    infeasible_reason: str | None
    price_usd_per_gpu_hour: float
    # 90% interval over draws of the profile's uncertain parameters (model/uncertainty.py);
    # None with draws=0 or a profile that states no uncertainty.
    interval_draws: int | None = None
    tokens_per_s_per_seq_lo: float | None = None
    tokens_per_s_per_seq_hi: float | None = None
    usd_per_mtok_lo: float | None = None
    usd_per_mtok_hi: float | None = None
    t_step_ms_lo: float | None = None
    t_step_ms_hi: float | None = None
    t_arithmetic_ms_lo: float | None = None
    t_arithmetic_ms_hi: float | None = None
    t_memory_ms_lo: float | None = None
    t_memory_ms_hi: float | None = None
    t_network_ms_lo: float | None = None
    t_network_ms_hi: float | None = None
    t_latency_ms_lo: float | None = None
    t_latency_ms_hi: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The fields of one prediction, in the order `predict` prints them.
FIELDS = tuple(f.name for f in dataclasses.fields(Prediction))
# StepCost fields that get a 90% interval, and their Prediction name stem and unit factor.
_INTERVALS = (("tokens_per_s_per_seq", "tokens_per_s_per_seq", 1.0), ("usd_per_mtok", "usd_per_mtok", 1.0),
              ("t_step_s", "t_step_ms", 1e3), ("t_arithmetic_s", "t_arithmetic_ms", 1e3),
              ("t_memory_s", "t_memory_ms", 1e3), ("t_network_s", "t_network_ms", 1e3),
              ("t_latency_s", "t_latency_ms", 1e3))


def _whole(name: str, value, low: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise RequestError(name, value, f"{name} must be a whole number >= {low}")


def check_layout(model: ModelSpec, tp: int, pp: int, ep: int, batch: int, context: int,
                 gamma: int = 0) -> int:
    """The micro-batch (sequences per ep rank per micro-batch) of a request, or a RequestError
    naming what is impossible about it. Which layouts exist is model/layout.py's rule, the
    same one the frontier search uses."""
    for name, value in (("tp", tp), ("pp", pp), ("ep", ep), ("batch", batch), ("context", context)):
        _whole(name, value, 1)
    _whole("gamma", gamma, 0)
    problem = layout_problem(model, tp, pp, ep, gamma)
    if problem is not None:
        raise problem
    if batch % (pp * ep):
        raise RequestError("batch", batch, f"{batch} sequences are not a multiple of pp x ep = {pp * ep}: each "
                                           f"pipeline micro-batch and each expert-parallel rank needs a whole "
                                           f"number of sequences")
    return batch // (pp * ep)


def stored_per_gpu_bytes(model: ModelSpec, tp: int, pp: int, ep: int, batch: int, context: int) -> tuple[float, float]:
    """(weight bytes, KV-cache bytes) one GPU holds for one 1D layout (the rule is
    terms.stored_bytes_per_gpu's)."""
    lay = Layouts(tp_r=1, tp_c=tp, pp=pp, ep=ep, micro_batch=batch // (pp * ep))
    weights, kv = stored_bytes_per_gpu(model, lay, context)
    return float(np.asarray(weights)[0]), float(np.asarray(kv)[0])


def predict(model: ModelSpec, hw: HardwareProfile, *, tp: int, batch: int, context: int, pp: int = 1,
            ep: int = 1, draft: ModelSpec | None = None, acceptance: float = 0.0, gamma: int = 0,
            engine: EngineProfile | None = None, opts: CostOptions = CostOptions(),
            draws: int = 200, seed: int = 0) -> Prediction:
    """One configuration: `batch` sequences decoded together on tp x pp x ep GPUs (1D tensor
    parallelism), each with `context` tokens of context. `model` carries its weight and KV
    precision (ModelSpec.with_precision). With draws > 0 the *_lo / *_hi fields hold the 90%
    interval over that many parameter draws."""
    micro = check_layout(model, tp, pp, ep, batch, context, gamma)
    if (draft is None) != (gamma == 0):
        raise RequestError("gamma", gamma, "speculative decoding needs both a draft model and gamma >= 1 draft "
                                           "tokens per round")
    if not 0.0 <= acceptance <= 1.0:
        raise RequestError("acceptance", acceptance, "a draft's acceptance probability must be in [0, 1]")
    lay = Layouts(tp_r=1, tp_c=tp, pp=pp, ep=ep, micro_batch=micro, gamma=gamma)
    cost = evaluate(model, hw, lay, context, draft=draft, acceptance=acceptance if draft else 0.0, opts=opts,
                    engine=engine)
    res = cost.at(0)

    weights, kv = stored_per_gpu_bytes(model, tp, pp, ep, batch, context)
    if draft is not None:
        dw, dkv = stored_per_gpu_bytes(draft, tp, pp, ep, batch, context)
        weights, kv = weights + dw, kv + dkv
    hbm = hw.memory.capacity_gb * 1e9
    usable = hbm * opts.hbm_usable_fraction
    feasible = bool(res["feasible"])
    reason = None
    if not feasible:
        reason = (f"weights {weights / 1e9:.1f} GB + KV cache {kv / 1e9:.1f} GB per GPU exceed the "
                  f"{usable / 1e9:.1f} GB usable of {hbm / 1e9:.0f} GB HBM "
                  f"({opts.hbm_usable_fraction:.0%}; the rest is CUDA context, activations, workspace)")
    speed = res["tokens_per_s_per_seq"]
    from inferecon.model.uncertainty import evaluate_draws, has_uncertainty, quantiles

    # A profile saved without uncertainty (and no fitted engine) has no interval, not a zero-width one.
    interval = {}
    # A collective group beyond the world sizes the profile's collectives were fitted at widens
    # the interval (model/network.py: extrapolation_uncertainty), on top of the profile's own.
    from inferecon.model.network import extrapolation_uncertainty

    widen = extrapolation_uncertainty(hw, max(tp, ep))
    if widen is not None:
        hw = dataclasses.replace(hw, uncertainty=[*hw.uncertainty, widen])
    if draws and has_uncertainty(hw, engine):
        sampled = evaluate_draws(model, hw, lay, context, draft=draft, acceptance=acceptance if draft else 0.0,
                                 opts=opts, engine=engine, draws=draws, seed=seed,
                                 keys=tuple(k for k, _, _ in _INTERVALS))
        interval["interval_draws"] = int(draws)
        for key, name, unit in _INTERVALS:
            lo, _, hi = quantiles(sampled[key][:, 0])
            interval[f"{name}_lo"], interval[f"{name}_hi"] = float(lo) * unit, float(hi) * unit
    return Prediction(
        model=model.name, gpu=hw.name, profile=hw.provenance.kind,
        engine=engine.name if engine is not None else None,
        n_gpu=int(tp * pp * ep), tp=tp, pp=pp, ep=ep, batch=batch, micro_batch=micro,
        context=context, weight_bits=model.weight_bits, kv_bits=model.kv_bits,
        draft=draft.name if draft is not None else None, gamma=gamma,
        acceptance=float(acceptance) if draft is not None else None,
        tokens_per_s_per_seq=speed, tokens_per_s_per_gpu=res["tokens_per_s_per_gpu"],
        usd_per_mtok=res["usd_per_mtok"], ms_per_token=1e3 / speed,
        t_step_ms=res["t_step_s"] * 1e3,
        t_arithmetic_ms=res["t_arithmetic_s"] * 1e3, t_memory_ms=res["t_memory_s"] * 1e3,
        t_network_ms=res["t_network_s"] * 1e3, t_latency_ms=res["t_latency_s"] * 1e3,
        dominant=res["dominant"], tokens_per_step=res["tokens_per_step"], mfu=res["mfu"],
        hbm_per_gpu_gb=hbm / 1e9, usable_per_gpu_gb=usable / 1e9,
        weights_per_gpu_gb=weights / 1e9, kv_per_gpu_gb=kv / 1e9,
        free_per_gpu_gb=(usable - weights - kv) / 1e9,
        feasible=feasible, infeasible_reason=reason,
        price_usd_per_gpu_hour=hw.price_usd_per_gpu_hour,
        **interval,
    )
