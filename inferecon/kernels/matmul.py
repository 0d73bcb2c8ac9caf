"""Matmul throughput by shape and dtype.

Two families of shapes:
- "square" M = N = K: the achievable peak (what the datasheet number becomes in practice);
- "decode": y = x W^T with x of M = batch rows and W the weight of one projection of a real
  model (QKV, O, gate-up, down). Decode GEMMs are skinny: at small M their time is set by
  reading W, so we record the weight bytes read per second next to TFLOP/s — the cost model
  needs efficiency as a function of shape, not one percentage.

dtypes: bf16, fp16, tf32 (fp32 storage, TF32 tensor cores), fp32 (IEEE), and fp8 e4m3 through
torch._scaled_mm on GPUs of compute capability >= 8.9 (per-tensor scales, bf16 output).
Every GPU repetition, and every CPU repetition of a decode shape, starts with a cache flush:
in a real decode step W was last touched a whole forward pass ago, so it is never in cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferecon.harness.runner import Case, SkipCase, SweepContext, timing_config
from inferecon.harness.timing import measure

BENCHMARK = "matmul"
# Bump whenever the method changes (shapes' meaning, timing, flops/bytes accounting).
BENCHMARK_VERSION = 3  # 2: CPU decode shapes flush the cache; 3: flush 2 x LLC capped at 256 MiB, paid from the budget


@dataclass(frozen=True)
class ModelShape:
    """The projection shapes of a dense transformer layer (a copy of the few catalog fields
    needed here: kernels never import the model package)."""

    name: str
    d_model: int
    d_ff: int
    n_heads: int
    n_kv_heads: int
    d_head: int

    def projections(self) -> list[tuple[str, int, int]]:
        """(projection, N, K) for y[M, N] = x[M, K] @ W[N, K]^T, fused as serving stacks do."""
        q = self.n_heads * self.d_head
        kv = self.n_kv_heads * self.d_head
        return [
            ("qkv", q + 2 * kv, self.d_model),
            ("o", self.d_model, q),
            ("gate_up", 2 * self.d_ff, self.d_model),
            ("down", self.d_model, self.d_ff),
        ]


MODELS = {
    m.name: m
    for m in (
        ModelShape("llama-3-8b", 4096, 14336, 32, 8, 128),
        ModelShape("llama-3-70b", 8192, 28672, 64, 8, 128),
        ModelShape("llama-3.1-405b", 16384, 53248, 128, 8, 128),
    )
}

BYTES_PER_ELEMENT = {"fp8": 1, "bf16": 2, "fp16": 2, "tf32": 4, "fp32": 4}


@dataclass(frozen=True)
class SweepPlan:
    square: dict  # dtype -> sizes
    decode_models: tuple
    decode_projs: tuple  # None = all four
    decode_m: tuple
    decode_dtypes: tuple
    do_bench_case: tuple = (8192, "bf16")  # compared with triton.testing.do_bench on GPU


def plan(device: str, quick: bool, fp8: bool) -> SweepPlan:
    if device == "cuda":
        if quick:
            square = {"bf16": (1024, 4096, 8192), "fp16": (8192,), "tf32": (4096,), "fp32": (4096,)}
            if fp8:
                square["fp8"] = (4096, 8192)
            return SweepPlan(square, ("llama-3-70b",), None, (1, 16, 64, 256, 512), ("bf16",))
        big = (256, 512, 1024, 2048, 4096, 6144, 8192, 16384)
        square = {"bf16": big, "fp16": big, "tf32": (1024, 4096, 8192), "fp32": (1024, 4096, 8192)}
        if fp8:
            square["fp8"] = big
        return SweepPlan(square, tuple(MODELS), None, (1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512),
                         ("bf16", "fp8") if fp8 else ("bf16",))
    # CPU: small sizes that finish in seconds; the numbers only describe this CPU.
    if quick:
        return SweepPlan({"fp32": (128, 256, 512), "bf16": (128,)}, ("llama-3-8b",), ("o",), (1, 16), ("fp32",))
    return SweepPlan({"fp32": (128, 256, 512, 1024), "bf16": (128, 256)}, ("llama-3-8b",), None,
                     (1, 8, 32), ("fp32", "bf16"))


def supports_fp8(device: str) -> bool:
    if device != "cuda":
        return False
    import torch

    return (hasattr(torch, "_scaled_mm") and hasattr(torch, "float8_e4m3fn")
            and torch.cuda.get_device_capability() >= (8, 9))


def case_params(shape_kind: str, m: int, n: int, k: int, dtype: str, model: str = "", proj: str = "") -> dict:
    weight_bytes = n * k * BYTES_PER_ELEMENT[dtype]
    return {"shape_kind": shape_kind, "model": model, "proj": proj, "m": m, "n": n, "k": k,
            "dtype": dtype, "flop": 2 * m * n * k, "weight_bytes": weight_bytes}


def case_id(p: dict) -> str:
    where = f"{p['model']}/{p['proj']}:" if p["model"] else ""
    return f"{p['shape_kind']}:{where}m{p['m']}n{p['n']}k{p['k']}:{p['dtype']}"


def planned_params(device: str, quick: bool, fp8: bool) -> list[dict]:
    sp = plan(device, quick, fp8)
    out = []
    for dtype, sizes in sp.square.items():
        for s in sizes:
            out.append(case_params("square", s, s, s, dtype))
    for dtype in sp.decode_dtypes:
        for name in sp.decode_models:
            for proj, n, k in MODELS[name].projections():
                if sp.decode_projs and proj not in sp.decode_projs:
                    continue
                for m in sp.decode_m:
                    out.append(case_params("decode", m, n, k, dtype, name, proj))
    return out


class _Fp32Precision:
    """Set torch's fp32 matmul precision for one case and restore it: "tf32" cases use TF32
    tensor cores, "fp32" cases must not (torch's default, but the user may have changed it)."""

    def __init__(self, dtype: str):
        self.want = {"tf32": "high", "fp32": "highest"}.get(dtype)

    def __enter__(self):
        import torch

        self.old = torch.get_float32_matmul_precision()
        if self.want:
            torch.set_float32_matmul_precision(self.want)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_float32_matmul_precision(self.old)
        return False


def _operands(p: dict, device: str):
    """(callable computing the product, tensors it holds). Square: a[M,K] @ b[K,N]; decode:
    F.linear(x[M,K], W[N,K]) — the nn.Linear layout a decode step actually uses."""
    import torch
    import torch.nn.functional as F

    m, n, k = p["m"], p["n"], p["k"]
    if p["dtype"] == "fp8":
        f8 = torch.float8_e4m3fn
        a = torch.randn(m, k, device=device, dtype=torch.bfloat16).to(f8)
        w = torch.randn(n, k, device=device, dtype=torch.bfloat16).to(f8)
        b = w.t()  # _scaled_mm wants mat2 column-major: W[N,K] row-major transposed is exactly that
        one = torch.ones((), device=device, dtype=torch.float32)

        def fn():
            # Per-tensor scales, bf16 out, default (precise) accumulation.
            return torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

        try:
            fn()
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise
            raise SkipCase(f"torch._scaled_mm rejected m={m} n={n} k={k}: {str(exc).splitlines()[0]}") from None
        return fn
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32, "fp32": torch.float32}[p["dtype"]]
    if p["shape_kind"] == "square":
        a = torch.randn(m, k, device=device, dtype=dt)
        b = torch.randn(k, n, device=device, dtype=dt)
        return lambda: torch.matmul(a, b)
    x = torch.randn(m, k, device=device, dtype=dt)
    w = torch.randn(n, k, device=device, dtype=dt)
    return lambda: F.linear(x, w)


def _do_bench_tflops(fn, flop: int):
    """The same product timed by triton.testing.do_bench (median), as a cross-check of our
    timing function; None where triton is absent."""
    try:
        from triton.testing import do_bench
    except Exception:
        return None
    try:
        ms = do_bench(fn, warmup=25, rep=200, return_mode="median")
    except TypeError:  # older triton without return_mode
        ms = do_bench(fn, warmup=25, rep=200, quantiles=[0.5])
    if isinstance(ms, (list, tuple)):
        ms = ms[0]
    return flop / (float(ms) * 1e-3) / 1e12


def run_case(p: dict, device: str, quick: bool, compare_do_bench: bool = False) -> dict:
    if p["dtype"] == "fp8" and not supports_fp8(device):
        raise SkipCase("fp8 needs torch._scaled_mm on a GPU of compute capability >= 8.9")
    # A decode step touches each weight once per step, long after the last touch: W is cold
    # in cache on any device. Flush on GPU always, and on CPU for the decode shapes (square
    # shapes there measure the peak, which a warm cache serves best).
    config = timing_config(device, quick, flush_l2=(device == "cuda" or p["shape_kind"] == "decode"))
    with _Fp32Precision(p["dtype"]):
        fn = _operands(p, device)
        m = measure(fn, device=device, config=config)
        dob = _do_bench_tflops(fn, p["flop"]) if compare_do_bench else None
    out = m.record_fields()
    out["tflops"] = p["flop"] / m.median_s / 1e12
    # Bytes of W per second: meaningful where reading W bounds the time (decode shapes).
    out["weight_gbps"] = p["weight_bytes"] / m.median_s / 1e9 if p["shape_kind"] == "decode" else float("nan")
    out["flush_l2"] = config.flush_l2
    out["do_bench_tflops"] = float("nan") if dob is None else dob
    return out


def cases(ctx: SweepContext, quick: bool) -> list[Case]:
    # fp8 cases stay in the plan of every GPU so an unsupported GPU records them as skipped.
    fp8 = ctx.device == "cuda"
    sp = plan(ctx.device, quick, fp8)
    out = []
    for p in planned_params(ctx.device, quick, fp8):
        cmp = (ctx.device == "cuda" and p["shape_kind"] == "square"
               and (p["m"], p["dtype"]) == sp.do_bench_case)
        out.append(Case(case_id(p), p, lambda p=p, cmp=cmp: run_case(p, ctx.device, quick, cmp)))
    return out
