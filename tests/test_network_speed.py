"""The fitted-collective tables network.py caches per profile: figures by hand from the fitted
lines of the kept op-DB profile (tests/fixtures/speed/opdb-h100-vllm), and no profile ever reads
another's tables."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from inferecon.model import network as net
from inferecon.model.hardware import HardwareProfile

PROFILE = Path(__file__).resolve().parent / "fixtures" / "speed" / "opdb-h100-vllm" / "profile.json"


@pytest.fixture(scope="module")
def hw():
    return HardwareProfile.load(PROFILE)


def _line(world, nbytes, mode="graph"):
    """(alpha µs, beta GB/s) of the profile file's all-reduce line covering nbytes, read from the JSON."""
    lines = [c for c in json.loads(PROFILE.read_text())["network"]["collectives"]
             if c["collective"] == "all_reduce" and c["world_size"] == world and c["mode"] == mode]
    c = max((c for c in lines if c["min_bytes"] <= nbytes), key=lambda c: c["min_bytes"])
    return c["alpha_us"], c["beta_gbps"]


def test_fitted_all_reduce_at_a_fitted_world_is_its_line(hw):
    # At a fitted world the line itself: alpha + bytes / beta (graph lines: a decode step's mode).
    for world, nbytes in ((8, 16384.0), (8, 262144.0), (4, 4.0e6), (2, 1000.0)):
        a, beta = _line(world, nbytes)
        want = a * 1e-6 + nbytes / (beta * 1e9)
        got = float(net.collective_time_s(hw, net.ALL_REDUCE, world, 1, nbytes))
        assert got == pytest.approx(want, rel=1e-12)


def test_fitted_all_reduce_between_worlds_interpolates_alpha_and_bus_bandwidth(hw):
    # 6 ranks, halfway between the fitted 4 and 8: alpha and busbw (beta x 2(n-1)/n) averaged,
    # then bytes x 2(6-1)/6 over that busbw.
    nbytes = 16384.0
    (a4, b4), (a8, b8) = _line(4, nbytes), _line(8, nbytes)
    alpha = (a4 + a8) / 2
    busbw = (b4 * 2 * 3 / 4 + b8 * 2 * 7 / 8) / 2
    want = alpha * 1e-6 + nbytes * (2 * 5 / 6) / (busbw * 1e9)
    assert float(net.collective_time_s(hw, net.ALL_REDUCE, 6, 1, nbytes)) == pytest.approx(want, rel=1e-12)


def test_one_configuration_or_a_million_give_the_same_figures(hw):
    rng = np.random.default_rng(3)
    group = rng.choice([1, 2, 4, 8, 16, 64], 5000)
    stride = rng.choice([1, 2, 8], 5000)
    nbytes = rng.integers(0, 1 << 24, 5000).astype(float)
    many = net.collective_time_s(hw, net.ALL_REDUCE, group, stride, nbytes)
    for i in rng.choice(5000, 25, replace=False):
        assert many[i] == float(net.collective_time_s(hw, net.ALL_REDUCE, group[i], stride[i], nbytes[i]))
    # A group of one issues no collective.
    assert (many[group == 1] == 0).all()


def test_another_profile_never_reads_the_cached_tables(hw):
    before = float(net.collective_time_s(hw, net.ALL_REDUCE, 8, 1, 16384.0))
    a, beta = _line(8, 16384.0)
    doubled = [dataclasses.replace(c, alpha_us=2 * c.alpha_us) for c in hw.network.collectives]
    other = dataclasses.replace(hw, network=dataclasses.replace(hw.network, collectives=doubled))
    assert float(net.collective_time_s(other, net.ALL_REDUCE, 8, 1, 16384.0)) == pytest.approx(
        2 * a * 1e-6 + 16384.0 / (beta * 1e9), rel=1e-12)
    # The first profile still gets its own figure, and a list changed in place is re-read.
    assert float(net.collective_time_s(hw, net.ALL_REDUCE, 8, 1, 16384.0)) == before
    doubled[:] = [dataclasses.replace(c, alpha_us=c.alpha_us / 2) for c in doubled]
    assert float(net.collective_time_s(other, net.ALL_REDUCE, 8, 1, 16384.0)) == before
    # Without fits: the published model, not a stale table.
    bare = dataclasses.replace(hw, network=dataclasses.replace(hw.network, collectives=[]))
    nodes, local = net.group_nodes(bare, 8.0, 1.0)
    want = float(net.published_time_s(bare, net.ALL_REDUCE, 8.0, nodes, local, 16384.0))
    assert float(net.collective_time_s(bare, net.ALL_REDUCE, 8, 1, 16384.0)) == want != before
