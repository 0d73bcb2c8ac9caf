"""Does the other core's activity slow vLLM's CPU GEMMs? (issue 21)

The served model's GEMMs, timed inside vLLM's worker on the weights it serves, cost what the
calibration times (scripts/vllm_gemm_inserver.py), yet a served decode step's GEMMs take ~45%
longer (results/vllm-cpu-20261202-5/profile/). While serving, the other core runs vLLM's API
server, engine core and the bench client. This times one decode step's GEMMs of the served
model's shapes (8 layers' qkv, o, gate_up, down, then lm_head; vLLM's `_C.onednn_mm`, distinct
weights) on this core while a process on NEIGHBOUR_CORE is stopped ("idle"), spins in Python
("spin": a busy poll that touches no memory) or copies two 64 MB arrays over and over
("mem": memory streaming), the three toggled with SIGSTOP/SIGCONT round by round in a seeded
order, three steps each per round:

    taskset -c 1 python scripts/vllm_gemm_neighbour.py VLLM_C_LIBRARY ROUNDS DTYPE [NEIGHBOUR_CORE]

Prints each mode's median and 25th percentile ms per step (the first round left out). The
neighbours are this script's own children, killed at the end.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time

GEMMS = (("qkv", 1536, 1024), ("o", 1024, 1024), ("gate_up", 8192, 1024), ("down", 1024, 4096))
LM_HEAD = (16384, 1024)
LAYERS = 8
STEPS = 3  # per mode and round


def main(lib: str, rounds: int, dtype: str, core: str) -> None:
    import torch

    torch.set_num_threads(1)
    torch.ops.load_library(lib)
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]

    def handler(n, k):
        w = (torch.rand(n, k) - 0.5).to(dt)
        return n, k, torch.tensor(torch.ops._C.create_onednn_mm_handler(w.t(), 32), dtype=torch.int64), w

    calls = [handler(n, k) for _ in range(LAYERS) for _, n, k in GEMMS] + [handler(*LM_HEAD)]
    xs = {k: (torch.rand(1, k) - 0.5).to(dt) for k in (1024, 4096)}

    def step() -> float:
        t0 = time.perf_counter_ns()
        for n, k, h, _ in calls:
            out = torch.empty(1, n, dtype=dt)
            torch.ops._C.onednn_mm(out, xs[k], None, h)
        return (time.perf_counter_ns() - t0) / 1e6

    code = {"spin": "while True: pass",
            "mem": "import numpy as np\na = np.ones(8 << 20); b = np.empty_like(a)\nwhile True: np.copyto(b, a)"}
    kids = {m: subprocess.Popen(["taskset", "-c", core, sys.executable, "-c", c]) for m, c in code.items()}
    try:
        time.sleep(2)
        for p in kids.values():
            os.kill(p.pid, signal.SIGSTOP)
        res: dict[str, list[float]] = {"idle": [], "spin": [], "mem": []}
        for r in range(rounds):
            for mode in random.Random(r).sample(list(res), len(res)):
                p = kids.get(mode)
                if p:
                    os.kill(p.pid, signal.SIGCONT)
                    time.sleep(0.05)
                res[mode] += [step() for _ in range(STEPS)]
                if p:
                    os.kill(p.pid, signal.SIGSTOP)
    finally:
        for p in kids.values():
            p.kill()
            p.wait()
    print(f"{dtype}: one decode step's GEMMs (served shapes, M=1), {rounds} rounds, neighbour on core {core}")
    for m, v in res.items():
        v = v[STEPS:]
        print(f"  {m:5s} median {statistics.median(v):6.2f} ms, p25 {sorted(v)[len(v) // 4]:6.2f}, n {len(v)}")


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        raise SystemExit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) == 5 else "0")
