"""Frontier search: enumerate parallel layouts, batch sizes and speculative settings, evaluate
them all at once with the vectorised cost model, keep the Pareto-optimal points (highest
tokens/s per sequence for the lowest $ per million output tokens)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from inferecon.errors import UserError
from inferecon.model.hardware import HardwareProfile
from inferecon.model.spec import ModelSpec
from inferecon.model.terms import CostOptions, Layouts, evaluate

DEFAULT_MAX_GPUS = 512
# Sequences per ep rank per micro-batch: a log grid with √2 steps, 1 … 4096.
BATCH_GRID = tuple(sorted({int(round(2 ** (i / 2))) for i in range(0, 25)}))
GAMMAS = (1, 2, 3, 4, 6, 8)


@dataclass(frozen=True)
class SearchSpace:
    max_gpus: int = DEFAULT_MAX_GPUS
    batch_grid: tuple[int, ...] = BATCH_GRID
    gammas: tuple[int, ...] = GAMMAS  # tried only when a draft model is given
    allow_pipeline: bool = True
    allow_2d_tp: bool = True


def gpu_counts(max_gpus: int, gpus_per_node: int) -> list[int]:
    """Instance sizes people deploy: powers of two inside a node, then whole nodes."""
    if max_gpus < 1:
        raise UserError(f"--max-gpus must be at least 1, got {max_gpus}")
    inside = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= min(gpus_per_node, max_gpus)]
    if gpus_per_node <= max_gpus and gpus_per_node not in inside:
        inside.append(gpus_per_node)
    nodes = [gpus_per_node * k for k in range(2, max_gpus // gpus_per_node + 1)]
    return inside + nodes


def _powers_of_two_dividing(n: int, limit: int) -> list[int]:
    out, p = [], 1
    while p <= min(n, limit):
        if n % p == 0:
            out.append(p)
        p *= 2
    return out


def layouts_for(model: ModelSpec, hw: HardwareProfile, space: SearchSpace) -> np.ndarray:
    """Rows (tp_r, tp_c, pp, ep) of every layout worth trying. A few hundred rows: the
    per-configuration work (batch, γ) is vectorised in `search`."""
    gpn = hw.network.gpus_per_node
    rows = []
    for n in gpu_counts(space.max_gpus, gpn):
        for tp in _powers_of_two_dividing(n, model.n_heads):
            ep_options = [1]
            if model.is_moe:
                ep_options = [e for e in _powers_of_two_dividing(n // tp, model.n_experts)
                              if model.n_experts % e == 0]
            for ep in ep_options:
                pp = n // (tp * ep)
                if pp > model.n_layers or (pp > 1 and not space.allow_pipeline):
                    continue
                rows.append((1, tp, pp, ep))
                if space.allow_2d_tp and tp >= 4:
                    # Columns stay inside a node (NVLink), rows span nodes when tp > node.
                    c = min(gpn, 2 ** int(np.ceil(np.log2(tp) / 2))) if tp <= gpn else gpn
                    if tp % c == 0 and tp // c > 1:
                        rows.append((tp // c, c, pp, ep))
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def build_layouts(model, hw, space, with_spec: bool) -> Layouts:
    base = layouts_for(model, hw, space)
    batches = np.array(space.batch_grid, dtype=np.int64)
    if len(base) == 0 or len(batches) == 0:
        raise UserError("no parallel layout fits the search limits (raise --max-gpus?)")
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
           opts: CostOptions = CostOptions()) -> pd.DataFrame:
    """The Pareto frontier, fastest first, each row with its configuration and term breakdown."""
    validate_request(model, hw, context, acceptance)
    lay = build_layouts(model, hw, space, with_spec=draft is not None)
    res = evaluate(model, hw, lay, context, draft=draft, acceptance=acceptance, opts=opts)
    ok = res["feasible"]
    if not ok.any():
        need = model.weight_bytes / 1e9
        raise UserError(
            f"{model.name} does not fit on up to {space.max_gpus} x {hw.display_name} at context {context} "
            f"(weights alone {need:.0f} GB); raise --max-gpus, lower --precision or --context")
    keep = np.flatnonzero(ok)
    speed = res["tokens_per_s_per_seq"][keep]
    cost = res["usd_per_mtok"][keep]
    front = keep[pareto_mask(speed, cost)]
    df = pd.DataFrame({k: np.asarray(v)[front] for k, v in res.items()})
    df = df.sort_values("tokens_per_s_per_seq", ascending=False, ignore_index=True)
    df.insert(0, "model", model.name)
    df.insert(1, "gpu", hw.name)
    df.insert(2, "profile", hw.provenance.kind)
    df["context"] = context
    df["weight_bits"] = model.weight_bits
    df["kv_bits"] = model.kv_bits
    df["draft"] = np.where(df["gamma"] > 0, draft.name if draft else "", "")
    df["acceptance"] = np.where(df["gamma"] > 0, acceptance, np.nan)
    df["replicas"] = space.max_gpus // df["n_gpu"]
    return df.drop(columns=["feasible", "flops_per_gpu_step"])


def validate_request(model: ModelSpec, hw: HardwareProfile, context: int, acceptance: float) -> None:
    if context < 1:
        raise UserError(f"context must be at least 1 token, got {context}")
    if not 0.0 <= acceptance <= 1.0:
        raise UserError(f"acceptance must be in [0, 1], got {acceptance}")
    if hw.price_usd_per_gpu_hour <= 0:
        raise UserError(f"price must be a positive $/GPU-hour, got {hw.price_usd_per_gpu_hour}")
