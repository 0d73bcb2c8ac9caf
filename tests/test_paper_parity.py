"""inferecon with the paper's assumptions (the h100-sxm-paper profile) against the paper's
reference code's own outputs (inferecon/validation/paper_parity.py holds them, from the
reference notes; benchmarks/paper_parity.py prints them): max speed within 10%, $/M tokens at
40 tok/s within 25%, at context 0."""

import pytest

from inferecon.validation.paper_parity import REFERENCE, inferecon_row

ROWS = {(name, bits, draft): (top, costs) for name, bits, context, draft, top, costs in REFERENCE if context == 0}


def _check(name, bits):
    ref_max, ref_costs = ROWS[(name, bits, None)]
    top, costs = inferecon_row(name, bits, 0, None)
    assert top == pytest.approx(ref_max, rel=0.10)
    assert costs[40] == pytest.approx(ref_costs[1], rel=0.25)


@pytest.mark.parametrize("name,bits", [("llama-3-8b", 16), ("llama-3-70b", 16), ("llama-3-70b", 8),
                                       ("llama-3.1-405b", 16)])
def test_dense_models_match_the_paper_code(name, bits):
    _check(name, bits)


@pytest.mark.xfail(strict=True, reason=(
    "the paper's code replicates attention over sub-groups to shrink its all-reduces; inferecon "
    "does not, and its fastest Mixtral 8x22B point is 11% slower (175.5 vs 196.3 tok/s)"))
def test_mixtral_matches_the_paper_code():
    _check("mixtral-8x22b", 16)


@pytest.mark.xfail(strict=True, reason=(
    "inferecon's expert parallelism serves attention data-parallel across the EP ranks (as DeepSeek "
    "deploys V3), which the paper's code does not: at 40 tok/s it is ~5x cheaper ($0.053 vs $0.264/M)"))
def test_deepseek_v3_matches_the_paper_code():
    _check("deepseek-v3", 8)
