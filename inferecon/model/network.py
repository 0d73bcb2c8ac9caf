"""Time of one collective, vectorised over arrays of group sizes and message sizes.

Message `bytes` follow nccl-tests: all-reduce and reduce-scatter take the per-rank input
size, all-gather the per-rank output size, all-to-all the bytes each rank sends in total,
send/recv the bytes one rank sends. Bus-bandwidth factors are nccl-tests' own.

Two sources of α and β:
- a calibrated profile's measured α + bytes/β lines (`NetworkSpec.collectives`), interpolated
  over world size and used for every collective/scope they cover;
- otherwise the published latency model of NCCL's tuner (see model/published.py):
  base + ring steps × per-step latency, and between nodes the cheaper of ring and tree (the
  published profiles' figures between nodes fitted to public nccl-tests tables at 4 KB-1 GB:
  calibration/fit_network.py fit_protocol_figures).
"""

from __future__ import annotations

import numpy as np

from inferecon.core.busfactor import ALL_GATHER, ALL_REDUCE, ALL_TO_ALL, REDUCE_SCATTER, SEND_RECV, bus_factor
from inferecon.model.distinct import BINCOUNT_KEYS, flat, value_codes, whole
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
    nothing: no collective is issued.

    The search prices millions of configurations but only a few distinct group shapes, so
    everything that depends on the shape alone (nodes, the fitted lines' interpolation over
    world size, each NCCL candidate's latency and rate) is computed once per distinct
    (group, stride) and the bytes of every configuration applied to it."""
    group, stride, nbytes = (np.asarray(a) for a in (group, stride, nbytes))
    shape = np.broadcast_shapes(group.shape, stride.shape, nbytes.shape)
    inv, dg, ds, _ = _distinct_pairs(group, stride, shape)
    dnodes, dlocal = group_nodes(hw, dg, ds)
    b = flat(nbytes, shape).astype(float, copy=False)

    tables = _fit_tables(hw, op)
    if tables is not None:
        t = _fitted_by_shape(hw, op, tables, inv, dg, dnodes, dlocal, b)
    elif hw.network.collective_model == "paper":
        t = paper_time_s(hw, op, dg[inv], dnodes[inv], b)
    else:
        t = _published_by_shape(hw, op, inv, dg, dnodes, dlocal, b)
    issued = dg > 1
    if not issued.all():
        t = np.where(issued[inv], t, 0.0)
    return t.reshape(shape)


def _distinct_pairs(a, b, shape):
    """(index of each element's pair, distinct a, distinct b, whether pairs were merged) of two
    arrays broadcast to `shape` (flat). Pairs of whole numbers are packed into one integer and
    counted (no sort: the search's millions of configurations hold a few dozen shapes); a
    single value is not spread out first. Otherwise every element is its own pair, which gives
    the same figures (every shape-wise formula is element-wise)."""
    size = int(np.prod(shape))
    fa, fb = flat(a, shape), flat(b, shape)
    ai, bi = whole(fa), whole(fb)
    if size and ai is not None and bi is not None:
        width = int(bi.max()) + 1
        if ai.ndim == 0 and bi.ndim == 0:
            keys, inv = np.array([int(ai) * width + int(bi)]), np.zeros(size, dtype=np.intp)
        else:
            key = ai * width + bi
            if int(key.max()) < BINCOUNT_KEYS:
                inv, keys = value_codes(key)
            else:
                keys, inv = np.unique(key, return_inverse=True)
        return inv, (keys // width).astype(float), (keys % width).astype(float), True
    full = [np.broadcast_to(x, shape).ravel().astype(float) for x in (fa, fb)]
    return np.arange(size), full[0], full[1], False


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
    n, nodes, local, nbytes = (np.asarray(a, dtype=float) for a in np.broadcast_arrays(n, nodes, local, nbytes))
    inv, kn, knodes, distinct = _distinct_pairs(n, nodes, n.shape)
    # Where every element is its own shape (non-integral sizes), its ranks per node as given.
    klocal = kn / knodes if distinct else local.ravel()
    return _published_by_shape(hw, op, inv, kn, knodes, klocal, nbytes.ravel()).reshape(n.shape)


def _published_by_shape(hw, op, inv, kn, knodes, klocal, b):
    """published_time_s of every element, from the candidates of its distinct shape `inv`."""
    lat_s, s_per_byte = _candidates(hw, op, kn, knodes, klocal)
    best = None
    for c in _undominated(lat_s, s_per_byte, b):
        t = lat_s[c].take(inv) + b * s_per_byte[c].take(inv)
        best = t if best is None else np.minimum(best, t)
    return best


def _undominated(lat, rate, b):
    """Candidates (rows of lat, rate) that can be the cheapest: a row whose latency and rate are
    both at least another row's, in every shape, never is (for bytes >= 0 its time is never
    smaller), so leaving it out of the minimum changes no figure."""
    rows = range(len(lat))
    # Small calls (predict) gain nothing; negative or NaN bytes: keep every candidate.
    if b.size < _PRUNE_FROM or not (b.min() >= 0):
        return rows
    no_worse = (lat[:, None] <= lat[None]).all(-1) & (rate[:, None] <= rate[None]).all(-1)  # [j, i]: j <= i
    better = (lat[:, None] < lat[None]).any(-1) | (rate[:, None] < rate[None]).any(-1)
    first = np.arange(len(lat))[:, None] < np.arange(len(lat))[None]  # of two equal rows, the first stays
    beaten = (no_worse & (better | first)).any(0)
    return np.flatnonzero(~beaten)


_PRUNE_FROM = 4096  # elements from which dropping dominated candidates pays for itself


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


class _ScopeLines:
    """One scope's fitted lines of one collective, as tables: alpha (µs) and bus bandwidth
    (GB/s) of the line that covers each message segment, one row per fitted world size."""

    def __init__(self, worlds, alpha_us, busbw_gbps):
        self.worlds, self.alpha_us, self.busbw_gbps = worlds, alpha_us, busbw_gbps


class _FitTables:
    """The fitted lines of one collective over both scopes: message segments cut at every
    line's min_bytes (segment s holds bytes with s of the `bounds` at or below them), and per
    scope a _ScopeLines (None where the scope has no fit)."""

    def __init__(self, bounds, scopes):
        self.bounds, self.scopes = bounds, scopes


# Per-profile tables, keyed by the identity of the profile's list of fitted collectives (and
# the op); each entry keeps that list and a snapshot of its items, so an entry is only ever
# read for the very same fits: a list the key's id could be reused for is still held, and a
# list changed in place no longer matches its snapshot.
_TABLES: dict = {}
_TABLES_MAX = 64


def _fit_tables(hw: HardwareProfile, op: str) -> _FitTables | None:
    """The profile's fitted lines of `op` as tables (built on first use), or None without any.
    A world of one measures the fixed cost of a call, not a group: it cannot say how α and β
    grow with ranks, so only fits over two or more ranks drive predictions."""
    fits_list = hw.network.collectives
    key = (id(fits_list), op)
    hit = _TABLES.get(key)
    if hit is not None and hit[0] is fits_list and len(hit[1]) == len(fits_list) \
            and all(a is b for a, b in zip(hit[1], fits_list)):
        return hit[2]
    tables = _build_fit_tables(fits_list, op)
    if len(_TABLES) >= _TABLES_MAX:
        _TABLES.pop(next(iter(_TABLES)))
    _TABLES[key] = (fits_list, tuple(fits_list), tables)
    return tables


def _build_fit_tables(fits_list, op) -> _FitTables | None:
    fits = [c for c in fits_list if c.collective == op and c.world_size >= 2]
    if not fits:
        return None
    by_scope = {}
    for scope in (INTRA, INTER):
        scoped = [c for c in fits if c.scope == scope]
        if any(c.mode == "graph" for c in scoped):  # decode steps run as captured graphs
            scoped = [c for c in scoped if c.mode == "graph"]
        by_scope[scope] = scoped
    bounds = np.array(sorted({float(c.min_bytes) for cs in by_scope.values() for c in cs}), dtype=float)
    scopes = {}
    for scope, scoped in by_scope.items():
        if not scoped:
            scopes[scope] = None
            continue
        worlds = np.array(sorted({c.world_size for c in scoped}), dtype=float)
        alpha = np.empty((len(worlds), bounds.size + 1))
        busbw = np.empty((len(worlds), bounds.size + 1))
        for i, w in enumerate(worlds):
            pieces = sorted((c for c in scoped if c.world_size == w), key=lambda c: c.min_bytes)
            mins = np.array([c.min_bytes for c in pieces], dtype=float)
            # Segment 0 (below every bound) takes the first line; segment s, whose bytes are at
            # least bounds[s - 1], the last line starting at or below that.
            chosen = np.concatenate([[0], np.maximum(np.searchsorted(mins, bounds, side="right") - 1, 0)])
            alpha[i] = np.array([c.alpha_us for c in pieces])[chosen]
            # Interpolate bus bandwidth, not algorithm bandwidth: busbw is what stays roughly
            # constant as the group grows (that is why nccl-tests reports it).
            busbw[i] = np.array([c.beta_gbps for c in pieces])[chosen] * float(bus_factor(op, w))
        scopes[scope] = _ScopeLines(worlds, alpha, busbw)
    # A bound past which every table keeps the same line (e.g. 0, where the first lines start)
    # changes nothing: leave it out, one comparison fewer per configuration.
    tabs = [t for lines in scopes.values() if lines is not None for t in (lines.alpha_us, lines.busbw_gbps)]
    keep = [j for j in range(bounds.size) if any((t[:, j + 1] != t[:, j]).any() for t in tabs)]
    cols = [0] + [j + 1 for j in keep]
    for lines in scopes.values():
        if lines is not None:
            lines.alpha_us, lines.busbw_gbps = lines.alpha_us[:, cols], lines.busbw_gbps[:, cols]
    return _FitTables(bounds[keep], scopes)


def _fitted_by_shape(hw, op, tables: _FitTables, inv, n, nodes, local, b):
    """The fitted lines' time of every element (shape `inv` of the distinct shapes n, nodes):
    α and bus bandwidth of the line covering the message at each fitted world size, linear in
    the group's ranks between fitted worlds (held at the ends), bytes x bus factor / busbw.
    Scopes the calibration did not measure keep the published model."""
    n_seg = tables.bounds.size + 1
    alpha = np.zeros((n.size, n_seg))
    busbw = np.ones((n.size, n_seg))
    is_inter = nodes > 1
    fallback = np.zeros(n.size, dtype=bool)
    for scope, mask in ((INTRA, ~is_inter), (INTER, is_inter)):
        lines = tables.scopes[scope]
        if not mask.any():
            continue
        if lines is None:
            fallback |= mask
            continue
        alpha[mask] = _interp_rows(n[mask], lines.worlds, lines.alpha_us)
        busbw[mask] = _interp_rows(n[mask], lines.worlds, lines.busbw_gbps)
    a_s = (alpha * 1e-6).ravel()
    bw = (busbw * 1e9).ravel()
    bf = bus_factor(op, n)
    cell = inv * n_seg if n_seg > 1 else inv
    for bound in tables.bounds:  # segment: how many bounds the message is at or above
        cell = cell + (b >= bound)
    out = a_s.take(cell) + b * bf.take(inv) / bw.take(cell)
    if fallback.any():
        rows = np.flatnonzero(fallback.take(inv))
        out[rows] = _published_by_shape(hw, op, inv.take(rows), n, nodes, local, b if b.ndim == 0 else b.take(rows))
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
    the fitted lines then hold α and bus bandwidth at the nearest measured world, which is an
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
    """Linear interpolation in x over the rows of fp (one row per xp), clamped at the ends: one
    row of fp's columns per element of x."""
    if len(xp) == 1:
        return np.broadcast_to(fp[0], (x.size, fp.shape[1]))
    pos = np.clip(np.searchsorted(xp, x) - 1, 0, len(xp) - 2)
    w = np.clip((x - xp[pos]) / (xp[pos + 1] - xp[pos]), 0.0, 1.0)[:, None]
    return fp[pos] * (1 - w) + fp[pos + 1] * w
