"""The request lines `inferecon predict --input-len I --output-len O` prints under its table."""

from __future__ import annotations


def format_request(req) -> str:
    """The lines `predict` prints under its table for a request."""
    if req.load == "none":
        load = f"alone, then decoding in a batch of {req.decode_batch:.0f}"
    elif req.load == "concurrency":
        load = (f"{req.concurrency:.0f} concurrent clients ({req.request_rate_per_s:.2f} requests/s, "
                f"{req.decode_batch:.1f} decoding together)")
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
    if req.queue_model:
        lines.append(f"  queueing: {req.queue_model}")
    return "\n".join(lines)
