"""The request lines `inferecon predict --input-len I --output-len O` prints under its table."""

from __future__ import annotations


def format_request(req) -> str:
    """The lines `predict` prints under its table for a request."""
    if req.load == "none":
        load = f"alone, then decoding in a batch of {req.decode_batch:.0f}"
    elif req.load == "concurrency":
        load = (f"{req.concurrency:.0f} concurrent clients ({req.request_rate_per_s:.2f} requests/s, "
                f"{req.decode_batch:.1f} decoding together)")
    elif req.load == "disaggregated":
        load = (f"{req.request_rate_per_s:g} requests/s, disaggregated ({req.decode_batch:.1f} decoding together "
                f"per decode instance)")
    else:
        load = f"{req.request_rate_per_s:g} requests/s ({req.decode_batch:.1f} decoding together)"
    lines = [
        f"request: {req.input_len} tokens in, {req.output_len} out, {load}; prefill chunks of at most "
        f"{req.chunk_tokens} tokens per step ({req.prefill_level} prefill model, {req.prefill_dominant}-bound)",
        f"  TTFT {req.ttft_ms:.1f} ms (queue {req.ttft_queue_ms:.1f} ms, prefill {req.prefill_ms:.1f} ms, "
        f"{req.prefill_tokens_per_s:,.0f} prompt tok/s); TPOT {req.tpot_ms:.2f} ms; request latency "
        f"{req.request_latency_s:.2f} s",
        f"  ${req.usd_per_m_input_tokens:.4f} per million input tokens, ${req.usd_per_m_output_tokens:.4f} per "
        f"million output tokens; {req.output_tokens_per_s_per_gpu:,.0f} output tok/s/GPU",
    ]
    if req.ttft_lo_ms is not None:
        lines.append(f"  TTFT 90% interval: {req.ttft_lo_ms:.1f}-{req.ttft_hi_ms:.1f} ms (the prefill under "
                     f"{req.ttft_band_draws} draws of the profile's uncertain parameters)")
    if req.queue_model:
        lines.append(f"  queueing: {req.queue_model}")
    return "\n".join(lines)


def format_request_frontier(front, label: str, ttft_ms, tpot_ms, rows: int) -> str:
    """The request frontier of one model on one profile (model/request_frontier.py)."""
    first = front.iloc[0]
    sla = ", ".join(s for s in ((f"TTFT <= {ttft_ms:g} ms" if ttft_ms else ""),
                                (f"TPOT <= {tpot_ms:g} ms" if tpot_ms else "")) if s) or "no latency limits"
    lines = [f"\n{label}: requests of {first.input_len} tokens in, {first.output_len} out ({sla}; chunks within "
             f"{first.chunk_tokens} tokens per step)",
             f"{'GPUs':>5} {'tp':>3} {'pp':>3} {'ep':>3} {'batch':>6} {'γ':>2} | {'TTFT ms':>8} {'TPOT ms':>8} "
             f"{'latency s':>9} | {'$/M req':>9} {'$/M in':>8} {'$/M out':>8}"]
    for r in front.head(rows).itertuples():
        tp = f"{r.tp_r}x{r.tp_c}" if getattr(r, "tp_r", 1) > 1 else f"{r.tp}"  # a 2D grid as rows x columns
        lines.append(f"{r.n_gpu:5d} {tp:>3} {r.pp:3d} {r.ep:3d} {r.batch:6d} {r.gamma:2d} | {r.ttft_ms:8.1f} {r.tpot_ms:8.2f} "
                     f"{r.request_latency_s:9.2f} | {r.usd_per_m_requests:9.2f} {r.usd_per_m_input_tokens:8.4f} "
                     f"{r.usd_per_m_output_tokens:8.4f}")
    if len(front) > rows:
        lines.append(f"... {len(front) - rows} more on the frontier (all in request_frontier.csv)")
    lines.append("TTFT: a decode step + the prompt's prefill riding in it; TPOT: the step (per token it yields; γ: "
                 "draft tokens per speculative round) + the batch's prefills spread over the output (steady state "
                 "at that batch, no queue)")
    return "\n".join(lines)
