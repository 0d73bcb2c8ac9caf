"""Each fitted term's uncertainty, as profile `uncertainty` entries (model/uncertainty.py).

What a prediction needs is how far a term's fit misses cases it was not fitted on, not only
how well its parameters are pinned: a line fitted to few points can have tiny standard errors
and still mispredict a new shape. So each fitted term becomes a multiplier on its time, with
median 1 and the relative spread of its k-fold held-out error (a held-out MAPE m is a relative
sd of m·sqrt(π/2) for normal errors; lognormal, so a large error never draws a negative time).
Where a term has no held-out figure (too few points), the parameters' standard errors from
the fit stand in. Terms the run did not measure keep the base profile's stated ranges.
"""

from __future__ import annotations

import math

import numpy as np

from inferecon.model.uncertain import MAPE_TO_SD, Uncertain, relative_sd_entry


def _rel_sd(result, param: str | None = None) -> tuple[float | None, str]:
    """(relative sd, what it is) of one FitResult: held-out error first, else the stderr of
    `param` relative to its value."""
    held = result.heldout_mape
    if held is not None and math.isfinite(held):
        return held * MAPE_TO_SD, f"k-fold held-out error {100 * held:.1f}% over {result.n_points} cases"
    if param is not None:
        v, se = result.params.get(param), result.stderr.get(param)
        if v and se is not None and math.isfinite(se) and math.isfinite(v) and v != 0:
            return abs(se / v), f"standard error of {param} ({100 * abs(se / v):.1f}%; too few cases to hold any out)"
    return None, ""


def _stripped(paths) -> set[str]:
    return {p.removeprefix("1/") for p in paths}


def calibrated_uncertainty(base_entries: list[dict], run_id: str, *, gemm=None, gemm_fit=None,
                           peaks_measured: bool = False, memory=None, collectives=(), launch=None,
                           step=None) -> list[dict]:
    """Profile entries for the fitted terms (FitResults as calibration/build.py holds them);
    base entries (a published profile's ranges) are kept only for fields nothing measured."""
    out: list[Uncertain] = []
    measured: set[str] = set()
    src = f"inferecon run {run_id}: "

    if peaks_measured:
        measured.add("compute.efficiency")
    for dtype, result in (gemm or {}).items():
        if not result.converged or dtype not in (gemm_fit or {}):
            continue
        paths = ["1/compute.efficiency"] + [f"{p}compute.gemm_fit.{dtype}.{form}.{name}"
                                            for form in ("roofline", "additive")
                                            for p, name in (("", "t0_us"), ("1/", "tflops"), ("1/", "gbps"))]
        sd, what = _rel_sd(result, "tflops")
        if sd is not None:
            out.append(relative_sd_entry(f"arithmetic ({dtype} GEMM fit)", tuple(paths), sd, src + what))
        measured |= _stripped(paths)

    if memory is not None and memory.converged:
        sd, what = _rel_sd(memory, "gbps")
        if sd is not None:
            out.append(relative_sd_entry("memory bandwidth", ("1/memory.efficiency",), sd, src + what))
        measured.add("memory.efficiency")

    groups = [r for r in collectives if r.converged and "/w1/" not in r.term]
    held = [r.heldout_mape for r in groups if r.heldout_mape is not None and math.isfinite(r.heldout_mape)]
    if held:
        rms = float(np.sqrt(np.mean(np.square(held))))
        out.append(relative_sd_entry(
            "collective time", ("network.time_scale",), rms * MAPE_TO_SD,
            src + f"k-fold held-out error of {len(held)} collective fit(s), RMS {100 * rms:.1f}%"))
        measured.add("network.time_scale")

    for result, path, name in ((launch, "latency.kernel_launch_us", "kernel launch"),
                               (step, "latency.step_overhead_us", "per-step overhead")):
        if result is None:
            continue
        sd, what = _rel_sd(result, "us")
        if sd is not None:
            out.append(relative_sd_entry(name, (path,), sd, src + what))
        measured.add(path)

    kept = [e for e in base_entries if not (_stripped(e.get("paths", [])) & measured)]
    return kept + [u.to_dict() for u in out]


def op_level_uncertainty(op_fits, run_id: str) -> list[dict]:
    """Entries for a CPU calibration's op-level fits (model/opfits.py): each GEMM and attention
    fit's time, a lognormal multiplier of the spread its k-fold held-out error says (the same
    rule as the term fits above), moving its intercept, rates and per-sequence time together."""
    if op_fits is None:
        return []
    out = []
    src = f"inferecon run {run_id}: "
    for family, fits, fields in (("gemm", op_fits.gemm, (("", "t0_us"), ("1/", "tflops"), ("1/", "gbps"))),
                                 ("attention", op_fits.attention, (("", "floor_us"), ("1/", "tflops"), ("1/", "gbps"),
                                                                   ("", "per_sequence_head_us")))):
        for i, f in enumerate(fits):
            q = f.quality
            if q is None or q.heldout_mape is None or not math.isfinite(q.heldout_mape):
                continue
            paths = tuple(f"{p}op_fits.{family}.{i}.{name}" for p, name in fields)
            dtype = getattr(f, "dtype", None) or getattr(f, "kv_dtype", "")
            out.append(relative_sd_entry(
                f"op-level {family} ({dtype})", paths, q.heldout_mape * MAPE_TO_SD,
                src + f"k-fold held-out error {100 * q.heldout_mape:.1f}% over {q.n_points} shapes"))
    return [u.to_dict() for u in out]


def _table(src) -> str:
    return f"{src.database} {src.system}/{src.op}/{src.backend}/{src.version}/{src.table}" if src else "the op database"


def opdb_uncertainty(op_fits, eng_fits) -> tuple[dict[str, float], list[dict]]:
    """(OpFits.time_scale, profile entries) of a per-op database calibration: each op family's
    time (one GEMM dtype, one decode or prefill attention KV dtype, the MoE experts of one dtype,
    the all-reduce) times a lognormal multiplier of the spread its k-fold held-out error over the
    table's shapes says — the rule of the term fits above. A family moves as a whole (OpFits.time_scale), not
    through its fitted parameters: where a table measured a shape the op-level model reads the
    measurement itself (attention grids, MoE curves), which a parameter's multiplier would not
    move. Several fits of one family (MoE routings, all-reduce lines of each world size and
    implementation) give the RMS of their errors. A fit without a held-out error (a figure
    borrowed from a publication, model/weight_only_kernels.py) adds nothing: its error is not known."""
    from inferecon.model.opfits import time_scale_key

    groups: dict[str, list[tuple[float, int, str]]] = {}
    names: dict[str, str] = {}

    def add(family, dtype, fit, quality=None):
        q = quality if quality is not None else getattr(fit, "quality", None)
        if q is None or q.heldout_mape is None or not math.isfinite(q.heldout_mape):
            return
        src = getattr(fit, "source", None)
        groups.setdefault(time_scale_key(family, dtype), []).append((q.heldout_mape, q.n_points, _table(src)))
        names[time_scale_key(family, dtype)] = family.replace("_", " ") + (f" {dtype}" if dtype else "")

    for g in op_fits.gemm:
        add("gemm", g.dtype, g)
    for a in op_fits.attention:
        add("attention", a.kv_dtype, a)
    for a in op_fits.mla_attention:
        add("mla_attention", a.kv_dtype, a)
    for a in op_fits.context_attention:  # prefill attention (the TTFT band, model/prefill.py)
        add("context_attention", a.kv_dtype, a)
    for a in op_fits.context_mla:
        add("context_mla", a.kv_dtype, a, a.curve_quality)
    for m in (eng_fits.moe if eng_fits is not None else []):
        add("moe", m.dtype, m)
    for c in op_fits.collectives:
        if c.collective == "all_reduce":
            add("allreduce", "", c)
    scale, out = {}, []
    for key, items in sorted(groups.items()):
        errs = [e for e, _, _ in items]
        rms = float(np.sqrt(np.mean(np.square(errs))))
        n = sum(k for _, k, _ in items)
        tables = sorted({t for _, _, t in items})
        what = (f"k-fold held-out error {100 * rms:.1f}% over {n} shapes" if len(items) == 1 else
                f"RMS of {len(items)} fits' k-fold held-out errors, {100 * rms:.1f}% over {n} shapes")
        scale[key] = 1.0
        out.append(relative_sd_entry(f"op-level {names[key]}", (f"op_fits.time_scale.{key}",),
                                     rms * MAPE_TO_SD, f"{'; '.join(tables[:2])}{' ...' if len(tables) > 2 else ''}: "
                                                       f"{what}"))
    return scale, [u.to_dict() for u in out]
