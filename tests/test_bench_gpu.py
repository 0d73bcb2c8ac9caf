"""GPU-only checks of the timing paths and kernels (skipped without CUDA)."""

import pytest
import torch

from inferecon.report.summary import published_peak
from inferecon.harness.runner import SweepContext
from inferecon.harness.timing import TimingConfig, measure

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _ctx():
    return SweepContext("cuda", torch.cuda.get_device_name(), torch.cuda.device_count(), quick=True)


def test_cuda_events_agree_with_raw_events_and_sit_inside_the_host_window():
    import time

    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    cfg = TimingConfig(warmup_ms=10, budget_ms=100, min_reps=10)
    ev = measure(lambda: a @ a, device="cuda", config=cfg)
    assert ev.timer_name == "cuda_event"
    # An independent figure, outside the timing function: one raw event pair around 50
    # back-to-back products (no host in the window), per product. Same GPU, same kernel:
    # within 5%.
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(50):
        a @ a
    end.record()
    torch.cuda.synchronize()
    raw_s = start.elapsed_time(end) * 1e-3 / 50
    assert ev.median_s == pytest.approx(raw_s, rel=0.05)
    # The host clock's window (synchronize, launch, synchronize) encloses the kernel: its median
    # is never below the events' (1 us of clock granularity aside). No upper bound: how long a
    # shared CPU takes to launch and synchronize is the machine's, not the timing function's.
    host = measure(lambda: a @ a, device="cuda", config=cfg, timer=time.perf_counter_ns)
    assert host.median_s >= ev.median_s - 1e-6


def test_flush_and_graph_paths_run():
    x = torch.zeros(1, device="cuda")
    cfg = TimingConfig(warmup_ms=5, budget_ms=20, cuda_graph=True, inner_reps=50, flush_l2=True)
    m = measure(lambda: x.add_(1.0), device="cuda", config=cfg)
    assert m.extra["cuda_graph"] and m.extra["flush_l2"]
    assert 0 < m.median_us < 50
    # The flush is 2 x the L2 torch reports, floored at 64 MiB and capped at 256 MiB.
    l2 = torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size
    assert m.flush_bytes == min(max(2 * l2, 64 << 20), 256 << 20)


def test_matmul_8192_bf16_matches_do_bench_and_peak():
    from inferecon.kernels import matmul

    p = matmul.case_params("square", 8192, 8192, 8192, "bf16")
    r = matmul.run_case(p, "cuda", quick=True, compare_do_bench=True)
    peak = published_peak(torch.cuda.get_device_name(), "bf16")
    if peak:
        assert r["tflops"] < peak
    if r["do_bench_tflops"] == r["do_bench_tflops"]:  # not NaN: triton present
        assert abs(r["tflops"] / r["do_bench_tflops"] - 1) < 0.05


def test_fp8_runs_where_supported():
    from inferecon.kernels import matmul

    if not matmul.supports_fp8("cuda"):
        pytest.skip("fp8 needs compute capability >= 8.9")
    p = matmul.case_params("decode", 16, 8192, 8192, "fp8", "llama-3-70b", "o")
    r = matmul.run_case(p, "cuda", quick=True)
    assert r["tflops"] > 0 and r["weight_gbps"] > 0


def test_memory_read_uses_a_read_only_kernel_when_triton_is_present():
    from inferecon.kernels import memory

    r = memory.run_case("read", 1024**3, "cuda", quick=True)
    try:
        import triton  # noqa: F401

        assert r["kernel"] == "triton"
    except ImportError:
        assert r["kernel"] == "torch_sum"
    peak = published_peak(torch.cuda.get_device_name(), "hbm")
    if peak:
        assert r["gbps"] < peak * 1.02


def test_launch_graph_is_cheaper_than_eager():
    from inferecon.kernels import launch

    eager = launch.run_case("kernel_eager", "cuda", quick=True)
    graph = launch.run_case("kernel_graph", "cuda", quick=True)
    sync = launch.run_case("sync", "cuda", quick=True)
    assert graph["time_us"] < eager["time_us"]
    assert sync["time_us"] > 0
