"""Are vLLM's CPU GEMMs slower inside a decode step than the calibration times them? (issue 21)

A quiet fp32 c1 profile of the served model (results/vllm-cpu-20261202-5/profile/0420-served/)
has 22.6 ms of `_C::onednn_mm` a step, the calibration's cases 15-19 ms. Both call the same
kernel on the same packed layout (vllm/model_executor/layers/utils.py
dispatch_cpu_unquantized_gemm: `create_onednn_mm_handler(W^T, 32)`, then `onednn_mm` into a
fresh output; no sgl kernel without AMX). What differs is the order: the calibration cycles
copies of one shape, the server runs every layer's qkv, o, gate_up, down (distinct weights)
and then lm_head. This times both orders with the served model's weights, interleaved in one
process, one thread:

    python scripts/vllm_gemm_check.py VLLM_C_LIBRARY [ROUNDS] [DTYPE...]   (under `taskset -c CORE`)

"cycled": copies of one shape called back to back, as many as the calibration cycles (cpu_ops.py
          _copies: each weight last touched >= 2 x the last-level cache of traffic ago).
"step":   the served model's 8 layers in order, each GEMM timed, then lm_head.
"step+ops": the same with the 9 small torch ops of a native RMSNorm after each GEMM.
Prints per shape the median and 25th percentile (us) of each order, and each order's sum over
one step (8 x each layer GEMM + lm_head).
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time

LAYERS = 8
HIDDEN = 1024
# (name, N, K) as cpu_ops.decode_gemms fuses them for the served model (scripts/vllm_cpu_loop.py CONFIG).
LAYER_GEMMS = (("qkv", 1536, 1024), ("o", 1024, 1024), ("gate_up", 8192, 1024), ("down", 1024, 4096))
LM_HEAD = ("lm_head", 16384, 1024)
MAX_COPIES = 512  # cpu_ops.MAX_COPIES


def llc_bytes() -> int:
    """The largest cache sysfs reports for cpu0 (harness/timing.cpu_last_level_cache_bytes)."""
    import glob

    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        text = open(path).read().strip().upper()
        mult = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KM")) * mult)
    return max(sizes) if sizes else 32 << 20


def copies(nbytes: int) -> int:
    """cpu_ops._copies at the calibration's flush (2 x the last-level cache): each call's weight was
    last touched at least that many bytes of traffic ago."""
    return int(min(MAX_COPIES, max(2, math.ceil(2 * llc_bytes() / nbytes) + 1)))


def main(lib: str, rounds: int, dtypes: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    torch.ops.load_library(lib)
    for name in dtypes:
        dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[name]

        def handler(n, k):
            w = (torch.rand(n, k) - 0.5).to(dt)
            return torch.tensor(torch.ops._C.create_onednn_mm_handler(w.t(), 32), dtype=torch.int64), w

        layers = [[(lbl, n, k, *handler(n, k)) for lbl, n, k in LAYER_GEMMS] for _ in range(LAYERS)]
        head = (*LM_HEAD, *handler(LM_HEAD[1], LM_HEAD[2]))
        cycled = {lbl: [(lbl, n, k, *handler(n, k)) for _ in range(copies(n * k * dt.itemsize))]
                  for lbl, n, k in LAYER_GEMMS + (LM_HEAD,)}
        xs = {k: (torch.rand(1, k) - 0.5).to(dt) for k in (1024, 4096)}
        h, r, w1 = torch.rand(1, HIDDEN).to(dt), torch.rand(1, HIDDEN).to(dt), torch.ones(HIDDEN, dtype=dt)

        def ops():  # vllm RMSNorm.forward_native with a residual: 9 aten ops
            z = h.to(torch.float32) + r.to(torch.float32)
            v = z.pow(2).mean(dim=-1, keepdim=True)
            return (z * torch.rsqrt(v + 1e-5)).to(dt) * w1

        def call(g, times, with_ops=False):
            lbl, n, k, hw, _ = g
            t0 = time.perf_counter_ns()
            out = torch.empty(1, n, dtype=dt)
            torch.ops._C.onednn_mm(out, xs[k], None, hw)
            times.setdefault(lbl, []).append((time.perf_counter_ns() - t0) / 1e3)
            if with_ops:
                ops()

        res = {"cycled": {}, "step": {}, "step+ops": {}}
        for i in range(rounds):
            for order in random.Random(i).sample(list(res), len(res)):  # the three orders in a varying order
                t = res[order]
                if order == "cycled":
                    for lbl, gs in cycled.items():
                        for j in range(LAYERS if lbl != "lm_head" else 1):
                            call(gs[(i * LAYERS + j) % len(gs)], t)
                else:
                    for layer in layers:
                        for g in layer:
                            call(g, t, order == "step+ops")
                    call(head, t, order == "step+ops")
        # the first round warms the primitive caches: left out
        kept = {o: {lbl: v[len(v) // rounds:] for lbl, v in t.items()} for o, t in res.items()}
        print(f"{name}, {rounds} rounds (the first left out), one thread: per-call us, median (p25)")
        for lbl, _, _ in LAYER_GEMMS + (LM_HEAD,):
            print(f"  {lbl:8s} " + "  ".join(
                f"{o} {statistics.median(kept[o][lbl]):7.1f} ({sorted(kept[o][lbl])[len(kept[o][lbl]) // 4]:7.1f})"
                for o in kept))
        for o in kept:
            step = sum(statistics.median(kept[o][lbl]) * (1 if lbl == "lm_head" else LAYERS)
                       for lbl, _, _ in LAYER_GEMMS + (LM_HEAD,))
            print(f"  {o}: a step's GEMMs {step / 1e3:.2f} ms (medians)")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20, sys.argv[3:] or ["fp32", "bf16"])
