"""The rules kept once in core/: nccl-tests' bus factors and MAPE, against hand values."""

import numpy as np
import pytest

from inferecon.calibration.fit import mape as fit_mape
from inferecon.core.busfactor import bus_factor
from inferecon.core.errors import UserError
from inferecon.core.stats import mape_pct, mape_pct_of


def test_bus_factors_are_nccl_tests_table():
    # nccl-tests doc/PERFORMANCE.md: all-reduce 2(n-1)/n, all-gather / reduce-scatter /
    # all-to-all (n-1)/n, send/recv 1. Over 8 ranks: 14/8 = 1.75 and 7/8 = 0.875.
    assert bus_factor("all_reduce", 8) == 1.75
    for op in ("all_gather", "reduce_scatter", "all_to_all"):
        assert bus_factor(op, 8) == 0.875
    assert bus_factor("send_recv", 8) == 1.0
    # Vectorised over world sizes: 2 ranks all-reduce 2 * 1/2 = 1, 4 ranks 2 * 3/4 = 1.5.
    assert bus_factor("all_reduce", np.array([2, 4])).tolist() == [1.0, 1.5]
    with pytest.raises(UserError, match="'gather' has no nccl-tests bus factor"):
        bus_factor("gather", 8)


def test_the_three_users_share_the_table():
    from inferecon.ingest import nccl_tests
    from inferecon.model import network

    assert network.bus_factor is bus_factor and nccl_tests.bus_factor is bus_factor


def test_mape_is_percent_and_skips_missing_cases():
    # |10| and |-20| average to 15; a case without a figure (None, NaN) is left out.
    assert mape_pct([10.0, -20.0, None, float("nan")]) == 15.0
    assert mape_pct([]) is None
    # 11 vs 10 is +10%, 8 vs 10 is -20%: 15%. The profile's fit_quality keeps it as 0.15.
    assert mape_pct_of([11.0, 8.0], [10.0, 10.0]) == pytest.approx(15.0)
    assert fit_mape([11.0, 8.0], [10.0, 10.0]) == pytest.approx(0.15)
