"""Published-spec HardwareProfiles: datasheet peaks times the utilisation caps of
"Inference Economics of Language Models" (Erdil 2025), which is what inferecon falls back to
without measurements. Figures and sources: shared/reference/hardware.md.

Collective latency follows NCCL's own tuning model (src/graph/tuning.cc): a base latency per
call plus a per-step latency for each sequential ring step (NVLink inside a node, the NIC
between nodes) and, between nodes, a tree whose depth grows with log2(nodes). The base
latency is the paper's 6.8 µs (NCCL's LL protocol); the per-step figures are NCCL's LL
constants (0.6 µs NVLink, 2.7 µs network ring step, 5.0 µs network tree level).
"""

from __future__ import annotations

from inferecon.errors import lookup
from inferecon.model.hardware import (
    ComputeSpec,
    HardwareProfile,
    LatencySpec,
    LinkSpec,
    MemorySpec,
    NetworkSpec,
    Provenance,
)

PAPER = "Erdil 2025, Inference Economics of Language Models (caps: 70% FLOP/s, 75% HBM; 4 µs launch; 6.8 µs NCCL LL base)"
NCCL_TUNING = "NCCL src/graph/tuning.cc LL latencies (0.6 µs NVLink step, 2.7 µs net ring step, 5.0 µs net tree level)"
PRICE_ASSUMED = "price is an inferecon default assumption (no published figure); override with --price"

FLOP_CAP = 0.70
HBM_CAP = 0.75
LAUNCH_US = 4.0
NCCL_BASE_US = 6.8
NVLINK_STEP_US = 0.6
NET_RING_STEP_US = 2.7
NET_TREE_LEVEL_US = 5.0


def _profile(name, display, tflops, hbm_gb, hbm_gbps, nvlink_gbps, inter_gbps, l2_mb, price, sources):
    return HardwareProfile(
        name=name,
        display_name=display,
        compute=ComputeSpec(peak_tflops=tflops, efficiency=FLOP_CAP),
        memory=MemorySpec(capacity_gb=hbm_gb, bandwidth_gbps=hbm_gbps, efficiency=HBM_CAP, l2_mb=l2_mb),
        network=NetworkSpec(
            gpus_per_node=8,
            # The paper applies no cap to link bandwidth; neither do we on published specs.
            intra=LinkSpec(bandwidth_gbps=nvlink_gbps, efficiency=1.0,
                           base_latency_us=NCCL_BASE_US, hop_latency_us=NVLINK_STEP_US),
            inter=LinkSpec(bandwidth_gbps=inter_gbps, efficiency=1.0, base_latency_us=NCCL_BASE_US,
                           hop_latency_us=NET_RING_STEP_US, tree_hop_latency_us=NET_TREE_LEVEL_US),
        ),
        latency=LatencySpec(kernel_launch_us=LAUNCH_US),
        price_usd_per_gpu_hour=price,
        provenance=Provenance(kind="published", sources=sources + [PAPER, NCCL_TUNING]),
    )


PROFILES: dict[str, HardwareProfile] = {
    p.name: p
    for p in [
        _profile(
            "h100-sxm", "NVIDIA H100 SXM5 80GB",
            {"bf16": 989.0, "fp16": 989.0, "fp8": 1979.0, "tf32": 494.5, "fp32": 66.9},
            80.0, 3350.0, 450.0, 50.0, 50.0, 2.0,
            ["NVIDIA H100 Tensor Core GPU datasheet (SXM5)",
             "inter-node: 8 x 400 Gb/s NDR per DGX H100 = 50 GB/s per GPU (paper)",
             "price: $2/GPU-hour (paper)"],
        ),
        _profile(
            "h200", "NVIDIA H200 SXM 141GB",
            {"bf16": 989.0, "fp16": 989.0, "fp8": 1979.0, "tf32": 494.5, "fp32": 66.9},
            141.0, 4800.0, 450.0, 50.0, 50.0, 2.5,
            ["NVIDIA H200 Tensor Core GPU datasheet", "inter-node: 400 Gb/s NDR per GPU",
             PRICE_ASSUMED],
        ),
        _profile(
            "a100-sxm-80gb", "NVIDIA A100 SXM 80GB",
            {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5, "int8": 624.0},
            80.0, 2039.0, 300.0, 25.0, 40.0, 1.5,
            ["NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB)",
             "inter-node: 8 x 200 Gb/s HDR per DGX A100 = 25 GB/s per GPU",
             "price: $1.5/GPU-hour (paper)"],
        ),
        _profile(
            "b200", "NVIDIA B200",
            {"bf16": 2250.0, "fp16": 2250.0, "fp8": 4500.0, "tf32": 1125.0, "fp32": 75.0},
            180.0, 8000.0, 900.0, 50.0, 0.0, 3.5,
            ["NVIDIA DGX B200 / HGX B200 datasheet (dense figures)",
             "inter-node: 400 Gb/s ConnectX-7 per GPU", PRICE_ASSUMED],
        ),
    ]
}

ALIASES = {"h100": "h100-sxm", "h100-sxm5": "h100-sxm", "h200-sxm": "h200", "a100": "a100-sxm-80gb",
           "a100-80gb": "a100-sxm-80gb", "a100-sxm": "a100-sxm-80gb"}


def get_profile(name: str) -> HardwareProfile:
    return lookup("GPU", name, PROFILES, ALIASES, "or pass --hardware PROFILE.json")


# Device names as torch/NVML report them -> published profile. PCIe and NVL cards have other
# peaks and bandwidths: they are deliberately not matched (no figure beats a wrong one).
_NAME_RULES = (
    ("h100", ("pcie", "nvl"), "h100-sxm"),
    ("h200", ("nvl",), "h200"),
    ("a100", ("pcie", "40gb"), "a100-sxm-80gb"),
    ("b200", (), "b200"),
)


def match_published(device_name: str) -> HardwareProfile | None:
    """The published profile of the GPU a device name reports, or None (CPUs, other GPUs)."""
    name = (device_name or "").lower()
    for needle, exclude, key in _NAME_RULES:
        if needle in name and not any(x in name for x in exclude):
            return PROFILES[key]
    return None
