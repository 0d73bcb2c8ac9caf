"""The ops of a GPU decode step as torch runs them, one shape at a time: what `calibrate
--device cuda` fits a GPU profile's op-level fits from (model/opfits.py, through the same fitter
as a CPU calibration's, calibration/fit_ops.py), the op families a per-op database holds
(aiconfigurator-core's GEMM and generation-attention tables and the kernel floor; the
collectives, CUDA-graph mode included, are the collectives benchmark's).

- "gemm": y[M,N] = x[M,K] W[N,K]^T on the projections of Llama 3 8B and 70B (one GPU's full
  width), at decode M and, labelled "prefill_", at prefill M, per dtype where this torch has
  the kernel on this device: bf16 (F.linear), fp8 (torch._scaled_mm, per-tensor scales, bf16
  out, GPUs of compute capability >= 8.9), int8_wo (torch._weight_int8pack_mm: int8 weights,
  per-channel scales) and int4_wo (torch._weight_int4pack_mm: tinygemm's int4 layout, groups of
  128; on a CPU, _weight_int4pack_mm_for_cpu). A dtype whose kernel is missing or refuses the
  shape records why (SkipCase) and the sweep goes on. FP8 with block scales has no kernel in torch's public ops and is not timed.
- "attention": decode attention, one query token per sequence over `kv_len` cached positions:
  F.scaled_dot_product_attention(q[B, H, 1, D], K, V[B, Hkv, L, D], enable_gqa=True) in bf16,
  by batch x kv_len x the head layout of one GPU (Llama 3 8B at TP 1, 70B at TP 2 and 8), the
  kernel torch dispatches to recorded (flash, memory-efficient, or math where neither takes
  the shape). FP8 KV has no SDPA kernel in torch and is not timed.
- "elementwise": one layer's two RMSNorms, rotary embedding of q and k, SiLU-and-mul and two
  residual adds as torch ops at M tokens (unfused: an upper bound of an engine's fused kernels).
- "floor": one in-place add on a one-element tensor: what any kernel costs at least (on a GPU
  64 of them replayed in one CUDA graph, per call: the floor inside a captured decode step).

GEMM weights and KV caches are cold, as in a decode step, where each layer's were last read a
whole forward pass ago: harness/timing.measure flushes the cache (2 x L2) before every
repetition. Rows carry calibration/fit_ops.py's columns (op, dtype, m, n, k, batch, kv_len,
n_heads, n_kv_heads, head_dim, label, kernel, time_us).

On a CPU the same cases run on small shapes with the host clock and no graph: the CPU twin that
CI runs (a CPU calibration times its own ops with kernels/cpu_ops.py, interleaved, not these).
Kernels never import the model: the shapes are plain numbers here.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferecon.harness.runner import Case, SkipCase, SweepContext, is_oom, timing_config
from inferecon.harness.timing import measure
from inferecon.kernels.matmul import MODELS, supports_fp8

BENCHMARK = "gpu_ops"
BENCHMARK_VERSION = 1
GEMM_DTYPES = ("bf16", "fp8", "int8_wo", "int4_wo")
INT4_GROUP = 128  # tinygemm's group size here (aiconfigurator's int4_wo tables: AWQ/GPTQ groups of 128)
INT4_INNER_K_TILES = 8
FLOOR_CALLS = 64  # tiny adds per CUDA-graph replay


@dataclass(frozen=True)
class OpsPlan:
    gemm_shapes: tuple  # ((label, N, K), ...)
    decode_m: tuple
    prefill_m: tuple
    heads: tuple  # ((n_heads, n_kv_heads, head_dim), ...) of one GPU
    batches: tuple
    kv_lens: tuple
    elementwise: tuple  # ((M, d_model, d_ff, n_heads, n_kv_heads, head_dim), ...)


def _projections(names) -> tuple:
    return tuple((f"{name}/{proj}", n, k) for name in names for proj, n, k in MODELS[name].projections())


def plan(device: str, quick: bool) -> OpsPlan:
    if device == "cuda":
        if quick:
            return OpsPlan(_projections(["llama-3-8b"]), (1, 16, 64), (1024,), ((32, 8, 128), (8, 1, 128)),
                           (1, 16), (512, 2048), ((1, 4096, 14336, 32, 8, 128), (64, 4096, 14336, 32, 8, 128)))
        return OpsPlan(_projections(["llama-3-8b", "llama-3-70b"]), (1, 2, 4, 8, 16, 32, 64, 128, 256),
                       (1024, 4096), ((32, 8, 128), (32, 4, 128), (8, 1, 128)), (1, 4, 16, 64), (512, 2048, 8192),
                       tuple((m, 4096, 14336, 32, 8, 128) for m in (1, 16, 64, 256))
                       + tuple((m, 8192, 28672, 64, 8, 128) for m in (1, 64)))
    # The CPU twin: the same cases on shapes a 2-core CI host times in seconds.
    toy = (("toy/qkv", 384, 256), ("toy/o", 256, 256), ("toy/gate_up", 1024, 256), ("toy/down", 256, 512))
    return OpsPlan(toy, (1, 2, 4, 8), (64,), ((4, 1, 64), (4, 2, 64)), (1, 4), (64, 256),
                   ((1, 256, 512, 4, 1, 64), (8, 256, 512, 4, 1, 64)))


# -- parameters and ids --------------------------------------------------------------------------

def gemm_params(m: int, n: int, k: int, dtype: str, label: str) -> dict:
    return {"op": "gemm", "dtype": dtype, "m": m, "n": n, "k": k, "label": label, "flop": 2 * m * n * k}


def attention_params(batch: int, kv_len: int, n_heads: int, n_kv_heads: int, head_dim: int, dtype: str = "bf16") -> dict:
    return {"op": "attention", "dtype": dtype, "batch": batch, "kv_len": kv_len, "n_heads": n_heads,
            "n_kv_heads": n_kv_heads, "head_dim": head_dim, "m": batch, "label": "decode"}


def elementwise_params(m, d_model, d_ff, n_heads, n_kv_heads, head_dim, dtype: str = "bf16") -> dict:
    return {"op": "elementwise", "dtype": dtype, "m": m, "n": d_model, "k": d_ff, "n_heads": n_heads,
            "n_kv_heads": n_kv_heads, "head_dim": head_dim, "label": "layer"}


def case_id(p: dict) -> str:
    op = p["op"]
    if op == "gemm":
        return f"gemm:{p['label']}:m{p['m']}n{p['n']}k{p['k']}:{p['dtype']}"
    if op == "attention":
        return (f"attention:h{p['n_heads']}kv{p['n_kv_heads']}d{p['head_dim']}:b{p['batch']}L{p['kv_len']}:"
                f"{p['dtype']}")
    if op == "elementwise":
        return f"elementwise:m{p['m']}d{p['n']}ff{p['k']}:{p['dtype']}"
    return "floor"


def planned_params(device: str, quick: bool) -> list[dict]:
    p = plan(device, quick)
    out = []
    for dtype in GEMM_DTYPES:
        for label, n, k in p.gemm_shapes:
            out += [gemm_params(m, n, k, dtype, label) for m in p.decode_m]
            # Prefill M for the 16-bit and FP8 GEMMs (a CPU: bf16): what a prompt's GEMMs run;
            # the weight-only kernels are decode kernels (tinygemm's is slow at large M).
            if dtype == "bf16" or (device == "cuda" and dtype == "fp8"):
                out += [gemm_params(m, n, k, dtype, "prefill_" + label) for m in p.prefill_m]
    out += [attention_params(b, L, h, hk, d) for h, hk, d in p.heads for b in p.batches for L in p.kv_lens]
    out += [elementwise_params(*e) for e in p.elementwise]
    out.append({"op": "floor", "dtype": "bf16", "label": "floor"})
    return out


# -- the ops ------------------------------------------------------------------------------------

def _refused(what: str, exc: Exception) -> SkipCase:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return SkipCase(f"{what}: {first}")


def _gemm_fn(p: dict, device: str):
    """(callable, kernel name) of one GEMM case; SkipCase where this torch has no such kernel here."""
    import torch
    import torch.nn.functional as F

    m, n, k, dtype = p["m"], p["n"], p["k"], p["dtype"]
    bf16 = torch.bfloat16
    x = torch.randn(m, k, device=device, dtype=bf16)
    if dtype == "bf16":
        w = torch.randn(n, k, device=device, dtype=bf16)
        return (lambda: F.linear(x, w)), "torch_linear"
    if dtype == "fp8":
        if not supports_fp8(device):
            raise SkipCase("fp8 needs torch._scaled_mm on a GPU of compute capability >= 8.9")
        f8 = torch.float8_e4m3fn
        a, b = x.to(f8), torch.randn(n, k, device=device, dtype=bf16).to(f8).t()  # mat2 column-major
        one = torch.ones((), device=device, dtype=torch.float32)
        return (lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=bf16)), "torch_scaled_mm"
    if dtype == "int8_wo":
        if not hasattr(torch, "_weight_int8pack_mm"):
            raise SkipCase(f"torch {torch.__version__} has no _weight_int8pack_mm")
        w = torch.randint(-128, 127, (n, k), device=device, dtype=torch.int8)
        scales = torch.rand(n, device=device, dtype=bf16) * 0.01 + 0.001
        return (lambda: torch._weight_int8pack_mm(x, w, scales)), "torch_weight_int8pack_mm"
    if dtype == "int4_wo":
        # tinygemm's layout on CUDA (uint8 pairs packed by _convert_weight_to_int4pack); the CPU
        # build has the same op under its own name, packed from int32 nibbles.
        mm, pack = (("_weight_int4pack_mm", "_convert_weight_to_int4pack") if device == "cuda" else
                    ("_weight_int4pack_mm_for_cpu", "_convert_weight_to_int4pack_for_cpu"))
        if not (hasattr(torch, mm) and hasattr(torch, pack)) or k % INT4_GROUP:
            raise SkipCase(f"int4_wo: no {mm} in torch {torch.__version__} or K {k} not a multiple of {INT4_GROUP}")
        if device == "cuda":
            raw = torch.randint(0, 256, (n, k // 2), device=device, dtype=torch.uint8)
        else:
            raw = torch.randint(0, 16, (n, k), device=device, dtype=torch.int32)
        w = getattr(torch, pack)(raw, INT4_INNER_K_TILES)
        sz = torch.rand(k // INT4_GROUP, n, 2, device=device, dtype=bf16)
        op = getattr(torch, mm)
        return (lambda: op(x, w, INT4_GROUP, sz)), f"torch{mm}"
    raise SkipCase(f"gemm dtype {dtype!r} is not one of {', '.join(GEMM_DTYPES)}")


def _sdpa_backends():
    """(name, backend) to try in order: the fused kernels a serving stack would use first."""
    from torch.nn.attention import SDPBackend

    return (("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION),
            ("math", SDPBackend.MATH))


def _attention_fn(p: dict, device: str):
    """(callable, kernel) of one decode-attention case: the first SDPA backend that takes it."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    b, L, h, hk, d = p["batch"], p["kv_len"], p["n_heads"], p["n_kv_heads"], p["head_dim"]
    q = torch.randn(b, h, 1, d, device=device, dtype=torch.bfloat16)
    kc = torch.randn(b, hk, L, d, device=device, dtype=torch.bfloat16)
    vc = torch.randn(b, hk, L, d, device=device, dtype=torch.bfloat16)
    last = None
    for name, backend in _sdpa_backends():
        def fn(backend=backend):
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, kc, vc, enable_gqa=True)
        try:
            fn()
        except RuntimeError as exc:
            if is_oom(exc):
                raise
            last = exc
            continue
        return fn, f"torch_sdpa_{name}"
    raise _refused("no SDPA backend takes this decode shape", last)


def _elementwise_fn(p: dict, device: str):
    """One layer's norms, rotary, SiLU-and-mul and residual adds at M tokens, as torch ops."""
    import torch
    import torch.nn.functional as F

    m, d, ff, h, hk, hd = p["m"], p["n"], p["k"], p["n_heads"], p["n_kv_heads"], p["head_dim"]
    bf16 = torch.bfloat16
    x = torch.randn(m, d, device=device, dtype=bf16)
    res = torch.randn(m, d, device=device, dtype=bf16)
    gw = torch.ones(d, device=device, dtype=bf16)
    q = torch.randn(m, h, hd, device=device, dtype=bf16)
    kk = torch.randn(m, hk, hd, device=device, dtype=bf16)
    cos = torch.randn(m, 1, hd // 2, device=device, dtype=bf16)
    sin = torch.randn(m, 1, hd // 2, device=device, dtype=bf16)
    gate_up = torch.randn(m, 2 * ff, device=device, dtype=bf16)

    def rms(t):
        t32 = t.float()
        return (t32 * torch.rsqrt(t32.pow(2).mean(-1, keepdim=True) + 1e-6)).to(bf16) * gw

    def rope(t):
        a, b = t[..., : hd // 2], t[..., hd // 2:]
        return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)

    def layer():
        y = rms(x)
        rope(q), rope(kk)
        r1 = res + y
        g, u = gate_up.chunk(2, dim=-1)
        act = F.silu(g) * u
        return rms(r1) + r1, act

    return layer, "torch_ops"


def _floor_fn(device: str):
    import torch

    t = torch.zeros(1, device=device)
    return (lambda: t.add_(1.0)), "torch_add_"


def run_case(p: dict, device: str, quick: bool) -> dict:
    op = p["op"]
    try:
        if op == "gemm":
            fn, kernel = _gemm_fn(p, device)
        elif op == "attention":
            fn, kernel = _attention_fn(p, device)
        elif op == "elementwise":
            fn, kernel = _elementwise_fn(p, device)
        else:
            fn, kernel = _floor_fn(device)
        fn()  # a kernel that refuses the shape says so here, before any timing
    except SkipCase:
        raise
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        if is_oom(exc):
            raise
        raise _refused(f"{op} {p.get('dtype', '')}: torch refused the case", exc) from None
    if op == "floor":
        # Back to back in one CUDA graph on a GPU (the floor inside a captured step); host
        # clock over the same count of calls on a CPU.
        config = timing_config(device, quick, cuda_graph=(device == "cuda"), inner_reps=FLOOR_CALLS)
    elif op == "elementwise":
        # The step's own activations, warm; on a GPU captured in a graph, as an engine's decode
        # step runs them (eager, the host's launches of a dozen small ops would be timed instead).
        config = timing_config(device, quick, cuda_graph=(device == "cuda"))
    else:
        # Weights and KV cold: a flush before every repetition.
        config = timing_config(device, quick, flush_l2=True)
    m = measure(fn, device=device, config=config)
    out = m.record_fields()
    out["time_us"] = m.median_us  # the figure calibration/fit_ops.py fits
    out["kernel"] = kernel
    out["cuda_graph"] = bool(m.extra.get("cuda_graph"))
    out["flush_l2"] = bool(m.extra.get("flush_l2"))
    if op == "gemm":
        out["tflops"] = p["flop"] / m.median_s / 1e12
    return out


def cases(ctx: SweepContext, quick: bool) -> list[Case]:
    """The sweep's cases on a GPU (a CPU calibration times its ops with kernels/cpu_ops.py);
    `cpu_twin_cases` runs the same code on a CPU."""
    if ctx.device != "cuda":
        return []
    return cpu_twin_cases(ctx, quick)


def cpu_twin_cases(ctx: SweepContext, quick: bool) -> list[Case]:
    return [Case(case_id(p), p, lambda p=p: run_case(p, ctx.device, quick)) for p in planned_params(ctx.device, quick)]
