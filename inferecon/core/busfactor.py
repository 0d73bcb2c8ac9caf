"""nccl-tests' bus-bandwidth factors: the one table (doc/PERFORMANCE.md of nccl-tests).

busbw = algbw × factor, where the factor is what each rank's link carries relative to algbw
for the ring algorithm, so a busbw figure is comparable across world sizes. The cost model
(model/network.py), the collective benchmark (kernels/collectives.py) and the nccl-tests
reader (ingest/nccl_tests.py) all use this table, so a figure written by one is read back by
the others with the same factor.
"""

from __future__ import annotations

import numpy as np

from inferecon.core.errors import UserError

ALL_REDUCE = "all_reduce"
ALL_GATHER = "all_gather"
REDUCE_SCATTER = "reduce_scatter"
ALL_TO_ALL = "all_to_all"
SEND_RECV = "send_recv"
BROADCAST = "broadcast"
REDUCE = "reduce"

# factor(n) = numerator(n) / n with numerator 2(n-1), (n-1) or n (factor 1).
_TWO_N_MINUS_ONE = (ALL_REDUCE,)
_N_MINUS_ONE = (ALL_GATHER, REDUCE_SCATTER, ALL_TO_ALL)
_ONE = (SEND_RECV, BROADCAST, REDUCE)
OPS = _TWO_N_MINUS_ONE + _N_MINUS_ONE + _ONE


def bus_factor(op: str, n):
    """busbw / algbw of `op` over `n` ranks: 2(n-1)/n for all-reduce; (n-1)/n for all-gather,
    reduce-scatter and all-to-all; 1 for send/recv, broadcast and reduce. `n` may be a number
    (a float comes back) or an array (an array of the same shape comes back)."""
    scalar = np.ndim(n) == 0
    x = np.asarray(n, dtype=float)
    if op in _TWO_N_MINUS_ONE:
        f = 2.0 * (x - 1.0) / x
    elif op in _N_MINUS_ONE:
        f = (x - 1.0) / x
    elif op in _ONE:
        f = np.ones_like(x)
    else:
        raise UserError(f"collective {op!r} has no nccl-tests bus factor (known: {', '.join(OPS)})")
    return float(f) if scalar else f
