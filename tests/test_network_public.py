"""The published collective model against public nccl-tests tables of real H100 clusters
(../shared/reference/measured; skipped where that folder is absent). The files are read
where they lie, never copied into the repository."""

from pathlib import Path

import numpy as np
import pytest

from inferecon.ingest.nccl_tests import read_nccl_tests
from inferecon.model.published import get_profile
from inferecon.model.network import collective_time_s

MEASURED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "measured"
pytestmark = pytest.mark.skipif(not MEASURED.is_dir(), reason="shared/reference/measured not present")

# Multi-node all_reduce tables over InfiniBand or EFA (SOURCES.md marks issue290's as a degraded
# cluster and the GCP ones as TCP-based: the published profile need not match those).
INTER_NODE = [
    ("nccl-tests_all_reduce_2x8xH100-IB-NDR_nccl-tests-issue309.txt", 16, 2, "h100-sxm"),
    ("nccl-tests_all_reduce_2x8xH100-IB_nebius-dstack.txt", 16, 2, "h100-sxm"),
    ("nccl-tests_all_reduce_2x8xH100_nccl-tests-issue309-gjaion.txt", 16, 2, "h100-sxm"),
    ("nccl-tests_all_reduce_4x8xH100-IB-NDR_nccl-tests-issue309.txt", 32, 4, "h100-sxm"),
    ("nccl-tests_all_reduce_8x8xH100_nccl-tests-issue309-gjaion.txt", 64, 8, "h100-sxm"),
    ("nccl-tests_all_reduce_10x8xH100_xxrjun-cluster01-N10.txt", 80, 10, "h100-sxm"),
    ("nccl-tests_all_reduce_2x8xH100-EFA_aws-p5-awsome.txt", 16, 2, "h100-sxm-efa"),
    ("nccl-tests_all_reduce_2x8xH100-EFA_aws-p5-keitaw-nccl2.22.3.txt", 16, 2, "h100-sxm-efa"),
    ("nccl-tests_all_reduce_2x8xH100-EFA_aws-p5-keitaw-nccl2.20.3-ofituner.txt", 16, 2, "h100-sxm-efa"),
]


def _measured(name, op, world, nodes, lo=1 << 20, hi=1 << 30):
    (table,) = read_nccl_tests(f"{MEASURED / name}:{op}:{world}:{nodes}")
    df = table.frame()
    df = df[(df["bytes"] >= lo) & (df["bytes"] <= hi)]
    return df["bytes"].to_numpy(float), df["median_us"].to_numpy(float)


@pytest.mark.parametrize("name,world,nodes,gpu", INTER_NODE)
def test_inter_node_all_reduce_within_25pct_from_1mb_to_1gb(name, world, nodes, gpu):
    size, measured_us = _measured(name, "all_reduce", world, nodes)
    assert len(size) >= 5  # the 10-node table starts at 32 MB
    predicted_us = collective_time_s(get_profile(gpu), "all_reduce", world, 1, size) * 1e6
    ratio = predicted_us / measured_us
    assert ((ratio >= 0.75) & (ratio <= 1.25)).all(), dict(zip(size.astype(int), ratio.round(2)))


@pytest.mark.parametrize("name,op,lo", [
    ("nccl-tests_all_reduce_8xH100_aws-p5-batch-awsome.txt", "all_reduce", 1 << 20),
    ("nccl-tests_all_reduce_8xH100_xxrjun-cluster01-cnode3-002.txt", "all_reduce", 1 << 20),
    ("nccl-tests_all_gather_8xH100_xxrjun-cluster01-cnode3-002.txt", "all_gather", 1 << 20),
    ("nccl-tests_reduce_scatter_8xH100_xxrjun-cluster01-cnode3-002.txt", "reduce_scatter", 1 << 20),
    # This pod pays a 35 µs floor on every call (SOURCES.md: 3x the 12.9 µs of the AWS node
    # above, cause unknown), which the published latency does not carry: from 8 MB on.
    ("nccl-tests_all_reduce_8xH100_together-nvls.txt", "all_reduce", 1 << 23),
    ("nccl-tests_all_gather_8xH100_together-ring.txt", "all_gather", 1 << 23),
    ("nccl-tests_reduce_scatter_8xH100_together-ring.txt", "reduce_scatter", 1 << 23),
])
def test_one_node_collectives_within_25pct_up_to_1gb(name, op, lo):
    size, measured_us = _measured(name, op, 8, 1, lo=lo)
    ratio = collective_time_s(get_profile("h100-sxm"), op, 8, 1, size) * 1e6 / measured_us
    assert ((ratio >= 0.75) & (ratio <= 1.25)).all(), dict(zip(size.astype(int), ratio.round(2)))


@pytest.mark.parametrize("name,world,nodes", [
    ("nccl-tests_alltoall_8xH100_xxrjun-cluster01-cnode3-002.txt", 8, 1),
    ("nccl-tests_alltoall_10x8xH100_xxrjun-cluster01-N10.txt", 80, 10),
])
def test_all_to_all_as_pairwise_exchange_tracks_the_tables(name, world, nodes):
    # Pairwise exchange: the off-node share of each GPU's bytes leaves through its own NIC, so
    # 80 ranks on 10 nodes plateau near one NIC's 50 GB/s busbw, one node near NVLink's. The
    # tables start at 32 MB; 0.65-1.25 holds from there to 1 GB (the first rows ramp up).
    size, measured_us = _measured(name, "all_to_all", world, nodes, lo=1 << 25)
    ratio = collective_time_s(get_profile("h100-sxm"), "all_to_all", world, 1, size) * 1e6 / measured_us
    assert ((ratio >= 0.65) & (ratio <= 1.25)).all(), dict(zip(size.astype(int), ratio.round(2)))
