"""The ops of an eager CPU decode step, timed the way a serving engine on this CPU runs them
(vLLM's CPU build: one worker thread, eager) and the way inferecon's own torch decoder runs
them (the "decoder" path, below): what `calibrate --device cpu` fits the profile's op-level
fits (model/opfits.py) from. The list below is the engine path.

- "gemm": y[M,N] = x[M,K] W[N,K]^T at decode M. With vLLM's CPU extension loaded ($INFERECON_VLLM_CPU_LIB,
  below): vLLM's own call, `torch.ops._C.onednn_mm` on a handler `create_onednn_mm_handler(W^T,
  32)` made once per weight, into an output allocated per call, as `ops.onednn_mm` does: the
  kernel vLLM 0.32's CPU build dispatches an unquantised linear to on a CPU without AMX or
  zentorch (vllm/model_executor/layers/utils.py, dispatch_cpu_unquantized_gemm). Without it:
  oneDNN through torch on a weight reordered once (`torch.ops.mkldnn._reorder_linear_weight` +
  `_linear_pointwise`), and torch's F.linear where oneDNN refuses the dtype. Torch's path
  costs ~12 us more per call (one thread on this EPYC: a 64x64 bf16 GEMM 3.5 us through vLLM's,
  15.6 us through torch's), which a 41-GEMM step adds up: with it the fit priced the GEMMs of
  vLLM's profiled bf16 step at 13.1 ms, with vLLM's at 10.0, against 10.2 ms in the server
  (results/vllm-cpu-20261202-4/README.md). `kernel` records the path. Every call reads a
  weight no call touched within the last 2 x LLC bytes (copies of W cycled, at least
  flush_plan's bytes of them), as a decode step reads each layer's weights once per step.
- "attention": decode attention, one query token per sequence over `kv_len` cached positions.
  With vLLM's extension: its CPU attention kernel, `torch.ops._C.cpu_attention_with_kv_cache`
  over a paged cache of vLLM's layout ([blocks, KV heads, 2 x block, head dim], block 128, ISA
  chosen as vllm/v1/attention/backends/cpu_attn.py _get_attn_isa does), with the scheduler
  metadata `get_scheduler_metadata` makes for that batch (vLLM builds it once per step, before
  the layers). Without it: grouped-query through torch SDPA, the query heads of one KV head as
  SDPA's query length (no mask: one new token sees the whole cache); SDPA with enable_gqa took
  10x longer in bf16 on this EPYC (410 vs 33 us at batch 1, 256 positions), a fallback no
  decode kernel takes. KV copies are cycled like the weights.
- "elementwise": one layer's norms, rotary embedding, SwiGLU activation and residual adds at
  M tokens, as torch ops (an upper bound of vLLM's fused kernels for the same work).
- "floor": one in-place add on a one-element tensor: what any op costs at least.

Prefill cases (engine path alone; the labels start with "prefill_", fit_ops keeps them apart):
the served model's layer GEMMs (no lm head: a prompt's logits are one row) at M = PREFILL_MS
tokens, priced by GemmFit's prefill regime (model/prefill.py reads it as it reads an op DB's);
the decode fit alone priced a 128-token bf16 prompt's GEMMs at 176 ms where vLLM's whole TTFT
was 105 (results/vllm-cpu-20261202-7/validate-bf16-engine-null-cold). "context_attention":
one prompt's causal attention over its own PREFILL_LENS tokens (vLLM's CPU attention with
query_start_loc [0, L], as its prefill runs it; else torch SDPA, is_causal), and one layer's
elementwise ops at M = 128 (a direct check, kept in the notes; not in the decode median).

Two paths of every GEMM, attention and elementwise case (`path` in the params). "engine": the
kernels above, as a serving engine runs them (the profile's `op_fits`, which the vLLM loop
validates). "decoder": the ops inferecon's own torch decoder runs (kernels/decode.py, what
`inferecon validate` times): `x @ W.t()` on a plain weight (aten::mm), GQA attention as
`softmax(q K^T) V` batched matmuls over a [batch, KV heads, positions, head dim] cache after the
index_copy_ of the new K/V, and the decoder's own `_rms` and `_rope` (the profile's
`decoder_op_fits`). They differ by more than noise: one thread of this EPYC, fp32 at M = 1,
aten::mm took 1.7-2.6x oneDNN on a prepacked weight (qkv 1024x512 140 vs 74 us, lm head
8192x512 1071 vs 405 us, 2026-12-02, docs/validation.md), and priced with the engine path a
tiny-llama step came out at half its measured time.

vLLM's CPU extension: $INFERECON_VLLM_CPU_LIB names vLLM's package directory (or one of its
`_C*.abi3.so`); the library is chosen as vllm/platforms/cpu.py import_kernels does (`_C` with
AVX-512-BF16, `_C_AVX512` with AVX-512, `_C_AVX2` else) and loaded into this process's torch,
which must be the torch that vLLM was built for (scripts/vllm_cpu_loop.sh sets it to the venv it
serves from; both hold torch 2.13.0+cpu). A path that does not load is an error, not a silent
fallback: the calibration must say which kernels it timed.

The cases are timed together by `harness.timing.measure_interleaved` (a block of each shape
per round, rounds in a seeded order, a low quantile per shape, `sliced` shapes flagged), so a
busy stretch of a shared machine lands on every shape alike instead of on a run of
neighbours. Interleaving needs every case's cold copies alive at once, and each case holds
about flush_plan's bytes of them: on a host whose sysfs reports a 480 MiB L3 (256 MiB of copies
a case) the 219 quick cases held 20.8 GB (peak RSS of `calibrate --device cpu --quick`,
2026-12-03, on a 24 GB machine) and spent 58 s of system time faulting them in. So the cases
are measured in groups (`interleave_groups`, in plan order: neighbours of one op, dtype and
path together, a GEMM weight's copies shared by its M cases) of at most
`interleave_budget_bytes()` of copies, each group interleaved, its tensors freed before the
next; every record names its group. Kernels never import the model: the shapes come as plain
numbers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from inferecon.core.errors import UserError
from inferecon.harness.runner import Case, SweepContext
from inferecon.harness.timing import InterleavedConfig, flush_plan, measure_interleaved
from inferecon.kernels.decode import DecoderShape

BENCHMARK = "cpu_ops"
BENCHMARK_VERSION = 1
DTYPES = ("bf16", "fp32")
ELEMENT_BYTES = {"bf16": 2, "fp32": 4}
MAX_COPIES = 512  # of one small tensor: beyond, a tiny op is floor-bound whether or not it is cached
VLLM_LIB_ENV = "INFERECON_VLLM_CPU_LIB"
# vLLM's CPU KV-cache block: its profiled worker's cache is [2048 blocks, 2 KV heads, 256, 128],
# the [blocks, KV heads, 2 x block, head dim] view of block 128 (cpu_attn.py forward).
VLLM_ATTN_BLOCK = 128
# create_onednn_mm's primitive cache size as dispatch_cpu_unquantized_gemm passes it.
VLLM_ONEDNN_CACHE = 32
_VLLM_LOADED: dict[str, str] = {}


def vllm_library(path: str) -> Path:
    """The vLLM CPU extension `path` names: the library itself, or vLLM's package directory,
    in which the one vllm/platforms/cpu.py import_kernels picks for this CPU."""
    import torch

    p = Path(path)
    if p.is_dir():
        if torch.cpu._is_avx512_supported():
            name = "_C" if torch.cpu._is_avx512_bf16_supported() else "_C_AVX512"
        else:
            name = "_C_AVX2"
        p = p / f"{name}.abi3.so"
    if not p.is_file():
        raise UserError(f"${VLLM_LIB_ENV}={path}: no vLLM CPU extension there ({p} is not a file)")
    return p


def vllm_ops() -> str | None:
    """The path of vLLM's CPU extension loaded into this process (from $INFERECON_VLLM_CPU_LIB),
    or None where the variable is unset: then the ops are timed through torch's own kernels."""
    path = os.environ.get(VLLM_LIB_ENV, "").strip()
    if not path:
        return None
    if path not in _VLLM_LOADED:
        import torch

        lib = vllm_library(path)
        try:
            torch.ops.load_library(str(lib))
        except (OSError, RuntimeError) as exc:
            raise UserError(f"${VLLM_LIB_ENV}: {lib} does not load into torch {torch.__version__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        for op in ("create_onednn_mm_handler", "onednn_mm", "get_scheduler_metadata", "cpu_attention_with_kv_cache"):
            if not hasattr(torch.ops._C, op):
                raise UserError(f"${VLLM_LIB_ENV}: {lib} has no torch.ops._C.{op} (not vLLM's CPU build?)")
        _VLLM_LOADED[path] = str(lib)
    return _VLLM_LOADED[path]


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
# The weight-heavy null model's MLP (scripts/vllm_cpu_loop.py NULLW_CONFIG: hidden 64, SwiGLU 79,104):
# gate_up 2 x 79,104 x 64 and down 64 x 79,104, skinny shapes no other case has. Timed only where
# $INFERECON_CPU_NULLW_GEMMS=1 (the loop's NULLW=1): in run 7 (results/vllm-cpu-20261202-5/) they
# pulled the one GEMM fit off the served shapes (gate_up at M=1 fitted 697 us against 613 measured)
# while the fit still priced nullw_gate_up 32% low (852 against 1254 us).
NULLW_GEMMS = (("nullw_gate_up", 158_208, 64), ("nullw_down", 64, 79_104))
NULLW_ENV = "INFERECON_CPU_NULLW_GEMMS"


# Prefill M (tokens of the prompts one step carries): around and above the knee where a GEMM
# leaves the weight-bound decode regime; 16-32 locate the knee, 512 bounds the fit's reach.
PREFILL_MS = (16, 32, 64, 128, 256, 512)
PREFILL_LENS = (32, 64, 128, 256, 384, 512)  # prompt lengths of the context-attention cases
PREFILL_ELEMENTWISE_M = 128
PREFILL = "prefill_"  # label prefix of the prefill cases

ENGINE, DECODER = "engine", "decoder"  # the two paths (module docstring)
PATHS = (ENGINE, DECODER)


def path_of(p: dict) -> str:
    """A case's path; rows stored before there were two are the engine's."""
    return p.get("path") or ENGINE


def gemm_params(m: int, n: int, k: int, dtype: str, label: str, path: str = ENGINE) -> dict:
    return {"op": "gemm", "label": label, "dtype": dtype, "m": m, "n": n, "k": k, "flop": 2 * m * n * k,
            "weight_bytes": n * k * ELEMENT_BYTES[dtype], "path": path}


def attention_params(batch: int, kv_len: int, n_heads: int, n_kv_heads: int, head_dim: int, dtype: str,
                     path: str = ENGINE) -> dict:
    return {"op": "attention", "label": f"h{n_heads}kv{n_kv_heads}d{head_dim}", "dtype": dtype, "batch": batch,
            "kv_len": kv_len, "n_heads": n_heads, "n_kv_heads": n_kv_heads, "head_dim": head_dim,
            "kv_bytes": 2 * batch * kv_len * n_kv_heads * head_dim * ELEMENT_BYTES[dtype], "path": path}


def context_attention_params(seq_len: int, n_heads: int, n_kv_heads: int, head_dim: int, dtype: str) -> dict:
    """One prompt's causal attention over its own seq_len tokens (engine path only)."""
    return {"op": "context_attention", "label": f"h{n_heads}kv{n_kv_heads}d{head_dim}", "dtype": dtype,
            "seq_len": seq_len, "n_heads": n_heads, "n_kv_heads": n_kv_heads, "head_dim": head_dim,
            "flop": 2 * seq_len * seq_len * n_heads * head_dim, "path": ENGINE}


def elementwise_params(m: int, s: DecoderShape, dtype: str, path: str = ENGINE, label: str = "layer") -> dict:
    return {"op": "elementwise", "label": label, "dtype": dtype, "m": m, "d_model": s.d_model,
            "n_heads": s.n_heads, "n_kv_heads": s.n_kv_heads, "head_dim": s.d_head, "d_ff": s.d_ff, "path": path}


def floor_params() -> dict:
    return {"op": "floor", "label": "add_1", "dtype": "fp32"}


def case_id(p: dict) -> str:
    if path_of(p) != ENGINE:  # the engine's ids as before, so that older runs resume and compare
        return f"{path_of(p)}:" + case_id({**p, "path": ENGINE})
    if p["op"] == "gemm":
        return f"gemm:{p['label']}:m{p['m']}n{p['n']}k{p['k']}:{p['dtype']}"
    if p["op"] == "attention":
        return f"attention:b{p['batch']}L{p['kv_len']}:{p['label']}:{p['dtype']}"
    if p["op"] == "context_attention":
        return f"context_attention:s{p['seq_len']}:{p['label']}:{p['dtype']}"
    if p["op"] == "elementwise":
        return f"elementwise:m{p['m']}d{p['d_model']}:{p['dtype']}"
    return "floor:add_1"


def _torch_dtype(name):
    import torch

    return {"bf16": torch.bfloat16, "fp32": torch.float32}[name]


def _kv_bytes(p: dict) -> int:
    """K and V of an attention case (decode: its params carry it) or of a prompt's context."""
    if p["op"] == "attention":
        return p["kv_bytes"]
    return 2 * p["seq_len"] * p["n_kv_heads"] * p["head_dim"] * ELEMENT_BYTES[p["dtype"]]


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
    key = (p["n"], p["k"], p["dtype"], path_of(p))
    if key not in weights:
        base = (torch.rand(p["n"], p["k"]) - 0.5).to(dt)  # values do not change the time; no denormals
        n = _copies(p["weight_bytes"], cold_bytes)
        if path_of(p) == DECODER:  # kernels/decode.py keeps plain [N, K] weights and runs x @ W.t()
            weights[key] = ("torch_matmul", [base.clone() for _ in range(n)])
        elif vllm_ops() is not None:
            # vLLM's layer keeps only the handler (its weight parameter is emptied): the handler
            # holds the packed copy; the source tensors are kept alive beside it all the same.
            srcs = [base.clone() for _ in range(n)]
            handlers = [torch.tensor(torch.ops._C.create_onednn_mm_handler(w.t(), VLLM_ONEDNN_CACHE), dtype=torch.int64)
                        for w in srcs]
            weights[key] = ("vllm_onednn_mm", list(zip(handlers, srcs)))
        else:
            try:
                packed = [torch.ops.mkldnn._reorder_linear_weight(base.clone()) for _ in range(n)]
                x = torch.rand(1, p["k"]).to(dt)
                torch.ops.mkldnn._linear_pointwise(x, packed[0], None, "none", [], "")
                weights[key] = ("onednn_prepacked", packed)
            except (RuntimeError, AttributeError):
                weights[key] = ("torch_linear", [base.clone() for _ in range(n)])
    kernel, ws = weights[key]
    x = (torch.rand(p["m"], p["k"]) - 0.5).to(dt)
    if kernel == "vllm_onednn_mm":
        shape = (p["m"], p["n"])

        def mm(hw):  # vllm/_custom_ops.py onednn_mm: a fresh output, then the kernel
            out = torch.empty(shape, dtype=dt)
            torch.ops._C.onednn_mm(out, x, None, hw[0])
            return out

        return _Cycle(mm, ws), kernel
    if kernel == "torch_matmul":
        return _Cycle(lambda w: x @ w.t(), ws), kernel
    if kernel == "onednn_prepacked":
        return _Cycle(lambda w: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], ""), ws), kernel
    return _Cycle(lambda w: F.linear(x, w), ws), kernel


def vllm_attention_isa(dtype, head_dim: int) -> str:
    """The ISA vLLM's CPU attention runs on x86 (cpu_attn.py _get_attn_isa, block 128)."""
    import torch

    if head_dim % 32 != 0 and head_dim % 16 == 0:
        return "vec16"
    if torch.cpu._is_amx_tile_supported() and dtype == torch.bfloat16:
        return "amx"
    return "vec"


def _vllm_attention(dt, b: int, L: int, h: int, hk: int, d: int, q_len: int, copies: int):
    """vLLM's CPU attention over its paged cache: b sequences of L cached positions, the last
    q_len of each its queries (causal; 1 a decode step, L one prompt), `copies` disjoint sets
    of blocks cycled."""
    import torch

    blk = VLLM_ATTN_BLOCK
    per_seq = -(-L // blk)
    cache = (torch.rand(copies * b * per_seq, hk, 2 * blk, d) - 0.5).to(dt)  # [blocks, hk, 2 x block, d]
    key_cache, value_cache = cache.chunk(2, dim=2)
    seq_lens = torch.full((b,), L, dtype=torch.int32)
    qsl = torch.arange(b + 1, dtype=torch.int32) * q_len
    tables = [torch.arange(c * b * per_seq, (c + 1) * b * per_seq, dtype=torch.int32).view(b, per_seq)
              for c in range(copies)]
    isa = vllm_attention_isa(dt, d)
    meta = torch.ops._C.get_scheduler_metadata(b, h, hk, d, seq_lens, dt, qsl, True, -1, isa,
                                               os.environ.get("VLLM_CPU_ATTN_SPLIT_KV", "1") != "0", None, "auto")
    q = (torch.rand(b * q_len, h, d) - 0.5).to(dt)
    out = torch.empty(b * q_len, h, d, dtype=dt)
    scale = d ** -0.5

    def attend(table):
        torch.ops._C.cpu_attention_with_kv_cache(q, key_cache, value_cache, out, qsl, seq_lens, scale, True, None,
                                                 -1, table, 0.0, meta, None, None, 1.0, 1.0, "auto")
        return out

    return _Cycle(attend, tables), f"vllm_cpu_attention_{isa}"


def _decoder_attention_fn(p: dict, cold_bytes: int):
    """The attention of kernels/decode.py Decoder._attention after its QKV GEMM and rotary: the
    new K/V written into the cache (index_copy_), then each KV head's query group as the M of
    a batched matmul over the whole cache, softmax in fp32, and the matmul with V."""
    import torch

    dt = _torch_dtype(p["dtype"])
    b, L, h, hk, d = p["batch"], p["kv_len"], p["n_heads"], p["n_kv_heads"], p["head_dim"]
    qg = (torch.rand(b, hk, h // hk, d) - 0.5).to(dt)
    new = (torch.rand(b, hk, 1, d) - 0.5).to(dt)
    pos = torch.full((1,), L - 1, dtype=torch.long)  # the slot a step writes: the last of L positions
    kvs = [((torch.rand(b, hk, L, d) - 0.5).to(dt), (torch.rand(b, hk, L, d) - 0.5).to(dt))
           for _ in range(_copies(p["kv_bytes"], cold_bytes))]
    scale = d ** -0.5

    def attend(kv):
        k_cache, v_cache = kv
        k_cache.index_copy_(2, pos, new)
        v_cache.index_copy_(2, pos, new)
        scores = (qg @ k_cache.transpose(-1, -2)) * scale
        probs = torch.softmax(scores.float(), dim=-1).to(dt)
        return (probs @ v_cache).reshape(b, h * d)

    return _Cycle(attend, kvs), "torch_grouped_matmul"


def _attention_fn(p: dict, cold_bytes: int):
    if path_of(p) == DECODER:
        return _decoder_attention_fn(p, cold_bytes)
    import torch
    import torch.nn.functional as F

    dt = _torch_dtype(p["dtype"])
    b, L, h, hk, d = p["batch"], p["kv_len"], p["n_heads"], p["n_kv_heads"], p["head_dim"]
    copies = _copies(p["kv_bytes"], cold_bytes)
    if vllm_ops() is not None:
        return _vllm_attention(dt, b, L, h, hk, d, 1, copies)  # one query a sequence: a decode step
    # Query head j belongs to KV head j // (h / hk): [b, h, 1, d] viewed as [b, hk, h / hk, d].
    q = (torch.rand(b, h, 1, d) - 0.5).to(dt).view(b, hk, h // hk, d)
    kvs = [((torch.rand(b, hk, L, d) - 0.5).to(dt), (torch.rand(b, hk, L, d) - 0.5).to(dt))
           for _ in range(copies)]
    return _Cycle(lambda kv: F.scaled_dot_product_attention(q, kv[0], kv[1]), kvs), "torch_sdpa_grouped"


def _context_attention_fn(p: dict, cold_bytes: int):
    """One prompt of seq_len tokens attending causally to itself, its K/V already in the cache
    (vLLM writes them before the kernel; the write is priced apart): vLLM's CPU attention over
    its paged cache where the extension is loaded, else torch SDPA with is_causal on the KV
    heads repeated to the query heads. The K/V copies are cycled like the decode cases'."""
    import torch
    import torch.nn.functional as F

    dt = _torch_dtype(p["dtype"])
    L, h, hk, d = p["seq_len"], p["n_heads"], p["n_kv_heads"], p["head_dim"]
    copies = _copies(_kv_bytes(p), cold_bytes)
    if vllm_ops() is not None:
        return _vllm_attention(dt, 1, L, h, hk, d, L, copies)
    q = (torch.rand(1, h, L, d) - 0.5).to(dt)
    kvs = [((torch.rand(1, hk, L, d) - 0.5).to(dt), (torch.rand(1, hk, L, d) - 0.5).to(dt)) for _ in range(copies)]

    def sdpa(kv):
        k, v = (t.repeat_interleave(h // hk, dim=1) for t in kv)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    return _Cycle(sdpa, kvs), "torch_sdpa_causal"


def _decoder_elementwise_fn(p: dict):
    """One layer of kernels/decode.py Decoder.step outside its GEMMs and attention: the two
    RMSNorms and the rotary embedding of the query and key heads by the decoder's own methods
    (a one-layer Decoder with a stub MLP, built for them alone), the QKV split, the SwiGLU
    activation and the two residual adds."""
    import torch
    import torch.nn.functional as F

    from inferecon.kernels.decode import Decoder

    m, d, h, hk, hd, ff = p["m"], p["d_model"], p["n_heads"], p["n_kv_heads"], p["head_dim"], p["d_ff"]
    dec = Decoder(DecoderShape(n_layers=1, d_model=d, n_heads=h, n_kv_heads=hk, d_head=hd, d_ff=2, vocab=1,
                               dtype=p["dtype"]), batch=m, context=0, device="cpu")
    dt = dec.dtype
    x, mlp = torch.rand(m, d).to(dt), torch.rand(m, d).to(dt)
    qkv = torch.rand(m, (h + 2 * hk) * hd).to(dt)
    gate_up = torch.rand(m, 2 * ff).to(dt)
    w = dec.layers[0]["norm1"]

    def layer():
        a = dec._rms(x, w)
        q = qkv[:, :h * hd].view(m, h, hd)
        k = qkv[:, h * hd:(h + hk) * hd].view(m, hk, hd)
        dec._rope(q), dec._rope(k)
        r = x + a  # residual add after attention
        dec._rms(r, w)
        g, u = gate_up.chunk(2, dim=-1)
        F.silu(g) * u
        return r + mlp  # residual add after the MLP

    return layer, "torch_decoder_ops"


def _elementwise_fn(p: dict):
    if path_of(p) == DECODER:
        return _decoder_elementwise_fn(p)
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


# Copies held at once while one group is interleaved: an eighth of the host's memory, within
# [1, 4] GiB. A case that alone needs more is a group of its own.
_BUDGET_MIN_BYTES, _BUDGET_MAX_BYTES = 1 << 30, 4 << 30


def interleave_budget_bytes(total_bytes: int | None = None) -> int:
    """Bytes of cold copies one interleaved group may hold (1/8 of `total_bytes`, this host's
    physical memory by default, clamped to [1, 4] GiB)."""
    if total_bytes is None:
        try:
            total_bytes = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            total_bytes = 8 * _BUDGET_MAX_BYTES
    return int(min(_BUDGET_MAX_BYTES, max(_BUDGET_MIN_BYTES, total_bytes // 8)))


def _vllm_cache_bytes(dtype: str, b: int, L: int, hk: int, d: int) -> int:
    """One copy of vLLM's paged cache for b sequences of L positions: whole blocks, K and V."""
    return b * -(-L // VLLM_ATTN_BLOCK) * hk * 2 * VLLM_ATTN_BLOCK * d * ELEMENT_BYTES[dtype]


def held_bytes(p: dict, cold_bytes: int, vllm: bool = False) -> tuple[tuple | None, int]:
    """(key, bytes) of the tensors a case's callable keeps: its cold copies. A GEMM's copies
    are shared by every M of its weight (the key, counted once a group); None: not shared."""
    if p["op"] == "gemm":
        return (p["n"], p["k"], p["dtype"], path_of(p)), _copies(p["weight_bytes"], cold_bytes) * p["weight_bytes"]
    if p["op"] in ("attention", "context_attention"):
        kv = _kv_bytes(p)
        if vllm and path_of(p) == ENGINE:  # vLLM's paged cache: whole blocks of each sequence
            b, L = (p["batch"], p["kv_len"]) if p["op"] == "attention" else (1, p["seq_len"])
            return None, _copies(kv, cold_bytes) * _vllm_cache_bytes(p["dtype"], b, L, p["n_kv_heads"], p["head_dim"])
        return None, _copies(kv, cold_bytes) * kv
    return None, 0


def interleave_groups(params: list[dict], cold_bytes: int, budget_bytes: int, vllm: bool = False) -> list[list[int]]:
    """Indices of `params`, in plan order, cut into groups whose held bytes stay within the
    budget (a weight shared by several M counted once in its group)."""
    groups: list[list[int]] = [[]]
    used, keys = 0, set()
    for i, p in enumerate(params):
        key, nbytes = held_bytes(p, cold_bytes, vllm)
        add = 0 if key in keys else nbytes
        if add and groups[-1] and used + add > budget_bytes:
            groups.append([])
            used, keys = 0, set()
        groups[-1].append(i)
        used += add
        if key is not None:
            keys.add(key)
    return [g for g in groups if g]


class Session:
    """Builds the cases' callables and times them, interleaved in groups that fit the memory
    budget (module docstring), on first use; each case then reads its own result."""

    def __init__(self, params: list[dict], config: InterleavedConfig, budget_bytes: int | None = None):
        self.params, self.config = params, config
        self.budget_bytes = interleave_budget_bytes() if budget_bytes is None else budget_bytes
        self.results: dict[str, dict] | None = None

    def _measure(self) -> dict[str, dict]:
        import gc

        cold = flush_plan("cpu").flush_bytes
        groups = interleave_groups(self.params, cold, self.budget_bytes, vllm_ops() is not None)
        out: dict[str, dict] = {}
        for g, idx in enumerate(groups):
            out.update(self._measure_group([self.params[i] for i in idx], cold, g, len(groups)))
            gc.collect()  # the group's copies go before the next group's are made
        return out

    def _measure_group(self, params: list[dict], cold: int, group: int, n_groups: int) -> dict[str, dict]:
        weights: dict = {}
        fns, kernels = [], []
        for p in params:
            if p["op"] == "gemm":
                fn, kernel = _gemm_fn(p, weights, cold)
            elif p["op"] == "attention":
                fn, kernel = _attention_fn(p, cold)
            elif p["op"] == "context_attention":
                fn, kernel = _context_attention_fn(p, cold)
            elif p["op"] == "elementwise":
                fn, kernel = _elementwise_fn(p)
            else:
                fn, kernel = _floor_fn()
            fns.append(fn)
            kernels.append(kernel)
        ms = measure_interleaved(fns, config=self.config)
        out = {}
        for p, m, kernel in zip(params, ms, kernels):
            rec = m.record_fields()
            rec["kernel"] = kernel
            rec["cold_bytes"] = cold
            rec["interleave_group"] = f"{group + 1}/{n_groups}"
            out[case_id(p)] = rec
        return out

    def result(self, cid: str) -> dict:
        if self.results is None:
            self.results = self._measure()
        return self.results[cid]


def planned_params(quick: bool, shape: DecoderShape = SERVED) -> list[dict]:
    ms = (1, 2, 4, 8) if quick else (1, 2, 4, 8, 16, 32)
    nullw = list(NULLW_GEMMS) if os.environ.get(NULLW_ENV, "") == "1" else []
    gemms = decode_gemms(shape) + nullw + ([] if quick else list(GENERIC_GEMMS))
    if quick:
        gemms += [GENERIC_GEMMS[0], GENERIC_GEMMS[3]]
    heads = [(shape.n_heads, shape.n_kv_heads, shape.d_head)]
    if not quick:
        heads += [(16, 4, 128), (8, 8, 128)]
    batches, lens = ((1, 4, 8), (64, 256, 1024)) if quick else ((1, 2, 4, 8, 16), (64, 256, 1024, 2048))
    out = []
    for path in PATHS:
        for dtype in DTYPES:
            # The null models' skinny shapes are the engine's alone: nothing else runs them.
            out += [gemm_params(m, n, k, dtype, label, path) for label, n, k in gemms for m in ms
                    if path == ENGINE or (label, n, k) not in nullw]
            out += [attention_params(b, L, h, hk, d, dtype, path) for h, hk, d in heads for b in batches for L in lens]
            out += [elementwise_params(m, shape, dtype, path) for m in (1, 8)]
    out += prefill_params(shape)
    return out + [floor_params()]


def prefill_params(shape: DecoderShape = SERVED) -> list[dict]:
    """The engine's prefill cases (module docstring), quick or not: one prompt's shapes."""
    out = []
    for dtype in DTYPES:
        out += [gemm_params(m, n, k, dtype, PREFILL + label) for label, n, k in decode_gemms(shape)
                if label != "lm_head" for m in PREFILL_MS]
        out += [context_attention_params(L, shape.n_heads, shape.n_kv_heads, shape.d_head, dtype)
                for L in PREFILL_LENS]
        out.append(elementwise_params(PREFILL_ELEMENTWISE_M, shape, dtype, label=PREFILL + "layer"))
    return out


def cases(ctx: SweepContext, quick: bool) -> list[Case]:
    if ctx.device != "cpu":
        return []
    params = planned_params(quick)
    session = Session(params, InterleavedConfig(rounds=10 if quick else 30))
    return [Case(case_id(p), p, lambda cid=case_id(p): session.result(cid)) for p in params]
