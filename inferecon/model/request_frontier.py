"""The frontier for whole requests (I tokens in, O out) under latency limits: `frontier
--input-len I --output-len O [--ttft-ms X] [--tpot-ms Y]`.

Every 1D layout (tp x pp x ep) and batch of the frontier search (model/frontier.py) is priced as a
deployment running that batch of requests in steady state with chunked prefill: a new prompt
arrives as one finishes, so over O decode steps each of the B requests' prefills rides once in
a step (model/prefill.py's marginal time at B decode tokens, split into chunks at the engine's
token budget). Hence, per configuration:

- TTFT = one decode step + the prompt's marginal prefill (it rides in a step; no queue: the
  load is exactly the batch);
- TPOT = decode step + B · prefill / O (the B prefills spread over the O steps);
- $ per request = n_gpu · price · O · TPOT / B (the instance serves B requests every O steps),
  split into input and output by the share of the prefill in that time.

Configurations whose TTFT or TPOT exceed the limits are dropped; the rest are ranked by TPOT
(speed per user) against $ per request, and the Pareto frontier kept. An SLA nothing meets is a
RequestError that names the binding limit and the closest configuration.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from inferecon.core.errors import RequestError
from inferecon.model.engine import EngineProfile
from inferecon.model.frontier import SearchSpace, build_layouts, pareto_mask
from inferecon.model.hardware import HardwareProfile
from inferecon.model.prefill import PrefillOptions, chunk_plan, prefill_chunk
from inferecon.model.serving import default_chunk_tokens
from inferecon.model.spec import ModelSpec
from inferecon.model.terms import CostOptions, evaluate

_BATCH_KNOTS = (1, 8, 64, 512, 4096)


def _prefill_marginal_s(model, hw, tp, pp, ep, batch, input_len, chunk, engine, popts, cache):
    """A prompt's marginal prefill time riding in decode steps of `batch` tokens, interpolated in
    log(batch) between knots (the marginal GEMM time varies slowly with the batch)."""
    key = (tp, pp, ep)
    knots = sorted({k for k in _BATCH_KNOTS if k <= chunk // 2} | {chunk // 2})
    if key not in cache:
        vals = []
        for b in knots:
            plan = chunk_plan(input_len, max(chunk - b, 1))
            vals.append(sum(prefill_chunk(model, hw, tokens=n, prior_tokens=p, tp=tp, pp=pp, ep=ep, engine=engine,
                                          last_chunk=(i == len(plan) - 1), decode_tokens=b, opts=popts).t_prefill_s
                            for i, (n, p) in enumerate(plan)))
        cache[key] = np.asarray(vals)
    return np.interp(np.log(batch), np.log(knots), cache[key])


def request_table(model: ModelSpec, hw: HardwareProfile, *, input_len: int, output_len: int,
                  space: SearchSpace = SearchSpace(), chunk_tokens: int | None = None,
                  engine: EngineProfile | None = None, opts: CostOptions = CostOptions(),
                  popts: PrefillOptions = PrefillOptions()) -> pd.DataFrame:
    """Every feasible 1D configuration (no speculation) with its request figures."""
    for name, v in (("input_len", input_len), ("output_len", output_len)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise RequestError(name, v, f"{name.replace('_', ' ')} must be a whole number of tokens >= 1")
    chunk = default_chunk_tokens(hw) if chunk_tokens is None else chunk_tokens
    context = input_len + output_len // 2
    lay = build_layouts(model, hw, space, with_spec=False)
    one_d = np.flatnonzero(lay.tp_r == 1)
    lay = lay.subset(one_d)
    res = evaluate(model, hw, lay, context, opts=opts, engine=engine)
    # A batch that takes more than half the token budget per step leaves prompts to trickle in
    # a few tokens a step: not searched (and a batch filling it would never admit one).
    ok = np.asarray(res.feasible) & (lay.batch <= chunk // 2)
    if not ok.any():
        raise RequestError("max_gpus", space.max_gpus,
                           f"{model.name} with {input_len} + {output_len}-token requests does not fit on up to "
                           f"{space.max_gpus} x {hw.display_name}: it needs more GPUs, fewer bits or shorter requests")
    rows = np.flatnonzero(ok)
    tp, pp, ep = lay.tp[rows], lay.pp[rows], lay.ep[rows]
    batch = lay.batch[rows].astype(float)
    n_gpu = lay.n_gpu[rows].astype(float)
    t_step = np.asarray(res.t_step_s)[rows]
    cache: dict = {}
    marg = np.empty(len(rows))
    for i in range(len(rows)):
        marg[i] = _prefill_marginal_s(model, hw, int(tp[i]), int(pp[i]), int(ep[i]), batch[i], input_len, chunk,
                                      engine, popts, cache)
    ttft = t_step + marg
    tpot = t_step + batch * marg / output_len
    gpu_s_per_req = n_gpu * output_len * tpot / batch
    usd_req = gpu_s_per_req * hw.price_usd_per_gpu_hour / 3600.0
    share_in = batch * marg / (output_len * tpot)
    return pd.DataFrame(dict(
        model=model.name, gpu=hw.name, n_gpu=n_gpu.astype(int), tp=tp, pp=pp, ep=ep, batch=batch.astype(int),
        input_len=input_len, output_len=output_len, chunk_tokens=chunk,
        ttft_ms=ttft * 1e3, tpot_ms=tpot * 1e3, request_latency_s=ttft + (output_len - 1) * tpot,
        tokens_per_s_per_seq=1.0 / tpot, usd_per_request=usd_req, usd_per_m_requests=usd_req * 1e6,
        usd_per_m_input_tokens=usd_req * share_in / input_len * 1e6,
        usd_per_m_output_tokens=usd_req * (1 - share_in) / output_len * 1e6,
        t_decode_step_ms=t_step * 1e3, prefill_ms=marg * 1e3))


def request_frontier(table: pd.DataFrame, ttft_ms: float | None = None, tpot_ms: float | None = None) -> pd.DataFrame:
    """The configurations meeting the limits, Pareto-optimal in TPOT against $ per request
    (fastest first); a RequestError naming the binding limit when none meets them."""
    meets_ttft = np.ones(len(table), bool) if ttft_ms is None else (table["ttft_ms"] <= ttft_ms).to_numpy()
    meets_tpot = np.ones(len(table), bool) if tpot_ms is None else (table["tpot_ms"] <= tpot_ms).to_numpy()
    ok = meets_ttft & meets_tpot
    if not ok.any():
        # Closest: the smallest worst ratio to a limit.
        ratios = np.maximum(table["ttft_ms"] / (ttft_ms or np.inf), table["tpot_ms"] / (tpot_ms or np.inf)).to_numpy()
        best = table.iloc[int(np.argmin(ratios))]
        if not meets_ttft.any():
            binding, param, value = f"TTFT <= {ttft_ms:g} ms (the fastest prefill is {table['ttft_ms'].min():.1f} ms)", "ttft_ms", ttft_ms
        elif not meets_tpot.any():
            binding, param, value = f"TPOT <= {tpot_ms:g} ms (the fastest decode is {table['tpot_ms'].min():.2f} ms)", "tpot_ms", tpot_ms
        else:
            binding, param, value = (f"TTFT <= {ttft_ms:g} ms and TPOT <= {tpot_ms:g} ms together (each alone is met, "
                                     f"never both)"), "ttft_ms", ttft_ms
        raise RequestError(param, value,
                           f"no configuration meets {binding}; closest: tp {best.tp}, pp {best.pp}, ep {best.ep} on "
                           f"{best.n_gpu} GPUs, batch {best.batch}: TTFT {best.ttft_ms:.1f} ms, TPOT {best.tpot_ms:.2f} ms")
    sub = table[ok].reset_index(drop=True)
    front = pareto_mask(sub["tokens_per_s_per_seq"].to_numpy(), sub["usd_per_request"].to_numpy())
    return sub[front].sort_values("tpot_ms", ignore_index=True)
