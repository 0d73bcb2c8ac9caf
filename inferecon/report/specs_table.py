"""The text of `inferecon specs`: the GPUs and models inferecon knows, with their sources."""

from __future__ import annotations


def specs_text() -> str:
    """The table of `inferecon specs`: published GPU profiles and catalog models, each with its
    sources and the stated ranges of the published constants."""
    lines: list[str] = []
    from inferecon.model.published import PROFILES
    from inferecon.model.catalog import MODELS

    lines.append("GPUs (published specs)")
    lines.append(f"  {'name':15s} {'bf16 TFLOP/s':>12s} {'fp8':>6s} {'HBM GB':>7s} {'HBM TB/s':>8s} "
                 f"{'NVLink GB/s':>11s} {'net GB/s':>8s} {'$/GPU-h':>7s}")
    for hw in PROFILES.values():
        fp8 = hw.compute.peak_tflops.get("fp8")
        lines.append(f"  {hw.name:15s} {hw.compute.peak_tflops['bf16']:12.0f} {fp8 if fp8 else '-':>6} "
                     f"{hw.memory.capacity_gb:7.0f} {hw.memory.bandwidth_gbps / 1000:8.2f} "
                     f"{hw.network.intra.bandwidth_gbps:11.0f} {hw.network.inter.bandwidth_gbps:8.0f} "
                     f"{hw.price_usd_per_gpu_hour:7.2f}")
        for src in hw.provenance.sources:
            lines.append(f"      source: {src}")
    hbm = [hw.memory.efficiency for name, hw in PROFILES.items() if not name.endswith("-paper")]
    lines.append(f"  caps on published specs: compute x{next(iter(PROFILES.values())).compute.efficiency:.2f} (paper), "
                 f"HBM x{min(hbm):.2f}-{max(hbm):.2f} (measured bf16 decode streaming, per GPU); "
                 "measured caps: `inferecon calibrate`")
    from inferecon.model.uncertain import entries

    lines.append("  stated ranges of the published constants (drawn for every band and interval):")
    for u in entries(next(iter(PROFILES.values()))):
        lines.append(f"      {u.describe()}")
    lines.append("")
    lines.append("Models")
    lines.append(f"  {'name':17s} {'params B':>8s} {'active B':>8s} {'layers':>6s} {'d_model':>7s} "
                 f"{'heads/kv':>8s} {'experts':>9s} {'KV KB/token':>11s} {'weights':>9s}")
    from inferecon.model.quant import format_of

    for m in MODELS.values():
        experts = f"{m.n_active_experts}/{m.n_experts}" if m.is_moe else "-"
        # The default weight format predict and frontier price the model in (model/quant.py).
        lines.append(f"  {m.name:17s} {m.total_params / 1e9:8.1f} {m.active_params / 1e9:8.1f} {m.n_layers:6d} "
                     f"{m.d_model:7d} {m.n_heads:>4d}/{m.n_kv_heads:<3d} {experts:>9s} "
                     f"{m.kv_bytes_per_token_layer * m.n_layers / 1e3:11.1f} {format_of(m).name:>9s}")
        lines.append(f"      source: {m.source}")
    return "\n".join(lines)
