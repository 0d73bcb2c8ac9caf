"""The published profiles adopt issue 20's measured decode facts (model/published.py): datasheet
figures as before, the decode facts named with their source and version, and the engine's
all-reduce lines priced for a decode step only (HardwareProfile.decode_view)."""

import dataclasses
import json

import numpy as np
import pytest

from inferecon.core.errors import UserError
from inferecon.model import network as net
from inferecon.model.hardware import CollectiveFit, HardwareProfile
from inferecon.model.published import PROFILES, get_profile

# Datasheet figures, typed from the datasheets (NVIDIA H100 SXM5, H200, A100 SXM4 80GB, DGX B200):
# HBM GB, HBM GB/s, NVLink GB/s per direction, L2 MB as the profiles have carried them.
DATASHEET = {"h100-sxm": (80.0, 3350.0, 450.0, 50.0), "h200": (141.0, 4800.0, 450.0, 50.0),
             "a100-sxm-80gb": (80.0, 2039.0, 300.0, 40.0), "b200": (180.0, 8000.0, 900.0, 0.0)}
# aiconfigurator-core 0.12.0's vLLM tables per GPU (version, bf16 decode streaming share of HBM,
# decode GEMM intercept us, attention floor us, elementwise us per layer), as the issue-20 fits
# read them.
MEASURED = {"h100-sxm": ("0.24.0", 0.833, 2.53, 11.99, 7.36), "h200": ("0.24.0", 0.786, 2.44, 12.10, 7.10),
            "a100-sxm-80gb": ("0.14.0", 0.677, 2.46, 15.81, 7.36), "b200": ("0.24.0", 0.764, 1.79, 9.48, 5.37)}


@pytest.mark.parametrize("gpu", sorted(DATASHEET))
def test_datasheet_kept_decode_facts_adopted_with_source_and_version(gpu):
    hw = get_profile(gpu)
    hbm_gb, hbm_gbps, nvlink, l2 = DATASHEET[gpu]
    assert (hw.memory.capacity_gb, hw.memory.bandwidth_gbps, hw.network.intra.bandwidth_gbps, hw.memory.l2_mb) == \
        (hbm_gb, hbm_gbps, nvlink, l2)
    version, eff, t0, floor, elementwise = MEASURED[gpu]
    assert hw.compute.efficiency == 0.70  # the paper's FLOP/s cap stays
    assert hw.memory.efficiency == eff
    assert hw.latency.kernel_launch_us == t0
    # Kernels per layer: the four GEMMs plus the attention floor and elementwise time at the
    # intercept each, so kernels x launch = 4 x t0 + floor + elementwise.
    assert hw.latency.serial_kernels_per_dense_layer * t0 == pytest.approx(4 * t0 + floor + elementwise, rel=1e-12)
    src = [s for s in hw.provenance.sources if s.startswith("aiconfigurator-core 0.12.0")]
    assert len(src) == 1 and f"vllm {version}" in src[0] and f"{eff} of HBM" in src[0]
    # No engine line among the fitted collectives: only a decode step reads them.
    assert hw.network.collectives == [] and {c.mode for c in hw.network.decode_collectives} == {"graph"}


def test_the_efa_profile_is_the_h100_inside_the_node():
    efa, ib = get_profile("h100-sxm-efa"), get_profile("h100-sxm")
    assert (efa.memory, efa.latency, efa.network.decode_collectives) == (ib.memory, ib.latency, ib.network.decode_collectives)
    assert efa.network.protocols != ib.network.protocols  # EFA's own fits between nodes


def test_decode_step_reads_the_engine_lines_a_plain_query_does_not():
    hw = get_profile("a100-sxm-80gb")
    # vLLM's all-reduce on 4 x A100 from 1 MiB (aiconfigurator-core 0.12.0, vLLM 0.14.0 table):
    # alpha 11.02 us, 131 GB/s. 4 MiB: 11.02 + 4,194,304 / 131e3 = 11.02 + 32.02 = 43.04 us.
    b = 4 * 1024 * 1024
    decode = float(net.collective_time_s(hw.decode_view, net.ALL_REDUCE, 4, 1, float(b)))
    assert decode == pytest.approx((11.02 + b / 131e3) * 1e-6, rel=1e-9)
    # The plain query is NCCL's ring over NVLink (A100 has no NVLS), its cheapest protocol LL128
    # (NCCL tuning.cc: 14 us + 6 NVLink steps x 1.9 us = 25.4 us; 120 of 128 bytes, 0.95 of the
    # 0.82 x 300 GB/s ring bus bandwidth): bus factor 2 x 3/4, 6,291,456 B / 233.7 GB/s = 26.92 us.
    # Simple would pay 8.4 + 6 x 3.4 = 28.8 us + 25.57 us.
    plain = float(net.collective_time_s(hw, net.ALL_REDUCE, 4, 1, float(b)))
    assert plain == pytest.approx((14.0 + 6 * 1.9) * 1e-6 + b * 1.5 / (0.95 * 0.82 * 300e9), rel=1e-9)
    # Across nodes the decode step keeps NCCL: the engine lines are inside a node only.
    across = [float(net.collective_time_s(p, net.ALL_REDUCE, 16, 1, float(b))) for p in (hw, hw.decode_view)]
    assert across[0] == across[1]
    assert hw.decode_view is hw.decode_view  # built once per profile


def test_a_profiles_own_graph_lines_win_over_the_engine_lines():
    hw = get_profile("h100-sxm")
    own = CollectiveFit("all_reduce", 8, "intra", alpha_us=9.0, beta_gbps=100.0, mode="graph")
    mine = dataclasses.replace(hw, network=dataclasses.replace(hw.network, collectives=[own]))
    assert mine.decode_view.network.collectives == [own]
    t = float(net.collective_time_s(mine.decode_view, net.ALL_REDUCE, 8, 1, 1e6))
    assert t == pytest.approx(9e-6 + 1e6 / 100e9, rel=1e-9)


def test_a_per_op_database_profile_keeps_its_own_engine_lines_only():
    from inferecon.model.opfits import OpFits

    hw = get_profile("h100-sxm")
    nccl = CollectiveFit("all_reduce", 8, "intra", alpha_us=19.0, beta_gbps=50.0)  # its engine has no own lines
    opdb = dataclasses.replace(hw, network=dataclasses.replace(hw.network, collectives=[nccl]),
                               op_fits=OpFits(gpu="h100-sxm", engine="x", engine_version="1"))
    assert opdb.decode_view is opdb


def test_profile_files_keep_the_decode_lines_and_check_them(tmp_path):
    hw = get_profile("b200")
    path = hw.save(tmp_path / "b200.json")
    assert HardwareProfile.load(path) == hw
    data = json.loads(path.read_text())
    data["network"]["decode_collectives"][0]["mode"] = "captured"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"network.decode_collectives\[0\].mode 'captured' is not one of"):
        HardwareProfile.load(tmp_path / "bad.json")


def test_without_latency_zeroes_the_engine_lines_too():
    hw = get_profile("h200").without_latency()
    assert all(c.alpha_us == 0.0 for c in hw.network.decode_collectives)
    assert np.isclose(float(net.collective_time_s(hw.decode_view, net.ALL_REDUCE, 8, 1, 0.0)), 0.0)


def test_every_published_profile_but_the_papers_adopts_them():
    assert {n for n, p in PROFILES.items() if p.network.decode_collectives} == set(PROFILES) - {"h100-sxm-paper"}
