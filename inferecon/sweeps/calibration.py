"""The cases `inferecon calibrate` measures: what the four cost terms need, and no more.

`--quick` is the regression sentinel set — GEMM peak and decode shapes, HBM read, small and
large all-reduce, launch latency — sized to finish in about a minute on one GPU node (and
in well under a minute on a CPU, for CI). The full set adds more decode shapes (so the GEMM
fit has shapes to be scored on), FP8, the read-bandwidth curve over size, and every
collective the cost model uses.

The cases reuse the benchmarks' own case functions (kernels/matmul.py, memory.py, launch.py,
collectives.py), so a calibration run is an ordinary run directory that `bench`,
`calibrate --from` and `regress` all read.

It lives in kernels/, beside the benchmarks it names, because it is a choice of what to time:
harness/ (how to time and store) never imports kernels/, and `inferecon calibrate` (its only
caller) is a command, which other code must not import.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferecon.harness.runner import Case, SweepContext
from inferecon.kernels import cpu_ops, gpu_ops, launch, matmul, memory

KB, MB, GB = 1024, 1024**2, 1024**3


@dataclass(frozen=True)
class Plan:
    square: dict  # dtype -> sizes
    decode: tuple  # ((N, K, label), ...)
    decode_m: tuple
    decode_dtypes: tuple
    read_sizes: tuple
    extra_memory_ops: tuple  # write/copy sizes: ((op, bytes), ...)
    launch_ops: tuple
    collective_ops: tuple
    collective_max_bytes: int | None


def _projections(names):
    out = []
    for name in names:
        for proj, n, k in matmul.MODELS[name].projections():
            out.append((n, k, f"{name}/{proj}"))
    return tuple(out)


def plan(device: str, quick: bool, fp8: bool) -> Plan:
    if device == "cuda":
        if quick:
            return Plan({"bf16": (8192,)}, _projections(["llama-3-70b"]), (1, 16, 64, 256), ("bf16",),
                        (64 * MB, 1 * GB, 4 * GB), (), ("kernel_eager", "kernel_graph", "sync"),
                        ("all_reduce",), None)
        square = {"bf16": (1024, 2048, 4096, 8192)}
        dtypes = ("bf16",)
        if fp8:
            square["fp8"] = (4096, 8192)
            dtypes = ("bf16", "fp8")
        return Plan(square, _projections(["llama-3-8b", "llama-3-70b", "llama-3.1-405b"]),
                    (1, 2, 4, 8, 16, 32, 64, 128, 256, 512), dtypes,
                    (1 * MB, 4 * MB, 16 * MB, 64 * MB, 256 * MB, 1 * GB, 2 * GB, 4 * GB),
                    (("copy", 1 * GB), ("write", 1 * GB)), ("kernel_eager", "kernel_graph", "sync"),
                    ("all_reduce", "all_gather", "all_to_all", "send_recv"), None)
    # CPU: fp32 and bf16 (what a CPU decode and a CPU serving engine run: vLLM's CPU build
    # serves both through oneDNN on prepacked weights, bf16 on AMX or AVX-512-BF16 where
    # present). The square shapes give the peaks; the decode GEMMs, decode attention, the
    # elementwise ops and the per-op floor are timed together, interleaved, by cpu_op_cases
    # (kernels/cpu_ops.py), and fitted both as the GEMM fit and as the profile's op-level fits.
    if quick:
        return Plan({"fp32": (256, 512), "bf16": (256, 512)}, (), (), ("fp32", "bf16"),
                    (1 * MB, 16 * MB, 64 * MB, 128 * MB, 256 * MB), (), ("kernel_eager",),
                    ("all_reduce",), 1 * MB)
    return Plan({"fp32": (256, 512, 1024), "bf16": (256, 512, 1024)}, (), (), ("fp32", "bf16"),
                (256 * KB, 1 * MB, 4 * MB, 16 * MB, 64 * MB, 128 * MB, 256 * MB, 512 * MB),
                (("copy", 256 * MB), ("write", 256 * MB)), ("kernel_eager",),
                ("all_reduce", "all_gather", "all_to_all", "send_recv"), 16 * MB)


def matmul_cases(ctx: SweepContext, p: Plan, quick: bool) -> list[Case]:
    out = []
    for dtype, sizes in p.square.items():
        for s in sizes:
            params = matmul.case_params("square", s, s, s, dtype)
            cmp = ctx.device == "cuda" and (s, dtype) == (8192, "bf16")
            out.append(Case(matmul.case_id(params), params,
                            lambda params=params, cmp=cmp: matmul.run_case(params, ctx.device, quick, cmp)))
    for dtype in p.decode_dtypes:
        for n, k, label in p.decode:
            for m in p.decode_m:
                model, _, proj = label.partition("/")
                params = matmul.case_params("decode", m, n, k, dtype, model, proj)
                out.append(Case(matmul.case_id(params), params,
                                lambda params=params: matmul.run_case(params, ctx.device, quick)))
    return out


def cpu_op_cases(ctx: SweepContext, p: Plan, quick: bool) -> list[Case]:
    """The interleaved op timings of a CPU decode step (none on a GPU)."""
    return cpu_ops.cases(ctx, quick)


def gpu_op_cases(ctx: SweepContext, p: Plan, quick: bool) -> list[Case]:
    """A GPU decode step's ops one shape at a time (kernels/gpu_ops.py; none on a CPU): decode
    and prefill GEMMs per dtype, decode attention, elementwise, the kernel floor in a graph."""
    return gpu_ops.cases(ctx, quick)


def memory_cases(ctx: SweepContext, p: Plan, quick: bool) -> list[Case]:
    todo = [("read", b) for b in p.read_sizes] + list(p.extra_memory_ops)
    return [Case(memory.case_id(op, b), {"op": op, "bytes": b, "bytes_moved": memory.bytes_moved(op, b)},
                 lambda op=op, b=b: memory.run_case(op, b, ctx.device, quick)) for op, b in todo]


def launch_cases(ctx: SweepContext, p: Plan, quick: bool) -> list[Case]:
    return [Case(op, {"op": op}, lambda op=op: launch.run_case(op, ctx.device, quick)) for op in p.launch_ops]
