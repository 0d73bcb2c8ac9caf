"""Whole requests (I prompt tokens in, O tokens out) on one deployment: what `predict
--input-len I --output-len O` adds to the decode figures.

Without a load (`predict --batch B`): the prompt is prefilled alone on the instance, chunk after
chunk at the engine's token budget (model/prefill.py), and then decodes in a batch of B at the
decode step of model/terms.py; TTFT = the prefill, request latency = TTFT + (O − 1) · step.
$ per million input tokens prices the prefill's GPU-seconds per prompt token; $ per million
output tokens is the decode step's.

With a load (`--concurrency C` or `--request-rate R`): the steady state of model/serving.py
(the decode batch follows from the load; TTFT includes the prefill queue: M/D/1 under Poisson
arrivals, bunches of prompts sharing a step in a closed loop; TPOT the chunked-prefill
interference).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from inferecon.model.engine import EngineProfile
from inferecon.model.hardware import HardwareProfile
from inferecon.model.prefill import PrefillOptions, prefill_plan
from inferecon.model.serving import Deployment, default_chunk_tokens, serve, serve_disaggregated
from inferecon.model.spec import ModelSpec


@dataclass(frozen=True)
class RequestPrediction:
    """One request-level answer; *_ms milliseconds, *_s seconds, usd_per_m_* $ per million tokens."""

    input_len: int
    output_len: int
    chunk_tokens: int
    load: str  # "none" (a lone prompt, decode at --batch), "concurrency" or "request_rate"
    concurrency: float | None
    request_rate_per_s: float | None
    decode_batch: float
    ttft_ms: float
    ttft_queue_ms: float
    prefill_ms: float  # the prompt's prefill (under load: on the loaded instance)
    prefill_tokens_per_s: float  # prompt tokens per second the instance prefills (prompts sharing a step together)
    prefill_level: str  # "op" (op-level fits) or "roofline" (published profile)
    prefill_dominant: str  # the four terms' largest, over the prompt's chunks
    tpot_ms: float
    request_latency_s: float
    output_tokens_per_s_per_gpu: float
    input_tokens_per_s_per_gpu: float | None
    usd_per_m_input_tokens: float
    usd_per_m_output_tokens: float
    queue_model: str | None
    # The TTFT's 90% interval where it was drawn (a lone prompt: the prefill under draws of the
    # profile's uncertain parameters, lone_ttft_band); None: no band (under a load, or no draws).
    ttft_lo_ms: float | None = None
    ttft_hi_ms: float | None = None
    ttft_band_draws: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _lone_prefill(model, hw, *, input_len, chunk_tokens, tp, pp, ep, engine, popts):
    cost = prefill_plan(model, hw, input_len=input_len, chunk_tokens=chunk_tokens, tp=tp, pp=pp, ep=ep,
                        engine=engine, opts=popts)  # the chunks' costs summed
    return cost.t_prefill_s, cost.dominant, cost.level


def lone_ttft_band(model: ModelSpec, hw: HardwareProfile, *, input_len: int, chunk_tokens: int, tp: int, pp: int,
                   ep: int, engine: EngineProfile | None, popts: PrefillOptions, draws: int,
                   seed: int) -> tuple[float, float] | None:
    """(5th, 95th percentile) seconds of a lone prompt's prefill over `draws` draws of the
    profile's uncertain parameters (model/uncertainty.py: each draw one profile, its fits moved
    as the decode step's band moves them; an op-DB profile's op families through
    OpFits.time_scale, which model/prefill.py reads too); None without entries or draws."""
    import numpy as np

    from inferecon.model.uncertainty import apply, draw_parameters, entries, quantiles

    items = entries(hw)
    if not items or draws < 1:
        return None
    values = draw_parameters(items, draws, seed)
    t = [_lone_prefill(model, apply(hw, items, values[:, i]), input_len=input_len, chunk_tokens=chunk_tokens, tp=tp,
                       pp=pp, ep=ep, engine=engine, popts=popts)[0] for i in range(draws)]
    lo, _, hi = quantiles(np.asarray(t))
    return float(lo), float(hi)


def predict_request(model: ModelSpec, hw: HardwareProfile, *, input_len: int, output_len: int, tp: int = 1,
                    pp: int = 1, ep: int = 1, decode_step_s: float | None = None, decode_batch: int = 1,
                    decode_usd_per_mtok: float | None = None, concurrency: int | None = None,
                    request_rate_per_s: float | None = None, chunk_tokens: int | None = None,
                    engine: EngineProfile | None = None,
                    popts: PrefillOptions = PrefillOptions(), scheduler_steps: int = 1, draws: int = 0,
                    seed: int = 0, ttft_band: tuple[float, float] | None = None) -> RequestPrediction:
    """A request's figures (module docstring). Without a load, `decode_step_s` and
    `decode_usd_per_mtok` are the decode prediction at `decode_batch` (model/predict.py), and
    with `draws` the TTFT's 90% interval (lone_ttft_band; `ttft_band`: that interval already
    drawn, seconds, for the same prompt on other decode batches).
    `scheduler_steps`: decode steps per scheduling round under a load (serving.serve)."""
    chunk = default_chunk_tokens(hw, engine.name if engine is not None else None) if chunk_tokens is None else chunk_tokens
    n_gpu = tp * pp * ep
    alone_s, dominant, level = _lone_prefill(model, hw, input_len=input_len, chunk_tokens=chunk, tp=tp, pp=pp,
                                             ep=ep, engine=engine, popts=popts)
    if concurrency is None and request_rate_per_s is None:
        if decode_step_s is None or decode_usd_per_mtok is None:
            raise ValueError("predict_request without a load needs the decode prediction")
        usd_in = n_gpu * alone_s / input_len * hw.price_usd_per_gpu_hour / 3600.0 * 1e6
        band = ttft_band or lone_ttft_band(model, hw, input_len=input_len, chunk_tokens=chunk, tp=tp, pp=pp, ep=ep,
                                           engine=engine, popts=popts, draws=draws, seed=seed)
        return RequestPrediction(
            input_len=int(input_len), output_len=int(output_len), chunk_tokens=int(chunk), load="none",
            concurrency=None, request_rate_per_s=None, decode_batch=float(decode_batch),
            ttft_ms=alone_s * 1e3, ttft_queue_ms=0.0, prefill_ms=alone_s * 1e3,
            prefill_tokens_per_s=input_len / alone_s, prefill_level=level, prefill_dominant=dominant,
            tpot_ms=decode_step_s * 1e3, request_latency_s=alone_s + (output_len - 1) * decode_step_s,
            output_tokens_per_s_per_gpu=decode_batch / decode_step_s / n_gpu, input_tokens_per_s_per_gpu=None,
            usd_per_m_input_tokens=usd_in, usd_per_m_output_tokens=decode_usd_per_mtok, queue_model=None,
            ttft_lo_ms=band[0] * 1e3 if band else None, ttft_hi_ms=band[1] * 1e3 if band else None,
            ttft_band_draws=draws if band else 0)
    r = serve(model, hw, input_len=input_len, output_len=output_len, tp=tp, pp=pp, ep=ep,
              request_rate_per_s=request_rate_per_s, concurrency=concurrency, chunk_tokens=chunk, engine=engine,
              popts=popts, scheduler_steps=scheduler_steps)
    return _prediction(r, input_len, output_len, chunk, r.mode, level, dominant, r.queue_model)


def _prediction(r, input_len: int, output_len: int, chunk: int, load: str, level, dominant, queue_model: str):
    """A RequestPrediction from a serving result (aggregated or disaggregated: the same fields)."""
    return RequestPrediction(
        input_len=int(input_len), output_len=int(output_len), chunk_tokens=int(chunk), load=load,
        concurrency=r.concurrency, request_rate_per_s=r.request_rate_per_s, decode_batch=r.decode_batch,
        ttft_ms=r.ttft_s * 1e3, ttft_queue_ms=r.ttft_queue_s * 1e3, prefill_ms=r.prefill_service_s * 1e3,
        prefill_tokens_per_s=r.prompts_per_step * input_len / r.prefill_service_s, prefill_level=level,
        prefill_dominant=dominant,
        tpot_ms=r.tpot_s * 1e3, request_latency_s=r.request_latency_s,
        output_tokens_per_s_per_gpu=r.output_tokens_per_s_per_gpu,
        input_tokens_per_s_per_gpu=r.input_tokens_per_s_per_gpu,
        usd_per_m_input_tokens=r.usd_per_m_input_tokens, usd_per_m_output_tokens=r.usd_per_m_output_tokens,
        queue_model=queue_model)


def predict_disaggregated(model: ModelSpec, hw: HardwareProfile, *, input_len: int, output_len: int,
                          request_rate_per_s: float, tp: int = 1, pp: int = 1, ep: int = 1, prefill_tp: int | None = None,
                          prefill_instances: int = 1, decode_instances: int = 1, same_node: bool = True,
                          engine: EngineProfile | None = None,
                          popts: PrefillOptions = PrefillOptions()) -> RequestPrediction:
    """Disaggregated serving (model/serving.py): prefill instances of prefill_tp x pp x ep GPUs,
    decode instances of tp x pp x ep, at a Poisson request rate."""
    r = serve_disaggregated(model, hw, input_len=input_len, output_len=output_len,
                            request_rate_per_s=request_rate_per_s,
                            prefill=Deployment(prefill_tp or tp, pp, ep), prefill_instances=prefill_instances,
                            decode=Deployment(tp, pp, ep), decode_instances=decode_instances, same_node=same_node,
                            engine=engine, popts=popts)
    _, dominant, level = _lone_prefill(model, hw, input_len=input_len, chunk_tokens=None, tp=prefill_tp or tp, pp=pp,
                                       ep=ep, engine=engine, popts=popts)
    queue = (f"{r.queue_model} per prefill instance; KV transfer {r.kv_transfer_s * 1e3:.2f} ms "
             f"({'NVLink' if same_node else 'network'}); {r.n_gpu} GPUs in all")
    return _prediction(r, input_len, output_len, input_len, "disaggregated", level, dominant, queue)
