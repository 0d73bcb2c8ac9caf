"""HardwareProfile: everything the cost model needs to know about one kind of GPU node.

One type for both origins: published datasheet specs (model/published.py) and
profiles fitted to a node's measurements (calibration, later). It is plain data, saved as
schema-versioned JSON; the cost terms that use it live in model/terms.py.

Units are in the field names: *_tflops (1e12 FLOP/s), *_gbps (1e9 bytes/s), *_gb (1e9
bytes), *_us (microseconds).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inferecon.core.errors import UserError, load_json
from inferecon.model.profile_checks import check_profile_dict

SCHEMA_VERSION = 1

INTRA = "intra"  # a collective whose group stays inside one node (NVLink/NVSwitch)
INTER = "inter"  # a collective whose group spans nodes (InfiniBand/RoCE)


@dataclass(frozen=True)
class ComputeSpec:
    # Dense (no sparsity) datasheet peak per dtype: "bf16", "fp16", "fp8", "tf32", "fp32", "int8".
    peak_tflops: dict[str, float]
    # Fraction of peak a large GEMM achieves. Published profiles use the paper's 70% cap; a
    # calibrated profile measures it (and adds a shape-dependent fit in `gemm_fit`). An array
    # only in a draw of the profile's uncertain parameters (model/uncertainty.py): one value
    # per configuration priced (likewise the fields below typed float | np.ndarray).
    efficiency: float | np.ndarray
    # Shape-dependent GEMM model fitted by calibration; None on published profiles.
    gemm_fit: dict[str, Any] | None = None

    def achieved_tflops(self, dtype: str) -> float:
        if dtype not in self.peak_tflops:
            raise UserError(f"this GPU has no {dtype} peak (known: {', '.join(sorted(self.peak_tflops))})")
        return self.peak_tflops[dtype] * self.efficiency


@dataclass(frozen=True)
class MemorySpec:
    capacity_gb: float
    bandwidth_gbps: float  # datasheet HBM bandwidth
    # Sustained fraction of the datasheet bandwidth (paper: 75% cap; calibration: measured).
    efficiency: float | np.ndarray  # an array only in a draw (model/uncertainty.py)
    l2_mb: float = 0.0
    # Measured read bandwidth by transfer size: [[bytes, gbps], ...]; None when published.
    read_curve: list[list[float]] | None = None

    @property
    def achieved_gbps(self) -> float:
        return self.bandwidth_gbps * self.efficiency


@dataclass(frozen=True)
class LinkSpec:
    """One communication scope, per GPU: NVLink/NVSwitch inside a node, or this GPU's share of
    the node's NICs between nodes (a ring across whole nodes drives every NIC of the node at
    once, so k GPUs of a node in one group move k NICs' worth)."""

    bandwidth_gbps: float  # per GPU, per direction (NVLink; between nodes: one NIC)
    efficiency: float  # achieved ring bus bandwidth / bandwidth_gbps
    # Latency of the single-protocol model, used only when NetworkSpec.protocols is empty
    # (CPU/gloo profiles): fixed cost of one call, one sequential ring step, one tree level.
    base_latency_us: float
    hop_latency_us: float
    tree_hop_latency_us: float | None = None
    # NVLink SHARP (NVLS, Hopper and later): in-switch all-reduce inside a node. None: absent.
    nvls_busbw_gbps: float | None = None
    nvls_latency_us: float | None = None
    # Between nodes: bus bandwidth lost per doubling of the node count beyond two (more switch
    # hops, congestion): efficiency / (1 + loss · (log2(nodes) − 1)).
    loss_per_node_doubling: float = 0.0
    # Between nodes: a tree's bus bandwidth relative to the ring's at two nodes; it falls as
    # 1 / log2(nodes) (each level adds a hop every byte crosses).
    tree_bandwidth_factor: float = 1.0

    @property
    def achieved_gbps(self) -> float:
        return self.bandwidth_gbps * self.efficiency


@dataclass(frozen=True)
class ProtocolSpec:
    """One NCCL protocol's latency and bandwidth (NCCL src/graph/tuning.cc names them LL,
    LL128 and Simple). A collective costs base + per-step latencies of its algorithm (ring
    steps over NVLink or the network, tree levels between nodes) + bytes / bus bandwidth; NCCL
    picks the cheapest protocol and algorithm per call, and so does the model."""

    name: str
    base_latency_us: float
    nvlink_step_us: float  # one ring step over NVLink
    net_ring_step_us: float  # one ring step between nodes
    net_tree_level_us: float  # one tree level between nodes
    bandwidth_fraction: float  # share of the link's bus bandwidth the protocol reaches
    max_busbw_gbps: float | None = None  # the protocol's own ceiling between nodes (LL's is low)
    # Share of the network's bus bandwidth between nodes, where it differs from the share
    # inside a node (None: the same). 0 disables the protocol between nodes.
    net_bandwidth_fraction: float | None = None


@dataclass(frozen=True)
class CollectiveFit:
    """A measured α + bytes/β line for one collective at one world size and scope."""

    collective: str  # "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"
    world_size: int
    scope: str  # INTRA or INTER
    alpha_us: float
    beta_gbps: float  # algorithm bandwidth: message bytes / (time - alpha)
    alpha_stderr_us: float = 0.0
    beta_stderr_gbps: float = 0.0
    heldout_mape: float | None = None
    mode: str = "eager"  # "graph": timed inside a CUDA graph, as a captured decode step runs it
    # Message range this line covers: NCCL switches protocol (LL, LL128, Simple) with size,
    # so one collective may need two lines.
    min_bytes: float = 0.0
    max_bytes: float | None = None


@dataclass(frozen=True)
class NetworkSpec:
    gpus_per_node: int
    intra: LinkSpec
    inter: LinkSpec
    collectives: list[CollectiveFit] = field(default_factory=list)
    # NCCL protocols of the published collective model; empty: one protocol from the links'
    # own latencies (CPU/gloo profiles, older files).
    protocols: list[ProtocolSpec] = field(default_factory=list)
    # "nccl": the hierarchical ring/tree/NVLS model (model/network.py); "paper": the formula of
    # the paper's reference code, kept so its figures can be reproduced.
    collective_model: str = "nccl"
    # Multiplier on the whole network term of a step: 1 in every saved profile; uncertainty
    # draws (model/uncertainty.py) move it by the spread of the collective model or fits.
    time_scale: float | np.ndarray = 1.0
    # The serving engine's own collectives inside a captured decode step (mode "graph": the
    # published profiles carry vLLM's custom all-reduce from aiconfigurator-core's tables).
    # Only a decode step is priced with them (HardwareProfile.decode_view); a plain collective
    # query (nccl-tests comparisons, prefill) sees `collectives` alone, NCCL's.
    decode_collectives: list[CollectiveFit] = field(default_factory=list)


@dataclass(frozen=True)
class LatencySpec:
    # Both an array only in a draw (model/uncertainty.py).
    kernel_launch_us: float | np.ndarray  # per kernel not hidden behind the previous one
    step_overhead_us: float | np.ndarray = 0.0  # per decode step: sampling, embedding, host work
    # Kernels per layer that run one after another with their launch exposed. The paper's code
    # charges 4 per layer (QKV, attention out, MLP in, MLP out), dense or MoE alike.
    serial_kernels_per_dense_layer: float = 4.0
    serial_kernels_per_moe_layer: float = 4.0


@dataclass(frozen=True)
class Provenance:
    kind: str  # "published" or "calibrated"
    sources: list[str] = field(default_factory=list)
    run_id: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    # Held-out error of each fitted term, e.g. {"memory": {"heldout_mape": 0.03}}.
    fit_quality: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HardwareProfile:
    name: str  # catalog key, e.g. "h100-sxm"
    display_name: str
    compute: ComputeSpec
    memory: MemorySpec
    network: NetworkSpec
    latency: LatencySpec
    price_usd_per_gpu_hour: float
    provenance: Provenance
    schema_version: int = SCHEMA_VERSION
    # What each uncertain parameter may be, with its source (model/uncertainty.py: a list of
    # Uncertain as plain dicts). Optional: profiles saved without it load with no band.
    uncertainty: list = field(default_factory=list)
    # Per-op kernel fits from a per-op measurement database (model/opfits.py); None on
    # published profiles and on every profile saved before op-level calibration.
    op_fits: Any = None
    # A CPU calibration's fits of the same ops as inferecon's own torch decoder runs them
    # (calibration/fit_ops.py "decoder" path), which `validate` prices with; None elsewhere.
    decoder_op_fits: Any = None

    # -- derived figures -------------------------------------------------------------------
    @property
    def pipeline_threshold_tok_s(self) -> float:
        """HBM bandwidth / HBM size: one full read of a GPU's memory per token. Pipeline
        parallelism only pays below this speed (a PP stage must fill its HBM to be worth it,
        and each token must then read it)."""
        return self.memory.bandwidth_gbps / self.memory.capacity_gb

    @functools.cached_property
    def decode_view(self) -> "HardwareProfile":
        """This profile as a captured decode step prices its collectives: the engine's decode
        collectives (NetworkSpec.decode_collectives) join the fitted lines in every scope the
        profile's own fits do not already time inside a graph (a node's own measurement wins),
        and not at all in a per-op database's profile. model/network.py takes a scope's graph
        lines over its eager ones, so inside a node the step runs the engine's all-reduce and
        beyond it NCCL's model stays. The profile itself where nothing joins. Built once per
        profile object (the cost model asks on every call)."""
        extra = self.network.decode_collectives
        # A per-op database's profile (calibrate --op-db) carries its own engine's lines, or knows
        # the engine has none: the published engine lines it was based on do not join them.
        if not extra or self.op_fits is not None:
            return self
        timed = {(c.collective, c.scope) for c in self.network.collectives if c.mode == "graph"}
        added = [c for c in extra if (c.collective, c.scope) not in timed]
        if not added:
            return self
        net = dataclasses.replace(self.network, collectives=list(self.network.collectives) + added,
                                  decode_collectives=[])
        return dataclasses.replace(self, network=net)

    def with_price(self, usd_per_gpu_hour: float) -> "HardwareProfile":
        if not (0 < usd_per_gpu_hour < float("inf")):
            raise UserError(f"price must be a positive, finite $/GPU-hour, got {usd_per_gpu_hour}")
        return dataclasses.replace(self, price_usd_per_gpu_hour=float(usd_per_gpu_hour))

    def without_network_latency(self) -> "HardwareProfile":
        """Collectives cost only their bandwidth term; kernel launches keep their latency."""
        full = self.without_latency()
        return dataclasses.replace(full, latency=self.latency, name=self.name + "-no-net-latency")

    def without_latency(self) -> "HardwareProfile":
        """The paper's thought experiment: no fixed latency anywhere — collectives cost only
        their bandwidth term and kernel launches cost nothing."""
        zero = dict(base_latency_us=0.0, hop_latency_us=0.0, tree_hop_latency_us=0.0,
                    nvls_latency_us=0.0 if self.network.intra.nvls_latency_us is not None else None)
        net = dataclasses.replace(
            self.network,
            intra=dataclasses.replace(self.network.intra, **zero),
            inter=dataclasses.replace(self.network.inter, **zero),
            collectives=[dataclasses.replace(c, alpha_us=0.0) for c in self.network.collectives],
            decode_collectives=[dataclasses.replace(c, alpha_us=0.0) for c in self.network.decode_collectives],
            protocols=[dataclasses.replace(p, base_latency_us=0.0, nvlink_step_us=0.0, net_ring_step_us=0.0,
                                           net_tree_level_us=0.0) for p in self.network.protocols],
        )
        lat = dataclasses.replace(self.latency, kernel_launch_us=0.0, step_overhead_us=0.0)
        # A drawn absolute latency would put back what this counterfactual removes.
        kept = [u for u in self.uncertainty
                if u.get("relative") or not any(p.startswith("latency.") for p in u.get("paths", []))]
        return dataclasses.replace(self, network=net, latency=lat, name=self.name + "-no-latency", uncertainty=kept)

    def without_op_fits(self) -> "HardwareProfile":
        """This profile priced by the four-term model (no op-level fits), with the uncertainty
        entries that moved the op fits left out: their paths name fields it no longer has."""
        kept = [u for u in self.uncertainty
                if not any(str(p).removeprefix("1/").startswith("op_fits.") for p in u.get("paths", []))]
        return dataclasses.replace(self, op_fits=None, uncertainty=kept)

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["decoder_op_fits"] is None:
            del d["decoder_op_fits"]  # profiles without it stay byte for byte as before
        return d

    def save(self, path: str | Path) -> Path:
        from inferecon.core.outpath import write_text

        path = Path(path)
        # atomic: a reader never sees half a profile, a full disk keeps the previous one
        write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_plain) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "profile") -> "HardwareProfile":
        if not isinstance(data, dict):
            raise UserError(f"{source}: not a JSON object")
        from inferecon.model.file_kinds import HARDWARE, check_kind

        check_kind(data, HARDWARE, source)  # an engine profile or a config.json: say so, and where it goes
        version = data.get("schema_version")
        if version is None:  # no known kind of file, and no version: not a profile of any age
            raise UserError(f"{source}: not a hardware profile (no schema_version field; a profile is the "
                            "profile.json that `inferecon calibrate` writes)")
        if version != SCHEMA_VERSION:
            raise UserError(
                f"{source}: schema_version {version!r}, this inferecon reads version {SCHEMA_VERSION}"
            )
        check_profile_dict(data, source)  # finite, positive, whole numbers (model/profile_checks.py)
        try:
            net = data["network"]
            return cls(
                name=str(data["name"]),
                display_name=str(data["display_name"]),
                compute=_build(ComputeSpec, data["compute"]),
                memory=_build(MemorySpec, data["memory"]),
                network=NetworkSpec(
                    gpus_per_node=int(net["gpus_per_node"]),
                    intra=_build(LinkSpec, net["intra"]),
                    inter=_build(LinkSpec, net["inter"]),
                    collectives=[_build(CollectiveFit, c) for c in net.get("collectives", [])],
                    protocols=[_build(ProtocolSpec, c) for c in net.get("protocols", [])],
                    collective_model=str(net.get("collective_model", "nccl")),
                    time_scale=float(net.get("time_scale", 1.0)),
                    decode_collectives=[_build(CollectiveFit, c) for c in net.get("decode_collectives", [])],
                ),
                latency=_build(LatencySpec, data["latency"]),
                price_usd_per_gpu_hour=float(data["price_usd_per_gpu_hour"]),
                provenance=_build(Provenance, data["provenance"]),
                uncertainty=_uncertainty_list(data.get("uncertainty"), source),
                op_fits=_op_fits(data.get("op_fits"), source),
                decoder_op_fits=_op_fits(data.get("decoder_op_fits"), source),
            )
        except KeyError as exc:
            raise UserError(f"{source}: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise UserError(f"{source}: malformed field ({exc})") from None

    @classmethod
    def load(cls, path: str | Path) -> "HardwareProfile":
        if not Path(path).exists() and Path(path).suffix != ".json" and len(Path(path).parts) == 1:
            _name_not_file(str(path))  # `--hardware h100-sxm`: a published GPU's name, not a file
        return cls.from_dict(load_json(path, "profile file"), source=str(path))

    def __post_init__(self):
        if self.uncertainty:
            from inferecon.model.uncertain import entries

            try:
                entries(self)  # every entry drawable and every path a numeric field of this profile
            except UserError as exc:
                raise UserError(f"profile {self.name}: {exc}") from None


def _name_not_file(name: str) -> None:
    """A UserError for a --hardware that names no file but reads as a GPU's name: such a name
    goes with --gpu (which suggests the published profiles close to it; this module does not
    read the published ones: they are built from it)."""
    raise UserError(f"{name}: no such profile file (a published GPU is named with --gpu: --gpu {name}; "
                    "`inferecon specs` lists them)")


def _op_fits(value, source):
    if value is None:
        return None
    from inferecon.model.opfits import op_fits_from_dict

    return op_fits_from_dict(value, f"{source}: op_fits")


def _uncertainty_list(value, source):
    if value is None:
        return []
    if not isinstance(value, list):
        raise UserError(f"{source}: uncertainty must be a list of entries")
    return list(value)


def _plain(obj):
    """numpy scalars and arrays (from fits) as plain JSON values."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _build(cls, data):
    """Construct a flat dataclass from a dict, naming the first missing required field."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} must be an object")
    names = {f.name for f in dataclasses.fields(cls)}
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    for name in required:
        if name not in data:
            raise KeyError(f"{cls.__name__}.{name}")
    return cls(**{k: v for k, v in data.items() if k in names})
