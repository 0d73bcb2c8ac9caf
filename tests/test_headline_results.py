"""The paper's headline results, reproduced on the published H100 profile (DESIGN.md)."""

import dataclasses

import numpy as np
import pytest

from inferecon.model.published import get_profile
from inferecon.model.catalog import get_model
from inferecon.model.frontier import SearchSpace, search

H100 = get_profile("h100-sxm")
WIDE = SearchSpace(max_gpus=1024)
DENSE_FAMILY = ["llama-3-8b", "qwen3-32b", "llama-3-70b", "mistral-large-2", "gpt-3-175b", "llama-3.1-405b"]


def max_speed(model, hw, context=2048, space=WIDE):
    return search(model, hw, context, space)["tokens_per_s_per_seq"].max()


def _max_speed_exponent(hw):
    params = [get_model(n).total_params for n in DENSE_FAMILY]
    speeds = [max_speed(get_model(n), hw) for n in DENSE_FAMILY]
    return np.polyfit(np.log(params), np.log(speeds), 1)[0]


def test_max_speed_scales_as_inverse_square_root_of_parameters():
    # The paper's law on the paper's own constants (h100-sxm-paper).
    slope = _max_speed_exponent(get_profile("h100-sxm-paper"))
    assert -0.6 <= slope <= -0.4, slope


def test_measured_inter_node_latency_steepens_the_max_speed_law():
    # On the published profile's measured figures the largest models' fastest points span two or
    # more nodes, whose small all-reduces the 2x8 InfiniBand nccl-tests tables put at ~30 us
    # (16 KB) against the paper's NCCL tuning figures: the fast end of big models slows more than
    # the small models' (one node), so the exponent falls below the paper constants' (docs/model.md).
    measured = _max_speed_exponent(H100)
    paper = _max_speed_exponent(get_profile("h100-sxm-paper"))
    assert measured < paper, (measured, paper)
    assert measured < -0.4, measured


def test_max_speed_scales_as_cube_root_of_hbm_bandwidth():
    m = get_model("llama-3-70b")
    factors = [0.5, 1.0, 2.0, 4.0]
    speeds = []
    for f in factors:
        mem = dataclasses.replace(H100.memory, bandwidth_gbps=H100.memory.bandwidth_gbps * f)
        speeds.append(max_speed(m, dataclasses.replace(H100, memory=mem)))
    slope = np.polyfit(np.log(factors), np.log(speeds), 1)[0]
    assert 0.25 <= slope <= 0.42, slope


@pytest.mark.parametrize("name", ["llama-3-70b", "llama-3.1-405b", "mistral-large-2", "gpt-3-175b"])
def test_pipeline_parallelism_never_pays_above_bandwidth_over_capacity(name):
    # The paper: pipelining only pays below HBM bandwidth / HBM size (41.9 tok/s on an H100).
    # Above it, allowing pipelines must not make any speed cheaper; below it pipelined points do
    # reach the frontier (otherwise the check would be empty).
    from inferecon.model.frontier import cost_at_speed

    threshold = 3350.0 / 80.0  # datasheet HBM GB/s over GB
    m = get_model(name)
    with_pp = search(m, H100, 4096)
    without = search(m, H100, 4096, SearchSpace(allow_pipeline=False))
    fast = without[without["tokens_per_s_per_seq"] > threshold * 1.02]["tokens_per_s_per_seq"]
    for s in fast:
        assert cost_at_speed(with_pp, s) == pytest.approx(cost_at_speed(without, s), rel=1e-9), s
    pipelined = with_pp[with_pp["pp"] > 1]
    assert len(pipelined) > 0
    assert (pipelined["tokens_per_s_per_seq"] < threshold).all()


def _speed_at_cost(front, cost):
    ok = front["usd_per_mtok"] <= cost
    return front.loc[ok, "tokens_per_s_per_seq"].max()


def test_speculative_decoding_gives_at_least_1_5x_speed_at_equal_cost():
    m, draft = get_model("llama-3-70b"), get_model("llama-3-8b")
    base = search(m, H100, 4096)
    spec = search(m, H100, 4096, draft=draft, acceptance=0.8)
    ratios = np.array([_speed_at_cost(spec, c) / s
                       for c, s in zip(base["usd_per_mtok"], base["tokens_per_s_per_seq"])
                       if (spec["usd_per_mtok"] <= c).any()])
    assert len(ratios) >= 10
    # DESIGN.md: ≈1.6–2× for 70B models at acceptance 0.8. At the latency-bound fast end the
    # draft's own per-layer latencies eat part of the gain; nowhere does it fall below 1.45×.
    assert np.median(ratios) >= 1.5, ratios
    assert ratios.min() >= 1.45, ratios
    assert ratios.max() <= 3.4  # never above the expected-tokens bound (1-0.8^9)/0.2 = 4.3 less draft cost


def _latency_bound_costs(front):
    waits = front["t_network_s"] + front["t_latency_s"]
    bound = front[waits > np.maximum(front["t_memory_s"], front["t_arithmetic_s"])]
    return bound["usd_per_mtok"].min(), bound["usd_per_mtok"].max()


def test_without_network_latency_the_latency_bound_end_speeds_up_severalfold():
    m = get_model("llama-3-70b")
    with_lat = search(m, H100, 4096)
    without = search(m, H100.without_network_latency(), 4096)
    lo, hi = _latency_bound_costs(with_lat)
    assert hi > lo  # the fast end of the published frontier is latency-bound
    for cost in np.geomspace(lo, hi, 5):
        assert _speed_at_cost(without, cost) >= 2.0 * _speed_at_cost(with_lat, cost)


def test_without_any_latency_speed_grows_about_4x_per_2x_cost():
    # The paper's counterfactual (`frontier --no-latency`): every fixed latency at zero, tensor
    # parallelism not capped by the heads, square 2D grids of up to 65536 GPUs. Its code gives
    # 3.3-3.9x speed per 2x cost between about $2 and $32/M for Llama 3 70B; the claim is
    # checked here over $4-$32/M as a log-log slope (4x per 2x is a slope of 2).
    from inferecon.model.frontier import NO_LATENCY_MAX_GPUS, WIDE_BATCH_GRID

    m = get_model("llama-3-70b")
    space = SearchSpace(max_gpus=NO_LATENCY_MAX_GPUS, unbounded_tp=True, batch_grid=WIDE_BATCH_GRID)
    front = search(m, H100.without_latency(), 0, space)
    sel = front[(front["usd_per_mtok"] >= 4) & (front["usd_per_mtok"] <= 32)]
    assert len(sel) >= 8
    slope = np.polyfit(np.log(sel["usd_per_mtok"]), np.log(sel["tokens_per_s_per_seq"]), 1)[0]
    assert 2 ** slope >= 3.5, 2 ** slope
    # Square grids carry it: the configurations there are 2D.
    assert (sel["tp_r"] > 1).all()
