"""Published-spec HardwareProfiles: datasheet peaks times measured decode facts, which is
what inferecon falls back to without measurements of one's own node. Figures and sources:
shared/reference/hardware.md. Every constant here is a named field of the profile, with its
source in the profile's provenance.

From the paper ("Inference Economics of Language Models", Erdil 2025) the published profiles
keep 70% of peak FLOP/s and NCCL's latency model. From NVIDIA's per-op measurements
(aiconfigurator-core 0.12.0's vLLM tables, MEASURED_DECODE below) they take what a decode step
runs: the bf16 decode GEMMs' streaming share of HBM (0.68-0.83, not the paper's 0.75), their
intercept as the kernel launch (1.8-2.5 µs, not 4), the attention floor and elementwise
kernels as serial kernels per layer (≈ 11-14, not 4), and vLLM's own all-reduce inside a CUDA
graph for a decode step's collectives inside a node. `h100-sxm-paper` keeps every assumption of
the paper's code, constant for constant.

Collectives follow NCCL's tuning model (src/graph/tuning.cc, NCCL 2.2x): per protocol (LL,
LL128, Simple) a base latency, a latency per ring step over NVLink or the network and per
tree level between nodes, and a share of the link bandwidth; the cheapest protocol and
algorithm is taken per call, as NCCL does. Bandwidth is hierarchical (model/network.py):
NVLink inside a node, and between nodes the node's NICs — 8 × 400 Gb/s on a DGX/HGX H100, so
a ring across whole nodes gets 8 × 50 GB/s, not one NIC's 50 GB/s. The efficiencies below come
from public nccl-tests tables of H100 clusters (ring busbw at large messages): 8 × H100 in one
node ring ≈ 368 GB/s of 450 (0.82), NVLS all-reduce ≈ 480 GB/s; 2 nodes ring-forced ≈ 384-393
GB/s of 8 × 50 (0.96). Between nodes, the protocols' step latencies and LL's bandwidth ceiling
are fitted to the same tables from 4 KB (a decode step's all-reduce) to 1 GB. The test suite
checks the whole model against those tables (4 KB-1 GB within 25%); benchmarks/
bench_public_network.py prints the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferecon.core.errors import lookup
from inferecon.model.hardware import (
    ComputeSpec,
    HardwareProfile,
    LatencySpec,
    LinkSpec,
    MemorySpec,
    NetworkSpec,
    ProtocolSpec,
    Provenance,
)

PAPER = ("Erdil 2025, Inference Economics of Language Models and its reference code "
         "(caps: 70% FLOP/s, 75% HBM; 4 serial kernels per layer x 4 us launch; NCCL LL base 6.8 us)")
PAPER_FLOP_CAP = "Erdil 2025, Inference Economics of Language Models: 70% of peak FLOP/s"
NCCL_TUNING = ("NCCL src/graph/tuning.cc (2.2x): base latency LL 6.8 / LL128 14 / Simple 8.4 us; per step "
               "NVLink 0.6 / 1.9 / 3.4 us, network ring 2.7 / 4.0 / 14 us, network tree 5.0 / 8.5 / 14 us")
NCCL_TABLES = ("link efficiencies from public nccl-tests tables of H100 clusters: 8xH100 ring all_reduce "
               "368 GB/s busbw, NVLS 479 GB/s; 2x8xH100 IB ring 384-393 GB/s (8 x 400 Gb/s NICs)")
PRICE_ASSUMED = "price is an inferecon default assumption (no published figure); override with --price"

FLOP_CAP = 0.70
HBM_CAP = 0.75
LAUNCH_US = 4.0
SERIAL_KERNELS_PER_LAYER = 4.0
NCCL_BASE_US = 6.8
NVLINK_STEP_US = 0.6
NET_RING_STEP_US = 2.7
NET_TREE_LEVEL_US = 5.0
NVLINK_RING_EFFICIENCY = 0.82
NIC_RING_EFFICIENCY = 0.96
NVLS_LATENCY_US = 23.0 + 25.0  # NCCL's NVLS base + NVLink NVLS latency

# LL, LL128, Simple: NCCL tuning.cc latencies; bandwidth shares: LL moves 8 bytes per 16 (half),
# LL128 120 of 128 (the paper's code uses 0.5 / 0.95 / 1). Between nodes, figures are fitted
# (calibration/fit_network.py fit_protocol_figures: minimax of the time ratio) to every row from
# 4 KB to 1 GB of the public InfiniBand all_reduce tables of 2x8 (three clusters), 4x8, 8x8 and
# 10x8 H100 — decode steps all-reduce a few KB to a few hundred KB, which NCCL's own figures
# price 12-32% fast there (tree LL 26 us at 16 KB on 2 nodes; the tables: 32 and 35 us). Fitted:
# LL's tree level (6.7 us), ring step (3.5 us) and bandwidth ceiling between nodes (20.9 GB/s
# busbw: the tables' LL slope at 128-512 KB, where NCCL runs few channels), LL128's tree level
# (11.4 us) and ring step (3.6 us); kept from the fit at 1 MB-1 GB: LL128's share between nodes
# (0.61), Simple's tree level (23 us) and the tree's bandwidth at two nodes (1.10 x the ring's,
# NCCL's 2-node tree "aberration"). Every row is within 0.80-1.25 (it was 0.68-1.25 with NCCL's
# figures below 1 MB); tests/test_network_public.py and tests/test_network_decode_sizes.py hold it.
IB_FIT = ("fitted at 4 KB-1 GB to nccl-tests all_reduce tables of 2x8/4x8/8x8/10x8 H100 over InfiniBand "
          "(NCCL issues 290/309, nebius, xxrjun)")
NCCL_PROTOCOLS = [
    ProtocolSpec("LL", NCCL_BASE_US, NVLINK_STEP_US, 3.5, 6.7, 0.5, 20.9),
    ProtocolSpec("LL128", 14.0, 1.9, 3.6, 11.4, 0.95, net_bandwidth_fraction=0.61),
    ProtocolSpec("Simple", 8.4, 3.4, 14.0, 23.0, 1.0),
]
IB_TREE_BANDWIDTH_FACTOR = 1.10

# AWS p5 (32 x 100 Gb/s EFA per node, the same 400 GB/s aggregate): the SRD transport's per-step
# latency is far above InfiniBand's and NCCL's tree is not used; fitted the same way (4 KB-1 GB)
# to the three public 2x8 H100 EFA tables: the ring steps between nodes (LL 29.2, LL128 29.8,
# Simple 38.8 us), LL's ceiling (26.5 GB/s) and LL128's share (0.56). The 1 MB-1 GB fit's LL step
# (42.5 us) priced a decode-size all-reduce 1.2-1.4x the tables' (109 us at 16 KB against 82-90).
EFA_FIT = ("fitted at 4 KB-1 GB to nccl-tests all_reduce tables of 2x8 H100 over EFA "
           "(aws-samples awsome-distributed-training, keitaw)")
EFA_PROTOCOLS = [
    ProtocolSpec("LL", NCCL_BASE_US, NVLINK_STEP_US, 29.2, NET_TREE_LEVEL_US, 0.5, 26.5),
    ProtocolSpec("LL128", 14.0, 1.9, 29.8, 13.7, 0.95, net_bandwidth_fraction=0.56),
    ProtocolSpec("Simple", 8.4, 3.4, 38.8, 23.0, 1.0),
]


# Stated ranges of the assumed constants (model/uncertainty.py draws from them; uniform: the
# sources bound the value, they do not say which value inside is likelier). Fractions of the
# datasheet figure, the same for every GPU here (the sources measure H100 and H200).
FLOP_EFFICIENCY_RANGE = (0.65, 0.81)
FLOP_RANGE_SOURCE = ("bf16 matmul on H100 SXM (mamf-finder style): 677 TFLOP/s at 2048^3 (68% of 989) to 797 at "
                     "8192^3 (81%), best-shape search 795; the low end rounds 68% down for skinnier decode GEMMs")
HBM_EFFICIENCY_RANGE = (0.70, 0.87)
HBM_RANGE_SOURCE = ("BabelStream/gpu-stream: H100 SXM copy 2.90 TB/s of 3.35 (87%), H200 copy 4.0 of 4.8 (83%); "
                    "the low end is the paper's 75% cap less 5 points for decode kernels that stream worse than a copy")
LAUNCH_RANGE_US = (2.0, 6.0)
LAUNCH_RANGE_SOURCE = ("kernel launch: 1-2 us per kernel inside a CUDA graph, a few us eager (H100 measurements); "
                       "the paper's code charges 4 us")
NETWORK_SCALE_RANGE = (0.85, 1.30)
NETWORK_RANGE_SOURCE = ("spread of public nccl-tests all_reduce tables of one configuration around their median: "
                        "8xH100 (5 tables) 0.96-1.29 at 256 MB-1 GB (ring-only against NVLS), 2x8 H100 EFA "
                        "(3 tables) 0.83-1.08 at 8 B-1 GB, healthy 2x8 H100 InfiniBand (5 tables) 0.91-1.00")


# The adopted launch is the fastest engine's intercept (vLLM's), so the band reaches up to TRT-LLM's
# and as far down again in ratio: the adopted figure lies inside its band, not at its edge.
MEASURED_LAUNCH_SOURCE = ("per serial kernel: the vLLM table's bf16 decode GEMM intercept divided and multiplied "
                          "by 1.5 (TRT-LLM's on the same GPU is 1.44x: H200 2.44 -> 3.52 us, aiconfigurator-core "
                          "0.12.0; the low end, 1.2-1.7 us, is inside the 1-2 us per kernel of a CUDA graph, "
                          "shared/reference/hardware.md)")


def published_uncertainty(measured=None) -> list[dict]:
    from inferecon.model.uncertain import Uncertain

    lo_f, hi_f = FLOP_EFFICIENCY_RANGE
    lo_m, hi_m = HBM_EFFICIENCY_RANGE
    lo_l, hi_l = LAUNCH_RANGE_US
    launch_source, hbm_source = LAUNCH_RANGE_SOURCE, HBM_RANGE_SOURCE
    if measured is not None:  # the band holds the adopted figures
        eff = measured.bf16_stream_efficiency
        lo_m, hi_m = min(lo_m, eff - 0.05), max(hi_m, eff + 0.05)
        hbm_source = (f"{HBM_RANGE_SOURCE}; widened to hold the adopted {eff} +/- 0.05 (bf16 decode GEMM streaming, "
                      f"aiconfigurator-core 0.12.0 {measured.system} {measured.backend} {measured.version})")
        lo_l, hi_l = round(measured.gemm_t0_us / 1.5, 2), 1.5 * measured.gemm_t0_us
        launch_source = MEASURED_LAUNCH_SOURCE
    lo_n, hi_n = NETWORK_SCALE_RANGE
    return [u.to_dict() for u in (
        Uncertain("FLOP/s efficiency", ("compute.efficiency",), "uniform", FLOP_RANGE_SOURCE, low=lo_f, high=hi_f),
        Uncertain("HBM bandwidth efficiency", ("memory.efficiency",), "uniform", hbm_source, low=lo_m, high=hi_m),
        Uncertain("kernel launch", ("latency.kernel_launch_us",), "uniform", launch_source, low=lo_l, high=hi_l),
        Uncertain("collective time", ("network.time_scale",), "uniform", NETWORK_RANGE_SOURCE, relative=True,
                  low=lo_n, high=hi_n),
    )]


# Measured decode facts (issue 20) the published profiles adopt, from the per-op tables of
# aiconfigurator-core 0.12.0 (Apache-2.0; NVIDIA's measurements of each GPU under vLLM, the
# version named per GPU), fitted by `inferecon calibrate --op-db --gpu G --engine vllm`
# (calibration/opdb_fit.py, decode regime M <= 256) and written here as figures:
# - gemm_t0_us: a decode GEMM's intercept inside a CUDA graph (the bf16 decode fit's t0); the
#   four-term model's kernel launch, charged per serial kernel.
# - bf16_stream_efficiency: the bf16 decode fit's HBM bandwidth / datasheet HBM (skinny GEMMs
#   stream at this, not the paper's 0.75); the profile's memory efficiency.
# - attention_floor_us: the decode-attention fit's floor (bf16 KV) per layer.
# - elementwise_per_layer_us: an estimate, not a measurement (the tables time no norm or
#   activation): 3 kernels (add+RMSNorm twice, SiLU-and-mul) at the table's fastest kernel.
# attention floor and elementwise time ride as extra serial kernels per layer at gemm_t0_us, so
# kernels per layer = 4 GEMMs + (attention floor + elementwise) / gemm_t0_us.
# - custom_allreduce: vLLM's own all-reduce inside a CUDA graph, (world size, min bytes, max
#   bytes, alpha us, beta GB/s algorithm bandwidth) lines per message range; what a decode step
#   runs inside a node (NCCL's model stays for groups across nodes).
# FP8 figures (intercept 4.5-4.9 us, streaming 0.59-0.73 of HBM, 0.47-0.53 of FP8 peak at large M)
# are in the op-DB profiles only: the four-term model has one efficiency for every dtype.
@dataclass(frozen=True)
class MeasuredDecode:
    system: str  # the database's system name
    backend: str
    version: str
    gemm_t0_us: float
    bf16_stream_efficiency: float
    attention_floor_us: float
    elementwise_per_layer_us: float
    custom_allreduce: tuple  # (world_size, min_bytes, max_bytes | None, alpha_us, beta_gbps)

    @property
    def source(self) -> str:
        return (f"aiconfigurator-core 0.12.0 per-op tables, {self.system} {self.backend} {self.version} "
                "(gemm, generation_attention, custom_allreduce; calibrate --op-db decode fits): GEMM intercept "
                f"{self.gemm_t0_us} us, bf16 streaming {self.bf16_stream_efficiency} of HBM, attention floor "
                f"{self.attention_floor_us} us/layer, elementwise {self.elementwise_per_layer_us} us/layer "
                "(estimate), engine all-reduce lines inside a CUDA graph")

    @property
    def kernels_per_layer(self) -> float:
        return 4.0 + (self.attention_floor_us + self.elementwise_per_layer_us) / self.gemm_t0_us

    def collectives(self) -> list:
        from inferecon.model.hardware import INTRA, CollectiveFit

        return [CollectiveFit(collective="all_reduce", world_size=w, scope=INTRA, alpha_us=a, beta_gbps=b,
                              heldout_mape=None, mode="graph", min_bytes=float(lo),
                              max_bytes=None if hi is None else float(hi))
                for w, lo, hi, a, b in self.custom_allreduce]


MEASURED_DECODE: dict[str, MeasuredDecode] = {
    "h100-sxm": MeasuredDecode(
        system="h100_sxm", backend="vllm", version="0.24.0",
        gemm_t0_us=2.53, bf16_stream_efficiency=0.833,
        attention_floor_us=11.99, elementwise_per_layer_us=7.36,
        custom_allreduce=((2, 0, 65536, 4.25, 132), (2, 65536, 1048576, 4.23, 258), (2, 1048576, None, 5.06, 277), (4, 0, 65536, 4.59, 86), (4, 65536, 1048576, 4.21, 78), (4, 1048576, None, 8.81, 214), (8, 0, 65536, 4.76, 35), (8, 65536, 1048576, 5.95, 76), (8, 1048576, None, 11.20, 234),)),
    "h200": MeasuredDecode(
        system="h200_sxm", backend="vllm", version="0.24.0",
        gemm_t0_us=2.44, bf16_stream_efficiency=0.786,
        attention_floor_us=12.10, elementwise_per_layer_us=7.10,
        custom_allreduce=((2, 0, 65536, 4.44, 150), (2, 65536, 1048576, 4.46, 297), (2, 1048576, None, 5.24, 283), (4, 0, 65536, 4.50, 67), (4, 65536, 1048576, 4.51, 93), (4, 1048576, None, 8.15, 217), (8, 0, 65536, 4.74, 35), (8, 65536, 1048576, 6.29, 96), (8, 1048576, None, 10.19, 242),)),
    "a100-sxm-80gb": MeasuredDecode(
        system="a100_sxm", backend="vllm", version="0.14.0",
        gemm_t0_us=2.46, bf16_stream_efficiency=0.677,
        attention_floor_us=15.81, elementwise_per_layer_us=7.36,
        custom_allreduce=((2, 0, 65536, 4.93, 75), (2, 65536, 1048576, 5.09, 181), (2, 1048576, None, 4.43, 176), (4, 0, 65536, 5.20, 34), (4, 65536, 1048576, 5.46, 58), (4, 1048576, None, 11.02, 131), (8, 0, 65536, 5.96, 28), (8, 65536, 1048576, 7.48, 40), (8, 1048576, None, 12.22, 115),)),
    "b200": MeasuredDecode(
        system="b200_sxm", backend="vllm", version="0.24.0",
        gemm_t0_us=1.79, bf16_stream_efficiency=0.764,
        attention_floor_us=9.48, elementwise_per_layer_us=5.37,
        custom_allreduce=((2, 0, 65536, 6.80, 102), (2, 65536, 1048576, 6.68, 203), (2, 1048576, None, 15.66, 499), (4, 0, 65536, 6.93, 57), (4, 65536, 1048576, 5.60, 56), (4, 1048576, None, 18.06, 395), (8, 0, 65536, 7.60, 47), (8, 65536, 1048576, 5.16, 23), (8, 1048576, None, 15.04, 368),)),
}


@dataclass(frozen=True)
class Datasheet:
    """One published profile's datasheet figures and where they come from."""

    display: str
    tflops: dict  # dense peak per dtype
    hbm_gb: float
    hbm_gbps: float
    nvlink_gbps: float  # per GPU, per direction
    nic_gbps: float  # per GPU, between nodes
    l2_mb: float
    price: float  # $/GPU-hour
    sources: list
    measured: str  # the MEASURED_DECODE entry of this GPU
    nvls_gbps: float | None = None
    protocols: list = None  # NCCL protocols between nodes (None: InfiniBand's)
    tree_bandwidth_factor: float = IB_TREE_BANDWIDTH_FACTOR
    network_fit: str = IB_FIT


def _profile(name: str, d: Datasheet) -> HardwareProfile:
    # The paper's FLOP/s cap stays (the tables' bf16 GEMMs reach 0.72-0.76 of peak at m = 512, near
    # it); memory, kernel launch and kernels per layer are the measured decode facts.
    m = MEASURED_DECODE[d.measured]
    return HardwareProfile(
        name=name,
        display_name=d.display,
        compute=ComputeSpec(peak_tflops=dict(d.tflops), efficiency=FLOP_CAP),
        memory=MemorySpec(capacity_gb=d.hbm_gb, bandwidth_gbps=d.hbm_gbps, efficiency=m.bf16_stream_efficiency,
                          l2_mb=d.l2_mb),
        network=NetworkSpec(
            gpus_per_node=8,
            intra=LinkSpec(bandwidth_gbps=d.nvlink_gbps, efficiency=NVLINK_RING_EFFICIENCY,
                           base_latency_us=NCCL_BASE_US, hop_latency_us=NVLINK_STEP_US,
                           nvls_busbw_gbps=d.nvls_gbps, nvls_latency_us=NVLS_LATENCY_US if d.nvls_gbps else None),
            inter=LinkSpec(bandwidth_gbps=d.nic_gbps, efficiency=NIC_RING_EFFICIENCY, base_latency_us=NCCL_BASE_US,
                           hop_latency_us=NET_RING_STEP_US, tree_hop_latency_us=NET_TREE_LEVEL_US,
                           tree_bandwidth_factor=d.tree_bandwidth_factor),
            protocols=list(d.protocols or NCCL_PROTOCOLS),
            # vLLM's own all-reduce: a decode step's collectives only (HardwareProfile.decode_view);
            # every other collective query keeps NCCL's model above.
            decode_collectives=m.collectives(),
        ),
        latency=LatencySpec(kernel_launch_us=m.gemm_t0_us, serial_kernels_per_dense_layer=m.kernels_per_layer,
                            serial_kernels_per_moe_layer=m.kernels_per_layer),
        price_usd_per_gpu_hour=d.price,
        provenance=Provenance(kind="published", sources=d.sources + [PAPER_FLOP_CAP, m.source, NCCL_TUNING, NCCL_TABLES,
                                                                    d.network_fit]),
        uncertainty=published_uncertainty(m),
    )


# Dense datasheet peaks of the H100 SXM5 and the H200 (same Hopper die and clocks).
HOPPER_TFLOPS = {"bf16": 989.0, "fp16": 989.0, "fp8": 1979.0, "tf32": 494.5, "fp32": 66.9}
H100_SHEET = "NVIDIA H100 Tensor Core GPU datasheet (SXM5)"

DATASHEETS: dict[str, Datasheet] = {
    "h100-sxm": Datasheet(
        "NVIDIA H100 SXM5 80GB", HOPPER_TFLOPS, hbm_gb=80.0, hbm_gbps=3350.0, nvlink_gbps=450.0, nic_gbps=50.0,
        l2_mb=50.0, price=2.0,
        sources=[H100_SHEET, "inter-node: 8 x 400 Gb/s NDR InfiniBand per DGX H100, one NIC per GPU (50 GB/s each)",
         "price: $2/GPU-hour (paper)"],
        measured="h100-sxm", nvls_gbps=479.0),
    "h100-sxm-efa": Datasheet(
        "NVIDIA H100 SXM5 80GB (AWS p5, EFA)", HOPPER_TFLOPS, hbm_gb=80.0, hbm_gbps=3350.0, nvlink_gbps=450.0,
        nic_gbps=50.0, l2_mb=50.0, price=2.0,
        sources=[H100_SHEET, "inter-node: AWS p5, 32 x 100 Gb/s EFA per node (50 GB/s per GPU)", "price: $2/GPU-hour (paper)"],
        measured="h100-sxm",  # the same GPU and NVLink inside the node: H100 SXM's decode facts
        nvls_gbps=479.0, protocols=EFA_PROTOCOLS, tree_bandwidth_factor=0.0, network_fit=EFA_FIT),
    "h200": Datasheet(
        "NVIDIA H200 SXM 141GB", HOPPER_TFLOPS, hbm_gb=141.0, hbm_gbps=4800.0, nvlink_gbps=450.0, nic_gbps=50.0,
        l2_mb=50.0, price=2.5,
        sources=["NVIDIA H200 Tensor Core GPU datasheet", "inter-node: 400 Gb/s NDR per GPU", PRICE_ASSUMED],
        measured="h200", nvls_gbps=479.0),
    "a100-sxm-80gb": Datasheet(
        "NVIDIA A100 SXM 80GB", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5, "int8": 624.0},
        hbm_gb=80.0, hbm_gbps=2039.0, nvlink_gbps=300.0, nic_gbps=25.0, l2_mb=40.0, price=1.5,
        sources=["NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB)",
         "inter-node: 8 x 200 Gb/s HDR per DGX A100 = 25 GB/s per GPU", "price: $1.5/GPU-hour (paper)"],
        measured="a100-sxm-80gb"),
    "b200": Datasheet(
        "NVIDIA B200", {"bf16": 2250.0, "fp16": 2250.0, "fp8": 4500.0, "tf32": 1125.0, "fp32": 75.0},
        hbm_gb=180.0, hbm_gbps=8000.0, nvlink_gbps=900.0, nic_gbps=50.0, l2_mb=0.0, price=3.5,
        sources=["NVIDIA DGX B200 / HGX B200 datasheet (dense figures)", "inter-node: 400 Gb/s ConnectX-7 per GPU",
         PRICE_ASSUMED],
        measured="b200"),
}

PROFILES: dict[str, HardwareProfile] = {name: _profile(name, d) for name, d in DATASHEETS.items()}

# The paper's reference code, constant for constant (H100 object and
# mean_collective_time_nccl_seconds): 1e15 / 2e15 FLOP/s x 0.70, 3.3 TB/s x 0.75, $2.10/GPU-hour,
# NVLink 900 GB/s bidirectional, 50 GB/s between nodes, its own LL/LL128/Simple latencies.
PAPER_CODE = "the paper's reference code (YafahEdelman/inference-economics, H100 object), constant for constant"
PAPER_PROTOCOLS = [
    ProtocolSpec("LL", 6.8, 0.6, 0.0, 5.0, 0.5),
    ProtocolSpec("LL128", 14.0, 1.25, 0.0, 8.5, 0.95),
    ProtocolSpec("Simple", 0.0, 28.0, 0.0, 28.0, 1.0),
]
PROFILES["h100-sxm-paper"] = HardwareProfile(
    name="h100-sxm-paper",
    display_name="NVIDIA H100 SXM5 80GB (the paper's assumptions)",
    compute=ComputeSpec(peak_tflops={"bf16": 1000.0, "fp16": 1000.0, "fp8": 2000.0, "int4": 2000.0}, efficiency=FLOP_CAP),
    memory=MemorySpec(capacity_gb=80.0, bandwidth_gbps=3300.0, efficiency=HBM_CAP, l2_mb=25.0),
    network=NetworkSpec(
        gpus_per_node=8,
        intra=LinkSpec(bandwidth_gbps=450.0, efficiency=1.0, base_latency_us=6.8, hop_latency_us=0.6),
        inter=LinkSpec(bandwidth_gbps=50.0, efficiency=1.0, base_latency_us=6.8, hop_latency_us=0.0,
                       tree_hop_latency_us=5.0),
        protocols=PAPER_PROTOCOLS,
        collective_model="paper",
    ),
    latency=LatencySpec(kernel_launch_us=LAUNCH_US, serial_kernels_per_dense_layer=4.0,
                        serial_kernels_per_moe_layer=4.0),
    price_usd_per_gpu_hour=2.10,
    provenance=Provenance(kind="published", sources=[PAPER_CODE, PAPER], notes=[
        "reproduces the paper's figures; its inter-node collective times are 2x too fast at 1 MB against "
        "public nccl-tests tables: use h100-sxm for predictions"]),
    uncertainty=published_uncertainty(),
)

ALIASES = {"h100": "h100-sxm", "h100-efa": "h100-sxm-efa", "p5": "h100-sxm-efa", "h100-sxm5": "h100-sxm", "h200-sxm": "h200", "a100": "a100-sxm-80gb",
           "a100-80gb": "a100-sxm-80gb", "a100-sxm": "a100-sxm-80gb"}
# The opt-in "<gpu>-measured" profiles of before are the published profiles now: their names stay
# accepted, so commands written for them still run.
ALIASES.update({f"{gpu}-measured": gpu for gpu in MEASURED_DECODE})


def get_profile(name: str) -> HardwareProfile:
    return lookup("GPU", name, PROFILES, ALIASES, "or use a profile file of your own (a calibrated profile.json)")


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
