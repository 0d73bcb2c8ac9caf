"""Does host work run slower right after a GEMM that streamed a large weight? (issue 21)

vLLM's profiled CPU worker spent about twice the 8-layer null model's host time (Python, op
dispatch, small torch ops) when it served the 155 M model (results/vllm-cpu-20261202-4/
profile/). The null model's weights fit the caches; the served model's GEMMs stream 2-16 MB
each, evicting whatever the host work after them touches. This times a fixed chain of 9 small
torch ops (vLLM's native RMSNorm with a residual, at hidden 1024, bf16) right after one of
vLLM's own GEMMs (`_C.onednn_mm`, cycling 8 weights so each is cold) and again right after
itself (warm), paired, 300 times, one thread:

    python scripts/vllm_cold_host.py VLLM_C_LIBRARY        (run under `taskset -c CORE`)

VLLM_C_LIBRARY: vLLM's `_C.abi3.so` (the loop's .venv-vllm); the torch must be the one it was
built for. Prints the median and 25th percentile of both, per weight size.
"""

from __future__ import annotations

import statistics
import sys
import time


def main(lib: str) -> None:
    import torch

    torch.set_num_threads(1)
    torch.ops.load_library(lib)
    dt = torch.bfloat16
    h, r, w = torch.rand(1, 1024).to(dt), torch.rand(1, 1024).to(dt), torch.ones(1024, dtype=dt)

    def chain():  # vllm RMSNorm.forward_native with a residual: 9 aten ops
        z = h.to(torch.float32) + r.to(torch.float32)
        v = z.pow(2).mean(dim=-1, keepdim=True)
        return (z * torch.rsqrt(v + 1e-5)).to(dt) * w

    for label, (n, k) in {"16 MB (gate_up 8192 x 1024)": (8192, 1024), "2 MB (o 1024 x 1024)": (1024, 1024),
                          "8 KB (64 x 64)": (64, 64)}.items():
        ws = [(torch.rand(n, k) - 0.5).to(dt) for _ in range(8)]
        handlers = [torch.tensor(torch.ops._C.create_onednn_mm_handler(q.t(), 32), dtype=torch.int64) for q in ws]
        x = (torch.rand(1, k) - 0.5).to(dt)
        cold, warm = [], []
        for i in range(300):
            out = torch.empty(1, n, dtype=dt)
            torch.ops._C.onednn_mm(out, x, None, handlers[i % 8])
            t0 = time.perf_counter_ns()
            chain()
            t1 = time.perf_counter_ns()
            chain()
            t2 = time.perf_counter_ns()
            cold.append((t1 - t0) / 1e3)
            warm.append((t2 - t1) / 1e3)
        print(f"after a {label} GEMM: 9 ops median {statistics.median(cold):.1f} us (p25 {sorted(cold)[75]:.1f}); "
              f"after themselves {statistics.median(warm):.1f} us (p25 {sorted(warm)[75]:.1f})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
