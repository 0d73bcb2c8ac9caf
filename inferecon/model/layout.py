"""Which parallel layouts a model can run: the one rule the frontier search and `predict` share
(the frontier never searches a layout predict refuses, and predict refuses nothing the frontier
offers), and the domain error that says why a request is impossible.

Errors speak the domain's words ("tensor parallelism over 64 GPUs", not a flag): `RequestError`
carries the name of the request parameter that is wrong, and the command layer turns that
into its own flag (`RequestError.for_flag`).
"""

from __future__ import annotations

from inferecon.core.errors import RequestError
from inferecon.model.spec import ModelSpec

__all__ = ["RequestError", "heads_axis", "layout_problem"]  # RequestError lives in core/errors.py


def heads_axis(tp: int, tp_rows: int = 1) -> int:
    """GPUs the attention heads are split over: the whole group in 1D, the rows in a 2D grid."""
    return tp_rows if tp_rows > 1 else tp


def layout_problem(model: ModelSpec, tp: int, pp: int = 1, ep: int = 1, gamma: int = 0, tp_rows: int = 1,
                   unbounded_tp: bool = False) -> RequestError | None:
    """Why `model` cannot run with this layout (tp GPUs per stage, of which tp_rows rows in a
    2D grid; pp stages; ep expert-parallel ranks; gamma draft tokens per round), or None.

    Engines split attention heads evenly over the GPUs that hold them, and KV heads evenly or
    each replicated over tp / kv GPUs; `unbounded_tp` is the paper's no-latency counterfactual,
    where tensor parallelism is not capped by the heads (the frontier's --no-latency only)."""
    axis = heads_axis(tp, tp_rows)

    def where():  # built only for a refusal: the frontier asks this of every layout it tries
        grid = f" (the rows of a {tp_rows} x {tp // tp_rows} grid)" if tp_rows > 1 else ""
        return f"tensor parallelism over {axis} GPUs{grid}"

    if not unbounded_tp:
        if axis > model.n_heads:
            return RequestError("tp", tp, f"{where()} is more than {model.name}'s {model.n_heads} attention heads")
        if model.n_heads % axis or (model.n_kv_heads % axis and axis % model.n_kv_heads):
            return RequestError("tp", tp, f"{where()} does not split {model.name}'s {model.n_heads} attention heads "
                                          f"({model.n_kv_heads} KV heads) evenly over the GPUs")
    if pp > model.n_layers:
        return RequestError("pp", pp, f"{pp} pipeline stages are more than {model.name}'s {model.n_layers} layers")
    if ep > 1 and not model.is_moe:
        return RequestError("ep", ep, f"{model.name} is dense; expert parallelism needs a mixture-of-experts model")
    if model.is_moe and model.n_experts % ep:
        return RequestError("ep", ep, f"{ep} expert-parallel ranks do not divide {model.name}'s "
                                      f"{model.n_experts} experts")
    if gamma > 0 and pp > 1:
        return RequestError("pp", pp, "speculative decoding needs a single pipeline stage (the draft must see "
                                      "every token the target emits)")
    return None
