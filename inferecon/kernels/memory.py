"""Memory bandwidth: read, write and copy over buffer sizes from inside L2 to several GB.

Bytes counted (DESIGN.md): read = buffer bytes, write = buffer bytes, copy = 2 x buffer bytes
(read + write), GB = 1e9 bytes.

- read: a kernel that only reads — on GPU a Triton kernel (each program streams a grid-strided
  share of the buffer and writes one float), else a torch sum, whose output is one scalar;
  on CPU a torch sum. Reads are what decode steps do to weights and KV cache.
- write: fill_ of the buffer.
- copy: dst.copy_(src) of two buffers of the given size (the buffer size is per buffer).

GPU cases smaller than a few times L2 flush L2 before every repetition, so they report
cold (HBM) traffic plus launch cost, which is what a decode kernel sees; bigger cases do not
need it. CPU cases are not flushed: sizes well above the last-level cache are the DRAM figure.
"""

from __future__ import annotations

from inferecon.harness.runner import Case, SweepContext, timing_config
from inferecon.harness.timing import measure

BENCHMARK = "memory"
BENCHMARK_VERSION = 1

KB, MB, GB = 1024, 1024**2, 1024**3
OPS = ("read", "write", "copy")


def sizes(device: str, quick: bool) -> list[int]:
    if device == "cuda":
        if quick:
            return [4 * MB, 64 * MB, 1 * GB]
        return [1 * MB, 4 * MB, 16 * MB, 32 * MB, 64 * MB, 128 * MB, 256 * MB, 512 * MB, 1 * GB, 2 * GB, 4 * GB]
    if quick:
        return [256 * KB, 4 * MB, 64 * MB]
    return [64 * KB, 1 * MB, 8 * MB, 64 * MB, 256 * MB, 1 * GB]


def bytes_moved(op: str, nbytes: int) -> int:
    return 2 * nbytes if op == "copy" else nbytes


def _fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", GB), ("MiB", MB), ("KiB", KB)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"


def case_id(op: str, nbytes: int) -> str:
    return f"{op}:{_fmt_bytes(nbytes)}"


# --------------------------------------------------------------------------------------------
# The read-only Triton kernel, built on first use (triton is optional).

_TRITON_READ = None


def _triton_read_kernel():
    global _TRITON_READ
    if _TRITON_READ is not None:
        return _TRITON_READ or None
    try:
        import triton
        import triton.language as tl

        @triton.jit
        def _read_kernel(x_ptr, out_ptr, n_elements, BLOCK: tl.constexpr):
            pid = tl.program_id(0)
            nprog = tl.num_programs(0)
            acc = tl.zeros([BLOCK], dtype=tl.float32)
            # int64 offsets: buffers of several GB exceed 2^31 elements' byte range.
            start = pid.to(tl.int64) * BLOCK
            step = nprog.to(tl.int64) * BLOCK
            for off in range(start, n_elements, step):
                offs = off + tl.arange(0, BLOCK)
                acc += tl.load(x_ptr + offs, mask=offs < n_elements, other=0.0)
            # One float per program: the only write, negligible next to the buffer.
            tl.store(out_ptr + pid, tl.sum(acc, axis=0))

        _TRITON_READ = _read_kernel
    except Exception:
        _TRITON_READ = False
    return _TRITON_READ or None


def _read_fn(x, device: str):
    """(fn, name) of the read-only kernel for fp32 buffer x."""
    import torch

    kernel = _triton_read_kernel() if device == "cuda" else None
    if kernel is not None:
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count
        # Enough programs to fill every SM several times over; small buffers need fewer.
        block = 4096
        nprog = max(1, min(sms * 8, -(-x.numel() // block)))
        partial = torch.empty(nprog, device=x.device, dtype=torch.float32)

        def fn():
            kernel[(nprog,)](x, partial, x.numel(), BLOCK=block, num_warps=8)

        try:
            fn()
            torch.cuda.synchronize()
            # The kernel must really read everything: check its sum against torch's.
            if not torch.allclose(partial.sum(), x.sum(), rtol=1e-3, atol=1e-2):
                raise RuntimeError("triton read kernel sum mismatch")
            return fn, "triton"
        except Exception as exc:
            if "out of memory" in str(exc).lower():
                raise
    return (lambda: torch.sum(x)), "torch_sum"


def run_case(op: str, nbytes: int, device: str, quick: bool) -> dict:
    import torch

    flush = False
    if device == "cuda":
        l2 = int(getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "L2_cache_size", 0) or 0)
        flush = bytes_moved(op, nbytes) < 4 * max(l2, 1)
    n = nbytes // 4
    kernel = ""
    if op == "read":
        # Values in [0, 1): a sum in fp32 stays finite and comparable between implementations.
        x = torch.rand(n, device=device, dtype=torch.float32)
        fn, kernel = _read_fn(x, device)
    elif op == "write":
        x = torch.empty(n, device=device, dtype=torch.float32)
        fn, kernel = (lambda: x.fill_(1.0)), "fill_"
    elif op == "copy":
        src = torch.rand(n, device=device, dtype=torch.float32)
        dst = torch.empty_like(src)
        fn, kernel = (lambda: dst.copy_(src)), "copy_"
    else:
        raise ValueError(op)
    m = measure(fn, device=device, config=timing_config(device, quick, flush_l2=flush))
    out = m.record_fields()
    out["gbps"] = bytes_moved(op, nbytes) / m.median_s / 1e9
    out["kernel"] = kernel
    out["flush_l2"] = flush
    return out


def cases(ctx: SweepContext, quick: bool) -> list[Case]:
    out = []
    for op in OPS:
        for nbytes in sizes(ctx.device, quick):
            params = {"op": op, "bytes": nbytes, "bytes_moved": bytes_moved(op, nbytes)}
            out.append(Case(case_id(op, nbytes), params,
                            lambda op=op, nbytes=nbytes: run_case(op, nbytes, ctx.device, quick)))
    return out
