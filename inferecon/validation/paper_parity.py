"""inferecon against the paper's reference code (Erdil 2025; its outputs in the project's
reference notes): max speed and the frontier's $/M tokens at 20/40/60/100 tok/s per sequence,
run with the paper's assumptions (the h100-sxm-paper profile, $2.10 per GPU-hour as in the
paper's code, pipeline parallelism allowed). benchmarks/paper_parity.py prints the table;
tests/test_paper_parity.py holds inferecon to it."""

from __future__ import annotations

from inferecon.model.catalog import get_model
from inferecon.model.frontier import SearchSpace, cost_at_speed, search
from inferecon.model.published import get_profile

PAPER_PRICE = 2.10  # $/GPU-hour in the paper's code (3.15 · 2/3); its captions say $2
SPEEDS = (20, 40, 60, 100)

# The paper's code run unmodified (model, weight bits, context, draft) ->
# (max tok/s, $/M at 20, 40, 60, 100 tok/s; None where its frontier does not reach the speed).
REFERENCE = [
    ("llama-3-8b", 16, 0, None, 451.9, (0.0136, 0.0137, 0.0139, 0.0142)),
    ("llama-3-8b", 16, 8192, None, 444.7, (0.277, 0.295, 0.313, 0.351)),
    ("llama-3-70b", 16, 0, None, 124.9, (0.128, 0.165, 0.306, 1.76)),
    ("llama-3-70b", 16, 0, "llama-3-8b", 173.4, (0.128, 0.165, 0.244, 0.47)),
    ("llama-3-70b", 16, 8192, None, 124.4, (0.944, 1.27, 1.78, 5.2)),
    ("llama-3-70b", 16, 8192, "llama-3-8b", 171.6, (0.765, 0.957, 1.22, 2.11)),
    ("llama-3-70b", 8, 0, None, 152.1, (0.0604, 0.0743, 0.107, 0.382)),
    ("llama-3-70b", 8, 0, "llama-3-8b", 189.2, (0.0604, 0.0743, 0.107, 0.231)),
    ("llama-3-70b", 8, 8192, None, 151.1, (0.846, 1.04, 1.31, 2.47)),
    ("llama-3-70b", 8, 8192, "llama-3-8b", 187.1, (0.721, 0.87, 1.06, 1.61)),
    ("llama-3.1-405b", 16, 0, None, 56.8, (1.29, 8.19, None, None)),
    ("llama-3.1-405b", 16, 0, "llama-3-8b", 108.9, (1.04, 1.63, 3.26, 33.6)),
    ("llama-3.1-405b", 16, 8192, None, 56.7, (5.61, 17.7, None, None)),
    ("llama-3.1-405b", 16, 8192, "llama-3-8b", 108.1, (2.07, 3.47, 6.46, 44.1)),
    ("mixtral-8x22b", 16, 0, None, 196.3, (0.0764, 0.0893, 0.142, 0.406)),
    ("mixtral-8x22b", 16, 8192, None, 195.4, (0.613, 0.777, 0.98, 1.65)),
    ("deepseek-v3", 8, 0, None, 214.7, (0.123, 0.264, 0.447, 1.23)),
    ("deepseek-v3", 8, 8192, None, 214.0, (0.309, 0.485, 0.708, 1.64)),
]


def inferecon_row(name, bits, context, draft, hw=None, space=SearchSpace()):
    """(max tok/s, {speed: $/M}) of inferecon's frontier under the paper's assumptions."""
    hw = hw or get_profile("h100-sxm-paper")
    model = get_model(name).with_precision(bits)
    d = get_model(draft).with_precision(bits) if draft else None
    front = search(model, hw, context, space, draft=d, acceptance=0.8 if d else 0.0)
    return float(front["tokens_per_s_per_seq"].max()), {s: cost_at_speed(front, s) for s in SPEEDS}
