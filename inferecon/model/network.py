"""Time of one collective, vectorised over arrays of group sizes and message sizes.

Message `bytes` follow nccl-tests: all-reduce and reduce-scatter take the per-rank input
size, all-gather the per-rank output size, all-to-all the bytes each rank sends in total,
send/recv the bytes one rank sends. Bus-bandwidth factors are nccl-tests' own.

Two sources of α and β:
- a calibrated profile's measured α + bytes/β lines (`NetworkSpec.collectives`), interpolated
  over world size and used for every collective/scope they cover;
- otherwise the published latency model of NCCL's tuner (see calibration/published.py):
  base + ring steps × per-step latency, and between nodes the cheaper of ring and tree.
"""

from __future__ import annotations

import numpy as np

from inferecon.model.hardware import INTER, INTRA, HardwareProfile

ALL_REDUCE = "all_reduce"
ALL_GATHER = "all_gather"
REDUCE_SCATTER = "reduce_scatter"
ALL_TO_ALL = "all_to_all"
SEND_RECV = "send_recv"


def bus_factor(op: str, n):
    """nccl-tests' busbw / algbw ratio."""
    n = np.asarray(n, dtype=float)
    if op == ALL_REDUCE:
        return 2.0 * (n - 1) / n
    if op in (ALL_GATHER, REDUCE_SCATTER, ALL_TO_ALL):
        return (n - 1) / n
    return np.ones_like(n)


def _ring_steps(op: str, n):
    if op == ALL_REDUCE:
        return 2.0 * (n - 1)
    if op == SEND_RECV:
        return np.ones_like(n)
    return n - 1.0


def collective_time_s(hw: HardwareProfile, op: str, group, stride, nbytes):
    """Seconds for one `op` over groups of `group` ranks whose members are `stride` ranks
    apart (so a group spans nodes when group * stride > GPUs per node). Groups of one cost
    nothing: no collective is issued."""
    group, stride, nbytes = (np.asarray(a, dtype=float) for a in np.broadcast_arrays(group, stride, nbytes))
    gpn = hw.network.gpus_per_node
    nodes = np.maximum(1.0, np.ceil(group * stride / gpn))

    fitted = _fitted_time_s(hw, op, group, nodes, nbytes)
    if fitted is not None:
        t = fitted
    else:
        t = _published_time_s(hw, op, group, nodes, nbytes)
    return np.where(group > 1, t, 0.0)


def _published_time_s(hw, op, n, nodes, nbytes):
    intra, inter_link = hw.network.intra, hw.network.inter
    is_inter = nodes > 1
    steps = _ring_steps(op, n)
    inter_steps = np.where(is_inter, _ring_steps(op, nodes), 0.0)
    inter_steps = np.minimum(inter_steps, steps)
    # NCCL stretches the NVLink step when LL traffic must also cross the NIC.
    intra_step = np.where(is_inter, 1.8, 1.0) * intra.hop_latency_us
    base = np.where(is_inter, inter_link.base_latency_us, intra.base_latency_us)
    ring_us = base + (steps - inter_steps) * intra_step + inter_steps * inter_link.hop_latency_us
    lat_us = ring_us
    if op == ALL_REDUCE and inter_link.tree_hop_latency_us is not None:
        per_node = n / nodes
        tree_us = base + 2.0 * ((per_node - 1) * intra_step + np.log2(nodes) * inter_link.tree_hop_latency_us)
        lat_us = np.where(is_inter, np.minimum(ring_us, tree_us), ring_us)
    busbw = np.where(is_inter, inter_link.achieved_gbps, intra.achieved_gbps) * 1e9
    return lat_us * 1e-6 + nbytes * bus_factor(op, n) / busbw


def _fitted_time_s(hw, op, n, nodes, nbytes):
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
        out = np.where(np.isnan(out), _published_time_s(hw, op, n, nodes, nbytes), out)
    return out


def _interp_rows(x, xp, fp):
    """Linear interpolation in x over the rows of fp (one row per xp), clamped at the ends."""
    if len(xp) == 1:
        return fp[0]
    pos = np.clip(np.searchsorted(xp, x) - 1, 0, len(xp) - 2)
    w = np.clip((x - xp[pos]) / (xp[pos + 1] - xp[pos]), 0.0, 1.0)
    cols = np.arange(x.size)
    return fp[pos, cols] * (1 - w) + fp[pos + 1, cols] * w
