"""The one timing function every benchmark uses (DESIGN.md, "Measuring").

Contract of `measure(fn, device=..., config=...)`:

1. synchronize, call `fn` once (compilation, allocator and cuBLAS heuristics warm up);
2. estimate what one repetition costs in wall time from a few timed ones (its flush included;
   one is enough where min_reps of it already exceed the budget);
3. warm up for `warmup_ms`, then time `reps` repetitions, with `reps` chosen so the timed
   part lasts about `budget_ms` (clamped to [min_reps, max_reps]);
4. each repetition is timed on its own: CUDA events recorded around it on GPU (one
   synchronize at the end, so the host never stalls the stream between repetitions),
   `time.perf_counter_ns` around it on CPU;
5. optional: a cache flush (write one buffer, larger than the last-level cache up to a cap)
   before every repetition, outside the timed window but inside the time budget: the
   repetition count is chosen from (call + flush) time, as triton's do_bench counts its flush
   inside its estimate, so a flush never multiplies the wall time of a case; CUDA-graph replay
   of `inner_reps` calls for microsecond-scale ops;
6. the raw per-repetition samples are kept; median and IQR summarise them, and a case whose
   IQR/median exceeds `noisy_iqr_ratio` is flagged `noisy` — never silently averaged in.

`timer` (a callable returning nanoseconds) replaces the device clock, so the statistics and
the repetition logic are testable with a seeded fake timer and no GPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

MiB = 1024 * 1024
# The flush writes twice the last-level cache: one pass of fresh lines already displaces an
# LRU cache, the second covers adaptive replacement policies that keep some old lines through
# one pass. Floors: small or unreported caches still get a buffer past any L2 of their class.
_FLUSH_FLOOR_BYTES = {"cpu": 32 * MiB, "cuda": 64 * MiB}
# The cap: triton's do_bench flushes one fixed 256 MB buffer on every GPU. It exceeds 2 x L2 of
# every current GPU (H100 50 MB, H200 60 MB as torch reports them, B200 126 MB), so on GPUs it
# never binds. On CPUs it binds where sysfs reports an LLC above 128 MiB (a server L3 shared by
# a whole socket, 3D V-cache): without it one 480 MiB L3 meant 1.9 GiB written before each
# repetition, 157 s of wall for one 0.1 s GEMM case. Past the cap the flush is partial (a
# weight smaller than LLC - cap may still be warm in L3); `FlushPlan.covers_cache` says so and
# is recorded in the manifest.
_FLUSH_CAP_BYTES = 256 * MiB
# Used when the device does not say how big its cache is.
_DEFAULT_FLUSH_BYTES = _FLUSH_CAP_BYTES
# Repetitions timed to estimate one repetition's wall time before choosing their count.
_ESTIMATE_CALLS = 3


@dataclass(frozen=True)
class TimingConfig:
    """What a measurement is allowed to cost and how it is taken."""

    warmup_ms: float = 25.0
    budget_ms: float = 100.0
    min_reps: int = 5
    max_reps: int = 1000
    flush_l2: bool = False
    cuda_graph: bool = False
    noisy_iqr_ratio: float = 0.10
    # Calls of `fn` per timed repetition (sample = elapsed / inner_reps). Amortises the clock's
    # own overhead for microsecond ops; inside a CUDA graph, the calls captured in one graph.
    inner_reps: int = 1

    def __post_init__(self):
        if self.min_reps < 1 or self.max_reps < self.min_reps:
            raise ValueError("need 1 <= min_reps <= max_reps")
        if self.inner_reps < 1:
            raise ValueError("inner_reps must be >= 1")
        if self.budget_ms <= 0 or self.warmup_ms < 0:
            raise ValueError("budget_ms must be > 0 and warmup_ms >= 0")


@dataclass
class Measurement:
    """Raw per-repetition times and their robust summary (seconds)."""

    samples_s: list[float]
    median_s: float
    iqr_s: float
    noisy: bool
    reps: int
    inner_reps: int = 1
    timer_name: str = "perf_counter_ns"
    # Bytes the cache flush wrote before each repetition (0: no flush).
    flush_bytes: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_samples(
        cls, samples_s, *, noisy_iqr_ratio: float = 0.10, inner_reps: int = 1, timer_name: str = ""
    ) -> "Measurement":
        arr = np.asarray(list(samples_s), dtype=float)
        if arr.size == 0:
            raise ValueError("no samples")
        q1, med, q3 = np.percentile(arr, [25, 50, 75])
        iqr = float(q3 - q1)
        # A zero median happens only with a broken clock; call it noisy rather than divide by 0.
        noisy = bool(med <= 0 or iqr / med > noisy_iqr_ratio)
        return cls(
            samples_s=[float(x) for x in arr],
            median_s=float(med),
            iqr_s=iqr,
            noisy=noisy,
            reps=int(arr.size),
            inner_reps=inner_reps,
            timer_name=timer_name,
        )

    @property
    def median_us(self) -> float:
        return self.median_s * 1e6

    @property
    def iqr_us(self) -> float:
        return self.iqr_s * 1e6

    def record_fields(self) -> dict:
        """The timing columns of a measurement record (DESIGN.md schema)."""
        return {
            "samples_us": [s * 1e6 for s in self.samples_s],
            "median_us": self.median_us,
            "iqr_us": self.iqr_us,
            "reps": self.reps,
            "noisy": self.noisy,
            "flush_bytes": self.flush_bytes,
        }


# --------------------------------------------------------------------------------------------
# Clocks: each times `n` repetitions of `run` and returns per-repetition seconds.


class _HostClock:
    """perf_counter_ns (or an injected timer) around each repetition; the device is
    synchronized inside the window so asynchronous work is counted."""

    def __init__(self, timer: Callable[[], int], sync: Callable[[], None], name: str):
        self.timer = timer
        self.sync = sync
        self.name = name

    def time_reps(self, run, n: int, before_each=None) -> list[float]:
        out = []
        for _ in range(n):
            if before_each is not None:
                before_each()
            self.sync()
            t0 = self.timer()
            run()
            self.sync()
            t1 = self.timer()
            out.append((t1 - t0) * 1e-9)
        return out


class _CudaEventClock:
    """A pair of CUDA events per repetition on the current stream; a single synchronize at the
    end so the host keeps the queue full and launch gaps are not timed (triton's do_bench)."""

    name = "cuda_event"

    def __init__(self, torch_mod):
        self.torch = torch_mod

    def time_reps(self, run, n: int, before_each=None) -> list[float]:
        torch = self.torch
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for i in range(n):
            if before_each is not None:
                before_each()  # the L2 flush is enqueued before the start event: not timed
            starts[i].record()
            run()
            ends[i].record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends)]  # ms -> s


def _torch():
    import torch

    return torch


@dataclass(frozen=True)
class FlushPlan:
    """How big the cache flush of `device` is, and why."""

    device: str
    flush_bytes: int
    cache_bytes: Optional[int]  # last-level cache (CPU, sysfs) or L2 (GPU, torch), if reported
    cache_source: str
    capped: bool  # 2 x cache exceeded the cap: the flush is smaller than asked

    @property
    def covers_cache(self) -> bool:
        """True where the flush writes at least the whole reported cache once."""
        return self.cache_bytes is not None and self.flush_bytes >= self.cache_bytes

    def manifest_fields(self) -> dict:
        return {"device": self.device, "flush_bytes": self.flush_bytes, "cache_bytes": self.cache_bytes,
                "cache_source": self.cache_source, "capped": self.capped,
                "covers_cache": self.covers_cache, "cap_bytes": _FLUSH_CAP_BYTES}


def flush_size(cache_bytes: Optional[int], device: str) -> tuple[int, bool]:
    """(bytes to write, capped?) for a cache of `cache_bytes`: 2 x cache, floored, capped."""
    if not cache_bytes or cache_bytes <= 0:
        return _DEFAULT_FLUSH_BYTES, False
    want = max(2 * int(cache_bytes), _FLUSH_FLOOR_BYTES[device])
    return min(want, _FLUSH_CAP_BYTES), want > _FLUSH_CAP_BYTES


def flush_plan(device: str) -> FlushPlan:
    """The flush `measure` uses on `device` ("cpu" or "cuda")."""
    if device == "cuda":
        torch = _torch()
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        cache = int(getattr(props, "L2_cache_size", 0) or 0) or None
        source = "torch.cuda L2_cache_size" if cache else "not reported"
    else:
        cache = cpu_last_level_cache_bytes()
        source = "sysfs cpu0 largest cache" if cache else "not reported"
    nbytes, capped = flush_size(cache, device)
    return FlushPlan(device, nbytes, cache, source, capped)


def l2_flush_bytes(device: str) -> int:
    """Bytes to write so that nothing of the previous repetition stays in the last-level cache
    (up to the cap; see FlushPlan)."""
    return flush_plan(device).flush_bytes


def cpu_last_level_cache_bytes() -> Optional[int]:
    """Size of the largest CPU cache Linux reports (sysfs), or None."""
    import glob

    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            text = open(path).read().strip().upper()
        except OSError:
            continue
        mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * mult)
    return max(sizes) if sizes else None


# One flush buffer per (device, size), kept for the process: allocating (and on CPU
# page-faulting) a fresh buffer for every case cost as much as the flushes themselves.
_FLUSH_BUFFERS: dict = {}


def _make_flush(device: str, flush_bytes: Optional[int]):
    """(flush callable, bytes it writes, whether the buffer is new and not yet paged in)."""
    torch = _torch()
    nbytes = int(flush_bytes or l2_flush_bytes(device))
    key = (device, nbytes)
    buf = _FLUSH_BUFFERS.get(key)
    new = buf is None
    if new:
        for old in [k for k in _FLUSH_BUFFERS if k[0] == device]:
            del _FLUSH_BUFFERS[old]  # one buffer per device: a new size replaces the old one
        buf = torch.empty(nbytes // 4, dtype=torch.int32, device=device)
        _FLUSH_BUFFERS[key] = buf
    return buf.zero_, nbytes, new  # writing the whole buffer evicts what the last repetition cached


def release_flush_buffers() -> None:
    """Free the kept flush buffers (a caller about to need the memory)."""
    _FLUSH_BUFFERS.clear()


def capture_graph(fn, inner: int):
    """Capture `inner` calls of fn in one CUDA graph and return it (torch.cuda.graphs: warm up
    on a side stream first, as capture requires — for NCCL calls this also creates the
    communicator and its connections, which capture cannot)."""
    torch = _torch()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(inner):
            fn()
    torch.cuda.synchronize()
    return graph


def measure(
    fn: Callable[[], object],
    *,
    device: str,
    config: TimingConfig = TimingConfig(),
    timer: Optional[Callable[[], int]] = None,
    flush_bytes: Optional[int] = None,
    flush_fn: Optional[Callable[[], object]] = None,
) -> Measurement:
    """Time `fn` per the module contract. `device` is "cuda" or "cpu".

    With `config.flush_l2`, `flush_fn` (a test's stand-in, writing `flush_bytes`) replaces the
    kept flush buffer of `flush_bytes` (default: `flush_plan(device)`)."""
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda' or 'cpu', not {device!r}")
    inner = config.inner_reps
    graph = None

    if device == "cuda" and timer is None:
        torch = _torch()
        sync = torch.cuda.synchronize
        clock = _CudaEventClock(torch)
    else:
        if device == "cuda":
            sync = _torch().cuda.synchronize
        else:
            sync = lambda: None  # noqa: E731 — CPU work is synchronous
        name = getattr(timer, "__name__", "injected") if timer else "perf_counter_ns"
        clock = _HostClock(timer or time.perf_counter_ns, sync, name)

    if config.cuda_graph and device == "cuda":
        graph = capture_graph(fn, inner)
        run = graph.replay
    elif inner == 1:
        run = fn
    else:
        def run():
            for _ in range(inner):
                fn()

    before_each = None
    nbytes_flushed = 0
    page_in = False
    if config.flush_l2:
        if flush_fn is not None:
            before_each, nbytes_flushed = flush_fn, int(flush_bytes or 0)
        else:
            before_each, nbytes_flushed, page_in = _make_flush(device, flush_bytes)

    # 1. first call: compilation, autotuning, lazy allocation (and a new flush buffer's pages,
    # whose first-touch faults would otherwise be timed as flush cost).
    sync()
    if page_in:
        before_each()
    run()
    sync()
    # 2. estimate what one repetition costs in wall time. With a flush, the flush is timed
    # inside the estimate (triton's do_bench does the same): the budget pays for the flushes,
    # so a flush of tens of ms before a 20 us call buys a few repetitions, not thousands.
    if before_each is not None:
        def rep():
            before_each()
            run()
    else:
        rep = run
    # One timed repetition first: where min_reps of it already overrun the budget, the count is
    # min_reps whatever the next two would say, and they are skipped (a 1 s CPU GEMM, or a 50 ms
    # flush before a 20 us one, would spend its whole budget on estimating). Not with a fixed
    # count (min_reps == max_reps): callers fix it so that every rank of a collective makes the
    # same number of calls, which a per-rank choice here would break.
    est = clock.time_reps(rep, 1)
    fixed = config.min_reps == config.max_reps
    if fixed or est[0] * config.min_reps <= config.budget_ms * 1e-3:
        est += clock.time_reps(rep, _ESTIMATE_CALLS - 1)
    rep_wall_s = max(float(np.median(est)), 1e-9)
    # 3. warm-up for warmup_ms (keeps clocks up and caches in their steady state).
    n_warm = int(min(config.max_reps, math.ceil(config.warmup_ms * 1e-3 / rep_wall_s)))
    if n_warm > 0:
        for _ in range(n_warm):
            if before_each is not None:
                before_each()
            run()
        sync()
    # 4. the timed repetitions, to the budget.
    n = int(min(config.max_reps, max(config.min_reps, math.ceil(config.budget_ms * 1e-3 / rep_wall_s))))
    samples = clock.time_reps(run, n, before_each)
    samples = [s / inner for s in samples]
    m = Measurement.from_samples(
        samples, noisy_iqr_ratio=config.noisy_iqr_ratio, inner_reps=inner, timer_name=clock.name
    )
    m.flush_bytes = nbytes_flushed
    # One repetition's wall time as estimated (flush included): what the budget was divided by.
    m.extra["rep_estimate_s"] = rep_wall_s
    m.extra["warmup_reps"] = n_warm
    m.extra["cuda_graph"] = graph is not None
    m.extra["flush_l2"] = before_each is not None
    del graph
    return m


# --------------------------------------------------------------------------------------------
# Interleaved timing under load (a shared CPU).
#
# On a loaded machine a scheduler time slice (~4-10 ms) lands on whatever is being timed at
# that moment. Timing one shape after another lets a busy minute hit a whole run of
# neighbouring shapes (medians that jumped ~10 ms between neighbouring GEMM shapes at load 7,
# results/vllm-cpu-20261201/README.md). `measure_interleaved` instead visits every callable
# once per round, in a fresh seeded order each round, and times one short block of calls per
# visit: load then spreads over all shapes alike, and each shape's figure is a low quantile of
# its blocks (the blocks no slice hit), not their median. A shape whose low quantile still sits
# well above its fastest block had most of its blocks hit: it is flagged `sliced`, and a fit
# leaves it out rather than average a time slice in.

# Quantile of a shape's block times taken as its time: robust while fewer than 3 in 4 blocks
# are hit, and above the minimum (which picks the one luckiest block and reads a few % fast).
INTERLEAVED_QUANTILE = 0.25
# `sliced` when the quantile exceeds the fastest block by more than this fraction.
SLICED_SPREAD = 0.15


@dataclass(frozen=True)
class InterleavedConfig:
    rounds: int = 12
    block_ms: float = 2.0  # wall time of one block: shorter than a scheduler slice, so a slice hits whole blocks
    max_calls_per_block: int = 200
    seed: int = 0
    quantile: float = INTERLEAVED_QUANTILE
    sliced_spread: float = SLICED_SPREAD

    def __post_init__(self):
        if self.rounds < 2 or self.block_ms <= 0 or self.max_calls_per_block < 1:
            raise ValueError("need rounds >= 2, block_ms > 0 and max_calls_per_block >= 1")
        if not 0.0 <= self.quantile <= 1.0:
            raise ValueError("quantile must be in [0, 1]")


@dataclass
class InterleavedMeasurement:
    """One callable's block times (seconds per call, one per round) and their robust summary."""

    samples_s: list[float]
    calls_per_block: int
    time_s: float  # the `quantile` of the block times: the figure a fit uses
    min_s: float
    median_s: float
    sliced: bool  # time_s exceeds min_s by more than sliced_spread: most blocks were hit

    @property
    def spread(self) -> float:
        return self.time_s / self.min_s - 1.0 if self.min_s > 0 else float("inf")

    def record_fields(self) -> dict:
        """Timing columns of a record (DESIGN.md schema; `time_us` is the figure fits use)."""
        q1, q3 = np.percentile(self.samples_s, [25, 75])
        return {
            "samples_us": [s * 1e6 for s in self.samples_s], "median_us": self.median_s * 1e6,
            "iqr_us": float(q3 - q1) * 1e6, "reps": len(self.samples_s), "noisy": self.sliced,
            "flush_bytes": 0, "time_us": self.time_s * 1e6, "min_us": self.min_s * 1e6,
            "calls_per_block": self.calls_per_block, "sliced": self.sliced, "spread": self.spread,
        }


def summarise_blocks(samples_s, calls_per_block: int, config: InterleavedConfig = InterleavedConfig()) -> InterleavedMeasurement:
    arr = np.asarray(list(samples_s), dtype=float)
    if arr.size == 0:
        raise ValueError("no samples")
    t = float(np.quantile(arr, config.quantile))
    lo = float(arr.min())
    return InterleavedMeasurement([float(x) for x in arr], calls_per_block, t, lo, float(np.median(arr)),
                                  bool(lo <= 0 or t > lo * (1.0 + config.sliced_spread)))


def measure_interleaved(fns, *, config: InterleavedConfig = InterleavedConfig(),
                        timer: Optional[Callable[[], int]] = None) -> list[InterleavedMeasurement]:
    """Time every callable of `fns` (CPU work: synchronous) in `config.rounds` interleaved
    rounds; one InterleavedMeasurement per callable, in order.

    1. each callable is called twice (allocation, kernel selection), then its block is sized
       from the fastest of 3 timed calls: block_ms / one call, clamped to [1, max_calls_per_block];
    2. every round visits all callables in a seeded random order and times one block of each;
    3. per callable: the `quantile` of its block times per call, and `sliced` (see above)."""
    clock = timer or time.perf_counter_ns
    fns = list(fns)
    calls = []
    for fn in fns:
        fn()
        fn()
        est = []
        for _ in range(_ESTIMATE_CALLS):  # the fastest of a few: one slow first call must not size every block
            t0 = clock()
            fn()
            est.append((clock() - t0) * 1e-9)
        one_s = max(min(est), 1e-9)
        calls.append(int(min(config.max_calls_per_block, max(1, round(config.block_ms * 1e-3 / one_s)))))
    rng = np.random.default_rng(config.seed)
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(config.rounds):
        for i in rng.permutation(len(fns)):
            fn, n = fns[i], calls[i]
            t0 = clock()
            for _ in range(n):
                fn()
            samples[i].append((clock() - t0) * 1e-9 / n)
    return [summarise_blocks(s, n, config) for s, n in zip(samples, calls)]
