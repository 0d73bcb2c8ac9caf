"""Time of one collective, vectorised over arrays of group sizes and message sizes.

Message `bytes` follow nccl-tests: all-reduce and reduce-scatter take the per-rank input
size, all-gather the per-rank output size, all-to-all the bytes each rank sends in total,
send/recv the bytes one rank sends. Bus-bandwidth factors are nccl-tests' own.

Two sources of α and β:
- a calibrated profile's measured α + bytes/β lines (`NetworkSpec.collectives`), interpolated
  over world size and used for every collective/scope they cover;
- otherwise the published latency model of NCCL's tuner (see model/published.py):
  base + ring steps × per-step latency, and between nodes the cheaper of ring and tree.
"""

from __future__ import annotations

import numpy as np

from inferecon.core.busfactor import ALL_GATHER, ALL_REDUCE, ALL_TO_ALL, REDUCE_SCATTER, SEND_RECV, bus_factor
from inferecon.model.hardware import INTER, INTRA, HardwareProfile, ProtocolSpec

# Op names and bus factors are nccl-tests' (one table: core/busfactor.py); re-exported here
# because the cost terms name collectives through this module.
__all__ = ["ALL_REDUCE", "ALL_GATHER", "REDUCE_SCATTER", "ALL_TO_ALL", "SEND_RECV", "bus_factor",
           "collective_time_s", "group_nodes"]


def _ring_steps(op: str, n):
    if op == ALL_REDUCE:
        return 2.0 * (n - 1)
    if op == SEND_RECV:
        return np.ones_like(n)
    return n - 1.0


def group_nodes(hw: HardwareProfile, group, stride):
    """(nodes, ranks per node) of groups of `group` ranks whose members are `stride` ranks
    apart on nodes of `gpus_per_node` GPUs."""
    group, stride = (np.asarray(a, dtype=float) for a in np.broadcast_arrays(group, stride))
    gpn = hw.network.gpus_per_node
    nodes = np.clip(np.ceil(group * stride / gpn), 1.0, np.maximum(group, 1.0))
    return nodes, group / nodes


def collective_time_s(hw: HardwareProfile, op: str, group, stride, nbytes):
    """Seconds for one `op` over groups of `group` ranks whose members are `stride` ranks
    apart (so a group spans nodes when group * stride > GPUs per node). Groups of one cost
    nothing: no collective is issued."""
    group, stride, nbytes = (np.asarray(a, dtype=float) for a in np.broadcast_arrays(group, stride, nbytes))
    nodes, local = group_nodes(hw, group, stride)

    fitted = _fitted_time_s(hw, op, group, nodes, local, nbytes)
    if fitted is not None:
        t = fitted
    elif hw.network.collective_model == "paper":
        t = paper_time_s(hw, op, group, nodes, nbytes)
    else:
        t = published_time_s(hw, op, group, nodes, local, nbytes)
    return np.where(group > 1, t, 0.0)


def _protocols(hw):
    """The profile's NCCL protocols, or one protocol built from the links' own latencies."""
    if hw.network.protocols:
        return hw.network.protocols
    intra, inter = hw.network.intra, hw.network.inter
    tree = inter.tree_hop_latency_us if inter.tree_hop_latency_us is not None else np.inf
    return [ProtocolSpec(name="single", base_latency_us=intra.base_latency_us, nvlink_step_us=intra.hop_latency_us,
                         net_ring_step_us=inter.hop_latency_us, net_tree_level_us=tree, bandwidth_fraction=1.0)]


def published_time_s(hw, op, n, nodes, local, nbytes):
    """The hierarchical NCCL model: every protocol with every algorithm that applies, the
    cheapest taken (as NCCL's tuner does).

    - ring: base + (ring steps inside nodes) × NVLink step + (ring steps between nodes) × net
      step; bus bandwidth = NVLink's inside a node, and between nodes the smaller of NVLink's
      and the group's NICs on one node (ranks per node × one NIC): a ring across whole nodes
      drives all of a node's NICs at once.
    - tree (all-reduce between nodes): a chain inside each node and a tree of depth log2(nodes)
      between them, up and down: base + 2 · ((local − 1) · NVLink step + log2(nodes) · tree level).
    - NVLS (all-reduce inside a node, where the switch reduces): its own latency and bus bandwidth.
    - all-to-all: every rank exchanges with every peer at once (pairwise, not a ring), so its
      latency is one step, not n − 1; the bytes to peers on other nodes go through this GPU's NIC.
    - send/recv: one step, over NVLink or one NIC.

    Every candidate is latency + bytes × seconds-per-byte, and the latency and rate depend only
    on the group's shape: they are computed once per distinct (ranks, nodes) and the bytes of
    every configuration applied to them (this is the search's hot loop)."""
    n, nodes, local, nbytes = np.broadcast_arrays(n, nodes, local, nbytes)
    b = nbytes.ravel()
    shape_key = _shape_key(n.ravel(), nodes.ravel())
    if shape_key is None:  # non-integral group sizes: evaluate every element as its own shape
        lat_s, s_per_byte = _candidates(hw, op, n.ravel(), nodes.ravel(), local.ravel())
        best = np.min(lat_s + b * s_per_byte, axis=0)
        return best.reshape(n.shape)
    # Distinct shapes by sorting the integer keys (np.unique's inverse is far slower).
    ordered = np.sort(shape_key)
    keys = ordered[np.r_[True, ordered[1:] != ordered[:-1]]]
    inverse = np.searchsorted(keys, shape_key)
    kn, knodes = (keys >> 24).astype(float), (keys & 0xFFFFFF).astype(float)
    lat_s, s_per_byte = _candidates(hw, op, kn, knodes, kn / knodes)
    best = np.full(b.shape, np.inf)
    for lat, rate in zip(lat_s, s_per_byte):
        best = np.minimum(best, lat[inverse] + b * rate[inverse])
    return best.reshape(n.shape)


def _shape_key(n, nodes):
    """One int64 per (ranks, nodes) pair, or None where ranks or nodes are not whole numbers
    below 2^24."""
    if not (np.all(n == np.round(n)) and np.all(nodes == np.round(nodes))
            and n.max(initial=0) < 2 ** 24 and nodes.max(initial=0) < 2 ** 24):
        return None
    return (n.astype(np.int64) << 24) | nodes.astype(np.int64)


def _candidates(hw, op, n, nodes, local):
    """(latency seconds, seconds per message byte), one row per protocol × algorithm, one
    column per group shape. Inapplicable candidates are +inf."""
    intra, inter = hw.network.intra, hw.network.inter
    is_inter = nodes > 1
    nvlink_bw = intra.bandwidth_gbps * intra.efficiency * 1e9
    fabric = 1.0 + inter.loss_per_node_doubling * np.maximum(np.log2(nodes) - 1.0, 0.0)
    nic_bw = inter.bandwidth_gbps * inter.efficiency * 1e9 / fabric
    ring_link_bw = np.where(is_inter, np.minimum(nvlink_bw, local * nic_bw), nvlink_bw)
    steps = _ring_steps(op, n)
    inter_steps = np.where(is_inter, np.minimum(_ring_steps(op, nodes), steps), 0.0)
    bus = bus_factor(op, n)
    lats, rates = [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for p in _protocols(hw):
            # The ceiling is the network's: inside a node LL reaches half of NVLink's bus
            # bandwidth (the public 8xH100 tables: 512 KB in 21 µs).
            cap = np.where(is_inter, np.inf if p.max_busbw_gbps is None else p.max_busbw_gbps * 1e9, np.inf)
            net_frac = p.bandwidth_fraction if p.net_bandwidth_fraction is None else p.net_bandwidth_fraction
            frac = np.where(is_inter, net_frac, p.bandwidth_fraction)

            def inv_bw(link):
                return np.where(frac > 0, 1.0 / np.minimum(link * frac, cap), np.inf)

            if op == ALL_TO_ALL:
                lat = p.base_latency_us + np.where(is_inter, p.net_ring_step_us, p.nvlink_step_us)
                rate = np.maximum((local - 1) / n * inv_bw(nvlink_bw),
                                  np.where(is_inter, (n - local) / n * inv_bw(nic_bw), 0.0))
                lats.append(lat * 1e-6), rates.append(rate)
            elif op == SEND_RECV:
                lat = p.base_latency_us + np.where(is_inter, p.net_ring_step_us, p.nvlink_step_us)
                lats.append(lat * 1e-6), rates.append(inv_bw(np.where(is_inter, nic_bw, nvlink_bw)))
            else:
                ring_us = (p.base_latency_us + (steps - inter_steps) * p.nvlink_step_us
                           + inter_steps * p.net_ring_step_us)
                lats.append(ring_us * 1e-6), rates.append(bus * inv_bw(ring_link_bw))
                if op == ALL_REDUCE and np.isfinite(p.net_tree_level_us):
                    tree_us = p.base_latency_us + 2.0 * ((local - 1) * p.nvlink_step_us
                                                         + np.log2(nodes) * p.net_tree_level_us)
                    tree_bw = ring_link_bw * inter.tree_bandwidth_factor / np.maximum(np.log2(nodes), 1.0)
                    lats.append(np.where(is_inter, tree_us * 1e-6, np.inf))
                    rates.append(np.where(is_inter, bus * inv_bw(tree_bw), np.inf))
        if op == ALL_REDUCE and intra.nvls_busbw_gbps:
            lats.append(np.where(is_inter, np.inf, (intra.nvls_latency_us or 0.0) * 1e-6))
            rates.append(np.where(is_inter, np.inf, bus / (intra.nvls_busbw_gbps * 1e9)))
    # Inapplicable candidates get a huge finite cost rather than inf: bytes × inf would be NaN
    # for an empty message, and NaN wins np.minimum.
    never = 1e30
    lat = np.nan_to_num(np.array(lats, dtype=float), nan=never, posinf=never)
    rate = np.nan_to_num(np.array(rates, dtype=float), nan=never, posinf=never)
    return lat, rate


def paper_time_s(hw, op, n, nodes, nbytes):
    """The collective time of the paper's reference code (`mean_collective_time_nccl_seconds`):
    per protocol, latency m · ((n/nodes − 1) · NVLink step + log2(nodes) · tree level) + base
    (m = 2 for all-reduce, else 1), bandwidth max(NVLink part, NIC part) with NVLink at half
    its per-direction rate and one NIC's half between nodes, halved for collectives other than
    all-reduce; the cheapest protocol taken. Used by the `*-paper` profiles to reproduce the
    paper's figures; its inter-node bandwidth is not what a ring across nodes gets (the
    published profiles use `published_time_s`)."""
    intra, inter = hw.network.intra, hw.network.inter
    m = 2.0 if op == ALL_REDUCE else 1.0
    local = n / nodes
    best = np.full(np.shape(n), np.inf)
    for p in _protocols(hw):
        lat_us = m * ((local - 1) * p.nvlink_step_us + np.log2(nodes) * p.net_tree_level_us) + p.base_latency_us
        f = p.bandwidth_fraction
        t_bw = np.maximum(nodes * np.maximum(0.0, local - 1) * nbytes / (n * intra.bandwidth_gbps / 2 * 1e9 * f),
                          (nodes - 1) * nbytes / (n * inter.bandwidth_gbps / 2 * 1e9 * f))
        if op != ALL_REDUCE:
            t_bw = t_bw / 2
        best = np.minimum(best, lat_us * 1e-6 + t_bw)
    return best


def _fitted_time_s(hw, op, n, nodes, local, nbytes):
    is_inter = nodes > 1
    # A world of one measures the fixed cost of a call, not a group: it cannot say how α and β
    # grow with ranks, so only fits over two or more ranks drive predictions.
    fits = [c for c in hw.network.collectives if c.collective == op and c.world_size >= 2]
    if not fits:
        return None
    out = np.full(n.shape, np.nan)
    for scope, mask in ((INTRA, ~is_inter), (INTER, is_inter)):
        scoped = [c for c in fits if c.scope == scope]
        if not scoped or not mask.any():
            continue
        if any(c.mode == "graph" for c in scoped):  # decode steps run as captured graphs
            scoped = [c for c in scoped if c.mode == "graph"]
        worlds = np.array(sorted({c.world_size for c in scoped}), dtype=float)
        b = nbytes[mask]
        # α and bus bandwidth of the line covering each message, at every measured world size.
        alpha = np.empty((len(worlds), b.size))
        busbw = np.empty((len(worlds), b.size))
        for i, w in enumerate(worlds):
            pieces = sorted((c for c in scoped if c.world_size == w), key=lambda c: c.min_bytes)
            chosen = np.zeros(b.size, dtype=int)
            for j, c in enumerate(pieces):
                chosen = np.where(b >= c.min_bytes, j, chosen)
            alpha[i] = np.array([c.alpha_us for c in pieces])[chosen]
            # Interpolate bus bandwidth, not algorithm bandwidth: busbw is what stays roughly
            # constant as the group grows (that is why nccl-tests reports it).
            busbw[i] = np.array([c.beta_gbps for c in pieces])[chosen] * float(bus_factor(op, w))
        a = _interp_rows(n[mask], worlds, alpha)
        bw = _interp_rows(n[mask], worlds, busbw) * 1e9
        out[mask] = a * 1e-6 + b * bus_factor(op, n[mask]) / bw
    if np.isnan(out).any():
        # Scopes the calibration did not measure keep the published model.
        out = np.where(np.isnan(out), published_time_s(hw, op, n, nodes, local, nbytes), out)
    return out


def _extrapolated_world(hw: HardwareProfile, ranks: int):
    """(scope, fitted worlds, nearest fitted world) where a collective over `ranks` GPUs leaves
    the world sizes the profile's fitted collectives were measured at in its scope; None inside
    the range, or without fits."""
    if ranks < 2:
        return None
    scope = INTER if ranks > hw.network.gpus_per_node else INTRA
    fits = [c for c in hw.network.collectives if c.world_size >= 2 and c.scope == scope]
    if not fits:
        return None
    worlds = sorted({int(c.world_size) for c in fits})
    if worlds[0] <= ranks <= worlds[-1]:
        return None
    return scope, fits, worlds, (worlds[-1] if ranks > worlds[-1] else worlds[0])


# Message sizes at which the widening is sized: a latency-bound decode all-reduce and a
# bandwidth-bound one; the larger disagreement counts.
_WIDEN_BYTES = (16 * 1024, 16 * 1024 * 1024)


def extrapolation_sigma(hw: HardwareProfile, ranks: int) -> float | None:
    """How far an extrapolated collective may be off, as a lognormal sigma: the fit holds α and
    bus bandwidth at the nearest measured world, and the hierarchical NCCL model (the published
    physics of the same links) says by what factor an all-reduce changes between that world and
    `ranks` GPUs — |ln(t(ranks) / t(nearest))|, the larger at a small and a large message. None
    inside the fitted range."""
    found = _extrapolated_world(hw, ranks)
    if found is None:
        return None
    nearest = found[3]
    sigmas = []
    for nbytes in _WIDEN_BYTES:
        t = []
        for n in (ranks, nearest):
            nodes, local = group_nodes(hw, n, 1)
            t.append(float(published_time_s(hw, ALL_REDUCE, np.array([float(n)]), nodes.reshape(1),
                                            local.reshape(1), np.array([float(nbytes)]))[0]))
        sigmas.append(abs(float(np.log(t[0] / t[1]))))
    return max(sigmas)


def extrapolation_uncertainty(hw: HardwareProfile, ranks: int):
    """The uncertainty entry an extrapolated collective adds to the profile's own: the whole
    network term of a step times a lognormal of median 1 and `extrapolation_sigma` (the
    profile's `network.time_scale`, which every draw moves). None inside the fitted range."""
    from inferecon.model.uncertain import Uncertain

    sigma = extrapolation_sigma(hw, ranks)
    if sigma is None:
        return None
    _, _, worlds, nearest = _extrapolated_world(hw, ranks)
    return Uncertain(name=f"collectives extrapolated from {nearest} to {ranks} ranks", paths=("network.time_scale",),
                     dist="lognormal", relative=True, median=1.0, sigma=sigma,
                     source=f"fitted at {worlds[0]}-{worlds[-1]} ranks; spread = the hierarchical NCCL model's "
                            f"all-reduce time ratio between {ranks} and {nearest} ranks")


def extrapolation_note(hw: HardwareProfile, ranks: int) -> str | None:
    """A note where a collective over `ranks` GPUs leaves the world sizes the profile's fitted
    collectives were measured at, in the scope it runs in (inside a node or across nodes):
    `_fitted_time_s` then holds α and bus bandwidth at the nearest measured world, which is an
    extrapolation; predict widens its interval by `extrapolation_uncertainty`. None inside the
    range, or without fits."""
    found = _extrapolated_world(hw, ranks)
    if found is None:
        return None
    scope, fits, worlds, nearest = found
    ops = ", ".join(sorted({c.collective for c in fits}))
    where = "across nodes" if scope == INTER else "inside a node"
    span = f"{worlds[0]}" if len(worlds) == 1 else f"{worlds[0]} to {worlds[-1]}"
    factor = float(np.exp(1.6449 * extrapolation_sigma(hw, ranks)))
    return (f"{hw.name}: its fitted collectives ({ops}) {where} were measured over {span} ranks; {ranks} ranks is "
            f"outside, so their alpha and bus bandwidth at {nearest} ranks are extrapolated: predict's 90% interval "
            f"draws the network term x/÷ {factor:.2f} more (the hierarchical NCCL model's {nearest}-to-{ranks}-rank "
            "ratio); measure that world size for a fitted figure")


def _interp_rows(x, xp, fp):
    """Linear interpolation in x over the rows of fp (one row per xp), clamped at the ends."""
    if len(xp) == 1:
        return fp[0]
    pos = np.clip(np.searchsorted(xp, x) - 1, 0, len(xp) - 2)
    w = np.clip((x - xp[pos]) / (xp[pos + 1] - xp[pos]), 0.0, 1.0)
    cols = np.arange(x.size)
    return fp[pos, cols] * (1 - w) + fp[pos + 1, cols] * w
