"""Serving-engine runs against the cost model: predicted vs measured per-token time, and the
fit of an EngineProfile (per-step overhead, per-layer time, per-sequence time, weight-read
efficiency per weight format) with its leave-one-run-out error.

A run (ingest/engine_results.py) becomes an `EngineCase`: the model, GPU profile and
parallelism it ran with, decoded at its concurrency with a context of its prompt plus half its
output (the mean over its decode). The fit is linear in what it estimates: the per-step and
per-layer times add to every step, and a weight-read efficiency e slows the weight reads by
1/e, so the cost model's own response to each parameter (a finite difference through
`model.predict.predict`) is one column of a least-squares problem in relative error. A
parameter is fitted only when its column is not (nearly) a combination of the columns already
fitted — one model at one TP reads the same weight bytes every step, so a slower weight read
cannot be told from a per-step overhead — otherwise it keeps its published value (no overhead,
efficiency 1) and the fit says why. The errors reported are of the full cost model with the
fitted profile, not of the linearisation.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from inferecon.ingest.engine_results import EngineRun
from inferecon.core.errors import UserError
from inferecon.core.stats import mape_pct, pct_errors
from inferecon.model.engine import PER_LAYER_US, PER_SEQUENCE_US, STEP_OVERHEAD_US, EngineParam, EngineProfile
from inferecon.model.hardware import HardwareProfile
from inferecon.model.predict import Prediction, predict
from inferecon.model.spec import ModelSpec

# A parameter's column must keep this share of its norm after removing what the columns
# already fitted explain; below it the least-squares value is set by noise, not by the data.
MIN_INDEPENDENCE = 0.05
# Bounds of the fitted values: overheads are not negative; an efficiency above 1 means the
# engine reads weights faster than the hardware profile's sustained bandwidth assumes.
EFFICIENCY_RANGE = (0.05, 2.0)
# A fitted efficiency must be known to within this (one standard error) to replace the
# published 1.0; looser, it would move predictions by more than it explains.
MAX_EFFICIENCY_STDERR = 0.1
_EFF_PROBE = 0.5


@dataclass(frozen=True)
class EngineCase:
    """One engine run as a deployment the cost model can evaluate."""

    run: EngineRun
    model: ModelSpec  # with the run's weight and KV precision
    hw: HardwareProfile
    tp: int
    pp: int = 1
    ep: int = 1

    @property
    def batch(self) -> int:
        """The run's concurrency as whole sequences, a multiple of pp x ep."""
        unit = self.pp * self.ep
        return max(unit, unit * int(round(self.run.concurrency / unit)))

    @property
    def context(self) -> int:
        return max(1, int(round(self.run.context)))

    @property
    def measured_ms(self) -> float:
        return self.run.tpot_ms


def predict_case(case: EngineCase, engine: EngineProfile | None = None, draws: int = 0) -> Prediction:
    """The prediction for one run; draws > 0 adds the 90% interval (the fits' inner loops
    call this many times and need only the point figure)."""
    return predict(case.model, case.hw, tp=case.tp, pp=case.pp, ep=case.ep, batch=case.batch,
                   context=case.context, engine=engine, draws=draws)


# -- runs -> cases ---------------------------------------------------------------------------------
_NAME_NOISE = re.compile(r"-(instruct|chat|hf|base|it|dynamic|quantized|fp8|fp16|bf16|int8|int4|awq|gptq|w4a16|"
                         r"w8a8|w8a16|w4a8|nvfp4|fp4|marlin|v\d+(\.\d+)*)$")


def catalog_model_for(model_id: str | None) -> tuple[ModelSpec | None, int | None]:
    """The catalog model a recorded model id names, and the weight bits its name states:
    "neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8" -> (llama-3-8b, 8). (None, bits) when the
    name is not in the catalog."""
    from inferecon.ingest.engine_results import quant_bits
    from inferecon.model.catalog import ALIASES, MODELS

    if not model_id:
        return None, None
    name = str(model_id).rstrip("/").split("/")[-1].lower().replace("_", "-")
    bits = None
    for token in name.split("-"):
        bits = bits or quant_bits(token)
    while True:
        stripped = _NAME_NOISE.sub("", name)
        if stripped == name:
            break
        name = stripped
    for candidate in (name, name.removeprefix("meta-")):
        key = ALIASES.get(candidate, candidate)
        if key in MODELS:
            return MODELS[key], (bits if bits in (8, 4) else None)
    return None, (bits if bits in (8, 4) else None)


def resolve_cases(runs: list[EngineRun], *, model: str | ModelSpec | None = None,
                  hardware: HardwareProfile | None = None, tp: int | None = None,
                  weight_bits: int | None = None, kv_bits: int | None = None,
                  notes: list[str] | None = None) -> list[EngineCase]:
    """Each run with the model, GPU and parallelism it ran with. The file's own record of TP,
    PP and EP wins over `tp` (a conflict is noted); `model`, `hardware` and the precisions, when
    given, win over what the file records or its model name implies."""
    from inferecon.model.published import match_published
    from inferecon.model.catalog import resolve_model

    notes = notes if notes is not None else []
    given = resolve_model(model) if isinstance(model, str) else model
    cases = []
    for run in runs:
        named, name_bits = catalog_model_for(run.model)  # the id's "-FP8"/"-AWQ" counts even with --model
        spec = given if given is not None else named
        if spec is None:
            what = f"records model {run.model!r}, which is not in the catalog" if run.model else "records no model"
            raise UserError(f"{run.source}: {what}; pass --model NAME or a config.json")
        hw = hardware or (match_published(run.gpu) if run.gpu else None)
        if hw is None:
            what = f"ran on {run.gpu!r}, which has no published profile" if run.gpu else "records no GPU"
            raise UserError(f"{run.source}: {what}; pass --gpu or --hardware")
        run_tp = run.tp or tp
        if run_tp is None:
            raise UserError(f"{run.source}: records no tensor-parallel size; pass --tp")
        if run.tp and tp and run.tp != tp:
            notes.append(f"{run.source}: the file records TP {run.tp}; --tp {tp} ignored for it")
        wb = weight_bits or run.weight_bits or name_bits or 16
        kb = kv_bits or run.kv_bits or 16
        if 32 in (wb, kb) and not prices_fp32(hw):
            raise UserError(f"{run.source}: 32-bit weights or KV cache are CPU runs: give --hardware a CPU profile "
                            f"(from `inferecon calibrate --device cpu`), not {hw.name}")
        cases.append(EngineCase(run=run, model=spec.with_precision(wb, kb), hw=hw, tp=run_tp,
                                pp=run.pp or 1, ep=run.ep or 1))
    return cases


def prices_fp32(hw: HardwareProfile) -> bool:
    """A profile that timed fp32 GEMMs itself: a CPU calibration (GPU calibrations time bf16
    and fp8, and a datasheet's fp32 peak is not what a 32-bit serving run on a GPU would get)."""
    return hw.provenance.kind == "calibrated" and "fp32" in (hw.compute.gemm_fit or {})


# -- predicted vs measured -------------------------------------------------------------------------
def score_engine_runs(cases: list[EngineCase], engine: EngineProfile | None = None, draws: int = 0) -> list[dict]:
    """One row per run: what ran, measured and predicted ms per output token, and the error;
    with draws > 0 also the predicted 90% interval and whether the measurement is inside it."""
    rows = []
    for c in cases:
        p = predict_case(c, engine, draws)
        rows.append({
            "source": c.run.source, "engine": c.run.engine, "model": c.model.name, "gpu": c.hw.name,
            "tp": c.tp, "pp": c.pp, "ep": c.ep, "concurrency": c.run.concurrency, "batch": c.batch,
            "input_len": c.run.input_len, "output_len": c.run.output_len, "context": c.context,
            "weight_bits": c.model.weight_bits, "kv_bits": c.model.kv_bits, "metric": c.run.tpot_metric,
            "measured_ms": c.measured_ms, "predicted_ms": p.ms_per_token,
            "error_pct": float(pct_errors(p.ms_per_token, c.measured_ms)),
            "dominant": p.dominant, "feasible": p.feasible,
            "infeasible_reason": "" if p.feasible else (getattr(p, "infeasible_reason", "") or "does not fit in memory"),
        })
        if draws and p.tokens_per_s_per_seq_hi is not None:  # a profile without uncertainty has no band
            # ms per token is 1 / speed: the slow end of the speed interval is the long end.
            lo, hi = 1e3 / p.tokens_per_s_per_seq_hi, 1e3 / p.tokens_per_s_per_seq_lo
            rows[-1].update(predicted_lo_ms=lo, predicted_hi_ms=hi, covered=bool(lo <= c.measured_ms <= hi))
    return rows


# MAPE of signed percent errors: the one rule (core/stats.py), named as callers here know it.
mape = mape_pct


# -- the fit ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamFit:
    param: EngineParam
    value: float
    fitted: bool
    note: str = ""
    stderr: float | None = None  # standard error of a fitted value (µs, or efficiency)

    @property
    def name(self) -> str:
        """How engine.json and the fit summary name it, e.g. "weight_read_efficiency[8]"."""
        return self.param.key


@dataclass
class EngineFit:
    profile: EngineProfile
    params: list[ParamFit]
    rows: list[dict]  # score_engine_runs rows plus fitted_ms / heldout_ms and their errors
    mape_hardware_pct: float | None  # the hardware profile alone
    mape_fitted_pct: float | None  # the fitted profile on the runs it was fitted to
    mape_heldout_pct: float | None  # leave one run out (None with fewer than 3 runs)
    notes: list[str] = field(default_factory=list)


STEP = EngineParam(STEP_OVERHEAD_US)
PER_LAYER = EngineParam(PER_LAYER_US)
PER_SEQUENCE = EngineParam(PER_SEQUENCE_US)
# The step each overhead's finite difference is taken over, in µs.
_PROBE_US = {STEP: 100.0, PER_LAYER: 10.0, PER_SEQUENCE: 10.0}


def _param_names(cases: list[EngineCase]) -> list[EngineParam]:
    formats = Counter(c.model.weight_bits for c in cases if c.model.weight_bits in (16, 8, 4))
    order = sorted(formats, key=lambda k: (-formats[k], -k))
    # The per-sequence time last: fitted only where the runs' batch sizes separate it from the
    # others, so a fit over runs of one concurrency is what it was without it.
    return [STEP] + [EngineParam.efficiency(k) for k in order] + [PER_LAYER, PER_SEQUENCE]


def _columns(cases: list[EngineCase], names: list[EngineParam], base: np.ndarray) -> np.ndarray:
    """The change in predicted ms per token per unit of each parameter (µs for the overheads,
    x = 1/e - 1 for an efficiency), through the cost model itself."""
    cols = np.zeros((len(cases), len(names)))
    for j, name in enumerate(names):
        if name.is_efficiency:
            probe, unit = name.set_in(EngineProfile("probe"), _EFF_PROBE), 1.0 / _EFF_PROBE - 1.0
        else:
            probe, unit = name.set_in(EngineProfile("probe"), _PROBE_US[name]), _PROBE_US[name]
        for i, c in enumerate(cases):
            cols[i, j] = (predict_case(c, probe).ms_per_token - base[i]) / unit
    return cols


def _why_not(name: EngineParam, cases: list[EngineCase], chosen: list[str]) -> str:
    if name == PER_LAYER:
        layers = sorted({c.model.n_layers for c in cases})
        if len(layers) == 1:
            return (f"every run has {layers[0]} layers, so a per-layer time cannot be told from a per-step one; "
                    f"runs of models with other layer counts would separate them")
    if name == PER_SEQUENCE:
        batches = sorted({c.batch for c in cases})
        if len(batches) == 1:
            return (f"every run decodes {batches[0]} sequence(s) a step, so a per-sequence time cannot be told from "
                    f"a per-step one; runs at other concurrencies would separate them")
    if name.is_efficiency:
        return (f"the {name.bits}-bit runs read about the same weight bytes per step (one model and TP), so a slower "
                f"weight read cannot be told from {', '.join(chosen) or 'the other terms'}; runs of other model "
                f"sizes or TP degrees would separate them")
    return f"not separable from {', '.join(chosen)} with these runs"


def _select(A: np.ndarray, names: list[EngineParam], cases: list[EngineCase]) -> tuple[list[int], dict[EngineParam, str]]:
    chosen: list[int] = []
    why: dict[EngineParam, str] = {}
    for j, name in enumerate(names):
        col = A[:, j]
        norm = float(np.linalg.norm(col))
        if norm == 0.0:
            why[name] = "no run exercises it"
            continue
        # What the runs cannot separate first: more runs like these would not fit it either.
        if chosen:
            q, _ = np.linalg.qr(A[:, chosen])
            resid = col - q @ (q.T @ col)
            if float(np.linalg.norm(resid)) < MIN_INDEPENDENCE * norm:
                why[name] = _why_not(name, cases, [names[k].key for k in chosen])
                continue
        if len(cases) < len(chosen) + 2:
            why[name] = (f"{len(cases)} run(s) support at most {max(len(cases) - 1, 0)} fitted parameter(s) "
                         f"with a residual left to judge them by")
            continue
        chosen.append(j)
    return chosen, why


def _solve(A: np.ndarray, b: np.ndarray, names: list[EngineParam], chosen: list[int]) -> dict[EngineParam, float]:
    from scipy.optimize import lsq_linear

    values = {}
    if not chosen:
        return values
    lo, hi = [], []
    for j in chosen:
        if names[j].is_efficiency:
            # x = 1/e - 1 for e in EFFICIENCY_RANGE
            lo.append(1.0 / EFFICIENCY_RANGE[1] - 1.0)
            hi.append(1.0 / EFFICIENCY_RANGE[0] - 1.0)
        else:
            lo.append(0.0)
            hi.append(np.inf)
    sol = lsq_linear(A[:, chosen], b, bounds=(lo, hi))
    for j, x in zip(chosen, sol.x):
        values[names[j]] = float(x)
    return values


def _profile(name: str, values: dict[EngineParam, float], cases, notes, fit_quality=None) -> EngineProfile:
    eff = {str(p.bits): 1.0 / (1.0 + x) for p, x in values.items() if p.is_efficiency}
    return EngineProfile(
        name=name, step_overhead_us=max(0.0, values.get(STEP, 0.0)),
        per_layer_us=max(0.0, values.get(PER_LAYER, 0.0)),
        per_sequence_us=max(0.0, values.get(PER_SEQUENCE, 0.0)), weight_read_efficiency=eff,
        sources=sorted({c.run.source.rsplit(":", 1)[0] if c.run.source.rsplit(":", 1)[-1].isdigit() else c.run.source
                        for c in cases}),
        notes=list(notes), hardware=",".join(sorted({c.hw.name for c in cases})), fit_quality=fit_quality or {})


def _stderr(A: np.ndarray, b: np.ndarray, names: list[EngineParam], chosen: list[int],
            values: dict[EngineParam, float]) -> dict[EngineParam, float]:
    """Standard error of each fitted parameter (in its fitted unit: µs, or x = 1/e - 1) from the
    residual scatter; empty when no degree of freedom is left."""
    n, k = len(b), len(chosen)
    if k == 0 or n <= k:
        return {}
    sub = A[:, chosen]
    x = np.array([values[names[j]] for j in chosen])
    resid = b - sub @ x
    cov = float(resid @ resid) / (n - k) * np.linalg.pinv(sub.T @ sub)
    return {names[j]: float(np.sqrt(max(cov[i, i], 0.0))) for i, j in enumerate(chosen)}


def _weakness(name: EngineParam, value: float, se: float) -> tuple[float, str] | None:
    """(how unsupported, why) when the data do not pin a fitted parameter down, else None. An
    overhead must be at least twice its standard error (else 0, the published value, fits as
    well); an efficiency must be known to within ±MAX_EFFICIENCY_STDERR."""
    if name.is_efficiency:
        e = 1.0 / (1.0 + value)
        se_e = se * e * e
        if se_e > MAX_EFFICIENCY_STDERR:
            return se_e / MAX_EFFICIENCY_STDERR, (f"the runs leave it at {e:.2f} ± {se_e:.2f}, too loose to use")
        return None
    if value < 2.0 * se:
        return (2.0 * se / max(value, 1e-12),
                f"the runs give {value:.1f} ± {se:.1f} µs, not distinguishable from 0")
    return None


def _fit_values(cases, A, base, names):
    """(values, why not, standard errors): the parameters the runs support, fitted; a parameter
    whose column the others explain, or whose value the scatter leaves undetermined, is left
    out (the least determined first, then the rest refitted)."""
    measured = np.array([c.measured_ms for c in cases])
    Aw = A / measured[:, None]
    b = (measured - base) / measured
    chosen, why = _select(Aw, names, cases)
    while True:
        values = _solve(Aw, b, names, chosen)
        se = _stderr(Aw, b, names, chosen, values)
        weak = [(w[0], j, w[1]) for j in chosen
                if names[j] in se and (w := _weakness(names[j], values[names[j]], se[names[j]])) is not None]
        if not weak:
            return values, why, se
        _, j, reason = max(weak)
        why[names[j]] = reason
        chosen = [k for k in chosen if k != j]


def fit_engine_profile(cases: list[EngineCase], name: str | None = None, heldout: bool = True) -> EngineFit:
    """Fit an engine profile to runs of one engine (any mix of models, GPUs and precisions).

    Callers that hold out whole sources (the accuracy scorecard) fit on the other cases and
    evaluate the held-out ones with `score_engine_runs(held_out, fit.profile)`; they may pass
    heldout=False to skip the leave-one-run-out pass (one refit per run)."""
    if not cases:
        raise UserError("no engine runs to fit")
    engines = Counter(c.run.engine for c in cases)
    name = name or engines.most_common(1)[0][0]
    names = _param_names(cases)
    rows = score_engine_runs(cases)
    base = np.array([r["predicted_ms"] for r in rows])
    A = _columns(cases, names, base)
    values, why, se = _fit_values(cases, A, base, names)

    # Leave one run out: the whole fit (parameter choice included) without the run, then that run.
    held_ms = [None] * len(cases)
    if heldout and len(cases) >= 3:
        for i in range(len(cases)):
            keep = [k for k in range(len(cases)) if k != i]
            sub = [cases[k] for k in keep]
            v, _, _ = _fit_values(sub, A[keep], base[keep], names)
            held_ms[i] = predict_case(cases[i], _profile(name, v, sub, [])).ms_per_token

    params, notes = [], []
    for n in names:
        if n in values:
            eff = n.is_efficiency
            shown = 1.0 / (1.0 + values[n]) if eff else values[n]
            err = se.get(n)
            if err is not None and eff:
                err = err * shown * shown
            params.append(ParamFit(n, shown, True, stderr=err))
        else:
            published = 1.0 if n.is_efficiency else 0.0
            params.append(ParamFit(n, published, False, why.get(n, "")))
            notes.append(f"{n.key}: published value {published:g} kept: {why.get(n, '')}")
    profile = _profile(name, values, cases, notes)
    fitted = score_engine_runs(cases, profile)
    for r, f, h in zip(rows, fitted, held_ms):
        r["fitted_ms"] = f["predicted_ms"]
        r["fitted_error_pct"] = f["error_pct"]
        r["heldout_ms"] = h
        r["heldout_error_pct"] = None if h is None else float(pct_errors(h, r["measured_ms"]))
    result = EngineFit(profile=profile, params=params, rows=rows,
                       mape_hardware_pct=mape(r["error_pct"] for r in rows),
                       mape_fitted_pct=mape(r["fitted_error_pct"] for r in rows),
                       mape_heldout_pct=mape(r["heldout_error_pct"] for r in rows), notes=notes)
    quality = {"runs": len(cases), "mape_hardware_pct": result.mape_hardware_pct,
               "mape_fitted_pct": result.mape_fitted_pct, "mape_heldout_pct": result.mape_heldout_pct,
               "heldout": ("leave one run out" if len(cases) >= 3 else "none (fewer than 3 runs)") if heldout
               else "not computed",
               "parameters": {p.name: {"value": p.value, "stderr": p.stderr, "fitted": p.fitted, "note": p.note}
                              for p in params}}
    result.profile = _profile(name, values, cases, notes, quality)
    return result


def load_cases(files: list[str], *, model: str | None = None, gpu: str | None = None,
               hardware_path: str | None = None, tp: int | None = None, weight_bits: int | None = None,
               kv_bits: int | None = None, notes: list[str] | None = None) -> list[EngineCase]:
    """Every run of every result file, resolved to a deployment (what the commands call)."""
    from inferecon.ingest.engine_results import read_engine_results
    from inferecon.model.published import get_profile

    if gpu and hardware_path:
        raise UserError("give --gpu or --hardware, not both")
    hw = HardwareProfile.load(hardware_path) if hardware_path else (get_profile(gpu) if gpu else None)
    runs = [run for f in files for run in read_engine_results(f)]
    return resolve_cases(runs, model=model, hardware=hw, tp=tp, weight_bits=weight_bits, kv_bits=kv_bits, notes=notes)
