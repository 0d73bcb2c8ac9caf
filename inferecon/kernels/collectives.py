"""Collectives microbenchmark: all-reduce, all-gather, all-to-all and send/recv under torchrun.

NCCL on GPUs, gloo on CPU; eager calls everywhere and, on GPU, CUDA-graph replay of K
back-to-back calls. One row per (op, mode, message size) with the raw per-call samples, the
median, algbw and busbw as nccl-tests defines them. The cost model fits α + bytes/β per
(op, world_size, scope) on these rows, so every sample is the time of ONE call:

- before each timed call: barrier, then synchronize, so no rank starts with work queued;
- each rank times its own call (CUDA events on GPU, perf_counter_ns on CPU); the sample of
  a repetition is the MAX over ranks (a collective is done when its slowest rank is);
- the repetition count is agreed by all ranks (from an all-reduced estimate), never chosen
  per rank — ranks that disagree on it would deadlock.

`bytes` follows the "size" column of nccl-tests for each op, so its output and ours can be
fitted together; algbw = bytes / time, busbw = algbw × factor:

    all_reduce   bytes = the buffer each rank reduces (input = output size)   2(n-1)/n
    all_gather   bytes = the gathered OUTPUT per rank (= n × each rank's input) (n-1)/n
    all_to_all   bytes = the send buffer per rank (n chunks of bytes/n)       (n-1)/n
    send_recv    bytes = what each rank sends (and receives) per call         1

send_recv follows nccl-tests' sendrecv, not half a ping-pong: the ranks are paired r <-> r+n/2
(a partner half the world away is on the other node when ranks are laid out node by node, so
an inter-node world measures the inter-node hop a pipeline stage boundary crosses), both
directions move at once, and the time is one call's time. With an odd world the last rank
sits out; with a world of one there is no partner and the case is recorded as skipped.

A world of one still runs every collective: it measures the fixed cost of a call.

This file only measures, on a world someone else set up. Options, the torchrun world on this
node and the run it writes into are inferecon.sweeps.collectives' (`python -m
inferecon.sweeps.collectives` is what torchrun starts on every rank).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from inferecon.core.busfactor import bus_factor
from inferecon.core.errors import UserError
from inferecon.harness import distributed as hdist
from inferecon.harness.timing import Measurement, TimingConfig, capture_graph

BENCHMARK = "collectives"
# Bump whenever what a row means changes (sizes' convention, timing method, pairing).
BENCHMARK_VERSION = 1

OPS = ("all_reduce", "all_gather", "all_to_all", "send_recv")
MODES = ("eager", "graph")
DTYPE = "float32"
_ELEM_BYTES = 4

PROGRESS_PREFIX = "[collectives]"  # the ranks' progress lines start with it


def busbw_factor(op: str, world_size: int) -> float:
    """nccl-tests' bus-bandwidth factor for `op` over `world_size` ranks (the one table:
    core/busfactor.py)."""
    return bus_factor(op, world_size)


def message_sizes(min_bytes: int, max_bytes: int, step: int) -> list[int]:
    """min, min·step, min·step², … and always max itself (the sweep's end is asked for)."""
    if min_bytes < 1 or max_bytes < min_bytes or step < 2:
        raise ValueError("need 1 <= min_bytes <= max_bytes and step >= 2")
    out, b = [], min_bytes
    while b < max_bytes:
        out.append(b)
        b *= step
    out.append(max_bytes)
    return out


@dataclass(frozen=True)
class SweepConfig:
    """What one sweep measures and what each case may cost."""

    device: str
    sizes: tuple[int, ...]
    ops: tuple[str, ...] = OPS
    timing: TimingConfig = TimingConfig()
    # CUDA-graph mode matters for the latency (α) end; above this size one call lasts far
    # longer than a launch and the graph changes nothing worth the capture time.
    graph_max_bytes: int = 64 << 20
    graph_calls: int = 16  # calls captured back to back in one graph; sample = replay / K

    def modes(self, nbytes: int) -> tuple[str, ...]:
        if self.device == "cuda" and nbytes <= self.graph_max_bytes:
            return MODES
        return ("eager",)


def sweep_config(device: str, quick: bool, ops=None, max_bytes: Optional[int] = None) -> SweepConfig:
    if device == "cuda":
        # 8 B … 1 GiB; ×2 like nccl-tests' default, ×8 for --quick (8 B, 64 B, … 1 GiB).
        top, step = 1 << 30, (8 if quick else 2)
        timing = TimingConfig(warmup_ms=10, budget_ms=30, min_reps=5, max_reps=200) if quick else \
            TimingConfig(warmup_ms=25, budget_ms=100, min_reps=10, max_reps=1000)
    else:
        # gloo over TCP: 64 MiB already takes tens of ms a call; --quick stays ≤ 1 MiB so a
        # CI run is seconds and a hung peer is the only thing that can make a call slow.
        top, step = (1 << 20, 8) if quick else (64 << 20, 4)
        timing = TimingConfig(warmup_ms=5, budget_ms=20, min_reps=5, max_reps=50) if quick else \
            TimingConfig(warmup_ms=25, budget_ms=200, min_reps=10, max_reps=500)
    if max_bytes is not None:
        top = max(8, min(top, int(max_bytes)))
    ops = tuple(ops) if ops else OPS
    bad = [o for o in ops if o not in OPS]
    if bad:
        raise UserError(f"unknown collective {bad[0]!r}: choose from {', '.join(OPS)}")
    return SweepConfig(device=device, sizes=tuple(message_sizes(8, top, step)), ops=ops, timing=timing)


@dataclass(frozen=True)
class Case:
    op: str
    mode: str
    nominal_bytes: int  # the sweep's size; `bytes` in the row is what the buffers really hold

    def case_id(self, world_size: int, nodes: int, backend: str) -> str:
        # World size and node count are part of the identity: resuming a run with another
        # world must not take its rows for this one's.
        return f"{self.op}/{self.mode}/{self.nominal_bytes}B/w{world_size}n{nodes}/{backend}"


def plan(cfg: SweepConfig) -> list[Case]:
    return [Case(op, mode, b) for op in cfg.ops for b in cfg.sizes for mode in cfg.modes(b)]


# --------------------------------------------------------------------------------------------
# One collective call on pre-allocated buffers


@dataclass
class Buffers:
    call: Optional[Callable[[], None]]  # None: this rank takes no part (idle in send_recv)
    nbytes: int  # nccl-tests' size for the op (module docstring)
    tensors: list = field(default_factory=list)


def _peer(rank: int, world: int) -> Optional[int]:
    half = world // 2
    if half == 0 or rank >= 2 * half:
        return None
    return rank + half if rank < half else rank - half


def make_buffers(op: str, nominal_bytes: int, ctx: hdist.DistContext) -> Buffers:
    """Allocate the op's buffers and return the call. Raises MemoryError-like errors when the
    device cannot hold them (the caller agrees on it with the other ranks)."""
    import torch
    import torch.distributed as dist

    n, dev = ctx.world_size, ctx.torch_device()
    elems = max(1, nominal_bytes // _ELEM_BYTES)

    def zeros(count):
        # Zeros: a sum of zeros never overflows over thousands of repetitions.
        return torch.zeros(count, dtype=torch.float32, device=dev)

    if op == "all_reduce":
        t = zeros(elems)
        return Buffers(lambda: dist.all_reduce(t), elems * _ELEM_BYTES, [t])
    if op == "all_gather":
        per_rank = max(1, elems // n)
        inp, out = zeros(per_rank), zeros(per_rank * n)
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        return Buffers(lambda: gather(out, inp), per_rank * n * _ELEM_BYTES, [inp, out])
    if op == "all_to_all":
        per_peer = max(1, elems // n)
        inp, out = zeros(per_peer * n), zeros(per_peer * n)
        return Buffers(lambda: dist.all_to_all_single(out, inp), per_peer * n * _ELEM_BYTES, [inp, out])
    if op == "send_recv":
        peer = _peer(ctx.rank, n)
        send, recv = zeros(elems), zeros(elems)
        if peer is None:
            return Buffers(None, elems * _ELEM_BYTES, [send, recv])

        def exchange():
            # One batch so NCCL runs both directions in one group (no ordering deadlock);
            # gloo posts both and waits on both.
            reqs = dist.batch_isend_irecv([dist.P2POp(dist.isend, send, peer), dist.P2POp(dist.irecv, recv, peer)])
            for r in reqs:
                r.wait()

        return Buffers(exchange, elems * _ELEM_BYTES, [send, recv])
    raise ValueError(f"unknown op {op!r}")


# --------------------------------------------------------------------------------------------
# Timing: per-call samples, max over ranks, rep counts agreed by all ranks


def _all_max(ctx: hdist.DistContext, values: list[float]) -> list[float]:
    import torch
    import torch.distributed as dist

    dev = ctx.torch_device()
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.cpu().tolist()


def _time_reps(ctx: hdist.DistContext, run: Callable[[], None], n: int) -> list[float]:
    """This rank's seconds for each of n repetitions, barrier + synchronize before each."""
    import torch

    if ctx.device == "cuda":
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for i in range(n):
            hdist.barrier(ctx)
            torch.cuda.synchronize()
            starts[i].record()
            run()
            ends[i].record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends)]
    out = []
    for _ in range(n):
        hdist.barrier(ctx)
        t0 = time.perf_counter_ns()
        run()  # gloo calls return when the data is there: no device to synchronize
        out.append((time.perf_counter_ns() - t0) * 1e-9)
    return out


def _noop():
    return None


def time_case(ctx: hdist.DistContext, run: Callable[[], None], timing: TimingConfig, calls_per_run: int = 1):
    """(per-call samples in s, max over ranks; throttled flag). All ranks return the same."""
    from inferecon.harness import device as hdevice

    sync = _sync_fn(ctx)
    sync()
    run()  # first call: connections, algorithm selection, lazy allocations
    sync()
    # Estimate one repetition's wall time including the barrier: the budget bounds wall time.
    t0 = time.perf_counter()
    est = _time_reps(ctx, run, 3)
    wall = (time.perf_counter() - t0) / 3
    est_run_s, est_wall_s = _all_max(ctx, [sorted(est)[1], wall])
    est_run_s, est_wall_s = max(est_run_s, 1e-7), max(est_wall_s, 1e-7)
    n_warm = int(min(timing.max_reps, math.ceil(timing.warmup_ms * 1e-3 / est_run_s)))
    for _ in range(n_warm):
        run()
    sync()
    reps = int(min(timing.max_reps, max(timing.min_reps, math.ceil(timing.budget_ms * 1e-3 / est_wall_s))))
    with hdevice.ClockWatcher(ctx.device) as watch:
        mine = _time_reps(ctx, run, reps)
    merged = _all_max(ctx, mine + [1.0 if watch.result.throttled else 0.0])
    samples = [s / calls_per_run for s in merged[:-1]]
    return samples, bool(merged[-1])


def _sync_fn(ctx):
    if ctx.device == "cuda":
        import torch

        return torch.cuda.synchronize
    return _noop


# --------------------------------------------------------------------------------------------
# One case -> one record


def _identity(ctx) -> dict:
    from inferecon.harness import device as hdevice

    name, count = hdevice.device_identity(ctx.device)
    return {"device": ctx.device, "device_name": name, "gpu_count": count}


def _record_base(case: Case, ctx, ident: dict, cfg: SweepConfig) -> dict:
    return {
        "benchmark": BENCHMARK,
        "benchmark_version": BENCHMARK_VERSION,
        "case_id": case.case_id(ctx.world_size, ctx.nodes, ctx.backend),
        **ident,
        "op": case.op,
        "mode": case.mode,
        "nominal_bytes": case.nominal_bytes,
        "world_size": ctx.world_size,
        "nodes": ctx.nodes,
        # GPUs per node when each rank drives a GPU; on CPU there are none (ranks_per_node
        # says how many processes shared a host).
        "gpus_per_node": ctx.ranks_per_node if ctx.device == "cuda" else 0,
        "ranks_per_node": ctx.ranks_per_node,
        "scope": ctx.scope,
        "backend": ctx.backend,
        "dtype": DTYPE,
        "graph_calls": cfg.graph_calls if case.mode == "graph" else 1,
        "busbw_factor": busbw_factor(case.op, ctx.world_size),
        "timeout_s": ctx.timeout_s,
    }


def _skipped(base: dict, nbytes: int, reason: str) -> dict:
    nan = float("nan")
    return {**base, "bytes": nbytes, "samples_us": [], "median_us": nan, "iqr_us": nan, "reps": 0,
            "noisy": False, "throttled": False, "skipped": reason, "algbw_gbps": nan, "busbw_gbps": nan}


def _agree_ok(ctx, ok: bool) -> bool:
    """True only if every rank is ok (one rank that cannot allocate skips the case for all)."""
    return _all_max(ctx, [0.0 if ok else 1.0])[0] == 0.0


def measure_case(ctx, case: Case, cfg: SweepConfig, ident: dict, buffers: Optional[Buffers]) -> dict:
    """Time one case on every rank; the record (identical everywhere) for rank 0 to store."""
    base = _record_base(case, ctx, ident, cfg)
    if case.op == "send_recv" and ctx.world_size < 2:
        return _skipped(base, case.nominal_bytes, "send_recv needs two ranks")
    if buffers is None:
        return _skipped(base, case.nominal_bytes, "buffers could not be allocated on every rank")
    run = buffers.call or _noop
    calls = 1
    if case.mode == "graph":
        graph, err = None, ""
        try:
            if buffers.call is not None:
                # Every rank captures the same calls: NCCL requires capture to be uniform over
                # the ranks of the communicator.
                graph = capture_graph(buffers.call, cfg.graph_calls)
        except Exception as exc:  # capture unsupported by this NCCL/driver: say so, go on
            err = f"graph capture failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if not _agree_ok(ctx, not err):
            return _skipped(base, buffers.nbytes, err or "graph capture failed on another rank")
        run = graph.replay if graph is not None else _noop
        calls = cfg.graph_calls
    samples_s, throttled = time_case(ctx, run, cfg.timing, calls)
    m = Measurement.from_samples(samples_s, noisy_iqr_ratio=cfg.timing.noisy_iqr_ratio)
    algbw = buffers.nbytes / m.median_s / 1e9 if m.median_s > 0 else float("nan")
    return {**base, "bytes": buffers.nbytes, **m.record_fields(), "throttled": throttled, "skipped": "",
            "algbw_gbps": algbw, "busbw_gbps": algbw * base["busbw_factor"]}


def allocate(ctx, op: str, nominal_bytes: int) -> Optional[Buffers]:
    """Buffers on every rank, or None on every rank when any of them ran out of memory."""
    err = None
    bufs = None
    try:
        bufs = make_buffers(op, nominal_bytes, ctx)
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        if "memory" not in str(exc).lower() and not isinstance(exc, MemoryError):
            raise
        err = exc
    if not _agree_ok(ctx, err is None):
        bufs = None
        _free_device_cache(ctx)
    return bufs


def _free_device_cache(ctx):
    if ctx.device == "cuda":
        import torch

        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# The sweep on every rank


def _progress(msg: str) -> None:
    sys.stderr.write(f"{PROGRESS_PREFIX} {msg}\n")
    sys.stderr.flush()


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


@dataclass
class SweepProgress:
    """Where the sweep is: what a failure message names (the case it died in, what was saved)."""

    saved: int = 0
    current: Optional[Case] = None
    lines: bool = True  # one line per measured case (--no-progress: only messages and skips)


def run_sweep(ctx, cfg: SweepConfig, progress: SweepProgress, stored: Optional[Callable[[str], bool]] = None,
              keep: Optional[Callable[[dict], None]] = None,
              before_case: Optional[Callable[[int, int], None]] = None) -> None:
    """Measure every case not yet stored, on every rank of the world. On rank 0, `stored(case_id)`
    says what the run already holds and `keep(record)` saves each record as soon as it exists
    (both None on the other ranks: they follow rank 0's list so all make the same calls).
    `before_case(rank, index)` runs on every rank before the index-th case to measure (the
    fault tests hang a rank there)."""
    import torch.distributed as dist

    cases = plan(cfg)
    todo = [c for c in cases if not (stored and stored(c.case_id(ctx.world_size, ctx.nodes, ctx.backend)))] \
        if ctx.rank == 0 else None
    box = [todo]
    dist.broadcast_object_list(box, src=0)
    todo = box[0]
    if ctx.rank == 0:
        _progress(f"{len(todo)} of {len(cases)} cases to run, world {ctx.world_size} on {ctx.nodes} node(s), "
                  f"backend {ctx.backend}" + (f" ({len(cases) - len(todo)} already stored)" if len(todo) < len(cases) else ""))
    ident = _identity(ctx)
    i = 0
    while i < len(todo):
        op, nominal = todo[i].op, todo[i].nominal_bytes
        group = [c for c in todo[i:] if c.op == op and c.nominal_bytes == nominal]
        progress.current = group[0]
        buffers = allocate(ctx, op, nominal) if not (op == "send_recv" and ctx.world_size < 2) else None
        for case in group:
            progress.current = case
            if before_case is not None:
                before_case(ctx.rank, i)
            rec = measure_case(ctx, case, cfg, ident, buffers)
            if ctx.rank == 0:
                if keep is not None:
                    keep(rec)
                progress.saved += 1
                if rec["skipped"]:
                    _progress(f"{i + 1}/{len(todo)} {case.op} {case.mode} {format_bytes(case.nominal_bytes)}: skipped ({rec['skipped']})")
                elif progress.lines:
                    _progress(f"{i + 1}/{len(todo)} {case.op} {case.mode} {format_bytes(rec['bytes'])}: "
                              f"{rec['median_us']:.1f} us, busbw {rec['busbw_gbps']:.3f} GB/s"
                              + (" [noisy]" if rec["noisy"] else "") + (" [throttled]" if rec["throttled"] else ""))
            i += 1
        progress.current = None
        del buffers
    if ctx.device == "cuda":
        _free_device_cache(ctx)
