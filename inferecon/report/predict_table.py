"""The text table of `inferecon predict`: one row per batch size of one deployment."""

from __future__ import annotations


def format_predictions(rows: list, hw) -> str:
    """Rows are `model.predict.predict` results (Prediction) for the same deployment at several batch sizes."""
    first = rows[0]
    spec = ""
    if first.draft:
        spec = f"; draft {first.draft}, gamma {first.gamma}, acceptance {first.acceptance:g}"
    engine = first.engine or "none (hardware only)"
    lines = [
        f"{first.model} on {first.n_gpu} x {hw.display_name} ({hw.name}, {hw.provenance.kind} profile, "
        f"${hw.price_usd_per_gpu_hour:.2f}/GPU-hour)",
        f"tp {first.tp}, pp {first.pp}, ep {first.ep}; context {first.context}; "
        f"{first.weight_bits}-bit weights, {first.kv_bits}-bit KV{spec}; engine: {engine}",
        f"{'batch':>6} {'tok/s/seq':>9} {'tok/s/GPU':>9} {'$/Mtok':>8} {'ms/step':>8} | {'arith':>7} {'memory':>7} "
        f"{'network':>7} {'latency':>7} {'dominant':>10} | {'weights':>7} {'KV':>7} {'free':>7} GB/GPU | fits",
    ]
    for r in rows:
        fits = "yes" if r.feasible else "NO"
        lines.append(
            f"{r.batch:>6} {r.tokens_per_s_per_seq:9.1f} {r.tokens_per_s_per_gpu:9.1f} "
            f"{r.usd_per_mtok:8.3f} {r.t_step_ms:8.3f} | {r.t_arithmetic_ms:7.3f} {r.t_memory_ms:7.3f} "
            f"{r.t_network_ms:7.3f} {r.t_latency_ms:7.3f} {r.dominant:>10} | "
            f"{r.weights_per_gpu_gb:7.1f} {r.kv_per_gpu_gb:7.1f} {r.free_per_gpu_gb:7.1f}        | {fits}")
    for r in rows:
        if r.interval_draws:
            lines.append(
                f"batch {r.batch} 90% interval: {r.tokens_per_s_per_seq_lo:.1f}-{r.tokens_per_s_per_seq_hi:.1f} "
                f"tok/s/seq, ${r.usd_per_mtok_lo:.3f}-{r.usd_per_mtok_hi:.3f}/Mtok, "
                f"{r.t_step_ms_lo:.3f}-{r.t_step_ms_hi:.3f} ms/step "
                f"({r.interval_draws} draws of the profile's uncertain parameters)")
    for r in rows:
        if not r.feasible:
            lines.append(f"batch {r.batch} does not fit: {r.infeasible_reason}")
    lines.append(f"HBM per GPU {first.hbm_per_gpu_gb:.0f} GB, {first.usable_per_gpu_gb:.1f} GB usable for "
                 f"weights and KV cache; terms in ms per step " + (
                     "(op-level model: each op in one term, the ops run in sequence, so the terms add)"
                     if getattr(hw, "op_fits", None) is not None else
                     "(memory and arithmetic overlap: the larger counts)"))
    return "\n".join(lines)
