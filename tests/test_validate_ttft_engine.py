"""`validate --engine-results ... --engine E`: the TTFT comparison prices E's overheads too
(validation/ttft.py ttft_rows gets E; before, it priced the hardware profile alone while the
per-token columns above it carried E).

Expected values by hand: an engine profile whose only term is a step overhead of 5,000 µs adds
5.000 ms to every engine step. At concurrency 1 the closed loop has one client: its prompt is
prefilled in one step of its own (128 tokens, under the chunk budget) with nothing queued ahead,
so TTFT moves by exactly one step's overhead, 5.000 ms, and every decode step by the same, so
the serving TPOT moves by 5.000 ms too. At higher concurrency prompts queue behind steps that
each carry it: TTFT moves by at least 5 ms.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inferecon.model.engine import EngineProfile

RUN3 = Path(__file__).parent / "fixtures" / "engines" / "vllm_real" / "20261202"
STEP_US = 5000.0


def _rows(engine):
    from inferecon.calibration.engine_fit import load_cases
    from inferecon.validation.ttft import ttft_rows

    cases = load_cases([str(p) for p in sorted((RUN3 / "bf16").glob("*.json"))],
                       model=str(RUN3 / "model"), hardware_path=str(RUN3 / "profile.json"), tp=1)
    return sorted(ttft_rows(cases, engine), key=lambda r: r["concurrency"])


def test_ttft_rows_carry_the_engine_overheads():
    plain = _rows(None)
    with_e = _rows(EngineProfile("hand", step_overhead_us=STEP_US))
    assert [r["concurrency"] for r in plain] == [r["concurrency"] for r in with_e] and len(plain) >= 2
    assert all(not r["refused"] for r in plain + with_e)
    p1, e1 = plain[0], with_e[0]
    assert p1["concurrency"] == 1
    assert e1["pred_ttft_ms"] - p1["pred_ttft_ms"] == pytest.approx(STEP_US / 1e3, rel=0.01)
    assert e1["pred_tpot_ms"] - p1["pred_tpot_ms"] == pytest.approx(STEP_US / 1e3, rel=0.01)
    for p, e in zip(plain[1:], with_e[1:]):
        assert e["pred_ttft_ms"] - p["pred_ttft_ms"] >= STEP_US / 1e3 * 0.99, p["concurrency"]
