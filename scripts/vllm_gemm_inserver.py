"""vLLM's own GEMMs timed inside its CPU worker, on the weights it serves (issue 21).

`LLM(...).apply_model(fn)` runs fn in vLLM's worker process (its thread binding, LD_PRELOAD,
memory policy, the weights it loaded and packed). fn times each linear layer's `cpu_linear`
(the callable vllm/model_executor/layers/utils.py dispatch_cpu_unquantized_gemm set: oneDNN's
`onednn_mm` on a handler made at load) at M=1, in the decode step's order (every layer's qkv,
o, gate_up, down, then lm_head), and the same shapes on handlers made there and then on
fresh weights, interleaved round by round; then decodes one 128-token prompt for 64 tokens
(`LLM.generate`, c1) with every layer's `cpu_linear` wrapped to time its decode calls. Twice.
Prints per shape median and 25th percentile (us) of each, and their sums over a step:

    python scripts/vllm_gemm_inserver.py MODEL_DIR DTYPE [ROUNDS]

(run with the loop's VLLM_CPU_OMP_THREADS_BIND and environment; MODEL_DIR from
`vllm_cpu_loop.py build-model`.)
"""

from __future__ import annotations

import functools
import os
import sys
import time


def probe(model, rounds: int = 20) -> dict:
    import random
    import statistics
    import time

    import torch

    from vllm import _custom_ops as ops

    dec = model.model.layers
    lm = model.lm_head
    served = []
    for i, layer in enumerate(dec):
        a, m = layer.self_attn, layer.mlp
        served += [("qkv", a.qkv_proj), ("o", a.o_proj), ("gate_up", m.gate_up_proj), ("down", m.down_proj)]
    served.append(("lm_head", lm))
    dt = model.lm_head.weight.dtype
    shapes = {}
    for lbl, mod in served:
        if lbl not in shapes:
            n = {"qkv": 1536, "o": 1024, "gate_up": 8192, "down": 1024, "lm_head": 16384}[lbl]
            shapes[lbl] = (n, 4096 if lbl == "down" else 1024)
    fresh = []
    for lbl, _ in served:
        n, k = shapes[lbl]
        w = (torch.rand(n, k) - 0.5).to(dt)
        h = ops.create_onednn_mm(w.t(), 32)
        fresh.append((lbl, (lambda x, _h=h: ops.onednn_mm(_h, x, None)), w))
    xs = {k: (torch.rand(1, k) - 0.5).to(dt) for k in (1024, 4096)}
    res = {"served": {}, "fresh": {}}
    with torch.inference_mode():
        for r in range(rounds):
            for order in random.Random(r).sample(list(res), 2):
                t = res[order]
                if order == "served":
                    for lbl, mod in served:
                        x = xs[shapes[lbl][1]]
                        t0 = time.perf_counter_ns()
                        mod.cpu_linear(x, mod.weight, None)
                        t.setdefault(lbl, []).append((time.perf_counter_ns() - t0) / 1e3)
                else:
                    for lbl, fn, _ in fresh:
                        x = xs[shapes[lbl][1]]
                        t0 = time.perf_counter_ns()
                        fn(x)
                        t.setdefault(lbl, []).append((time.perf_counter_ns() - t0) / 1e3)
    out = {"pid": os.getpid(), "threads": torch.get_num_threads(), "dtype": str(dt),
           "affinity": sorted(os.sched_getaffinity(0)), "ld_preload": os.environ.get("LD_PRELOAD", "")}
    for o, t in res.items():
        per = {}
        for lbl, v in t.items():
            v = v[len(v) // rounds:]  # the first round left out
            per[lbl] = (statistics.median(v), sorted(v)[len(v) // 4])
        out[o] = per
        out[o + "_step_ms"] = sum(per[lbl][0] * (1 if lbl == "lm_head" else len(dec)) for lbl in per) / 1e3
    return out


_TIMES: dict[str, list[float]] = {}


def install_timers(model) -> int:
    """Wrap every linear layer's `cpu_linear` so that each decode call (M = 1 token) records its
    time in _TIMES (in the worker process); returns how many were wrapped."""
    import time

    names = {"qkv_proj": "qkv", "o_proj": "o", "gate_up_proj": "gate_up", "down_proj": "down", "lm_head": "lm_head"}
    n = 0
    for full, mod in model.named_modules():
        lbl = names.get(full.rsplit(".", 1)[-1])
        if lbl is None or not hasattr(mod, "cpu_linear") or hasattr(mod, "_ic_wrapped"):
            continue
        inner = mod.cpu_linear

        def timed(x, weight, bias, _inner=inner, _lbl=lbl):
            t0 = time.perf_counter_ns()
            y = _inner(x, weight, bias)
            if x.reshape(-1, x.shape[-1]).shape[0] == 1:
                _TIMES.setdefault(_lbl, []).append((time.perf_counter_ns() - t0) / 1e3)
            return y

        mod.cpu_linear, mod._ic_wrapped = timed, True
        n += 1
    return n


def collect_timers(model) -> dict:
    """Median and 25th percentile per shape of the decode calls timed since the last collection."""
    import statistics

    out = {lbl: (statistics.median(v), sorted(v)[len(v) // 4], len(v)) for lbl, v in _TIMES.items() if v}
    _TIMES.clear()
    return out


def main(model_dir: str, dtype: str, rounds: int) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import vllm_cpu_loop

    vllm_cpu_loop._patch_vllm_version()
    from vllm import LLM

    from vllm import SamplingParams

    llm = LLM(model=model_dir, dtype=dtype, enforce_eager=True, max_model_len=1024, seed=0)
    prompt = {"prompt_token_ids": list(range(100, 228))}  # 128 tokens, as the loop's benches
    params = SamplingParams(max_tokens=64, ignore_eos=True, temperature=1.0, seed=0)
    for i in range(2):  # back to back, then decoding, twice
        (r,) = llm.apply_model(functools.partial(probe, rounds=rounds))  # picklable, unlike a lambda
        print({k: v for k, v in r.items() if k not in ("served", "fresh")})
        for lbl in r["served"]:
            s, f = r["served"][lbl], r["fresh"][lbl]
            print(f"  {lbl:8s} back to back: served weights {s[0]:7.1f} ({s[1]:7.1f})  fresh {f[0]:7.1f} ({f[1]:7.1f})")
        print(f"  a step's GEMMs back to back: served {r['served_step_ms']:.2f} ms, fresh {r['fresh_step_ms']:.2f} ms (medians)")
        llm.apply_model(functools.partial(install_timers))
        t0 = time.perf_counter()
        out = llm.generate([prompt], params, use_tqdm=False)
        wall = time.perf_counter() - t0
        (d,) = llm.apply_model(functools.partial(collect_timers))
        step = sum(v[0] * (1 if lbl == "lm_head" else 8) for lbl, v in d.items()) / 1e3
        for lbl, v in d.items():
            print(f"  {lbl:8s} decoding (c1, 64 tokens): {v[0]:7.1f} ({v[1]:7.1f}), {v[2]} calls")
        print(f"  a step's GEMMs decoding: {step:.2f} ms (medians); generate {wall:.2f} s for "
              f"{len(out[0].outputs[0].token_ids)} tokens")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 20)
