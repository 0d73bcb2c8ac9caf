"""Measurements -> HardwareProfile. Each term is fitted where the run measured it; a term the
run lacks, or whose fit did not converge, keeps the base profile's value and says so in the
profile's provenance notes."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from inferecon.calibration.fit import FitResult
from inferecon.calibration.fit_compute import fit_gemm
from inferecon.calibration.fit_latency import fit_launch
from inferecon.calibration.fit_memory import fit_read_bandwidth
from inferecon.calibration.fit_network import fit_collectives
from inferecon.calibration.fit_uncertainty import calibrated_uncertainty, op_level_uncertainty
from inferecon.model.published import match_published
from inferecon.core.text import slug
from inferecon.core.errors import UserError
from inferecon.model.hardware import (
    ComputeSpec,
    HardwareProfile,
    LatencySpec,
    LinkSpec,
    MemorySpec,
    NetworkSpec,
    Provenance,
)

BENCHMARKS = ("matmul", "memory", "launch", "collectives")
CPU_OPS = "cpu_ops"  # a CPU calibration's interleaved op timings (kernels/cpu_ops.py)
GPU_OPS = "gpu_ops"  # a GPU calibration's op timings (kernels/gpu_ops.py), in the same columns
# A CPU has no datasheet in the catalog; its price is a placeholder the user should override.
CPU_PRICE_USD_PER_HOUR = 0.10


@dataclass
class CalibrationResult:
    profile: HardwareProfile
    fits: list[FitResult]
    missing: list[str]  # benchmarks the run lacks
    kept_published: list[str] = field(default_factory=list)  # terms left at the base profile's value
    tables: dict = field(default_factory=dict)  # the measurements the fits used
    file_fits: list = field(default_factory=list)  # per ingested table: build_files.FileFit


def published_base(device_name: str) -> HardwareProfile | None:
    """The published profile of this GPU model, or None (CPUs, unknown GPUs)."""
    return match_published(device_name)


def _cpu_base(manifest) -> HardwareProfile:
    cpu = manifest.get("metadata", {}).get("cpu", {})
    cores = int(cpu.get("logical_cores") or os.cpu_count() or 1)
    mem_gb = (cpu.get("memory_bytes") or 16e9) / 1e9
    # Placeholders until measured: every measured term replaces them.
    link = LinkSpec(bandwidth_gbps=10.0, efficiency=1.0, base_latency_us=50.0, hop_latency_us=10.0)
    return HardwareProfile(
        name="cpu", display_name=manifest.get("device_name") or cpu.get("model") or "CPU",
        compute=ComputeSpec(peak_tflops={"fp32": 0.1, "bf16": 0.1}, efficiency=1.0),
        memory=MemorySpec(capacity_gb=mem_gb, bandwidth_gbps=10.0, efficiency=1.0),
        network=NetworkSpec(gpus_per_node=cores, intra=link, inter=link),
        latency=LatencySpec(kernel_launch_us=10.0),
        price_usd_per_gpu_hour=CPU_PRICE_USD_PER_HOUR,
        provenance=Provenance(kind="placeholder", notes=["CPU: no published datasheet; price is a placeholder"]),
    )


def _gpu_generic_base(manifest) -> HardwareProfile:
    """A GPU the catalog does not know: capacity from the driver, the rest measured."""
    devs = manifest.get("metadata", {}).get("torch_devices") or [{}]
    cap = (devs[0].get("total_memory_bytes") or 80e9) / 1e9
    link = LinkSpec(bandwidth_gbps=100.0, efficiency=1.0, base_latency_us=10.0, hop_latency_us=1.0)
    net = LinkSpec(bandwidth_gbps=25.0, efficiency=1.0, base_latency_us=10.0, hop_latency_us=5.0,
                   tree_hop_latency_us=5.0)
    return HardwareProfile(
        name="gpu", display_name=manifest.get("device_name") or "GPU",
        compute=ComputeSpec(peak_tflops={"bf16": 100.0}, efficiency=1.0),
        memory=MemorySpec(capacity_gb=cap, bandwidth_gbps=1000.0, efficiency=1.0),
        network=NetworkSpec(gpus_per_node=max(1, int(manifest.get("gpu_count") or 1)), intra=link, inter=net),
        latency=LatencySpec(kernel_launch_us=4.0), price_usd_per_gpu_hour=2.0,
        provenance=Provenance(kind="placeholder", notes=["GPU not in the catalog: unmeasured figures are placeholders"]),
    )


def profile_from_tables(manifest: dict, tables: dict, run_id: str,
                        base: HardwareProfile | None = None) -> CalibrationResult:
    device = manifest.get("device", "cpu")
    device_name = manifest.get("device_name", "")
    if base is None:
        base = published_base(device_name) if device == "cuda" else None
    if base is None:
        base = _cpu_base(manifest) if device == "cpu" else _gpu_generic_base(manifest)
    has_datasheet = base.provenance.kind == "published"
    missing = [b for b in BENCHMARKS if b not in tables or len(tables[b]) == 0]
    fits: list[FitResult] = []
    kept: list[str] = []

    # -- arithmetic ---------------------------------------------------------------------
    compute = base.compute
    matmul = _with_cpu_gemms(tables.get("matmul"), tables.get(CPU_OPS))
    if matmul is not None:  # the GEMM plot and table then show what the fit read
        tables = {**tables, "matmul": matmul}
    gemm_fit, gemm_results, peaks = fit_gemm(matmul)
    fits += gemm_results.values()
    bad = [d for d, r in gemm_results.items() if not r.converged]
    for d in bad:
        gemm_fit.pop(d, None)
        kept.append(f"arithmetic:{d} (GEMM fit did not converge: {gemm_results[d].message})")
    if peaks:
        ref = "bf16" if "bf16" in peaks else max(peaks, key=peaks.get)
        if has_datasheet and ref in base.compute.peak_tflops:
            compute = dataclasses.replace(compute, efficiency=peaks[ref] / base.compute.peak_tflops[ref])
        else:
            # No datasheet: the measured peaks are all there is. A placeholder for a dtype that
            # was not timed (bf16 on a CPU) must not survive into the model as a figure.
            compute = dataclasses.replace(compute, peak_tflops=dict(peaks), efficiency=1.0)
    elif "matmul" in missing:
        kept.append("arithmetic (no matmul measurements)")
    if gemm_fit:
        compute = dataclasses.replace(compute, gemm_fit=gemm_fit)

    # -- memory ---------------------------------------------------------------------------
    memory = base.memory
    cache = base.memory.l2_mb * 1e6 if base.memory.l2_mb else None
    mem_fit = fit_read_bandwidth(tables.get("memory"), cache_bytes=cache)
    if mem_fit is None:
        kept.append("memory (no read-bandwidth measurements)")
    elif not mem_fit.converged:
        fits.append(mem_fit)
        kept.append(f"memory (fit did not converge: {mem_fit.message})")
    else:
        fits.append(mem_fit)
        gbps = mem_fit.params["gbps"]
        curve = mem_fit.extra.get("curve")
        if has_datasheet:
            memory = dataclasses.replace(memory, efficiency=gbps / base.memory.bandwidth_gbps, read_curve=curve)
        else:
            memory = dataclasses.replace(memory, bandwidth_gbps=gbps, efficiency=1.0, read_curve=curve)

    # -- network --------------------------------------------------------------------------
    network = base.network
    coll_fits, coll_results = fit_collectives(tables.get("collectives"))
    fits += coll_results
    good = [f for f, r in zip(coll_fits, _expand(coll_results)) if r.converged]
    if good:
        network = dataclasses.replace(network, collectives=good)
    if not any(f.world_size >= 2 for f in good):
        kept.append("network (no collective measured over 2+ ranks: NCCL-model latencies kept for groups)")

    # -- fixed latency ----------------------------------------------------------------------
    latency = base.latency
    launch, step = fit_launch(tables.get("launch"))
    if launch is not None:
        fits.append(launch)
        latency = dataclasses.replace(latency, kernel_launch_us=launch.params["us"])
    else:
        kept.append("latency: kernel launch (not measured)")
    if step is not None:
        fits.append(step)
        latency = dataclasses.replace(latency, step_overhead_us=step.params["us"])

    meta = manifest.get("metadata", {})
    # -- op level: every op of a decode step from its own fit (a CPU's interleaved op timings,
    # or a GPU's one shape at a time: the same columns, the same fitter) -----------------------
    ops_table = tables.get(CPU_OPS) if tables.get(CPU_OPS) is not None else tables.get(GPU_OPS)
    op_fits, op_results = _cpu_op_fits(ops_table, device_name, meta.get("torch_version"))
    fits += op_results
    # The same ops as inferecon's own torch decoder runs them (what `validate` times); the
    # engine's fits above stay the profile's price (the vLLM loop validates vLLM with them).
    decoder_fits, decoder_results = _cpu_op_fits(tables.get(CPU_OPS), device_name, meta.get("torch_version"),
                                                 path="decoder")
    fits += decoder_results
    nv = meta.get("nvml", {})
    versions = {k: str(v) for k, v in {
        "torch": meta.get("torch_version"), "cuda": meta.get("torch_cuda_version"),
        "nccl": meta.get("nccl_version"), "driver": nv.get("driver_version"),
        "inferecon": manifest.get("inferecon_version"), "cpu_threads": manifest.get("cpu_threads")}.items() if v}
    notes = [f"kept {k}" for k in kept] + [f"run lacks {m} measurements" for m in missing]
    profile = HardwareProfile(
        name=f"{slug(base.name if has_datasheet else device_name or base.name)}-calibrated",
        display_name=f"{device_name or base.display_name} (calibrated)",
        compute=compute, memory=memory, network=network, latency=latency,
        price_usd_per_gpu_hour=base.price_usd_per_gpu_hour,
        provenance=Provenance(
            kind="calibrated",
            sources=[f"inferecon run {run_id}"] + ([f"base: {base.name} published profile"] if has_datasheet else []),
            run_id=run_id, versions=versions,
            fit_quality={r.term: r.quality() for r in fits}, notes=notes,
        ),
        uncertainty=calibrated_uncertainty(
            base.uncertainty, run_id, gemm=gemm_results, gemm_fit=gemm_fit, peaks_measured=bool(peaks),
            memory=mem_fit, collectives=coll_results, launch=launch, step=step)
        + _with_gemv(op_level_uncertainty(op_fits, run_id), op_fits)
        + moved_entries(_with_gemv(op_level_uncertainty(decoder_fits, run_id), decoder_fits),
                        "op_fits.", "decoder_op_fits."),
        op_fits=op_fits,
        decoder_op_fits=decoder_fits,
    )
    return CalibrationResult(profile, fits, missing, kept, tables)


def _with_cpu_gemms(matmul_df, ops_df):
    """The matmul table plus the interleaved decode GEMMs of a CPU run, as decode rows (their
    robust time, a low quantile of interleaved blocks, as the figure the GEMM fit reads), so
    that the GEMM fit and the op-level fit price the same measurements."""
    if ops_df is None or len(ops_df) == 0 or "op" not in ops_df:
        return matmul_df
    import pandas as pd

    from inferecon.calibration.fit_ops import ENGINE, is_prefill, on_path, sliced

    ops_df = on_path(ops_df, ENGINE)  # the engine's kernels: the term model prices what serves
    # Decode rows only: the prefill cases (M up to 512) feed the op fit's prefill regime alone.
    g = ops_df[(ops_df["op"] == "gemm").to_numpy() & ~sliced(ops_df) & ~is_prefill(ops_df)]
    if len(g) == 0:
        return matmul_df
    rows = pd.DataFrame({"shape_kind": "decode", "dtype": g["dtype"], "m": g["m"], "n": g["n"], "k": g["k"],
                         "median_us": g["time_us"], "skipped": g["skipped"].fillna(""),
                         "tflops": g["flop"] / g["time_us"] / 1e6})
    return rows if matmul_df is None or len(matmul_df) == 0 else pd.concat([matmul_df, rows], ignore_index=True)


def _with_gemv(entries: list[dict], op_fits) -> list[dict]:
    """A GEMM fit with a GEMV regime of its own (fit_ops._gemv_regime: M = 1 apart), or a
    prefill regime (fit_ops._with_prefill), moves that regime's figures with the rest: its
    quality is the regimes' pooled held-out error."""
    if op_fits is None:
        return entries
    out = []
    for e in entries:
        extra = []
        for i, g in enumerate(op_fits.gemm):
            if any(p.removeprefix("1/").startswith(f"op_fits.gemm.{i}.") for p in e["paths"]):
                for regime, there in (("decode", g.decode_t0_us), ("prefill", g.prefill_t0_us)):
                    if there is not None:
                        extra += [f"op_fits.gemm.{i}.{regime}_t0_us", f"1/op_fits.gemm.{i}.{regime}_tflops",
                                  f"1/op_fits.gemm.{i}.{regime}_gbps"]
        out.append({**e, "paths": list(e["paths"]) + extra} if extra else e)
    return out


def moved_entries(entries: list[dict], old: str, new: str) -> list[dict]:
    """The uncertainty entries (dicts) whose paths start with `old` ("op_fits."), with `new`
    in its place: an OpFits's entries where another field holds it. Other entries are dropped."""
    out = []
    for e in entries:
        bare = [p.removeprefix("1/") for p in e["paths"]]
        if not all(b.startswith(old) for b in bare):
            continue
        paths = [("1/" if p.startswith("1/") else "") + new + b.removeprefix(old) for p, b in zip(e["paths"], bare)]
        out.append({**e, "paths": paths})
    return out


def _cpu_op_fits(ops_df, device_name, torch_version, path: str = "engine"):
    if ops_df is None or len(ops_df) == 0:
        return None, []
    from inferecon.calibration.fit_ops import fit_cpu_ops

    op_fits, results, elementwise = fit_cpu_ops(ops_df, device_name, str(torch_version or ""), path=path)
    if op_fits is not None and elementwise is not None:
        op_fits = dataclasses.replace(op_fits, elementwise_per_layer_us=elementwise)
    return op_fits, results


def _expand(coll_results):
    """The FitResult behind each CollectiveFit, in order (a piecewise result yields one fit per piece)."""
    out = []
    for r in coll_results:
        out += [r] * (len(r.extra.get("breaks_bytes") or []) + 1)
    return out


def profile_from_run(run_dir, base: HardwareProfile | None = None, extra_tables: dict | None = None) -> CalibrationResult:
    """Fit a run directory's measurements (plus any ingested tables) into a calibrated profile."""
    from inferecon.harness.store import read_run

    run_dir = Path(run_dir)
    manifest, tables = read_run(run_dir)
    for name, df in (extra_tables or {}).items():
        import pandas as pd

        tables[name] = pd.concat([tables[name], df], ignore_index=True) if name in tables else df
    if not tables:
        raise UserError(f"{run_dir} holds no measurements to calibrate from")
    return profile_from_tables(manifest, tables, run_id=run_dir.name, base=base)
