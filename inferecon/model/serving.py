"""Steady-state serving: what a stream of requests (input length I, output length O) sees on a
deployment — the decode batch, time to first token (TTFT) with queueing, time per output token
(TPOT), throughput per GPU and $ per million input and output tokens.

Aggregated serving (one instance does prefill and decode, continuous batching with chunked
prefill, as vLLM, SGLang and TensorRT-LLM run by default):

- every step decodes one token of each of the B requests past their prefill; while a prompt is
  waiting, the step also carries a prefill chunk of up to N − B tokens (N: the engine's token
  budget per step, vLLM's max_num_batched_tokens, which counts decode tokens too). A chunk
  adds to the step only its marginal time (model/prefill.py: weights read once for both);
- prefill is a single FCFS server (the scheduler takes waiting prompts in arrival order) whose
  service time for one prompt is S = Σ over its chunks of (decode step + chunk's marginal
  time): deterministic for fixed I and O. Arrivals are Poisson at rate λ (`vllm bench serve
  --request-rate`'s default), so the prefill queue is **M/D/1**, and the mean wait is the
  Pollaczek–Khinchine formula with a constant service time, W_q = ρ·S / (2(1 − ρ)), ρ = λ·S
  (Kleinrock 1975, Queueing Systems vol. 1, eq. 5.76 with E[S²] = S²). M/D/1 rather than a
  simulation: the service time is a constant of I and the batch, so the closed form is exact
  for the model and costs microseconds (predict must answer in well under 0.5 s). ρ ≥ 1: the
  queue grows without bound, and that is the answer (a RequestError), not a number;
- TTFT = W_q + half the step in flight at arrival + S for Poisson arrivals; a closed loop's
  next request follows a completion and lands on a step boundary (the simulation's turnaround 0),
  so it waits for no step in flight. Multi-step scheduling (vLLM V0's `--num-scheduler-steps N`)
  schedules once every N decode steps ("each scheduler iteration executes for
  num_scheduler_steps", vllm-project/vllm#8378; design in #6854): a prompt is admitted only at a
  round's end, so a Poisson arrival waits for half a round of N steps, not half a step. A closed
  loop's arrivals land on the round's boundary as they land on a step's;
- TPOT: a share ρ of the time the steps carry a chunk (t_mix), the rest are plain decode steps
  (t_dec); per emitted token TPOT = 1 / (ρ / t_mix + (1 − ρ) / t_dec);
- the decode batch follows Little's law, B = λ · (O − 1) · TPOT, solved as a fixed point
  (TPOT depends on B);
- a closed loop of C clients (`--max-concurrency`, genai-perf's concurrency) sends the next
  request when one completes: λ = C / (TTFT + (O − 1) · TPOT), solved by bisection on λ. Its
  prompts do not arrive one at a time: the benchmark starts every client at once, the first
  step takes as many whole prompts as its token room holds, and prompts that share a step
  decode in lockstep, finish together (fixed O) and send their next requests together, so a
  closed loop runs bunches of k = room // I prompts (bunch_size; the C clients split evenly
  into ceil(C / k) bunches). The prefill server then serves bunches: service S_k = one step
  carrying k whole prompts packed into one token dimension (model/prefill.py prefill_step:
  the weight GEMMs at M = k · I, compute-bound, each prompt's attention its own), at rate λ / k,
  the M/D/1 wait capped at the bunches that can be ahead; k = 1 (a prompt longer than the
  room) is the one-prompt server above, capped at the C − 1 prompts ahead. Clients beyond the
  requests whose KV cache fits wait for a slot: with `slots` requests in service at rate λ,
  the other C − slots wait (C − slots) / λ on average (Little's law), added to their TTFT. The
  slots follow the engine's KV-cache rule (kv_admission: TensorRT-LLM reserves I + O per
  request in 0.9 of the memory the weights leave; vLLM and SGLang hold the current length in
  0.9 of the HBM less the weights).

Disaggregated serving: P prefill instances and D decode instances; each prefill instance is
an M/D/1 server of λ / P prompts; the KV cache (I tokens, all layers) moves from prefill to
decode GPUs over NVLink (same node) or the network; decode instances run B = (λ / D)(O − 1)·TPOT
without prefill interference. TTFT = W_q + S + KV transfer.

Cost: the instance is paid all the time; its GPU-seconds are split between input and output
tokens by the share of time prefill chunks add (the marginal time) against the decode steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, asdict

import numpy as np

from inferecon.core.errors import RequestError
from inferecon.model import network as net
from inferecon.model.engine import EngineProfile
from inferecon.model.hardware import HardwareProfile
from inferecon.model.prefill import (PRICED_CHUNK_BY_CHUNK, PrefillOptions, check_prefill_layout, chunk_count,
                                      chunk_plan, prefill_plan, prefill_step, prefill_time_s)
from inferecon.model.spec import ModelSpec
from inferecon.model.terms import CostOptions, Layouts, evaluate, stored_bytes_per_gpu

QUEUE_MODEL = "M/D/1 (Poisson arrivals, constant prefill service time)"


def default_chunk_tokens(hw: HardwareProfile, engine_name: str | None = None) -> int:
    """The engine's default token budget per step on this GPU (the --chunk-size default), by the
    engine profile's name (engine_scheduler's reading of it):

    - TensorRT-LLM and NIM on it: max_num_tokens 8192 (the LLM API's default; aiconfigurator-core
      trtllm_backend.py TRTLLM_DEFAULT_MAX_NUM_TOKENS);
    - SGLang: chunked_prefill_size by the GPU's memory (sglang python/sglang/srt/server_args.py,
      the GPU-memory defaults): 2048 below 35 GiB, 4096 below 60 GiB, 8192 below 160 GiB (A100
      80 GB, H100, H200), 16384 from 160 GiB (B200);
    - vLLM and any other engine: vLLM's max_num_batched_tokens for its OpenAI server
      (vllm/engine/arg_utils.py, EngineArgs._set_default_args, vLLM 0.32): 16384 on GPUs of
      >= 160 GiB, 8192 on >= 70 GiB other than A100, else 2048."""
    gib = hw.memory.capacity_gb * 1e9 / 2**30
    scheduler = engine_scheduler(engine_name)
    if scheduler == "whole":
        return 8192
    if scheduler == "prefill-first":
        return 2048 if gib < 35 else 4096 if gib < 60 else 8192 if gib < 160 else 16384
    if gib >= 160:
        return 16384
    if gib >= 70 and "a100" not in hw.name.lower():
        return 8192
    return 2048


@dataclass(frozen=True)
class Deployment:
    """One instance's layout."""

    tp: int = 1
    pp: int = 1
    ep: int = 1

    @property
    def n_gpu(self) -> int:
        return self.tp * self.pp * self.ep


@dataclass(frozen=True)
class ServingResult:
    """Steady state of one workload on one deployment; seconds unless named otherwise."""

    mode: str  # "request_rate", "concurrency" or "disaggregated"
    input_len: int
    output_len: int
    chunk_tokens: int
    n_gpu: int
    request_rate_per_s: float
    concurrency: float  # mean requests in the system (given C in a closed loop)
    decode_batch: float  # mean requests decoding together per instance
    ttft_s: float
    ttft_queue_s: float  # prefill queue wait (W_q, M/D/1)
    prefill_service_s: float  # S: one prompt's prefill on a loaded instance (with the prompts sharing its step)
    kv_transfer_s: float  # disaggregated only
    tpot_s: float
    t_decode_step_s: float  # a step without prefill, at the decode batch
    t_mixed_step_s: float  # a step carrying a prefill chunk (aggregated)
    prefill_utilisation: float  # rho of the prefill server
    request_latency_s: float  # TTFT + (O - 1) TPOT
    output_tokens_per_s_per_gpu: float
    input_tokens_per_s_per_gpu: float
    usd_per_m_input_tokens: float
    usd_per_m_output_tokens: float
    queue_model: str = QUEUE_MODEL
    prompts_per_step: int = 1  # prompts prefilled together in one step (a closed loop's bunch)
    scheduler_steps: int = 1  # decode steps per scheduling round (multi-step scheduling)
    scheduler: str = "mixed"  # "prefill-first": prompts in steps of their own (SGLang); else they ride decode steps
    overlap_schedule: bool = False  # the scheduler runs one step ahead of the GPU (engine_overlaps)

    def to_dict(self) -> dict:
        return asdict(self)


def md1_wait_s(rate_per_s: float, service_s: float) -> float:
    """Mean wait in queue of an M/D/1 server (Pollaczek–Khinchine, constant service):
    W_q = ρ S / (2 (1 − ρ)), ρ = λ S. Raises when ρ >= 1 (no steady state)."""
    rho = rate_per_s * service_s
    if rho >= 1.0:
        raise RequestError("request_rate", rate_per_s,
                           f"{rate_per_s:g} requests/s need {rho:.2f}x the prefill capacity "
                           f"(one prompt takes {service_s * 1e3:.1f} ms): the queue grows without bound")
    return rho * service_s / (2.0 * (1.0 - rho))


def mean_tpot_s(rho: float, t_mixed_s: float, t_decode_s: float) -> float:
    """Mean time per output token when a share rho of the time runs steps carrying a prefill
    chunk (t_mixed_s each) and the rest plain decode steps (t_decode_s): each step emits one
    token per decoding request, so TPOT = time / steps = 1 / (rho / t_mix + (1 - rho) / t_dec)."""
    rho = min(max(rho, 0.0), 1.0)
    return 1.0 / (rho / t_mixed_s + (1.0 - rho) / t_decode_s)


@dataclass(frozen=True)
class KvAdmission:
    """How an engine sizes its KV cache and how much of it a request holds from admission:
    what bounds the requests a closed loop keeps in service (its slots)."""

    rule: str  # what the engine does, with its source
    fraction: float  # of the whole HBM (of_free False) or of what the weights leave free (of_free True)
    of_free: bool
    reserve_whole: bool  # True: a request holds I + O tokens from admission; False: its current length

    def held_tokens(self, input_len: int, output_len: int) -> int:
        """KV tokens one request of I + O holds against the cache: I + O from admission
        (reserve_whole), else its current length, I + O // 2 on average over a closed loop's
        fixed lengths (the mean context the decode steps are priced at)."""
        return input_len + output_len if self.reserve_whole else input_len + output_len // 2


def kv_admission(engine_name: str | None, opts: CostOptions = CostOptions()) -> KvAdmission:
    """The KV-cache rule of a serving engine by name.

    TensorRT-LLM (and the NIM containers that run it): the cache takes free_gpu_memory_fraction
    = 0.9 of the memory left free once the engine is loaded (KvCacheConfig's default, TensorRT-LLM
    docs "How to Change KV Cache Behavior"; aiconfigurator-core's trtllm_backend.py
    TRTLLM_DEFAULT_FREE_GPU_MEMORY_FRACTION, its memory.kv_cache_budget_bytes "of_free"), and
    the default capacity scheduler GUARANTEED_NO_EVICT (docs "Useful Runtime Options") admits a
    request only while the blocks that drive every admitted request *to completion* fit
    (cpp/tensorrt_llm/batch_manager/capacityScheduler.cpp, GuaranteedNoEvictScheduler::impl):
    each holds I + O tokens from admission. The engine's activation buffers are not subtracted
    (about 0.7-0.9 GB at max_num_tokens 8192 by aiconfigurator's TRT-LLM formula, ~2% of the
    cache here). vLLM, SGLang and unknown engines: a share of the whole HBM less the weights
    (vLLM's gpu_memory_utilization 0.9, CostOptions.hbm_usable_fraction), a request holding its
    current length, I + O/2 on average over a closed loop's fixed lengths."""
    if engine_scheduler(engine_name) == "whole":
        return KvAdmission("TensorRT-LLM: 0.9 of the memory the weights leave; GUARANTEED_NO_EVICT reserves I + O "
                           "per request", 0.9, True, True)
    return KvAdmission(f"{opts.hbm_usable_fraction:g} of the HBM less the weights; a request holds its current "
                       f"length", float(opts.hbm_usable_fraction), False, False)


def kv_budget_bytes(hbm_bytes: float, weights_bytes: float, adm: KvAdmission) -> float:
    """KV-cache bytes per GPU under an engine's rule (kv_admission): a fraction of what the
    weights leave free (TensorRT-LLM) or a fraction of the whole HBM less the weights (vLLM),
    never below 0 (aiconfigurator-core memory.kv_cache_budget_bytes, "of_free" / "of_total")."""
    budget = adm.fraction * (hbm_bytes - weights_bytes) if adm.of_free else adm.fraction * hbm_bytes - weights_bytes
    return np.maximum(budget, 0.0)  # elementwise over arrays of layouts (the request frontier)


class _Instance:
    """Cached step times of one instance: decode steps by batch (one vectorised evaluate over
    a grid, interpolated) and chunks' marginal times by (batch, chunk). `held_tokens`: the KV
    tokens one request holds for admission (kv_admission; default the mean context)."""

    def __init__(self, model, hw, dep: Deployment, engine, context: int, max_batch: int, opts, popts,
                 admission: KvAdmission | None = None, held_tokens: int | None = None):
        self.model, self.hw, self.dep, self.engine, self.popts = model, hw, dep, engine, popts
        per = dep.pp * dep.ep
        micro = np.unique(np.round(np.geomspace(1, max(1, math.ceil(max_batch / per)), 48)).astype(np.int64))
        lay = Layouts(tp_r=1, tp_c=dep.tp, pp=dep.pp, ep=dep.ep, micro_batch=micro)
        cost = evaluate(model, hw, lay, context, opts=opts, engine=engine)
        self.batch = (micro * per).astype(float)
        self.t_step = np.asarray(cost.t_step_s, dtype=float)
        adm = admission or kv_admission(None, opts)
        held = context if held_tokens is None else held_tokens
        weights, kv = stored_bytes_per_gpu(model, lay, held)
        self.kv_per_seq = float(np.asarray(kv)[0]) / float(self.batch[0])  # bytes per GPU one request holds
        self.weights = float(np.asarray(weights)[0])
        # usable: the weights plus the KV-cache budget per GPU (usable - weights is the cache)
        self.usable = self.weights + float(kv_budget_bytes(hw.memory.capacity_gb * 1e9, self.weights, adm))
        self._marg = {}

    def t_decode(self, b: float) -> float:
        return float(np.interp(max(b, self.batch[0]), self.batch, self.t_step))

    def max_batch_fitting(self) -> float:
        return max(0.0, (self.usable - self.weights) / self.kv_per_seq)

    def step_prefill(self, b: int, chunks: tuple) -> float:
        """Time the prompt chunks `chunks` ((tokens, prior, last) each) add to a step decoding b
        requests, priced together (model/prefill.py prefill_step); b = 0: a step of prefill
        only, which pays the step's overheads itself."""
        key = (int(b), chunks)
        if key not in self._marg:
            d = self.dep
            self._marg[key] = prefill_step(self.model, self.hw, chunks=list(chunks), tp=d.tp, pp=d.pp, ep=d.ep,
                                           engine=self.engine, decode_tokens=int(b), opts=self.popts).t_prefill_s
        return self._marg[key]


    def prompt_service(self, b: int, input_len: int, room: int, k: int, t_dec: float) -> tuple[float, int, float]:
        """(seconds, steps, seconds of prefill in them) one bunch of k prompts keeps the prefill
        server busy: its chunks of at most `room` tokens, each riding a step decoding b requests. A plan of many chunks (k = 1
        then: bunches form only where whole prompts fit the room) is priced in closed form
        (prefill.prefill_plan), its steps' decode time once times their count."""
        n_steps = chunk_count(input_len, room)
        if n_steps > PRICED_CHUNK_BY_CHUNK:
            d = self.dep
            marg = prefill_plan(self.model, self.hw, input_len=input_len, tp=d.tp, pp=d.pp, ep=d.ep,
                                engine=self.engine, chunk_tokens=room, decode_tokens=b, opts=self.popts)
            return n_steps * t_dec + marg.t_prefill_s, n_steps, marg.t_prefill_s
        plan = chunk_plan(input_len, room)
        margs = [self.step_prefill(b, ((int(n), int(p), i == len(plan) - 1),) * k) for i, (n, p) in enumerate(plan)]
        return sum(t_dec + m for m in margs), len(margs), sum(margs)


def _require_whole(name: str, value, low: int, message: str) -> None:
    """A count of tokens, requests or steps: an int (not a bool) >= low, else RequestError(message)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise RequestError(name, value, message)


def _check_lengths(input_len, output_len):
    for name, v in (("input_len", input_len), ("output_len", output_len)):
        _require_whole(name, v, 1, f"{name.replace('_', ' ')} must be a whole number of tokens >= 1")


def bunch_size(clients: int, input_len: int, room: int) -> int:
    """Prompts that arrive together in a closed loop of `clients` with fixed lengths, and share
    one step: the benchmark starts every client at once (genai-perf, `vllm bench serve
    --max-concurrency`), the first step takes as many whole prompts as the step's token room
    holds (room // input_len), the next step the next as many, and so on; prompts prefilled in
    one step decode in lockstep, finish in the same step (fixed output length) and send their
    next requests together, so the bunches persist. The clients split into ceil(clients / k)
    bunches; their mean size is returned (rounded, >= 1). 1 when a prompt does not fit the room."""
    per_step = room // input_len if input_len > 0 else 0
    if clients <= 1 or per_step <= 1:
        return 1
    k = min(int(clients), int(per_step))
    return max(1, int(round(clients / math.ceil(clients / k))))


def _aggregated_at_rate(inst: _Instance, lam: float, input_len: int, output_len: int, chunk_tokens: int,
                        closed_cap: float | None = None, scheduler_steps: int = 1, prefill_first: bool = False,
                        overlap: bool = False):
    """The steady state at arrival rate lam (requests/s per instance), or raises. closed_cap:
    a closed loop of closed_cap + 1 clients in service, whose prompts arrive in bunches
    (bunch_size); None: Poisson arrivals, one prompt at a time on the M/D/1 prefill server.
    scheduler_steps: decode steps per scheduling round (multi-step scheduling; 1: every step).
    prefill_first: prompts run in prefill-only steps of the whole budget, and the decoding
    requests wait through them (SGLang's scheduler, SCHEDULERS), instead of riding decode steps.
    overlap: the scheduler runs one step ahead of the GPU (engine_overlaps): one more step before
    an arriving prompt's first."""
    b = max(lam * (output_len - 1) * inst.t_decode(1.0), 0.0)
    fit = inst.max_batch_fitting()
    for _ in range(60):
        bi = max(b, 1.0)
        if bi > fit and closed_cap is None:
            # b never falls below lam·(O − 1)·t_decode(1) (a token takes at least one lone decode
            # step), so a guess beyond the KV cache's room proves the rate unsustainable.
            raise RequestError("request_rate", lam,
                               f"{lam:g} requests/s keep at least {bi:.0f} requests decoding, whose KV cache needs "
                               f"more than the {inst.usable / 1e9:.0f} GB usable per GPU (room for {fit:.0f}): the "
                               f"queue grows without bound")
        room = chunk_tokens if prefill_first else chunk_tokens - int(round(bi))
        if room < 1:
            raise RequestError("chunk_size", chunk_tokens,
                               f"a token budget of {chunk_tokens} per step leaves no room for prefill beside "
                               f"{bi:.0f} decoding requests")
        t_dec = inst.t_decode(bi)
        # A closed loop's prompts arrive in bunches of k (bunch_size) that share each step; k > 1
        # only where k whole prompts fit the room, so their plan is one chunk.
        k = bunch_size(int(closed_cap) + 1, input_len, room) if closed_cap is not None else 1
        if prefill_first:  # steps of prefill only: each pays its own overheads, no decode rides them
            service, n_steps, prefill_s = inst.prompt_service(0, input_len, room, k, 0.0)
        else:
            service, n_steps, prefill_s = inst.prompt_service(max(1, int(round(bi))), input_len, room, k, t_dec)
        t_mix = service / n_steps
        rho = lam / k * service
        if rho >= 1.0 and closed_cap is None:
            md1_wait_s(lam, service)  # raises: the queue grows without bound
        # A request decodes while OTHER prompts are prefilled: its own bunch's prefill is its TTFT. A
        # Poisson stream's other arrivals keep the whole rho; in a closed loop of c clients in k-bunches
        # the other c/k - 1 bunches' prefills are rho * (1 - k/c) of the time (a lone client: none).
        seen = rho if closed_cap is None else rho * (1.0 - k / (closed_cap + 1.0))
        if prefill_first:
            # Decode steps run only in the share 1 - seen of the time the others' prefills leave. An
            # iterate at seen -> 1 (a closed loop's rate search overshooting) is held short of it:
            # the search then rejects that rate by its latency.
            tpot = t_dec / (1.0 - min(seen, 0.99))
        else:
            tpot = mean_tpot_s(seen, t_mix, t_dec)
        new_b = lam * (output_len - 1) * tpot
        if new_b > fit and closed_cap is not None:
            # A closed loop cannot decode more requests than the cache admits; an iterate past
            # that is the damped fixed point overshooting, not a verdict on the rate (the
            # rate search judges the rate by lam * latency against the slots).
            new_b = fit
        elif new_b > fit:
            raise RequestError("request_rate", lam,
                               f"{lam:g} requests/s keep {new_b:.0f} requests decoding, whose KV cache needs more "
                               f"than the {inst.usable / 1e9:.0f} GB usable per GPU (room for {fit:.0f}): the queue "
                               f"grows without bound")
        if abs(new_b - b) <= 1e-4 * max(1.0, b):
            b = new_b
            break
        b = 0.5 * (b + new_b)
    if closed_cap is not None:
        ahead = math.ceil((closed_cap + 1) / k) - 1  # bunches that can be ahead in a closed loop
        wait = (ahead * service if rho >= 1.0
                else min(rho * service / (2.0 * (1.0 - rho)), ahead * service))
        in_flight = 0.0  # a closed loop's next request follows a completion: it lands on a step boundary
        if overlap:
            # ... where the step behind it is already launched: it waits that one through.
            in_flight = t_dec
    else:
        wait = md1_wait_s(lam, service)
        # A Poisson arrival lands inside a scheduling round (one step, or N under multi-step
        # scheduling) and is admitted at its end: half of it is left, on average.
        in_flight = 0.5 * scheduler_steps * t_dec
        if overlap:  # the step launched behind the one in flight runs first
            in_flight += t_dec
    ttft = wait + in_flight + service
    share_prefill = lam / k * prefill_s  # of the instance's time
    return dict(b=b, t_dec=t_dec, t_mix=t_mix, service=service, rho=rho, tpot=tpot, wait=wait, in_flight=in_flight,
                ttft=ttft,
                latency=ttft + (output_len - 1) * tpot, share_prefill=min(share_prefill, 1.0), bunch=k,
                prefill_first=prefill_first, overlap=overlap)


def closed_loop_queue_model(bunch: int, waiting: int = 0, slots: int = 0, rule: str = "") -> str:
    """How a closed loop's TTFT was queued (ServingResult.queue_model); `waiting` clients beyond
    the `slots` the KV cache admits (under `rule`, kv_admission) wait for one."""
    if bunch <= 1:
        text = "closed loop: one prompt per step, M/D/1 wait capped at the clients ahead"
    else:
        text = (f"closed loop: prompts arrive {bunch} at a time and share a step (all clients start together); "
                f"M/D/1 wait over those bunches, capped at the bunches ahead")
    if waiting > 0:
        text += f"; {waiting} clients wait for one of {slots} KV-cache slots ({rule})"
    return text


def _result(mode, model, hw, dep_gpus, lam_total, input_len, output_len, chunk_tokens, s, concurrency,
            kv_transfer=0.0, share_prefill=None, scheduler_steps=1):
    price_s = hw.price_usd_per_gpu_hour / 3600.0 * dep_gpus
    share = s["share_prefill"] if share_prefill is None else share_prefill
    extra = ({"queue_model": closed_loop_queue_model(int(s.get("bunch", 1)), int(s.get("waiting", 0)),
                                                     int(s.get("slots", 0)), s.get("rule", "")),
              "prompts_per_step": int(s.get("bunch", 1))}
             if mode == "concurrency" else {})
    if scheduler_steps > 1:
        wait = (f"half a round, {s['in_flight'] * 1e3:.1f} ms, on average in its TTFT"
                if mode == "request_rate" else "a closed loop's next prompt lands on a round's boundary")
        extra["queue_model"] = (extra.get("queue_model", QUEUE_MODEL)
                                + f"; prompts admitted at the end of {scheduler_steps}-step scheduling rounds ({wait})")
    if s.get("prefill_first"):
        extra["queue_model"] = (extra.get("queue_model", QUEUE_MODEL)
                                + "; prompts prefilled in steps of their own that the decoding requests wait "
                                  "through (SGLang's prefill-first scheduler)")
        extra["scheduler"] = "prefill-first"
    if s.get("overlap"):
        extra["queue_model"] = (extra.get("queue_model", QUEUE_MODEL)
                                + "; the scheduler runs one step ahead of the GPU, so a prompt waits one more step")
        extra["overlap_schedule"] = True
    return ServingResult(**extra, scheduler_steps=int(scheduler_steps),
        mode=mode, input_len=int(input_len), output_len=int(output_len), chunk_tokens=int(chunk_tokens),
        n_gpu=int(dep_gpus), request_rate_per_s=float(lam_total), concurrency=float(concurrency),
        decode_batch=float(s["b"]), ttft_s=float(s["ttft"]), ttft_queue_s=float(s["wait"]),
        prefill_service_s=float(s["service"]), kv_transfer_s=float(kv_transfer), tpot_s=float(s["tpot"]),
        t_decode_step_s=float(s["t_dec"]), t_mixed_step_s=float(s["t_mix"]),
        prefill_utilisation=float(s["rho"]), request_latency_s=float(s["latency"]),
        output_tokens_per_s_per_gpu=lam_total * output_len / dep_gpus,
        input_tokens_per_s_per_gpu=lam_total * input_len / dep_gpus,
        usd_per_m_input_tokens=price_s * share / (lam_total * input_len) * 1e6,
        usd_per_m_output_tokens=price_s * (1.0 - share) / (lam_total * output_len) * 1e6)


def serve(model: ModelSpec, hw: HardwareProfile, *, input_len: int, output_len: int, tp: int = 1, pp: int = 1,
          ep: int = 1, request_rate_per_s: float | None = None, concurrency: int | None = None,
          chunk_tokens: int | None = None, engine: EngineProfile | None = None,
          opts: CostOptions = CostOptions(), popts: PrefillOptions = PrefillOptions(),
          admission: KvAdmission | None = None, scheduler_steps: int = 1,
          scheduler: str | None = None, overlap_schedule: bool | None = None) -> ServingResult:
    """Aggregated serving on one instance (module docstring): give exactly one of a Poisson
    request rate (requests/s) or a closed-loop concurrency. `admission`: the engine's KV-cache
    rule (kv_admission; default: the rule of `engine`'s name, vLLM's without one).
    `scheduler_steps`: decode steps per scheduling round (vLLM V0's --num-scheduler-steps).
    `scheduler`: the step scheduler (SCHEDULERS; default: engine_scheduler of `engine`'s name);
    "prefill-first" prices prompts in prefill-only steps that the decoding requests wait through.
    `overlap_schedule`: whether the scheduler runs one step ahead (default: engine_overlaps)."""
    _check_lengths(input_len, output_len)
    _require_whole("scheduler_steps", scheduler_steps, 1,
                   "scheduler steps must be a whole number of decode steps per scheduling round >= 1")
    check_prefill_layout(model, tp, pp, ep)
    if (request_rate_per_s is None) == (concurrency is None):
        raise RequestError("concurrency", concurrency, "give either a request rate or a concurrency, not both or neither")
    name = engine.name if engine is not None else None
    sched = engine_scheduler(name) if scheduler is None else scheduler
    if sched not in SCHEDULERS:
        raise RequestError("scheduler", sched, f"the step scheduler is one of {', '.join(SCHEDULERS)}")
    first = sched == "prefill-first"
    ahead = engine_overlaps(name) if overlap_schedule is None else bool(overlap_schedule)
    n = default_chunk_tokens(hw, name) if chunk_tokens is None else chunk_tokens
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise RequestError("chunk_size", n, "a token budget per step needs at least 2 tokens (one decode, one prefill)")
    dep = Deployment(tp, pp, ep)
    context = input_len + output_len // 2  # mean context of a decoding request
    adm = admission or kv_admission(engine.name if engine is not None else None, opts)
    held = adm.held_tokens(input_len, output_len)
    if concurrency is not None:
        _require_whole("concurrency", concurrency, 1, "concurrency must be a whole number of requests >= 1")
        inst = _Instance(model, hw, dep, engine, context, int(concurrency), opts, popts, adm, held)
        fit = inst.max_batch_fitting()
        if fit < 1:
            raise RequestError("concurrency", concurrency,
                               f"one request of {input_len} + {output_len} tokens needs more KV cache than the "
                               f"{inst.usable / 1e9:.0f} GB usable per GPU holds beside the weights")
        # Requests beyond the KV cache's room wait for a slot (the engine admits no more): the
        # closed loop then runs `slots` requests in service and the rest in a waiting room.
        slots = min(int(concurrency), int(math.floor(fit)))
        # lam * latency(lam) = slots: bisection on lam (latency grows with lam). Upper bound: no
        # request is faster than its own prompt prefilled alone plus O - 1 steps at batch 1, so
        # lam <= slots / that. (1 / one prompt's prefill bounded only one-prompt-at-a-time
        # prefill; bunches of k prompts sharing a step run faster than that, and were pinned to it.)
        floor_s = (prefill_time_s(model, hw, input_len=input_len, tp=tp, pp=pp, ep=ep, engine=engine, opts=popts)
                   + inst.t_decode(1.0) * max(output_len - 1, 1))
        lo, hi = 0.0, slots / max(floor_s * 0.999, 1e-9)
        s = None
        for _ in range(48):
            mid = 0.5 * (lo + hi)
            try:
                cur = _aggregated_at_rate(inst, mid, input_len, output_len, n, closed_cap=slots - 1,
                                          prefill_first=first, overlap=ahead)
            except RequestError:  # more decoding than the KV cache holds: this rate is too high
                hi = mid
                continue
            if mid * cur["latency"] > slots:
                hi = mid
            else:
                lo, s = mid, cur
            if hi - lo <= 1e-4 * hi:  # 0.01% of the rate: far inside the model's own accuracy
                break
        lam = lo if lo > 0 else hi * 1e-3
        if s is None:
            s = _aggregated_at_rate(inst, lam, input_len, output_len, n, closed_cap=slots - 1, prefill_first=first,
                                    overlap=ahead)
        if slots < concurrency:
            # Little's law on the waiting room: concurrency - slots requests wait, at rate lam.
            slot_wait = (concurrency - slots) / lam
            s = dict(s, wait=s["wait"] + slot_wait, ttft=s["ttft"] + slot_wait, latency=s["latency"] + slot_wait,
                     waiting=concurrency - slots, slots=slots, rule=adm.rule)
        return _result("concurrency", model, hw, dep.n_gpu, lam, input_len, output_len, n, s, concurrency,
                       scheduler_steps=scheduler_steps)
    lam = float(request_rate_per_s)
    if not math.isfinite(lam) or lam <= 0:
        raise RequestError("request_rate", request_rate_per_s, "a request rate must be a positive number per second")
    inst = _Instance(model, hw, dep, engine, context, 4096, opts, popts, adm, held)
    s = _aggregated_at_rate(inst, lam, input_len, output_len, n, scheduler_steps=scheduler_steps,
                            prefill_first=first, overlap=ahead)
    return _result("request_rate", model, hw, dep.n_gpu, lam, input_len, output_len, n, s, lam * s["latency"],
                   scheduler_steps=scheduler_steps)


def kv_transfer_s(model: ModelSpec, hw: HardwareProfile, input_len: int, prefill: Deployment, same_node: bool) -> float:
    """Seconds to move one prompt's KV cache (all layers) from a prefill instance to a decode
    instance: each prefill GPU sends its share point to point, over NVLink when both instances
    sit in one node, else over the node's network (model/network.py's send/recv model)."""
    total = input_len * model.n_layers * model.kv_bytes_per_token_layer
    per_gpu = total / prefill.n_gpu
    stride = 1 if same_node else hw.network.gpus_per_node
    return float(np.asarray(net.collective_time_s(hw, net.SEND_RECV, np.asarray([2]), np.asarray([stride]),
                                                  np.asarray([per_gpu]))).reshape(-1)[0])


def serve_disaggregated(model: ModelSpec, hw: HardwareProfile, *, input_len: int, output_len: int,
                        request_rate_per_s: float, prefill: Deployment, prefill_instances: int,
                        decode: Deployment, decode_instances: int, same_node: bool = True,
                        engine: EngineProfile | None = None, opts: CostOptions = CostOptions(),
                        popts: PrefillOptions = PrefillOptions()) -> ServingResult:
    """Disaggregated prefill/decode at a Poisson request rate (module docstring)."""
    _check_lengths(input_len, output_len)
    check_prefill_layout(model, prefill.tp, prefill.pp, prefill.ep)
    check_prefill_layout(model, decode.tp, decode.pp, decode.ep)
    for name, v in (("prefill_instances", prefill_instances), ("decode_instances", decode_instances)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise RequestError(name, v, f"{name.replace('_', ' ')} must be a whole number >= 1")
    lam = float(request_rate_per_s)
    if not math.isfinite(lam) or lam <= 0:
        raise RequestError("request_rate", request_rate_per_s, "a request rate must be a positive number per second")
    service = prefill_time_s(model, hw, input_len=input_len, tp=prefill.tp, pp=prefill.pp, ep=prefill.ep,
                             engine=engine, opts=popts)
    wait = md1_wait_s(lam / prefill_instances, service)
    kv = kv_transfer_s(model, hw, input_len, prefill, same_node)
    adm = kv_admission(engine.name if engine is not None else None, opts)
    inst = _Instance(model, hw, decode, engine, input_len + output_len // 2, 4096, opts, popts, adm,
                     adm.held_tokens(input_len, output_len))
    lam_d = lam / decode_instances
    b = lam_d * (output_len - 1) * inst.t_decode(1.0)
    for _ in range(60):
        new_b = lam_d * (output_len - 1) * inst.t_decode(max(b, 1.0))
        if new_b > inst.max_batch_fitting():
            raise RequestError("request_rate", lam,
                               f"{lam:g} requests/s keep {new_b:.0f} requests on each decode instance, beyond the "
                               f"KV cache its GPUs hold (room for {inst.max_batch_fitting():.0f}): the queue grows "
                               f"without bound")
        if abs(new_b - b) <= 1e-4 * max(1.0, b):
            b = new_b
            break
        b = 0.5 * (b + new_b)
    t_dec = inst.t_decode(max(b, 1.0))
    ttft = wait + service + kv
    s = dict(b=b, t_dec=t_dec, t_mix=t_dec, service=service, rho=lam / prefill_instances * service, tpot=t_dec,
             wait=wait, ttft=ttft, latency=ttft + (output_len - 1) * t_dec)
    gpus = prefill.n_gpu * prefill_instances + decode.n_gpu * decode_instances
    share = prefill.n_gpu * prefill_instances / gpus  # prefill GPUs price the input tokens
    return _result("disaggregated", model, hw, gpus, lam, input_len, output_len, input_len, s,
                   lam * s["latency"], kv_transfer=kv, share_prefill=share)


# How an engine fills a step's token budget with waiting prompts (simulate_closed_loop):
# "chunked": vLLM's and SGLang's default chunked prefill, the budget filled in arrival order and
#   the last prompt split, its rest in the next step;
# "whole": TensorRT-LLM's default, context chunking off (ExecutorConfig enableChunkedContext =
#   false in tensorrt_llm/executor/executor.h, also the Triton backend's default): a prompt is
#   scheduled only whole, in arrival order, and waits for a step whose room holds it (the
#   MicroBatchScheduler's loop, cpp/tensorrt_llm/batch_manager/microBatchScheduler.cpp, stops at
#   the first context that would pass max_num_tokens; generation tokens count in the budget). A prompt longer than the whole budget cannot run unchunked at all
#   (TensorRT-LLM refuses it unless chunking is on), so it is chunked as under "chunked".
# "prefill-first": SGLang's default: a step is either a prefill (extend) batch or a decode batch,
#   never both (ServerArgs.enable_mixed_chunk = False), and prefill comes first: the scheduler's
#   get_next_batch_to_run returns a new prefill batch whenever prompts wait ("Run prefill first if
#   possible", python/sglang/srt/managers/scheduler.py) and decodes only when none does. The
#   prefill batch takes waiting prompts in arrival order up to chunked_prefill_size tokens (the
#   last one split); the decoding requests' tokens do not count against it, and they wait.
SCHEDULERS = ("chunked", "whole", "prefill-first")


def engine_scheduler(engine_name: str | None) -> str:
    """The default step scheduler of a serving engine by name (SCHEDULERS): TensorRT-LLM and the
    NIM containers that run it schedule whole prompts; SGLang runs prefill first, in steps of
    their own; vLLM and the rest chunk."""
    name = (engine_name or "").lower()
    if "trt" in name or "tensorrt" in name or name.startswith("nim"):
        return "whole"
    return "prefill-first" if "sglang" in name else "chunked"


def engine_overlaps(engine_name: str | None) -> bool:
    """Whether a serving engine's scheduler runs one step ahead of the GPU by default, so that a
    request it receives while a step runs is scheduled only after the step launched behind that
    one: SGLang since v0.4 ("The scheduler runs one batch ahead and prepares all the metadata
    required for the next batch", lmsys.org/blog/2024-12-04-sglang-v0-4, zero-overhead batch
    scheduler; ServerArgs.disable_overlap_schedule = False). TensorRT-LLM's PyTorch backend does the
    same ("introduces one extra decoding step", docs features/overlap-scheduler), but an engine
    profile named trtllm may be its C++ executor (NIM's), so it is not assumed; vLLM and the rest:
    no."""
    return "sglang" in (engine_name or "").lower()


@dataclass(frozen=True)
class ClosedLoopRun:
    """What an explicit simulation of a closed-loop benchmark measured (seconds)."""

    concurrency: int
    requests: int  # measured (after the warm-up)
    ttft_mean_s: float
    ttft_median_s: float
    tpot_mean_s: float
    decode_batch_mean: float  # time-averaged
    request_rate_per_s: float
    scheduler: str = "chunked"


def simulate_closed_loop(model: ModelSpec, hw: HardwareProfile, *, input_len: int, output_len: int,
                         concurrency: int, tp: int = 1, pp: int = 1, ep: int = 1, chunk_tokens: int | None = None,
                         engine: EngineProfile | None = None, warmup_rounds: int = 2, measured_rounds: int = 10,
                         scheduler: str = "chunked", turnaround_s: float = 0.0, opts: CostOptions = CostOptions(),
                         popts: PrefillOptions = PrefillOptions(), admission: KvAdmission | None = None,
                         overlap: bool = False) -> ClosedLoopRun:
    """An explicit step-by-step simulation of a closed-loop benchmark: `concurrency` clients all
    send at t = 0 (as genai-perf / AIPerf and `vllm bench serve --max-concurrency` start) and
    each sends its next request when its last one completes; fixed I and O (ignore_eos).

    Why a simulation beside the formula: with fixed lengths and simultaneous starts the arrivals
    of a closed loop are not Poisson; prompts that share a step stay synchronised, in bunches
    (serving.bunch_size). Each step (continuous batching, FCFS): every running request decodes
    one token; waiting prompts take the remaining token budget (chunk_tokens − running) in
    arrival order, as `scheduler` says (SCHEDULERS: split to fill it, or whole prompts only);
    a prompt is admitted only while the KV cache has room. Step time = decode step at the
    running batch (model/terms.py) + the step's prompt chunks priced together
    (model/prefill.py prefill_step, decode_tokens = the batch). A prompt's TTFT ends with the
    step that finishes its prefill. The first `warmup_rounds` x C requests are discarded and
    the next `measured_rounds` x C measured (NVIDIA's NIM benchmarking guide runs genai-perf
    with --warmup-request-count 2C --request-count 10C).

    `turnaround_s`: seconds from a request's last step to its client's next request reaching
    the engine (the last token's trip out, the client, HTTP, tokenisation); TTFT is counted from
    that arrival. 0 (the default) is the lockstep limit, where a bunch's next requests reach the
    very next step and bunches never merge; > 0 lets requests that end in consecutive steps
    land in the same later step and share it (a sensitivity: no engine publishes the figure).
    `admission`: the KV-cache rule that sets the slots (kv_admission; default: `engine`'s).
    `overlap`: the scheduler runs one step ahead of the GPU (engine_overlaps): while steps run, a
    request is scheduled only into a step that starts after the one running when it arrived has
    ended and its successor been launched, i.e. it must have arrived by the start of the step
    before; an idle engine takes it at once."""
    _check_lengths(input_len, output_len)
    check_prefill_layout(model, tp, pp, ep)
    if not isinstance(concurrency, (int, np.integer)) or concurrency < 1:
        raise RequestError("concurrency", concurrency, "concurrency must be a whole number of requests >= 1")
    if not (isinstance(turnaround_s, (int, float)) and math.isfinite(turnaround_s) and turnaround_s >= 0):
        raise RequestError("turnaround", turnaround_s, "a client's turnaround must be a finite number of seconds >= 0")
    if scheduler not in SCHEDULERS:
        raise RequestError("scheduler", scheduler, f"the step scheduler is one of {', '.join(SCHEDULERS)}")
    n = default_chunk_tokens(hw, engine.name if engine is not None else None) if chunk_tokens is None else chunk_tokens
    dep = Deployment(tp, pp, ep)
    adm = admission or kv_admission(engine.name if engine is not None else None, opts)
    inst = _Instance(model, hw, dep, engine, input_len + output_len // 2, int(concurrency), opts, popts, adm,
                     adm.held_tokens(input_len, output_len))
    slots = int(math.floor(inst.max_batch_fitting()))
    if slots < 1:
        raise RequestError("concurrency", concurrency, f"one request of {input_len} + {output_len} tokens needs more "
                                                       f"KV cache than the GPUs hold beside the weights")
    grid = inst.batch

    def bucket(b):  # marginal times vary slowly with the batch: price them on the grid's batches
        return int(grid[min(int(np.searchsorted(grid, b)), len(grid) - 1)])

    from collections import deque

    total = (warmup_rounds + measured_rounds) * concurrency
    skip = warmup_rounds * concurrency
    waiting: deque = deque()  # [id, arrival, prompt tokens done]
    prefilling: list = []  # admitted, prompt not finished
    running: list = []  # [id, arrival, first-token time, tokens still to generate]
    ttfts, tpots = [], []
    now, issued, done = 0.0, 0, 0
    busy_b = busy_t = 0.0

    def complete():
        """A request ends at `now`: its client sends the next one at once (while any are left)."""
        nonlocal issued, done
        done += 1
        if issued < total:
            waiting.append([issued, now + turnaround_s, 0])
            issued += 1

    for _ in range(concurrency):
        waiting.append([issued, 0.0, 0])
        issued += 1
    first = scheduler == "prefill-first"
    prev_start = 0.0  # when the step before this one started
    stepped_b = None  # the decode batch of the step the last iteration ran (None: the engine was idle)
    while done < total:
        b = len(running)
        budget = n if first else max(n - b, 0)
        if not running and not prefilling and waiting and waiting[0][1] > now:
            now = waiting[0][1]  # idle until the next request reaches the engine
            stepped_b = None
        received_by = prev_start if (overlap and stepped_b is not None) else now
        while waiting and waiting[0][1] <= received_by and len(running) + len(prefilling) < slots:
            prefilling.append(waiting.popleft())
        chunks = []
        for req in prefilling:
            if budget <= 0:
                break
            need = input_len - req[2]
            if scheduler == "whole" and need > budget and (input_len <= n or chunks):
                break  # whole prompts only, in arrival order: this one waits for a step with room
            take = min(need, budget)
            chunks.append((req, take))
            budget -= take
        if b == 0 and not chunks:
            if overlap and waiting and stepped_b is not None:
                if stepped_b:
                    # The scheduler launched one more step before it saw that its requests had
                    # ended (an overlap scheduler's extra decoding step): the GPU runs it first.
                    prev_start, now, stepped_b = now, now + inst.t_decode(stepped_b), 0
                else:
                    stepped_b = None  # nothing was launched ahead: the engine is idle
                continue
            break  # nothing to do (cannot happen in a closed loop with slots >= 1)
        prev_start, stepped_b = now, b
        if first and chunks:
            b = 0  # a prefill-only step: the decoding requests wait through it
        t = inst.t_decode(b) if b else 0.0
        if chunks:
            spec = tuple((int(take), int(req[2]), req[2] + take >= input_len) for req, take in chunks)
            t += inst.step_prefill(bucket(b) if b else 0, spec)
        now += t
        busy_b += b * t
        busy_t += t
        if b:  # decode: one token each (none in a prefill-only step)
            still = []
            for req in running:
                req[3] -= 1
                if req[3] <= 0:
                    if req[0] >= skip:
                        tpots.append((now - req[2]) / max(output_len - 1, 1))
                    complete()
                else:
                    still.append(req)
            running = still
        for req, take in chunks:
            req[2] += take
        left = []
        for req in prefilling:  # a finished prompt has its first token now
            if req[2] < input_len:
                left.append(req)
                continue
            if req[0] >= skip:
                ttfts.append(now - req[1])
            if output_len > 1:
                running.append([req[0], req[1], now, output_len - 1])
            else:
                complete()
        prefilling = left
    return ClosedLoopRun(concurrency=int(concurrency), requests=len(ttfts),
                         ttft_mean_s=float(np.mean(ttfts)) if ttfts else float("nan"),
                         ttft_median_s=float(np.median(ttfts)) if ttfts else float("nan"),
                         tpot_mean_s=float(np.mean(tpots)) if tpots else float("nan"),
                         decode_batch_mean=busy_b / busy_t if busy_t else 0.0,
                         request_rate_per_s=done / now if now else 0.0, scheduler=scheduler)
