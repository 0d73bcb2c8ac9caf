"""The frontier for whole requests (I tokens in, O out) under latency limits: `frontier
--input-len I --output-len O [--ttft-ms X] [--tpot-ms Y] [--spec-decode DRAFT --acceptance A]`.

Every layout (tp x pp x ep), batch and, with a draft model, draft length γ of the frontier search
(model/frontier.py) is priced as a deployment running that batch of requests in steady state with
chunked prefill: a new prompt arrives as one finishes, so over the O / E decode steps a request
takes (E = the tokens a step yields per sequence: 1, or with speculation the expected accepted
tokens, terms.expected_tokens) each of the B requests' prefills rides once in a step
(model/prefill.py's marginal time at the step's decode tokens, split into chunks at the engine's
token budget less those tokens). Hence, per configuration, with t the decode step and m the
prompt's marginal prefill:

- TTFT = t + m (the prompt rides in one step; no queue: the load is exactly the batch);
- TPOT = t / E + B · m / O (the B prefills spread over the O output tokens);
- under SGLang's prefill-first scheduler (serving.SCHEDULERS) m is the prompt's prefill-only
  steps, the whole budget its chunks': no decode rides with them, and the B requests' decode
  waits through each of those steps, which the TPOT above counts; TTFT = t + m still, t being
  the step SGLang's overlap scheduler launched ahead of the prompt's (serving.engine_overlaps);
- $ per request = n_gpu · price · O · TPOT / B (the instance serves B requests in O · TPOT),
  split into input and output by the prefills' share B · m / (O · TPOT) of that time.

With speculative decoding a step is the γ draft passes plus the target's verification of γ + 1
tokens per sequence (terms.evaluate), and the prompt is prefilled by the draft as well as the
target (the draft must hold the prompt's KV cache to propose from it): m is both, the draft's at
its own one token per sequence per pass, on the same GPUs. As in the decode search, speculation
is tried on single-stage layouts only.

Layouts: the decode search's, pipeline and expert parallelism and 2D tensor-parallel grids
included (model/prefill.py prices a grid's prefill as the decode step prices its decode: each
weight split over rows and columns, heads and attention over the rows, four reductions a
layer). Left out, and why: layouts whose tensor parallelism does not split the heads evenly (the --no-latency
counterfactual's unbounded tp; the prefill splits heads as an engine does), and speculative rows
whose layout does not split the draft's heads; batches whose step takes more than half the token
budget (prompts would trickle in a few tokens a step, and a step filling it would admit none);
with a TensorRT-LLM engine profile, batches whose requests' whole I + O of KV cache does not fit
its cache (serving.kv_admission: GUARANTEED_NO_EVICT reserves it at admission).

Configurations whose TTFT or TPOT exceed the limits are dropped; the rest are ranked by speed
per user (1 / TPOT) against $ per request, and the Pareto frontier kept. An SLA nothing meets is a
RequestError that names the binding limit and the closest configuration.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from inferecon.core.errors import RequestError
from inferecon.model.engine import EngineProfile
from inferecon.model.frontier import SearchSpace, build_layouts, pareto_mask, validate_request
from inferecon.model.hardware import HardwareProfile
from inferecon.model.layout import layout_problem
from inferecon.model.prefill import PrefillOptions, prefill_time_s
from inferecon.model.serving import (default_chunk_tokens, engine_overlaps, engine_scheduler, kv_admission,
                                     kv_budget_bytes)
from inferecon.model.spec import ModelSpec
from inferecon.model.terms import CostOptions, evaluate, stored_bytes_per_gpu

# Batches at which the marginal prefill is computed; between them it is interpolated in
# log(batch) (the marginal GEMM time varies slowly with the decode tokens it joins).
_BATCH_KNOTS = (1, 8, 64, 512, 4096)


def _marginal_prefill_s(model, hw, key, batch, input_len, chunk, engine, popts, cache, draft=None,
                        alone: bool = False) -> float:
    """The prompt's marginal prefill at layout key = (tp, pp, ep, gamma, tp_rows) in steps of
    `batch` sequences: the target's (its step carries batch · (γ + 1) tokens, which leave the
    rest of the budget to the chunk) plus, with γ > 0, the draft's over the same chunks, on the
    same grid. `alone`: in steps of prefill only, the whole budget its chunks' (SGLang's
    prefill-first scheduler, serving.SCHEDULERS), whatever the batch."""
    tp, pp, ep, gamma, tp_rows = key
    per_seq = gamma + 1
    if key not in cache:
        top = max(chunk // (2 * per_seq), 1)
        knots = [1] if alone else sorted({k for k in _BATCH_KNOTS if k <= top} | {top})
        vals = []
        for b in knots:
            room = chunk if alone else max(chunk - b * per_seq, 1)  # what the step's decode tokens leave the chunks
            t = prefill_time_s(model, hw, input_len=input_len, tp=tp, pp=pp, ep=ep, engine=engine, chunk_tokens=room,
                               decode_tokens=0 if alone else b * per_seq, opts=popts, tp_rows=tp_rows)
            if gamma:
                # A dense draft on an expert-parallel layout is one replica per ep rank, each on
                # its own micro-batch (as terms._stage prices its decode): the prompt joins one.
                d_ep, d_tokens = (ep, 0 if alone else b) if draft.is_moe else (1, 0 if alone else b / ep)
                t += prefill_time_s(draft, hw, input_len=input_len, tp=tp, pp=1, ep=d_ep, engine=engine,
                                    chunk_tokens=room, decode_tokens=d_tokens, opts=popts, tp_rows=tp_rows)
            vals.append(t)
        cache[key] = (np.log(knots), np.asarray(vals))
    x, y = cache[key]
    return float(np.interp(np.log(batch), x, y))


def _prefill_can_split(model, draft, tp, pp, ep, gamma, tp_rows) -> bool:
    """Whether the prefill model takes this layout (even head split over the heads' axis; a
    dense draft runs ep = 1)."""
    if layout_problem(model, int(tp), int(pp), int(ep), tp_rows=int(tp_rows)) is not None:
        return False
    if gamma and layout_problem(draft, int(tp), 1, int(ep) if draft.is_moe else 1, tp_rows=int(tp_rows)) is not None:
        return False
    return True


def request_table(model: ModelSpec, hw: HardwareProfile, *, input_len: int, output_len: int,
                  space: SearchSpace = SearchSpace(), chunk_tokens: int | None = None,
                  engine: EngineProfile | None = None, draft: ModelSpec | None = None, acceptance: float = 0.0,
                  opts: CostOptions = CostOptions(), popts: PrefillOptions = PrefillOptions()) -> pd.DataFrame:
    """Every feasible configuration (module docstring: which) with its request figures; with a
    `draft`, the speculative ones at each of space.gammas as well."""
    for name, v in (("input_len", input_len), ("output_len", output_len)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise RequestError(name, v, f"{name.replace('_', ' ')} must be a whole number of tokens >= 1")
    chunk = default_chunk_tokens(hw, engine.name if engine is not None else None) if chunk_tokens is None else chunk_tokens
    context = input_len + output_len // 2
    validate_request(model, hw, context, acceptance, draft)
    lay = build_layouts(model, hw, space, with_spec=draft is not None)
    keys = list(zip(lay.tp.tolist(), lay.pp.tolist(), lay.ep.tolist(), lay.gamma.tolist(), lay.tp_r.tolist()))
    splits = {k: _prefill_can_split(model, draft, *k) for k in set(keys)}
    lay = lay.subset(np.flatnonzero([splits[k] for k in keys]))
    res = evaluate(model, hw, lay, context, draft=draft, acceptance=acceptance, opts=opts, engine=engine)
    step_tokens = lay.batch * (lay.gamma + 1)  # target tokens a decode step carries
    ok = np.asarray(res.feasible) & (step_tokens <= chunk // 2)
    adm = kv_admission(engine.name if engine is not None else None, opts)
    if adm.reserve_whole:
        # TensorRT-LLM admits a request only with its whole I + O of KV reserved, in its share of
        # the memory the rest leaves free (serving.kv_admission): a batch must fit that too. A
        # draft's weights and cache count as the rest (memory the target's cache cannot use).
        weights, kv_ctx = stored_bytes_per_gpu(model, lay, context)
        _, kv_whole = stored_bytes_per_gpu(model, lay, adm.held_tokens(input_len, output_len))
        other = np.asarray(res.memory_per_gpu_bytes) - weights - kv_ctx
        ok &= kv_whole <= kv_budget_bytes(hw.memory.capacity_gb * 1e9, weights + other, adm)
    if not ok.any():
        raise RequestError("max_gpus", space.max_gpus,
                           f"{model.name} with {input_len} + {output_len}-token requests does not fit on up to "
                           f"{space.max_gpus} x {hw.display_name}: it needs more GPUs, fewer bits or shorter requests")
    rows = np.flatnonzero(ok)
    tp, pp, ep, gamma = lay.tp[rows], lay.pp[rows], lay.ep[rows], lay.gamma[rows]
    tp_r, tp_c = lay.tp_r[rows], lay.tp_c[rows]
    batch = lay.batch[rows].astype(float)
    n_gpu = lay.n_gpu[rows].astype(float)
    t_step = np.asarray(res.t_step_s)[rows]
    per_step = np.asarray(res.tokens_per_step, dtype=float)[rows]  # E: tokens a step yields per sequence
    cache: dict = {}
    # SGLang prefills in steps of their own, which the decoding batch waits through (serving.SCHEDULERS).
    alone = engine_scheduler(engine.name if engine is not None else None) == "prefill-first"
    marg = np.array([_marginal_prefill_s(model, hw, (int(tp[i]), int(pp[i]), int(ep[i]), int(gamma[i]), int(tp_r[i])),
                                         batch[i], input_len, chunk, engine, popts, cache, draft, alone)
                     for i in range(len(rows))])
    # The step in flight (mixed schedulers) or, under an overlap scheduler, the step already launched
    # ahead (serving.engine_overlaps) comes before the prompt's; a prefill-first one without it: none.
    ahead = engine_overlaps(engine.name if engine is not None else None)
    ttft = t_step + marg if (ahead or not alone) else marg
    tpot = t_step / per_step + batch * marg / output_len
    gpu_s_per_req = n_gpu * output_len * tpot / batch
    usd_req = gpu_s_per_req * hw.price_usd_per_gpu_hour / 3600.0
    share_in = batch * marg / (output_len * tpot)
    spec = gamma > 0
    return pd.DataFrame(dict(
        model=model.name, gpu=hw.name, n_gpu=n_gpu.astype(int), tp=tp, tp_r=tp_r, tp_c=tp_c, pp=pp, ep=ep,
        batch=batch.astype(int),
        gamma=gamma, draft=np.where(spec, draft.name if draft else "", ""),
        acceptance=np.where(spec, acceptance, np.nan), tokens_per_step=per_step,
        input_len=input_len, output_len=output_len, chunk_tokens=chunk,
        ttft_ms=ttft * 1e3, tpot_ms=tpot * 1e3, request_latency_s=ttft + (output_len - 1) * tpot,
        tokens_per_s_per_seq=1.0 / tpot, usd_per_request=usd_req, usd_per_m_requests=usd_req * 1e6,
        usd_per_m_input_tokens=usd_req * share_in / input_len * 1e6,
        usd_per_m_output_tokens=usd_req * (1 - share_in) / output_len * 1e6,
        t_decode_step_ms=t_step * 1e3, prefill_ms=marg * 1e3))


def _configuration(r) -> str:
    spec = f", γ {r.gamma} with draft {r.draft}" if r.gamma else ""
    rows = int(getattr(r, "tp_r", 1))  # tables built elsewhere (tests) may carry 1D layouts only
    grid = f" ({rows} x {r.tp // rows} grid)" if rows > 1 else ""
    return f"tp {r.tp}{grid}, pp {r.pp}, ep {r.ep} on {r.n_gpu} GPUs, batch {r.batch}{spec}"


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
        raise RequestError(param, f"{value:g}",  # as the user wrote it: --ttft-ms 1, not 1.0
                           f"no configuration meets {binding}; closest: {_configuration(best)}: "
                           f"TTFT {best.ttft_ms:.1f} ms, TPOT {best.tpot_ms:.2f} ms")
    sub = table[ok].reset_index(drop=True)
    front = pareto_mask(sub["tokens_per_s_per_seq"].to_numpy(), sub["usd_per_request"].to_numpy())
    return sub[front].sort_values("tpot_ms", ignore_index=True)
