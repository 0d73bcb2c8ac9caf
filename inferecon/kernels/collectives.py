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

Entry points: `run_from_cli(args, store)` (from `inferecon bench collectives`), and
`python -m inferecon.kernels.collectives` (what torchrun starts on every rank).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from inferecon.core.busfactor import bus_factor
from inferecon.core.errors import UserError, exit_status
from inferecon.harness import distributed as hdist
from inferecon.harness import torchrun
from inferecon.harness.timing import Measurement, TimingConfig, capture_graph

BENCHMARK = "collectives"
# Bump whenever what a row means changes (sizes' convention, timing method, pairing).
BENCHMARK_VERSION = 1

OPS = ("all_reduce", "all_gather", "all_to_all", "send_recv")
MODES = ("eager", "graph")
DTYPE = "float32"
_ELEM_BYTES = 4

DEFAULT_TIMEOUT_S = 120.0
# Failure hooks for the fault tests: rank INFERECON_COLLECTIVES_HANG_RANK sleeps forever
# before the INFERECON_COLLECTIVES_HANG_CASE-th case this run measures (0 = the first).
HANG_RANK_ENV = "INFERECON_COLLECTIVES_HANG_RANK"
HANG_CASE_ENV = "INFERECON_COLLECTIVES_HANG_CASE"
_PROGRESS = "[collectives]"


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


def _hang_hook(rank: int, index: int) -> None:
    want = os.environ.get(HANG_RANK_ENV)
    if want is not None and int(want) == rank and index == int(os.environ.get(HANG_CASE_ENV, "0")):
        while True:  # a rank stuck outside any collective: only the peers' timeout ends it
            time.sleep(3600)


def _progress(msg: str) -> None:
    sys.stderr.write(f"{_PROGRESS} {msg}\n")
    sys.stderr.flush()


def _format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


@dataclass
class _Progress:
    saved: int = 0
    current: Optional[Case] = None
    lines: bool = True  # one line per measured case (--no-progress: only messages and skips)


def run_sweep(ctx, cfg: SweepConfig, store, progress: _Progress) -> None:
    """Measure every case the store lacks; rank 0 appends each record as soon as it exists.
    `store` is None on ranks other than 0."""
    import torch.distributed as dist

    cases = plan(cfg)
    # Rank 0 alone knows what is stored; the others follow its list so all run the same calls.
    todo = [c for c in cases if not store.done(BENCHMARK, c.case_id(ctx.world_size, ctx.nodes, ctx.backend))] \
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
            _hang_hook(ctx.rank, i)
            rec = measure_case(ctx, case, cfg, ident, buffers)
            if ctx.rank == 0:
                with torchrun.signals_deferred():
                    store.append(BENCHMARK, rec)
                progress.saved += 1
                if rec["skipped"]:
                    _progress(f"{i + 1}/{len(todo)} {case.op} {case.mode} {_format_bytes(case.nominal_bytes)}: skipped ({rec['skipped']})")
                elif progress.lines:
                    _progress(f"{i + 1}/{len(todo)} {case.op} {case.mode} {_format_bytes(rec['bytes'])}: "
                              f"{rec['median_us']:.1f} us, busbw {rec['busbw_gbps']:.3f} GB/s"
                              + (" [noisy]" if rec["noisy"] else "") + (" [throttled]" if rec["throttled"] else ""))
            i += 1
        progress.current = None
        del buffers
    if ctx.device == "cuda":
        _free_device_cache(ctx)


# --------------------------------------------------------------------------------------------
# Options shared by the CLI and the torchrun entry


@dataclass(frozen=True)
class Options:
    device: str
    out: str
    quick: bool = False
    resume: bool = False
    nproc_per_node: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S
    ops: tuple[str, ...] = OPS
    max_bytes: Optional[int] = None
    progress: bool = True

    def child_argv(self) -> list[str]:
        argv = ["--device", self.device, "--out", self.out, "--timeout-s", f"{self.timeout_s:g}",
                "--ops", ",".join(self.ops)]
        if self.quick:
            argv.append("--quick")
        if not self.progress:
            argv.append("--no-progress")
        if self.max_bytes is not None:
            argv += ["--max-bytes", str(self.max_bytes)]
        return argv


def _default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _parse_ops(value) -> tuple[str, ...]:
    if value is None or value == "":
        return OPS
    ops = tuple(v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip())
    bad = [o for o in ops if o not in OPS]
    if bad:
        raise UserError(f"unknown collective {bad[0]!r}: choose from {', '.join(OPS)}")
    return ops


def options_from_args(args) -> Options:
    device = getattr(args, "device", None) or _default_device()
    if device not in ("cuda", "cpu"):
        raise UserError(f"collectives run on cuda or cpu, not {device!r}")
    out = getattr(args, "out", None)
    if not out:
        raise UserError("collectives need --out DIR")
    nproc = getattr(args, "nproc_per_node", None)
    nproc = 1 if nproc is None else int(nproc)
    if nproc < 1:
        raise UserError("--nproc-per-node must be at least 1")
    timeout_s = getattr(args, "timeout_s", None)
    timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else float(timeout_s)
    if timeout_s <= 0:
        raise UserError("--timeout-s must be positive")
    max_bytes = getattr(args, "max_bytes", None)
    return Options(device=device, out=str(out), quick=bool(getattr(args, "quick", False)),
                   resume=bool(getattr(args, "resume", False)), nproc_per_node=nproc, timeout_s=timeout_s,
                   ops=_parse_ops(getattr(args, "ops", None)), max_bytes=None if max_bytes is None else int(max_bytes),
                   progress=not getattr(args, "no_progress", False))


def add_arguments(parser: argparse.ArgumentParser, *, common: bool = True) -> None:
    """The collectives' own options; `common` adds those `inferecon bench` shares
    (--device, --quick, --out, --resume, --no-progress) for the standalone entry point."""
    if common:
        parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda if available")
        parser.add_argument("--quick", action="store_true", help="fewer, smaller messages and shorter budgets")
        parser.add_argument("--out", required=True, help="run directory")
        parser.add_argument("--resume", action="store_true", help="continue the run in --out, skipping stored cases")
        parser.add_argument("--no-progress", action="store_true", help="no per-case lines on stderr")
    parser.add_argument("--nproc-per-node", type=int, default=None,
                        help="ranks to start on this node with torchrun when not already under torchrun/srun (default 1)")
    parser.add_argument("--timeout-s", type=float, default=None,
                        help=f"bound on any one collective call; a hung or dead rank ends the run after it (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--ops", default=None, help=f"comma-separated subset of {','.join(OPS)}")
    parser.add_argument("--max-bytes", type=int, default=None, help="largest message (bytes) of the sweep")


# --------------------------------------------------------------------------------------------
# Inside the world: every rank runs this


def _manifest(opts: Options, extra: Optional[dict] = None) -> dict:
    from inferecon.harness import device as hdevice

    # A bench run (run_kind): `bench --resume` may continue it, calibrate --resume may not.
    return {"command_line": list(sys.argv), **hdevice.collect_metadata(opts.device), "run_kind": "bench",
            "host_class": hdevice.host_class(), "collectives": {"nproc_per_node": opts.nproc_per_node, "timeout_s": opts.timeout_s,
                            "quick": opts.quick, **(extra or {})}}


def run_in_world(opts: Options, store=None) -> int:
    """Run the sweep as one rank of the launcher's world. Rank 0 writes to `store` (or opens
    the run directory itself when given none); other ranks never write. Returns 0; a failure
    after init is one line on stderr and the process exits (status 1), Ctrl-C exits 130 —
    except that a caller's store (rank 0 of `inferecon bench`) gets the KeyboardInterrupt back
    to stamp and summarise the run itself."""
    env = hdist.detect()
    if torchrun.attached():
        torchrun.bind_to_parent()
    cfg = sweep_config(opts.device, opts.quick, opts.ops, opts.max_bytes)
    progress = _Progress(lines=opts.progress)
    callers_store = store
    own_store = False
    ctx = None
    old_term = None
    if threading.current_thread() is threading.main_thread():
        # torchrun stops the other ranks with SIGTERM when one fails: stop like Ctrl-C.
        old_term = signal.signal(signal.SIGTERM, torchrun.raise_interrupt)
    try:
        ctx = hdist.init(opts.device, opts.timeout_s, env)
        if ctx.rank != 0:
            store = None
        elif store is None:
            from inferecon.harness.store import RunStore

            attach = torchrun.attached()
            # Attached: the parent created the run directory and stamps its end; we append.
            store = RunStore(opts.out, {} if attach else _manifest(opts), resume=attach or opts.resume)
            own_store = not attach
        run_sweep(ctx, cfg, store, progress)
        if own_store:
            store.finish("complete")
        hdist.destroy()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        return 0
    except KeyboardInterrupt:
        return _interrupted(ctx, progress, opts, store, own_store, callers_store)
    except UserError as exc:
        torchrun.fail(2, str(exc), store if (own_store or store is callers_store) else None, "failed")
    except Exception as exc:  # a collective that timed out or lost a peer, mostly
        try:
            # A Ctrl-C forwarded to every rank makes a peer quit, and our call fail, a moment
            # before our own SIGINT is handled: let it land, so it reads as an interruption.
            time.sleep(0.2)
        except KeyboardInterrupt:
            return _interrupted(ctx, progress, opts, store, own_store, callers_store)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = ""
        if progress.current is not None:
            c = progress.current
            where = f" during {c.op} {c.mode} {_format_bytes(c.nominal_bytes)}"
        rank = ctx.rank if ctx is not None else (env.rank if env else 0)
        saved = f"{progress.saved} finished case(s) saved" if rank == 0 else "finished cases are saved"
        msg = (f"rank {rank}{where}: {type(exc).__name__}: {first[:300]} "
               f"(a rank died or hung; --timeout-s {opts.timeout_s:g}); {saved} in {opts.out}")
        torchrun.fail(1, msg, store if (own_store or store is callers_store) else None, "failed")
    return 1  # not reached


def _interrupted(ctx, progress, opts, store, own_store, callers_store) -> int:
    if ctx is not None and ctx.rank == 0:
        _progress(f"interrupted: {progress.saved} finished case(s) saved in {opts.out}")
    if own_store:
        torchrun.safe_finish(store, "interrupted")
    if callers_store is not None and store is callers_store:
        raise KeyboardInterrupt  # the caller stamps "interrupted" and prints what was saved
    torchrun.exit_now(130)
    return 130  # not reached


# --------------------------------------------------------------------------------------------
# Outside any world: start one with torchrun on this node


def launch_spec(opts: Options) -> torchrun.Launch:
    return torchrun.Launch(module="inferecon.kernels.collectives", argv=tuple(opts.child_argv()),
                           nproc_per_node=opts.nproc_per_node, run_dir=Path(opts.out), timeout_s=opts.timeout_s,
                           progress_prefix=_PROGRESS, what=BENCHMARK)


# --------------------------------------------------------------------------------------------
# Entry points


def run_from_cli(args, store) -> int:
    """`inferecon bench collectives`. Inside a torchrun/srun world: run the sweep here (rank 0
    writes to `store`, which must be None on the other ranks — see `is_writer_rank`). Outside:
    start `--nproc-per-node` ranks with torchrun and wait for them; `store` (created here when
    None) owns the run directory and the ranks append to it."""
    opts = options_from_args(args)
    if hdist.detect() is not None:
        if store is not None and not torchrun.is_writer_rank():
            raise UserError("internal: a run store was opened on a rank other than 0")
        return run_in_world(opts, store)
    own = store is None
    if own:
        from inferecon.harness.store import RunStore

        store = RunStore(opts.out, _manifest(opts), resume=opts.resume)
    try:
        torchrun.relaunch(launch_spec(opts), store)
    except KeyboardInterrupt:
        if own:
            store.finish("interrupted")
        raise
    except UserError:
        store.finish("failed")  # the caller turns the error into one line and stops
        raise
    if own:
        store.finish("complete")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inferecon.kernels.collectives",
                                     description="collectives microbenchmark (started by torchrun on every rank)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return exit_status(lambda: run_from_cli(args, None))


if __name__ == "__main__":
    raise SystemExit(main())
