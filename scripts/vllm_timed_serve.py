"""`vllm serve` with its CPU worker's decode GEMMs timed, no profiler (issue 21).

Like `vllm_cpu_loop.py vllm ...` (the same version patch), and in every process vLLM spawns
(they re-import this script as __mp_main__): dispatch_cpu_unquantized_gemm
(vllm/model_executor/layers/utils.py) is wrapped so that every linear layer's `cpu_linear`
times its decode calls (one token: M = 1) with perf_counter_ns. The worker writes, every 2,000
such calls, the median, 25th percentile and count per layer kind of the calls since its start
into $IC_GEMM_TIMES_DIR/gemm-<pid>.json:

    IC_GEMM_TIMES_DIR=DIR python scripts/vllm_timed_serve.py serve MODEL_DIR --dtype float32 ...

What it answers: do the served model's GEMMs run at the calibrated speed while `vllm serve` and
`vllm bench serve` run (results/vllm-cpu-20261202-5/profile/ had them ~45% slower under vLLM's
torch profiler), or is the step's time beyond the calibrated kernels elsewhere.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

_KIND = {"qkv_proj": "qkv", "o_proj": "o", "gate_up_proj": "gate_up", "down_proj": "down", "lm_head": "lm_head"}
_TIMES: dict[str, list[float]] = {}
_DUMP_EVERY = 2000


def _dump() -> None:
    out = Path(os.environ["IC_GEMM_TIMES_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    summary = {k: {"median_us": statistics.median(v), "p25_us": sorted(v)[len(v) // 4], "calls": len(v)}
               for k, v in _TIMES.items() if v}
    (out / f"gemm-{os.getpid()}.json").write_text(json.dumps(summary, indent=1) + "\n")


def _patch_dispatch() -> None:
    from vllm.model_executor.layers import utils

    real = utils.dispatch_cpu_unquantized_gemm
    count = [0]

    def dispatch(layer, remove_weight):
        real(layer, remove_weight)
        prefix = getattr(layer, "prefix", "") or ""
        kind = _KIND.get(prefix.rsplit(".", 1)[-1]) or ("lm_head" if type(layer).__name__ == "ParallelLMHead" else None)
        if kind is None or not hasattr(layer, "cpu_linear"):
            return
        inner = layer.cpu_linear

        def timed(x, weight, bias):
            t0 = time.perf_counter_ns()
            y = inner(x, weight, bias)
            if x.numel() == x.shape[-1]:  # one token
                _TIMES.setdefault(kind, []).append((time.perf_counter_ns() - t0) / 1e3)
                count[0] += 1
                if count[0] % _DUMP_EVERY == 0:
                    _dump()
            return y

        layer.cpu_linear = timed

    utils.dispatch_cpu_unquantized_gemm = dispatch
    # the callers import it inside functions (linear.py, vocab_parallel_embedding.py): the module
    # attribute is what they look up


if os.environ.get("IC_GEMM_TIMES_DIR"):
    _patch_dispatch()

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import vllm_cpu_loop

    vllm_cpu_loop._patch_vllm_version()
    from vllm.entrypoints.cli.main import main

    sys.argv = ["vllm"] + sys.argv[1:]
    sys.exit(main())
