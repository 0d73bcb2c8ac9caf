"""The sweep loop shared by every benchmark: skip stored cases (resume), watch clocks around
each case, turn out-of-memory into a `skipped` record and go on, save after every case, show
progress (case, i/n, ETA) on stderr, and on Ctrl-C stop with every finished case saved.

A benchmark module supplies `Case`s; each case's `run()` allocates its tensors, calls
`timing.measure` and returns the timing fields plus its derived figures.
"""

from __future__ import annotations

import gc
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, TextIO

from inferecon.harness.device import ClockWatcher
from inferecon.harness.store import RunStore
from inferecon.harness.timing import TimingConfig, release_flush_buffers


class SkipCase(Exception):
    """Raised by a case that cannot run here (unsupported dtype, too little memory): the
    reason is recorded in `skipped` and the sweep goes on."""


@dataclass(frozen=True)
class Case:
    case_id: str
    params: dict  # the case's parameter columns (m, n, k, dtype, op, bytes, ...)
    run: Callable[[], dict] = field(compare=False, repr=False)


@dataclass(frozen=True)
class SweepContext:
    """Where a sweep runs; every record carries these."""

    device: str
    device_name: str
    gpu_count: int
    quick: bool = False


@dataclass
class SweepResult:
    benchmark: str
    measured: int = 0
    resumed: int = 0  # already in the store, not re-measured
    skipped: int = 0  # recorded with a reason (OOM, unsupported)
    interrupted: bool = False


def timing_config(device: str, quick: bool, **overrides) -> TimingConfig:
    """Default budgets: quick sweeps exist for CI and smoke tests, full ones for numbers."""
    if device == "cuda":
        base = dict(warmup_ms=10, budget_ms=50, min_reps=10, max_reps=2000) if quick else \
            dict(warmup_ms=25, budget_ms=200, min_reps=20, max_reps=5000)
    else:
        base = dict(warmup_ms=2, budget_ms=25, min_reps=5, max_reps=500) if quick else \
            dict(warmup_ms=20, budget_ms=200, min_reps=10, max_reps=5000)
    base.update(overrides)
    return TimingConfig(**base)


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg
                                              or "failed to allocate" in msg)


def _free_memory(device: str) -> None:
    # After an OOM (or Ctrl-C) the kept cache-flush buffer (up to 256 MiB) goes too; the next
    # flushed case allocates it again.
    release_flush_buffers()
    gc.collect()
    if device == "cuda":
        try:
            import torch

            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        except Exception:
            pass


def _fmt_s(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """One status line per case on stderr: `[matmul 3/20] m=1 n=4096 ... ETA 12s`. Rewrites
    the line in place on a terminal, prints plain lines otherwise (CI logs). `enabled=False`
    silences the per-case lines, not the messages."""

    def __init__(self, stream: Optional[TextIO] = None, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._width = 0

    def update(self, benchmark: str, i: int, n: int, case_id: str, eta_s: float) -> None:
        if not self.enabled:
            return
        line = f"[{benchmark} {i}/{n}] {case_id}  ETA {_fmt_s(eta_s)}"
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        # Messages (resume, skipped cases) are shown even without the per-case lines.
        if self.tty and self._width:
            self.stream.write("\n")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


def _base_record(benchmark: str, version: int, ctx: SweepContext, case: Case) -> dict:
    return {
        "benchmark": benchmark,
        "benchmark_version": version,
        "case_id": case.case_id,
        "device": ctx.device,
        "device_name": ctx.device_name,
        "gpu_count": ctx.gpu_count,
        **case.params,
    }


def skipped_fields(reason: str) -> dict:
    return {"samples_us": [], "median_us": float("nan"), "iqr_us": float("nan"), "reps": 0,
            "noisy": False, "throttled": False, "skipped": reason}


def run_sweep(
    store: RunStore,
    benchmark: str,
    version: int,
    cases: list[Case],
    ctx: SweepContext,
    progress: Optional[Progress] = None,
) -> SweepResult:
    """Measure every case not yet in `store`. KeyboardInterrupt propagates after the finished
    cases are saved (they are saved as they finish; the interrupted case is dropped)."""
    progress = progress or Progress()
    result = SweepResult(benchmark)
    todo = [c for c in cases if not store.done(benchmark, c.case_id)]
    result.resumed = len(cases) - len(todo)
    if result.resumed:
        progress.message(f"[{benchmark}] resuming: {result.resumed} of {len(cases)} cases already stored")
    store.note(**{f"planned_cases_{benchmark}": len(cases)})
    started = time.monotonic()
    for i, case in enumerate(todo):
        done_n = result.resumed + i
        elapsed = time.monotonic() - started
        eta = elapsed / i * (len(todo) - i) if i else float("nan")
        progress.update(benchmark, done_n + 1, len(cases), case.case_id, eta)
        record = _base_record(benchmark, version, ctx, case)
        oom = False
        try:
            with ClockWatcher(ctx.device) as watch:
                fields = case.run()
            record.update(fields)
            record.update(watch.result.record_fields())
            record.setdefault("skipped", "")
        except KeyboardInterrupt:
            result.interrupted = True
            _free_memory(ctx.device)
            progress.close()
            raise
        except SkipCase as exc:
            record.update(skipped_fields(f"unsupported: {exc}"))
        except Exception as exc:
            if not is_oom(exc):
                raise
            oom = True
        if oom:
            # Outside the except block, so the traceback no longer pins the case's tensors.
            _free_memory(ctx.device)
            record.update(skipped_fields("out of memory"))
        if record["skipped"]:
            result.skipped += 1
            progress.message(f"[{benchmark}] {case.case_id}: skipped ({record['skipped']})")
        store.append(benchmark, record)
        result.measured += 1
    progress.close()
    return result


def warm_device(device: str, seconds: float) -> None:
    """Run matmuls for `seconds` before the first case so the GPU leaves its idle clocks
    (DESIGN.md: warm the device before a sweep). Nothing to do on CPU."""
    if device != "cuda" or seconds <= 0:
        return
    import torch

    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()
    del a
    torch.cuda.empty_cache()
