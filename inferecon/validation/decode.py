"""Validation: a real decode step measured on this node against the cost model's prediction.

The glue between the model package (ModelSpec, HardwareProfile, terms.evaluate) and the
decode kernel (kernels/decode.py, which never imports the model):

- `decoder_shape(spec, dtype)`: ModelSpec -> DecoderShape (MLA and GELU MLPs refused);
- `plan_layers(...)`: how many layers to build, and the layer counts to measure;
- `measure_decode(...)`: every (layers, batch, context) case, in-process for tp = 1 and on tp
  ranks under torchrun otherwise;
- `predict(...)`: terms.evaluate at the same layer count, batch, context and tp;
- `compare(...)`: the table of measured vs predicted, per-term breakdown and error %, for
  the calibrated profile and (where one matches the device) the published one.

Layer scaling. A model that does not fit, or `--layers K` below the model's layer count, is
measured at two layer counts, L1 = max(1, K // 2) and K, and the step time is fitted as
t(L) = a + b·L: a is the per-step part (embedding, final norm, lm head, sampling, graph
launch), b one layer. The full model's step is extrapolated as a + b·n_layers. The headline
comparison is at the layer count actually measured (prediction for `spec.with_layers(K)`);
the extrapolated full-model step is reported beside it, never in place of it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from inferecon.core.errors import UserError
from inferecon.core.stats import mape_pct, pct_errors
from inferecon.model.hardware import HardwareProfile
from inferecon.model.spec import ModelSpec

DEFAULT_DRAWS = 200  # parameter draws behind each predicted interval (model/uncertainty.py)

# Small models for CPU validation (CI): shapes of a Llama-style decoder at a size a 2-core
# machine decodes in milliseconds. Their vocabulary is kept small so that the layers, not
# the lm head, are most of the step (the layer-scaling fit needs a visible per-layer part).
VALIDATION_MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(name="tiny-llama", n_layers=4, d_model=512, n_heads=8, n_kv_heads=4, d_head=64, d_ff=1536,
                  vocab_size=8192, source="inferecon validation model (Llama-style, CPU-sized)"),
        ModelSpec(name="tiny-moe", n_layers=4, d_model=512, n_heads=8, n_kv_heads=4, d_head=64, d_ff=1536,
                  vocab_size=8192, n_experts=8, n_active_experts=2, d_ff_expert=512,
                  source="inferecon validation model (Mixtral-style top-2 of 8, CPU-sized)"),
    )
}

# Bits of weights, KV cache and activations per run dtype. fp32 (what CPU calibration measures)
# needs ModelSpec to accept 32-bit weights and terms.compute_dtype to map them to "fp32";
# until the model package does, `spec_for_dtype` refuses it with one line.
DTYPE_BITS = {"bf16": 16, "fp32": 32}
COMPUTE_DTYPE = {"bf16": "bf16", "fp32": "fp32"}


def resolve_model(name: str) -> ModelSpec:
    """A validation model, a catalog model or a Hugging Face config.json path."""
    key = name.strip().lower()
    if key in VALIDATION_MODELS:
        return VALIDATION_MODELS[key]
    from inferecon.model.catalog import resolve_model as catalog_resolve

    try:
        return catalog_resolve(name)
    except UserError as exc:
        if "unknown model" in str(exc):
            raise UserError(f"{exc}; validation models: {', '.join(VALIDATION_MODELS)}") from None
        raise


def decoder_shape(spec: ModelSpec, dtype: str):
    """The DecoderShape that runs `spec`. The decoder is Llama-style: MLA (DeepSeek) and
    two-matrix GELU MLPs (GPT-3) are refused rather than run as something else."""
    from inferecon.kernels.decode import DecoderShape

    if spec.is_mla:
        raise UserError(f"{spec.name}: multi-head latent attention (MLA) is not implemented by the validation "
                        "decoder; validate a GQA model")
    if spec.mlp_matrices != 3:
        raise UserError(f"{spec.name}: the validation decoder runs gated (SwiGLU) MLPs only, this model has "
                        f"{spec.mlp_matrices}-matrix MLPs")
    if dtype not in DTYPE_BITS:
        raise UserError(f"--dtype {dtype}: choose from {', '.join(DTYPE_BITS)}")
    return DecoderShape(
        n_layers=spec.n_layers, d_model=spec.d_model, n_heads=spec.n_heads, n_kv_heads=spec.n_kv_heads,
        d_head=spec.d_head, d_ff=spec.d_ff, vocab=spec.vocab_size, n_experts=spec.n_experts,
        n_active_experts=spec.n_active_experts, n_shared_experts=spec.n_shared_experts,
        d_ff_expert=spec.d_ff_expert, n_dense_layers=spec.n_dense_layers, dtype=dtype,
    )


def spec_for_dtype(spec: ModelSpec, dtype: str) -> ModelSpec:
    """The model at the precision that really runs: weights, KV cache and activations."""
    from inferecon.model.spec import KV_BITS, WEIGHT_BITS

    bits = DTYPE_BITS[dtype]
    if bits not in WEIGHT_BITS or bits not in KV_BITS:
        # Predicting an fp32 run as a 16-bit model would halve every byte term: refuse instead.
        raise UserError(f"--dtype {dtype}: the cost model has no {bits}-bit weights yet (ModelSpec accepts "
                        f"{'/'.join(map(str, WEIGHT_BITS))}); validate in bf16")
    return dataclasses.replace(spec, weight_bits=bits, kv_bits=bits, act_bits=bits)


def check_compute_dtype(spec: ModelSpec, hw: HardwareProfile, dtype: str) -> None:
    """The cost model must price the GEMMs in the dtype that runs (fp32 runs, fp32 figures)."""
    from inferecon.model.terms import compute_dtype

    priced = compute_dtype(spec, hw)
    if priced != COMPUTE_DTYPE[dtype]:
        raise UserError(f"--dtype {dtype}: the cost model prices {spec.weight_bits}-bit weights as {priced} GEMMs")


# --------------------------------------------------------------------------------------------
# What to measure


@dataclass(frozen=True)
class LayerPlan:
    n_layers_full: int
    layers: tuple[int, ...]  # layer counts measured, ascending; the last is the headline
    reason: str  # why fewer layers than the model has ("" when the full model runs)

    @property
    def measured(self) -> int:
        return self.layers[-1]

    @property
    def extrapolated(self) -> bool:
        return self.measured < self.n_layers_full


def device_memory_bytes(device: str) -> float:
    """Memory one rank may fill with weights and cache: 80% of free GPU memory, or half of the
    host's available memory on CPU (the ranks of a CPU world share it)."""
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return 0.8 * free
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return 0.5 * int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4e9


def plan_layers(shape, requested: Optional[int], batches, contexts, tp: int, memory_bytes: float) -> LayerPlan:
    full = shape.n_layers
    if requested is not None and requested <= 0:
        raise UserError(f"--layers must be positive, got {requested}")
    if requested is not None and requested > full:  # not clamped: the run would not be the one asked for
        raise UserError(f"--layers {requested} is more than the model's {full} layers (leave --layers out to build "
                        "all of them)")
    k = requested or full
    reason = f"--layers {k}" if k < full else ""
    per_rank = lambda n: (shape.with_layers(n).weight_bytes()  # noqa: E731
                          + shape.with_layers(n).kv_bytes(max(batches), max(contexts))) / tp
    while k > 1 and per_rank(k) > memory_bytes:
        k -= 1
        reason = f"{full} layers do not fit in {memory_bytes / 1e9:.1f} GB per rank"
    if per_rank(k) > memory_bytes:
        raise UserError(f"{shape.n_layers}-layer model: not even one layer fits in {memory_bytes / 1e9:.1f} GB "
                        "per rank at the largest batch and context")
    if k == full:
        return LayerPlan(full, (k,), "")
    if k < 2 and (requested is None or requested >= 2):
        # Memory, not the user, left one layer: say so (and what two layers would need).
        raise UserError(f"{full}-layer model: only 1 layer fits in {memory_bytes / 1e9:.1f} GB per rank at batch "
                        f"{max(batches)} and context {max(contexts)} (2 layers need {per_rank(2) / 1e9:.1f} GB), and "
                        "the full model is extrapolated from two layer counts: lower --batch/--context, raise --tp, "
                        "or use a machine with more memory")
    if k < 2:
        raise UserError("fewer layers than the model has are measured at two layer counts to extrapolate: "
                        "--layers must be at least 2")
    return LayerPlan(full, (max(1, k // 2), k), reason)


# --------------------------------------------------------------------------------------------
# Prediction


@dataclass(frozen=True)
class StepPrediction:
    """The cost model's decode step for one validated case, seconds; the 90% interval only
    when the profile states its uncertainty."""

    t_arithmetic_s: float
    t_memory_s: float
    t_network_s: float
    t_latency_s: float
    t_step_s: float
    dominant: str
    t_step_lo_s: float | None = None
    t_step_hi_s: float | None = None


# The paper's four terms as the validation table names them (its column `{label}_{term}_us`).
TERMS = {"arithmetic": "t_arithmetic_s", "memory": "t_memory_s", "network": "t_network_s",
         "latency": "t_latency_s"}


def column(label: str, what: str) -> str:
    """The validation table's column for profile `label` ("calibrated", "published") and one
    of its figures: a term of TERMS ("arithmetic" -> "{label}_arithmetic_us"), "step", "step_lo",
    "step_hi", "full_step" (µs), "error", "full_error" (signed %), "dominant", "covered". The
    one rule both the comparison and the command's table and files use."""
    if what in TERMS or what in ("step", "step_lo", "step_hi", "full_step"):
        return f"{label}_{what}_us"
    if what in ("error", "full_error"):
        return f"{label}_{what}_pct"
    if what in ("dominant", "covered"):
        return f"{label}_{what}"
    raise ValueError(f"no validation column {what!r}")


def as_decoder_runs(hw: HardwareProfile) -> HardwareProfile:
    """The profile priced as inferecon's own torch decoder runs (kernels/decode.py): a CPU
    calibration's `decoder_op_fits` (x @ W.t(), GQA as batched matmuls, its own norms) as the
    op fits, with their uncertainty entries, in place of the engine kernels' `op_fits` (vLLM's
    onednn_mm or oneDNN on prepacked weights: up to 2.6x faster than aten::mm at decode M on
    this CPU, docs/validation.md). A profile without them is returned as it is."""
    dec = getattr(hw, "decoder_op_fits", None)
    if dec is None:
        return hw
    from inferecon.calibration.build import moved_entries

    def engine_ops(u):
        return all(p.removeprefix("1/").startswith("op_fits.") for p in u["paths"])

    def decoder_ops(u):
        return all(p.removeprefix("1/").startswith("decoder_op_fits.") for p in u["paths"])

    kept = [u for u in hw.uncertainty if not engine_ops(u) and not decoder_ops(u)]
    unc = kept + moved_entries(hw.uncertainty, "decoder_op_fits.", "op_fits.")  # it keeps only those
    return dataclasses.replace(hw, op_fits=dec, decoder_op_fits=None, uncertainty=unc)


def predict(spec: ModelSpec, hw: HardwareProfile, batch: int, context: int, tp: int,
            draws: int = DEFAULT_DRAWS) -> StepPrediction:
    """The cost model's step for one instance of tp GPUs (1D tensor parallel, no PP/EP), and
    with draws > 0 the step's 90% interval (t_step_lo_s, t_step_hi_s) over draws of the
    profile's uncertain parameters. A CPU calibration is priced with its fits of the decoder's
    own ops (as_decoder_runs): that is what this validation runs."""
    from inferecon.model.terms import Layouts, evaluate
    from inferecon.model.uncertainty import evaluate_draws, quantiles

    hw = as_decoder_runs(hw)

    lay = Layouts(tp_r=np.array([1]), tp_c=np.array([tp]), pp=np.array([1]), ep=np.array([1]),
                  micro_batch=np.array([batch]))
    res = evaluate(spec, hw, lay, context).at(0)
    lo = hi = None
    if draws and hw.uncertainty:
        lo, _, hi = quantiles(evaluate_draws(spec, hw, lay, context, draws=draws, keys=("t_step_s",))["t_step_s"][:, 0])
        lo, hi = float(lo), float(hi)
    return StepPrediction(t_arithmetic_s=res["t_arithmetic_s"], t_memory_s=res["t_memory_s"],
                          t_network_s=res["t_network_s"], t_latency_s=res["t_latency_s"],
                          t_step_s=res["t_step_s"], dominant=res["dominant"], t_step_lo_s=lo, t_step_hi_s=hi)


def check_profile_device(hw: HardwareProfile, device: str, path) -> None:
    """The profile --hardware names must be of the kind of machine that runs the decode: a CPU
    run scored against a GPU's profile (or a GPU run against a CPU's) is a comparison of two
    machines that prints as the model's error. A CPU calibration is the one that times fp32
    GEMMs (calibration/engine_fit.prices_fp32); every published profile is a GPU's."""
    from inferecon.calibration.engine_fit import prices_fp32

    if device != "cuda" and not prices_fp32(hw):
        what = "a published GPU profile" if hw.provenance.kind == "published" else "not a CPU calibration"
        raise UserError(f"--hardware {path}: {hw.name} is {what}, and this decode runs on the CPU: give the profile "
                        "of this CPU (`inferecon calibrate --device cpu`)")
    if device == "cuda" and prices_fp32(hw):
        raise UserError(f"--hardware {path}: {hw.name} is a CPU calibration, and this decode runs on a GPU: give "
                        "this GPU's profile (`inferecon calibrate`) or a published one")


def published_for_device(device: str, device_name: str, hw: HardwareProfile,
                         requested: Optional[str]) -> tuple[Optional[HardwareProfile], str]:
    """(the published profile to compare with, or None, and why)."""
    from inferecon.model import published

    if requested:
        if device != "cuda":
            raise UserError("--published: there is no published CPU profile to compare a CPU run with")
        return published.get_profile(requested), f"--published {requested}"
    if device != "cuda":
        return None, "no published CPU profile"
    if hw.provenance.kind == "published":
        return hw, "--hardware is itself a published profile"
    if hw.name in published.PROFILES:
        return published.PROFILES[hw.name], f"matches the profile name {hw.name!r}"
    match = published.match_published(device_name)
    if match is not None:
        return match, f"matches the device name {device_name!r}"
    return None, f"no published profile matches {device_name!r} (pass --published GPU)"


# --------------------------------------------------------------------------------------------
# Measurement


def measure_decode(shape, plan: LayerPlan, batches, contexts, tp: int, device: str, quick: bool,
                   work_dir: Path, progress=None, done=frozenset(), keep=None) -> list[dict]:
    """Time every (layers, batch, context) case whose case id is not in `done` (a resumed run);
    tp > 1 runs under torchrun. `keep(record)` is called as each case finishes, so a caller
    that stores it there loses nothing to Ctrl-C: under torchrun, rank 0 saves each case as it
    finishes and the cases saved before an interruption or a failure are kept too."""
    from inferecon.harness.device import ClockWatcher
    from inferecon.kernels import decode
    from inferecon.sweeps import decode as decode_world

    def throttle(watch):
        f = watch.result.record_fields()
        return {"throttled": bool(f["throttled"]), "throttle_reasons": f.get("throttle_reasons", "")}

    keep = keep or (lambda rec: None)
    cases = [decode.DecodeCase(L, b, c) for c in contexts for b in batches for L in plan.layers]
    todo = [c for c in cases if c.case_id(tp, shape.dtype) not in done]
    if progress and len(todo) < len(cases):
        progress(f"[decode] resuming: {len(cases) - len(todo)} of {len(cases)} cases already stored")
    rows = []
    if not todo:
        return rows
    if tp == 1:
        for i, case in enumerate(todo):
            if progress:
                progress(f"[decode {len(cases) - len(todo) + i + 1}/{len(cases)}] layers {case.layers} "
                         f"batch {case.batch} context {case.context}")
            with ClockWatcher(device) as watch:
                rec = decode.measure_case(shape, case, device, quick=quick)
            rows.append({**rec, **throttle(watch)})
            keep(rows[-1])
        return rows
    if progress:
        progress(f"[decode] {len(todo)} cases on {tp} ranks (torchrun)")
    reps = 10 if quick else 30
    # The ranks run in other processes: watch GPU 0's clocks over the whole world's run.
    with ClockWatcher(device, gpu_index=0 if device == "cuda" else None) as watch:
        try:
            rows = decode_world.run_torchrun(shape, todo, tp, device, work_dir, quick, reps, progress=bool(progress))
        except (KeyboardInterrupt, UserError):
            for r in decode_world.saved_rows(work_dir):
                keep({**r, **throttle(watch)})
            raise
    rows = [{**r, **throttle(watch)} for r in rows]
    for r in rows:
        keep(r)
    return rows


# --------------------------------------------------------------------------------------------
# Comparison


def _err_pct(pred: float, meas: float) -> float:
    return float(pct_errors(pred, meas)) if meas > 0 else float("nan")


def compare(spec: ModelSpec, rows: list[dict], plan: LayerPlan, tp: int,
            profiles: dict[str, HardwareProfile]) -> list[dict]:
    """One row per (batch, context): measured at the headline layer count, the prediction of
    every profile ({"calibrated": hw, "published": hw}) with its terms and signed error %;
    and, when fewer layers ran, the extrapolated full-model step against the full prediction."""
    by_case = {(r["layers_measured"], r["batch"], r["context"]): r for r in rows}
    keys = sorted({(b, c) for (_, b, c) in by_case}, key=lambda k: (k[1], k[0]))
    out = []
    for batch, context in keys:
        meas = by_case[(plan.measured, batch, context)]
        t_meas = meas["median_us"] * 1e-6
        row = {"model": spec.name, "layers_measured": plan.measured, "n_layers_full": plan.n_layers_full,
               "batch": batch, "context": context, "tp": tp, "dtype": meas["dtype"],
               "measured_step_us": meas["median_us"], "measured_iqr_us": meas["iqr_us"],
               "noisy": meas["noisy"], "cuda_graph": meas.get("cuda_graph", False),
               "measured_tokens_per_s_per_seq": 1.0 / t_meas}
        if plan.extrapolated:
            times = {L: by_case[(L, batch, context)]["median_us"] * 1e-6 for L in plan.layers}
            from inferecon.kernels.decode import fit_layers

            a, b = fit_layers(times)
            # More layers measured faster (noise larger than a layer's time): no per-layer
            # slope to extrapolate with, so no full-model figure rather than a wrong one.
            ok = b > 0
            row.update(per_step_us=a * 1e6, per_layer_us=b * 1e6, layer_fit_ok=ok,
                       full_measured_step_us=(a + b * plan.n_layers_full) * 1e6 if ok else float("nan"),
                       layer_fit_note="" if ok else layer_fit_note(times))
        for label, hw in profiles.items():
            p = predict(spec.with_layers(plan.measured), hw, batch, context, tp)
            for term, field in TERMS.items():
                row[column(label, term)] = getattr(p, field) * 1e6
            row[column(label, "dominant")] = p.dominant
            row[column(label, "step")] = p.t_step_s * 1e6
            row[column(label, "error")] = _err_pct(p.t_step_s, t_meas)
            if p.t_step_lo_s is not None:
                row[column(label, "step_lo")], row[column(label, "step_hi")] = p.t_step_lo_s * 1e6, p.t_step_hi_s * 1e6
                row[column(label, "covered")] = bool(p.t_step_lo_s <= t_meas <= p.t_step_hi_s)
            if plan.extrapolated:
                pf = predict(spec, hw, batch, context, tp)
                row[column(label, "full_step")] = pf.t_step_s * 1e6
                row[column(label, "full_error")] = _err_pct(pf.t_step_s * 1e6, row["full_measured_step_us"])
        out.append(row)
    return out


def layer_fit_note(times_s: dict[int, float]) -> str:
    """Why a case has no full-model figure: its step did not grow with the layer count."""
    lo, hi = min(times_s), max(times_s)
    return (f"no full-model figure: the {hi}-layer step ({times_s[hi] * 1e3:.3f} ms) measured no slower than the "
            f"{lo}-layer step ({times_s[lo] * 1e3:.3f} ms), so the per-layer slope is not positive (timing noise "
            "on this machine exceeds one layer's time; rerun when it is quieter, or with more --layers)")


def coverage(rows: list[dict], key: str) -> tuple[int, int]:
    """(cases whose measurement lies inside the predicted 90% interval, cases with an
    interval): `key` is the rows' boolean column, e.g. "calibrated_covered". A calibrated
    model covers about 90%; far less means the stated uncertainty is too narrow."""
    flags = [bool(r[key]) for r in rows if key in r and r[key] is not None]
    return sum(flags), len(flags)


def mape(table: list[dict], label: str, full: bool = False) -> Optional[float]:
    """Mean absolute percentage error of a profile's step time over the table's cases (the one
    MAPE rule, core/stats.py)."""
    col = column(label, "full_error" if full else "error")
    return mape_pct(r.get(col) for r in table)


def plot(table: list[dict], labels: list[str], path: Path, title: str) -> Path:
    """Predicted against measured step time, log-log, with the y = x line."""
    from inferecon.report.plotting import pyplot, save_png

    plt = pyplot()  # Agg, a writable cache, or one line where matplotlib is missing

    fig, ax = plt.subplots(figsize=(6, 5.5))
    meas = np.array([r["measured_step_us"] for r in table]) / 1e3
    lo, hi = meas.min(), meas.max()
    markers = {"calibrated": "o", "published": "s"}
    for label in labels:
        pred = np.array([r[column(label, "step")] for r in table]) / 1e3
        m = mape(table, label)
        sc = ax.scatter(meas, pred, marker=markers.get(label, "^"), label=f"{label} (MAPE {m:.1f}%)", alpha=0.8)
        if all(column(label, "step_lo") in r for r in table):
            # The predicted 90% interval of each case: a point whose bar misses y = x is not covered.
            lo_ms = np.array([r[column(label, "step_lo")] for r in table]) / 1e3
            hi_ms = np.array([r[column(label, "step_hi")] for r in table]) / 1e3
            inside, n = coverage(table, column(label, "covered"))
            ax.errorbar(meas, pred, yerr=[pred - lo_ms, hi_ms - pred], fmt="none", alpha=0.4,
                        ecolor=sc.get_facecolor()[0], label=f"{label} 90% interval ({inside} of {n} cover y = x)")
            lo, hi = min(lo, lo_ms.min()), max(hi, hi_ms.max())
        lo, hi = min(lo, pred.min()), max(hi, pred.max())
        for r, x, y in zip(table, meas, pred):
            ax.annotate(f"b{r['batch']}/c{r['context']}", (x, y), fontsize=6, alpha=0.6,
                        xytext=(3, 3), textcoords="offset points")
    lo, hi = lo / 1.5, hi * 1.5
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured step time (ms)")
    ax.set_ylabel("predicted step time (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return save_png(plt, fig, path, dpi=120)
