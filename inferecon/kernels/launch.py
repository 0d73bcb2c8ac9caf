"""Fixed per-kernel costs: the cost model's latency term.

- kernel_eager: one launch of an (almost) empty kernel from Python, back to back, timed on
  the host over `inner_reps` launches with one synchronize at the end — the rate at which a
  framework can issue small kernels, which bounds a decode step made of hundreds of them.
  The kernel is an in-place add on a one-element tensor ; on CPU the same op measures the dispatcher overhead.
- kernel_graph: the same kernels captured in one CUDA graph and replayed, timed with CUDA
  events, per kernel — what serving stacks that use CUDA graphs pay. GPU only.
- sync: torch.cuda.synchronize() on an idle device, timed on the host. GPU only.
"""

from __future__ import annotations

import time

from inferecon.harness.runner import Case, SkipCase, SweepContext, timing_config
from inferecon.harness.timing import measure

BENCHMARK = "launch"
BENCHMARK_VERSION = 1

OPS = ("kernel_eager", "kernel_graph", "sync")
# Launches per timed repetition: enough that the clock and the final synchronize are < 1%.
INNER = 200

def _tiny_kernel(device: str):
    """(fn, name): the cheapest kernel we can launch from Python."""
    import torch

    x = torch.zeros(1, device=device)
    # A one-element add does no work worth timing; and a torch op's launch path is the one a
    # model's decode step really issues (an empty Triton kernel launches slower from Python).
    return (lambda: x.add_(1.0)), "torch.add_"


def run_case(op: str, device: str, quick: bool) -> dict:
    import torch

    if op in ("kernel_graph", "sync") and device != "cuda":
        raise SkipCase(f"{op} needs a CUDA device")
    fn, kernel = _tiny_kernel(device)
    if op == "kernel_eager":
        # Host clock: CUDA events would time the GPU's idle gaps, not the launch path.
        config = timing_config(device, quick, inner_reps=INNER)
        m = measure(fn, device=device, config=config, timer=time.perf_counter_ns)
    elif op == "kernel_graph":
        config = timing_config(device, quick, inner_reps=INNER, cuda_graph=True)
        m = measure(fn, device=device, config=config)
    else:  # sync of an idle device: time the call alone, many in a row
        config = timing_config(device, quick, inner_reps=INNER)
        m = measure(torch.cuda.synchronize, device=device, config=config, timer=time.perf_counter_ns)
        kernel = "torch.cuda.synchronize"
    out = m.record_fields()
    out["time_us"] = m.median_us
    out["inner_reps"] = INNER
    out["kernel"] = kernel
    out["timer"] = m.timer_name
    return out


def cases(ctx: SweepContext, quick: bool) -> list[Case]:
    return [Case(op, {"op": op}, lambda op=op: run_case(op, ctx.device, quick)) for op in OPS]
