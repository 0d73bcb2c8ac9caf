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

    python scripts/vllm_cold_host.py VLLM_C_LIBRARY --step OUT_JSON [ROUNDS]

The same chain inside a decode step of the served model (kernels/cpu_ops.py SERVED: every layer's
qkv, o, gate_up, down on distinct weights, then lm_head), right after each GEMM ("cold") and
right after itself ("warm"), in bf16 and fp32 (the chain in the model's dtype), ROUNDS steps
(default 20, the first left out). Writes {dtype: {cold_us, warm_us, ratio, pairs}} (medians;
ratio = cold / warm) to OUT_JSON: the factor by which host work the null models measure with warm
caches runs slower among the served model's weight streams (vllm_cpu_loop.py null-engine
--cold-host).
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


def in_step(lib: str, out: str, rounds: int) -> None:
    import json

    import torch

    torch.set_num_threads(1)
    torch.ops.load_library(lib)
    gemms = (("qkv", 1536, 1024), ("o", 1024, 1024), ("gate_up", 8192, 1024), ("down", 1024, 4096))
    res = {}
    for name, dt in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        h, r, w = torch.rand(1, 1024).to(dt), torch.rand(1, 1024).to(dt), torch.ones(1024, dtype=dt)

        def chain():  # vllm RMSNorm.forward_native with a residual: 9 aten ops
            z = h.to(torch.float32) + r.to(torch.float32)
            v = z.pow(2).mean(dim=-1, keepdim=True)
            return (z * torch.rsqrt(v + 1e-5)).to(dt) * w

        def handler(n, k):
            q = (torch.rand(n, k) - 0.5).to(dt)
            return n, (torch.rand(1, k) - 0.5).to(dt), torch.tensor(torch.ops._C.create_onednn_mm_handler(q.t(), 32),
                                                                   dtype=torch.int64), q

        step = [handler(n, k) for _ in range(8) for _, n, k in gemms] + [handler(16384, 1024)]
        cold, warm = [], []
        for i in range(rounds):
            for n, x, hw, _ in step:
                o = torch.empty(1, n, dtype=dt)
                torch.ops._C.onednn_mm(o, x, None, hw)
                t0 = time.perf_counter_ns()
                chain()
                t1 = time.perf_counter_ns()
                chain()
                t2 = time.perf_counter_ns()
                if i:  # the first step warms the primitive caches
                    cold.append((t1 - t0) / 1e3)
                    warm.append((t2 - t1) / 1e3)
        c, wm = statistics.median(cold), statistics.median(warm)
        res[name] = {"cold_us": c, "warm_us": wm, "ratio": c / wm, "pairs": len(cold)}
        print(f"{name}: 9 ops inside the served model's step {c:.1f} us, after themselves {wm:.1f} us: x{c / wm:.2f} "
              f"({len(cold)} pairs)")
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[2] == "--step" and len(sys.argv) <= 5:
        in_step(sys.argv[1], sys.argv[3], int(sys.argv[4]) if len(sys.argv) == 5 else 20)
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        raise SystemExit(__doc__)
