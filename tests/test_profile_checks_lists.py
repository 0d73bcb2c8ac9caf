"""A profile's long lists of numbers (op-DB grids and curves) are checked at once; a bad entry is
still refused with the message that names it (the walk one entry at a time)."""

import json
from pathlib import Path

import pytest

from inferecon.core.errors import UserError
from inferecon.model.profile_checks import check_profile_dict

PROFILE = Path(__file__).resolve().parent / "fixtures" / "speed" / "opdb-h100-vllm" / "profile.json"


def _with_grid(row):
    data = json.loads(PROFILE.read_text())
    data["op_fits"]["attention"][0]["shape_grids"] = {"8x1x128": [[1.0, 2.0], [2.0, 4.0], [[10.0, 11.0], row]]}
    return data


def test_grid_of_finite_numbers_and_gaps_passes():
    check_profile_dict(_with_grid([12.0, None]), "p")


@pytest.mark.parametrize("bad, said", [(float("nan"), "must be finite, got nan"), (float("inf"), "must be finite, got inf"),
                                       (-float("inf"), "must be finite, got -inf")])
def test_bad_grid_entry_is_named(bad, said):
    with pytest.raises(UserError) as err:
        check_profile_dict(_with_grid([12.0, bad]), "p")
    assert str(err.value) == f"p: op_fits.attention[0].shape_grids.8x1x128[2][1][1] {said}"


def test_unit_bounds_still_hold_inside_lists():
    # A list under a µs key keeps the µs range: 1e8 µs is refused, by entry.
    data = json.loads(PROFILE.read_text())
    data["latency"]["kernel_launch_us"] = [3.0, 1e8]
    with pytest.raises(UserError, match=r"latency\.kernel_launch_us\[1\] 1e\+08 µs is outside the physical range"):
        check_profile_dict(data, "p")
