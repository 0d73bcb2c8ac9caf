"""Time to first token of serving-engine runs: the files' TTFT (mean and median, where they
record it) beside inferecon's serving model at the run's concurrency (model/serving.py: a closed
loop of that many clients whose prompts arrive in bunches sharing a step, M/D/1 queue over the
bunches, chunked prefill at the engine's default budget, the KV-cache slots by the run's engine's
rule, serving.kv_admission).
`validate --engine-results` prints it under the per-token comparison."""

from __future__ import annotations

from inferecon.core.errors import UserError
from inferecon.core.text import fixed_or_dash


def ttft_rows(cases, engine=None) -> list[dict]:
    """One row per run that records a TTFT; a run the serving model refuses keeps its reason.
    `engine` (an EngineProfile, `validate --engine`): its per-step and per-layer overheads in every
    prefill and decode step, as the per-token comparison above prices them; None: the hardware
    profile alone (the run's engine then only sizes the KV cache)."""
    from inferecon.model.serving import kv_admission, serve

    rows = []
    for c in cases:
        run = c.run
        if run.ttft_mean_ms is None and run.ttft_median_ms is None:
            continue
        row = dict(source=run.source, concurrency=run.concurrency, input_len=run.input_len,
                   output_len=run.output_len, ttft_mean_ms=run.ttft_mean_ms, ttft_median_ms=run.ttft_median_ms,
                   tpot_ms=run.tpot_ms, pred_ttft_ms=None, pred_tpot_ms=None, ttft_error_pct=None, refused="")
        try:
            r = serve(c.model, c.hw, input_len=max(1, int(round(run.input_len))),
                      output_len=max(1, int(round(run.output_len))), tp=c.tp, pp=c.pp, ep=c.ep,
                      concurrency=max(1, int(round(run.concurrency))), engine=engine,
                      admission=kv_admission(run.engine))  # the run's engine sizes its KV cache its own way
            row.update(pred_ttft_ms=r.ttft_s * 1e3, pred_tpot_ms=r.tpot_s * 1e3)
            ref = run.ttft_mean_ms if run.ttft_mean_ms is not None else run.ttft_median_ms
            row["ttft_error_pct"] = 100.0 * (row["pred_ttft_ms"] / ref - 1.0)
        except UserError as exc:
            row["refused"] = str(exc)
        rows.append(row)
    return rows


def format_ttft(rows: list[dict]) -> str:
    if not rows:
        return "TTFT: none of the files records a time to first token"

    f = fixed_or_dash

    lines = [f"{'TTFT':<5} {'conc':>6} {'in':>7} {'out':>6} | {'mean ms':>9} {'median ms':>9} {'predicted':>9} "
             f"{'error':>7} | {'TPOT ms':>7} {'serving':>7}"]
    for r in rows:
        err = f"{r['ttft_error_pct']:+6.0f}%" if r["ttft_error_pct"] is not None else f"{'-':>7}"
        lines.append(f"{'':<5} {r['concurrency']:6.1f} {r['input_len']:7.0f} {r['output_len']:6.0f} | "
                     f"{f(r['ttft_mean_ms'], 9)} {f(r['ttft_median_ms'], 9)} {f(r['pred_ttft_ms'], 9)} {err} | "
                     f"{f(r['tpot_ms'], 7, 2)} {f(r['pred_tpot_ms'], 7, 2)}" + (f"  refused: {r['refused']}" if r["refused"] else ""))
    lines.append("predicted: serving model at the run's concurrency (closed loop: prompts in bunches sharing a "
                 "step, M/D/1 queue over the bunches, chunked prefill); error against the mean (the median where no "
                 "mean); 'serving' TPOT includes the prefill interference")
    return "\n".join(lines)
