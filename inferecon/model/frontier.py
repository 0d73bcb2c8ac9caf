"""Frontier search: enumerate parallel layouts, batch sizes and speculative settings, evaluate
them all at once with the vectorised cost model, keep the Pareto-optimal points (highest
tokens/s per sequence for the lowest $ per million output tokens)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from inferecon.core.errors import UserError
from inferecon.model.engine import EngineProfile
from inferecon.model.hardware import HardwareProfile
from inferecon.model.layout import RequestError, layout_problem
from inferecon.model.spec import ModelSpec
from inferecon.model.terms import CostOptions, Layouts, evaluate

DEFAULT_MAX_GPUS = 512
# Beyond this many GPUs instances are tried at powers of two only (the no-latency counterfactual
# reaches tens of thousands of GPUs; whole-node steps there would add nothing but time).
WHOLE_NODE_STEPS_UP_TO = 512
NO_LATENCY_MAX_GPUS = 65536
# Sequences per ep rank per micro-batch: a log grid with √2 steps, 1 … 4096 (… 65536 wide).
BATCH_GRID = tuple(sorted({int(round(2 ** (i / 2))) for i in range(0, 25)}))
WIDE_BATCH_GRID = tuple(sorted({int(round(2 ** (i / 2))) for i in range(0, 33)}))
GAMMAS = (1, 2, 3, 4, 6, 8)


@dataclass(frozen=True)
class SearchSpace:
    max_gpus: int = DEFAULT_MAX_GPUS
    batch_grid: tuple[int, ...] = BATCH_GRID
    gammas: tuple[int, ...] = GAMMAS  # tried only when a draft model is given
    allow_pipeline: bool = True
    allow_2d_tp: bool = True
    # The no-latency counterfactual: tensor parallelism not capped by the number of heads.
    unbounded_tp: bool = False


def gpu_counts(max_gpus: int, gpus_per_node: int) -> list[int]:
    """Instance sizes people deploy: powers of two inside a node, then whole nodes, and beyond
    WHOLE_NODE_STEPS_UP_TO GPUs powers of two."""
    if max_gpus < 1:
        raise RequestError("max_gpus", max_gpus, "an instance needs at least 1 GPU")
    inside = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= min(gpus_per_node, max_gpus)]
    if gpus_per_node <= max_gpus and gpus_per_node not in inside:
        inside.append(gpus_per_node)
    nodes = [gpus_per_node * k for k in range(2, min(max_gpus, WHOLE_NODE_STEPS_UP_TO) // gpus_per_node + 1)]
    big, p = [], 1
    while p <= max_gpus:
        if p > max(WHOLE_NODE_STEPS_UP_TO, gpus_per_node):
            big.append(p)
        p *= 2
    return inside + nodes + big


def _powers_of_two_dividing(n: int, limit: int) -> list[int]:
    out, p = [], 1
    while p <= min(n, limit):
        if n % p == 0:
            out.append(p)
        p *= 2
    return out


def grids_2d(tp: int, gpus_per_node: int) -> list[tuple[int, int]]:
    """(rows, columns) of the 2D grids tried for tp GPUs: the squarest one (columns rounded
    up, so a column of neighbours stays inside a node as long as it can and the grid spans
    nodes along its rows), and the one whose rows are whole nodes."""
    if tp < 4:
        return []
    square_c = 2 ** int(np.ceil(np.log2(tp) / 2))
    out = []
    for c in (square_c, min(gpus_per_node, tp // 2)):
        if c >= 2 and tp % c == 0 and tp // c >= 2 and (tp // c, c) not in out:
            out.append((tp // c, c))
    return out


def layouts_for(model: ModelSpec, hw: HardwareProfile, space: SearchSpace) -> np.ndarray:
    """Rows (tp_r, tp_c, pp, ep) of every layout worth trying. A few hundred rows: the
    per-configuration work (batch, γ) is vectorised in `search`. Only layouts `predict` would
    accept (model/layout.py, the one rule): heads are split over the whole group in 1D and over
    the rows in 2D, evenly (unless unbounded)."""
    gpn = hw.network.gpus_per_node
    rows = []

    def ok(tp, pp, ep, tp_rows=1):
        return layout_problem(model, tp, pp, ep, tp_rows=tp_rows, unbounded_tp=space.unbounded_tp) is None

    for n in gpu_counts(space.max_gpus, gpn):
        for tp in _powers_of_two_dividing(n, n):
            ep_options = [1]
            if model.is_moe:
                ep_options = [e for e in _powers_of_two_dividing(n // tp, model.n_experts)
                              if model.n_experts % e == 0]
            for ep in ep_options:
                pp = n // (tp * ep)
                if pp > 1 and not space.allow_pipeline:
                    continue
                if ok(tp, pp, ep):
                    rows.append((1, tp, pp, ep))
                if space.allow_2d_tp:
                    rows += [(r, c, pp, ep) for r, c in grids_2d(tp, gpn) if ok(tp, pp, ep, tp_rows=r)]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def build_layouts(model, hw, space, with_spec: bool) -> Layouts:
    base = layouts_for(model, hw, space)
    batches = np.array(space.batch_grid, dtype=np.int64)
    if len(base) == 0 or len(batches) == 0:
        raise RequestError("max_gpus", space.max_gpus, f"no parallel layout of {model.name} fits within "
                           f"{space.max_gpus} GPUs")
    idx = np.repeat(np.arange(len(base)), len(batches))
    mb = np.tile(batches, len(base))
    gamma = np.zeros_like(mb)
    if with_spec:
        # Speculation is tried on unpipelined layouts only (the draft must see each token).
        flat = base[idx, 2] == 1
        g = np.array(space.gammas, dtype=np.int64)
        sidx = np.repeat(idx[flat], len(g))
        smb = np.repeat(mb[flat], len(g))
        sg = np.tile(g, int(flat.sum()))
        idx, mb, gamma = np.concatenate([idx, sidx]), np.concatenate([mb, smb]), np.concatenate([gamma, sg])
    rows = base[idx]
    return Layouts(tp_r=rows[:, 0], tp_c=rows[:, 1], pp=rows[:, 2], ep=rows[:, 3], micro_batch=mb, gamma=gamma)


def pareto_mask(speed: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """True where no other point is at least as fast and strictly cheaper (or as cheap and
    strictly faster). O(n log n): sort by speed descending, keep running minimum cost."""
    order = np.lexsort((cost, -speed))
    best = np.minimum.accumulate(cost[order])
    keep_sorted = np.empty(len(order), dtype=bool)
    keep_sorted[0] = True
    keep_sorted[1:] = cost[order][1:] < best[:-1]
    mask = np.zeros(len(order), dtype=bool)
    mask[order[keep_sorted]] = True
    return mask


def search(model: ModelSpec, hw: HardwareProfile, context: int, space: SearchSpace = SearchSpace(),
           draft: ModelSpec | None = None, acceptance: float = 0.0,
           opts: CostOptions = CostOptions(), engine: EngineProfile | None = None) -> pd.DataFrame:
    """The Pareto frontier, fastest first, each row with its configuration and term breakdown.
    With an `engine`, every configuration pays that engine's overheads (model/engine.py)."""
    return search_near(model, hw, context, space, draft, acceptance, opts, engine)[0]


# A point is a near neighbour of the frontier when gaining NEAR_FACTOR in both speed and cost
# would make it Pareto-optimal: under the uncertainty bands it may overtake a frontier point.
NEAR_FACTOR = 1.15
NEAR_PER_FRONTIER_POINT = 4  # at most this many neighbours per frontier point (the closest)


def near_rows(speed: np.ndarray, cost: np.ndarray, front: np.ndarray, factor: float = NEAR_FACTOR,
              limit: int | None = None) -> np.ndarray:
    """Indices of the points (not on the frontier `front`) that no frontier point beats by
    more than `factor` in both speed and cost, the closest first, at most `limit`."""
    order = np.argsort(speed[front])
    fs, fc = speed[front][order], cost[front][order]  # along the frontier cost rises with speed
    rest = np.ones(len(speed), dtype=bool)
    rest[front] = False
    others = np.flatnonzero(rest)  # as np.setdiff1d(arange, front), without its two sorts
    if others.size == 0:
        return others
    # The cheapest frontier point at least `factor` faster than p: p is near if it costs more
    # than p / factor (or if there is none).
    j = np.searchsorted(fs, speed[others] * factor, side="left")
    cheapest = np.where(j < len(fs), fc[np.minimum(j, len(fs) - 1)], np.inf)
    near = others[cheapest > cost[others] / factor]
    if limit is not None and near.size > limit:
        # Closest first: the cost gap to the cheapest frontier point as fast as p.
        k = np.searchsorted(fs, speed[near], side="left")
        ref = np.where(k < len(fs), fc[np.minimum(k, len(fs) - 1)], cost[near])
        near = near[np.argsort(cost[near] / ref, kind="stable")[:limit]]
    return near


def search_near(model: ModelSpec, hw: HardwareProfile, context: int, space: SearchSpace = SearchSpace(),
                draft: ModelSpec | None = None, acceptance: float = 0.0,
                opts: CostOptions = CostOptions(), engine: EngineProfile | None = None) -> tuple[pd.DataFrame, Layouts]:
    """The frontier (as `search`) and the Layouts of its near neighbours (`near_rows`): the
    candidates an uncertainty band re-ranks to say how likely each point stays optimal."""
    validate_request(model, hw, context, acceptance, draft)
    lay = build_layouts(model, hw, space, with_spec=draft is not None)
    res = evaluate(model, hw, lay, context, draft=draft, acceptance=acceptance, opts=opts, engine=engine)
    ok = res.feasible
    if not ok.any():
        raise RequestError("max_gpus", space.max_gpus, _does_not_fit(model, hw, lay, res, context, space, draft, opts))
    keep = np.flatnonzero(ok)
    speed = res.tokens_per_s_per_seq[keep]
    cost = res.usd_per_mtok[keep]
    on_front = np.flatnonzero(pareto_mask(speed, cost))
    front = keep[on_front]
    near = keep[near_rows(speed, cost, on_front, limit=NEAR_PER_FRONTIER_POINT * len(on_front))]
    # One DataFrame of every column, then one sort (the sort's order depends on the speed column
    # alone): building it column by column after the sort cost more than the cost model itself.
    cols = {k: np.asarray(v)[front] for k, v in res.columns(lay).items()}
    spec = cols["gamma"] > 0
    df = pd.DataFrame({"model": model.name, "gpu": hw.name, "profile": hw.provenance.kind, **cols,
                       "context": context, "weight_bits": model.weight_bits, "kv_bits": model.kv_bits,
                       "draft": np.where(spec, draft.name if draft else "", ""),
                       "acceptance": np.where(spec, acceptance, np.nan),
                       "replicas": space.max_gpus // cols["n_gpu"]}, index=pd.RangeIndex(len(front)))
    df = df.sort_values("tokens_per_s_per_seq", ascending=False, ignore_index=True)
    return df, lay.subset(near)


def _does_not_fit(model, hw, lay, res, context, space, draft, opts) -> str:
    """What does not fit, with its figures, on the layout that needs the least memory per GPU
    (the most GPUs, the smallest batch): the weights alone, or the weights and the KV cache of
    the context (a long context is the usual cause; blaming the weights misleads)."""
    from inferecon.model.terms import stored_bytes_per_gpu

    i = int(np.argmin(res.memory_per_gpu_bytes))
    one = lay.subset(np.array([i]))
    weights, kv = (float(np.asarray(v)[0]) for v in stored_bytes_per_gpu(model, one, context))
    if draft is not None and one.gamma[0] > 0:  # the draft's weights and cache sit on the same GPUs
        dw, dkv = stored_bytes_per_gpu(draft, one, context)
        weights, kv = weights + float(np.asarray(dw)[0]), kv + float(np.asarray(dkv)[0])
    hbm = hw.memory.capacity_gb
    usable = hbm * opts.hbm_usable_fraction
    where = (f"on up to {space.max_gpus} x {hw.display_name}: the leanest layout "
             f"(tp {int(one.tp[0])}, pp {int(one.pp[0])}, ep {int(one.ep[0])}")
    room = f"the {usable:.1f} GB usable of {hbm:.0f} GB HBM per GPU"
    if weights / 1e9 > usable:
        return (f"{model.name} does not fit {where}) needs {weights / 1e9:.1f} GB of weights per GPU, above {room}: "
                "it needs more GPUs or fewer bits per weight")
    return (f"{model.name} does not fit {where}, batch {int(one.batch[0])}) needs weights {weights / 1e9:.1f} GB + "
            f"KV cache {kv / 1e9:.1f} GB at context {context:,} per GPU, above {room}: "
            "it needs a shorter context, more GPUs or fewer bits per weight or KV entry")


def validate_request(model: ModelSpec, hw: HardwareProfile, context: int, acceptance: float, draft=None) -> None:
    if context < 0:
        raise RequestError("context", context, "context must be 0 or more tokens")
    if not 0.0 <= acceptance <= 1.0:
        raise RequestError("acceptance", acceptance, "a draft's acceptance probability must be in [0, 1]")
    if hw.price_usd_per_gpu_hour <= 0:
        raise UserError(f"price must be a positive $/GPU-hour, got {hw.price_usd_per_gpu_hour}")
    if draft is not None and draft.vocab_size != model.vocab_size:  # the target verifies the draft's tokens
        raise UserError(f"draft {draft.name} has a {draft.vocab_size}-token vocabulary, {model.name} {model.vocab_size}: a speculative draft must share the target's tokenizer")


def cost_at_speed(front: pd.DataFrame, speed: float) -> float:
    """The frontier's $/M tokens at `speed` tokens/s per sequence, linear between its points
    (NaN beyond its fastest point) — how the paper's code reads a cost off its frontier."""
    df = front.sort_values("tokens_per_s_per_seq")
    s = df["tokens_per_s_per_seq"].to_numpy()
    c = df["usd_per_mtok"].to_numpy()
    if speed > s[-1]:
        return float("nan")
    return float(np.interp(speed, s, c))
