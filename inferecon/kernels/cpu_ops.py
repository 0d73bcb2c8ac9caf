"""The ops of an eager CPU decode step, timed the way a serving engine on this CPU runs them
(vLLM's CPU build: one worker thread, eager): what `calibrate --device cpu` fits the
profile's op-level fits (model/opfits.py) from.

- "gemm": y[M,N] = x[M,K] W[N,K]^T at decode M through oneDNN on a weight reordered once
  (`torch.ops.mkldnn._reorder_linear_weight` + `_linear_pointwise`): the prepacked oneDNN
  matmul vLLM's CPU build dispatches unquantised linears to
  (vllm/model_executor/layers/utils.py, dispatch_cpu_unquantized_gemm -> ops.onednn_mm);
  torch's F.linear where oneDNN refuses the dtype (recorded in `kernel`). Every call reads a
  weight no call touched within the last 2 x LLC bytes (copies of W cycled, at least
  flush_plan's bytes of them), as a decode step reads each layer's weights once per step.
- "attention": decode attention, one query token per sequence over `kv_len` cached positions,
  grouped-query as a decode kernel runs it: the query heads of one KV head attend together, as
  torch SDPA's query length (no mask: one new token sees the whole cache). vLLM's own CPU
  kernel is not importable here; SDPA with enable_gqa took 10x longer in bf16 on this EPYC
  (410 vs 33 us at batch 1, 256 positions), a fallback no decode kernel takes. KV copies are
  cycled like the weights.
- "elementwise": one layer's norms, rotary embedding, SwiGLU activation and residual adds at
  M tokens, as torch ops (an upper bound of vLLM's fused kernels for the same work).
- "floor": one in-place add on a one-element tensor: what any op costs at least.

All cases are timed together by `harness.timing.measure_interleaved` (a block of each shape
per round, rounds in a seeded order, a low quantile per shape, `sliced` shapes flagged), so a
busy stretch of a shared machine lands on every shape alike instead of on a run of
neighbours. Kernels never import the model: the shapes come as plain numbers.
"""

from __future__ import annotations

import math

from inferecon.harness.runner import Case, SweepContext
from inferecon.harness.timing import InterleavedConfig, flush_plan, measure_interleaved
from inferecon.kernels.decode import DecoderShape

BENCHMARK = "cpu_ops"
BENCHMARK_VERSION = 1
DTYPES = ("bf16", "fp32")
ELEMENT_BYTES = {"bf16": 2, "fp32": 4}
MAX_COPIES = 512  # of one small tensor: beyond, a tiny op is floor-bound whether or not it is cached


def decode_gemms(s: DecoderShape) -> list[tuple[str, int, int]]:
    """(name, N, K) of a dense decode step's weight GEMMs, fused as vLLM runs them."""
    q, kv = s.n_heads * s.d_head, s.n_kv_heads * s.d_head
    return [("qkv", q + 2 * kv, s.d_model), ("o", s.d_model, q), ("gate_up", 2 * s.d_ff, s.d_model),
            ("down", s.d_model, s.d_ff), ("lm_head", s.vocab, s.d_model)]


# The Llama scripts/vllm_cpu_loop.py builds and serves (its CONFIG: hidden 1024, 8 layers,
# 8 heads of 128, 2 KV heads, SwiGLU 4096, vocabulary 16,384).
SERVED = DecoderShape(n_layers=8, d_model=1024, n_heads=8, n_kv_heads=2, d_head=128, d_ff=4096, vocab=16384)
# Other shapes, so that the GEMM fit is scored on shapes it was not fitted to.
GENERIC_GEMMS = (("512x512", 512, 512), ("2048x512", 2048, 512), ("512x2048", 512, 2048), ("3072x1024", 3072, 1024))


def gemm_params(m: int, n: int, k: int, dtype: str, label: str) -> dict:
    return {"op": "gemm", "label": label, "dtype": dtype, "m": m, "n": n, "k": k, "flop": 2 * m * n * k,
            "weight_bytes": n * k * ELEMENT_BYTES[dtype]}


def attention_params(batch: int, kv_len: int, n_heads: int, n_kv_heads: int, head_dim: int, dtype: str) -> dict:
    return {"op": "attention", "label": f"h{n_heads}kv{n_kv_heads}d{head_dim}", "dtype": dtype, "batch": batch,
            "kv_len": kv_len, "n_heads": n_heads, "n_kv_heads": n_kv_heads, "head_dim": head_dim,
            "kv_bytes": 2 * batch * kv_len * n_kv_heads * head_dim * ELEMENT_BYTES[dtype]}


def elementwise_params(m: int, s: DecoderShape, dtype: str) -> dict:
    return {"op": "elementwise", "label": "layer", "dtype": dtype, "m": m, "d_model": s.d_model,
            "n_heads": s.n_heads, "n_kv_heads": s.n_kv_heads, "head_dim": s.d_head, "d_ff": s.d_ff}


def floor_params() -> dict:
    return {"op": "floor", "label": "add_1", "dtype": "fp32"}


def case_id(p: dict) -> str:
    if p["op"] == "gemm":
        return f"gemm:{p['label']}:m{p['m']}n{p['n']}k{p['k']}:{p['dtype']}"
    if p["op"] == "attention":
        return f"attention:b{p['batch']}L{p['kv_len']}:{p['label']}:{p['dtype']}"
    if p["op"] == "elementwise":
        return f"elementwise:m{p['m']}d{p['d_model']}:{p['dtype']}"
    return "floor:add_1"


def _torch_dtype(name):
    import torch

    return {"bf16": torch.bfloat16, "fp32": torch.float32}[name]


def _copies(nbytes: int, cold_bytes: int) -> int:
    """Copies to cycle so that a call's tensor was last touched >= cold_bytes of traffic ago."""
    return int(min(MAX_COPIES, max(2, math.ceil(cold_bytes / max(nbytes, 1)) + 1)))


class _Cycle:
    """Calls fn(item) over `items` in turn: each call reads a cold copy."""

    def __init__(self, fn, items):
        self.fn, self.items, self.i = fn, items, 0

    def __call__(self):
        self.i = (self.i + 1) % len(self.items)
        return self.fn(self.items[self.i])


def _gemm_fn(p: dict, weights: dict, cold_bytes: int):
    """(callable, kernel name). The prepacked copies are shared by every M of one (N, K, dtype)."""
    import torch
    import torch.nn.functional as F

    dt = _torch_dtype(p["dtype"])
    key = (p["n"], p["k"], p["dtype"])
    if key not in weights:
        base = (torch.rand(p["n"], p["k"]) - 0.5).to(dt)  # values do not change the time; no denormals
        n = _copies(p["weight_bytes"], cold_bytes)
        try:
            packed = [torch.ops.mkldnn._reorder_linear_weight(base.clone()) for _ in range(n)]
            x = torch.rand(1, p["k"]).to(dt)
            torch.ops.mkldnn._linear_pointwise(x, packed[0], None, "none", [], "")
            weights[key] = ("onednn_prepacked", packed)
        except (RuntimeError, AttributeError):
            weights[key] = ("torch_linear", [base.clone() for _ in range(n)])
    kernel, ws = weights[key]
    x = (torch.rand(p["m"], p["k"]) - 0.5).to(dt)
    if kernel == "onednn_prepacked":
        return _Cycle(lambda w: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], ""), ws), kernel
    return _Cycle(lambda w: F.linear(x, w), ws), kernel


def _attention_fn(p: dict, cold_bytes: int):
    import torch
    import torch.nn.functional as F

    dt = _torch_dtype(p["dtype"])
    b, L, h, hk, d = p["batch"], p["kv_len"], p["n_heads"], p["n_kv_heads"], p["head_dim"]
    # Query head j belongs to KV head j // (h / hk): [b, h, 1, d] viewed as [b, hk, h / hk, d].
    q = (torch.rand(b, h, 1, d) - 0.5).to(dt).view(b, hk, h // hk, d)
    kvs = [((torch.rand(b, hk, L, d) - 0.5).to(dt), (torch.rand(b, hk, L, d) - 0.5).to(dt))
           for _ in range(_copies(p["kv_bytes"], cold_bytes))]
    return _Cycle(lambda kv: F.scaled_dot_product_attention(q, kv[0], kv[1]), kvs), "torch_sdpa_grouped"


def _elementwise_fn(p: dict):
    import torch
    import torch.nn.functional as F

    dt = _torch_dtype(p["dtype"])
    m, d, h, hk, hd, ff = p["m"], p["d_model"], p["n_heads"], p["n_kv_heads"], p["head_dim"], p["d_ff"]
    x, res = torch.rand(m, d).to(dt), torch.rand(m, d).to(dt)
    w = torch.ones(d, dtype=dt)
    qk = torch.rand(m, h + hk, hd).to(dt)
    cos, sin = torch.rand(m, 1, hd // 2).to(dt), torch.rand(m, 1, hd // 2).to(dt)
    gate_up = torch.rand(m, 2 * ff).to(dt)

    def layer():
        r = x + res  # residual add, then the input RMSNorm
        F.rms_norm(r, (d,), w, 1e-5)
        a, b = qk.chunk(2, dim=-1)  # rotary embedding of the query and key heads
        torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
        r2 = r + x  # residual add, then the post-attention RMSNorm
        F.rms_norm(r2, (d,), w, 1e-5)
        g, u = gate_up.chunk(2, dim=-1)  # SwiGLU activation
        return F.silu(g) * u

    return layer, "torch_ops"


def _floor_fn():
    import torch

    t = torch.zeros(1)
    return (lambda: t.add_(1.0)), "torch.add_"


class Session:
    """Builds every case's callable and times them all at once (interleaved) on first use;
    each case then reads its own result."""

    def __init__(self, params: list[dict], config: InterleavedConfig):
        self.params, self.config = params, config
        self.results: dict[str, dict] | None = None

    def _measure(self) -> dict[str, dict]:
        cold = flush_plan("cpu").flush_bytes
        weights: dict = {}
        fns, kernels = [], []
        for p in self.params:
            if p["op"] == "gemm":
                fn, kernel = _gemm_fn(p, weights, cold)
            elif p["op"] == "attention":
                fn, kernel = _attention_fn(p, cold)
            elif p["op"] == "elementwise":
                fn, kernel = _elementwise_fn(p)
            else:
                fn, kernel = _floor_fn()
            fns.append(fn)
            kernels.append(kernel)
        ms = measure_interleaved(fns, config=self.config)
        out = {}
        for p, m, kernel in zip(self.params, ms, kernels):
            rec = m.record_fields()
            rec["kernel"] = kernel
            rec["cold_bytes"] = cold
            out[case_id(p)] = rec
        return out

    def result(self, cid: str) -> dict:
        if self.results is None:
            self.results = self._measure()
        return self.results[cid]


def planned_params(quick: bool, shape: DecoderShape = SERVED) -> list[dict]:
    ms = (1, 2, 4, 8) if quick else (1, 2, 4, 8, 16, 32)
    gemms = decode_gemms(shape) + ([] if quick else list(GENERIC_GEMMS))
    if quick:
        gemms += [GENERIC_GEMMS[0], GENERIC_GEMMS[3]]
    heads = [(shape.n_heads, shape.n_kv_heads, shape.d_head)]
    if not quick:
        heads += [(16, 4, 128), (8, 8, 128)]
    batches, lens = ((1, 4, 8), (64, 256, 1024)) if quick else ((1, 2, 4, 8, 16), (64, 256, 1024, 2048))
    out = []
    for dtype in DTYPES:
        out += [gemm_params(m, n, k, dtype, label) for label, n, k in gemms for m in ms]
        out += [attention_params(b, L, h, hk, d, dtype) for h, hk, d in heads for b in batches for L in lens]
        out += [elementwise_params(m, shape, dtype) for m in (1, 8)]
    return out + [floor_params()]


def cases(ctx: SweepContext, quick: bool) -> list[Case]:
    if ctx.device != "cpu":
        return []
    params = planned_params(quick)
    session = Session(params, InterleavedConfig(rounds=10 if quick else 30))
    return [Case(case_id(p), p, lambda cid=case_id(p): session.result(cid)) for p in params]
