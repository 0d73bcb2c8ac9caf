"""`validate --engine-results ... --engine E`: the interval of the predictions with E widens by
E's own uncertainty where its fit stored a standard error, and not otherwise; the hardware
profile's own columns are the same with or without --engine.

Expected values by hand: a step overhead of 5,000 µs adds 5.000 ms to every step (one output
token per sequence per step), and a normal standard error of σ = 1,000 µs spans 2 x 1.645 x
1.000 = 3.29 ms between its 5% and 95% points. Drawn independently of the hardware profile's
parameters, the two widths add in quadrature: sqrt(w_hw² + 3.29²), w_hw being the hardware
profile's own width of that run, read from the table. 200 draws set the 5% and 95% points to
within about 10% (hence the tolerance).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from inferecon.cli import main
from inferecon.model.engine import EngineProfile

RUN3 = Path(__file__).parent / "fixtures" / "engines" / "vllm_real" / "20261202"
STEP_US, SIGMA_US = 5000.0, 1000.0
Z90 = 1.645  # the normal's 95% point: a central 90% interval is ±1.645 σ


def _engine(tmp_path: Path, stderr: float | None) -> Path:
    quality = {"parameters": {"step_overhead_us": {"value": STEP_US, "stderr": stderr, "fitted": True, "note": ""}}}
    return EngineProfile("hand", step_overhead_us=STEP_US, fit_quality=quality).save(tmp_path / f"e{stderr}.json")


def _validate(tmp_path: Path, name: str, *extra: str) -> tuple[list[dict], dict]:
    out = tmp_path / name
    assert main(["validate", "--engine-results", *map(str, sorted((RUN3 / "bf16").glob("*.json"))),
                 "--hardware", str(RUN3 / "profile.json"), "--model", str(RUN3 / "model"), "--tp", "1",
                 *extra, "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "engine_validation.csv")))
    return rows, json.loads((out / "engine_validation.json").read_text())


def test_engine_stderr_widens_the_interval(tmp_path, capsys):
    plain, plain_summary = _validate(tmp_path, "plain")
    rows, summary = _validate(tmp_path, "sigma", "--engine", str(_engine(tmp_path, SIGMA_US)))
    out = capsys.readouterr().out
    assert "coverage with engine profile 'hand'" in out and "engine profile's fitted standard errors" in out
    for p, r in zip(plain, rows):
        # The hardware profile's own columns do not move with --engine.
        for key in ("predicted_ms", "predicted_lo_ms", "predicted_hi_ms", "covered"):
            assert r[key] == p[key], key
        assert float(r["engine_ms"]) == pytest.approx(float(r["predicted_ms"]) + STEP_US / 1e3, rel=1e-6)
        w_hw = float(r["predicted_hi_ms"]) - float(r["predicted_lo_ms"])
        expected = math.hypot(w_hw, 2 * Z90 * SIGMA_US / 1e3)
        width = float(r["engine_hi_ms"]) - float(r["engine_lo_ms"])
        assert width == pytest.approx(expected, rel=0.15), r["concurrency"]
        assert r["engine_covered"] == str(float(r["engine_lo_ms"]) <= float(r["measured_ms"]) <= float(r["engine_hi_ms"]))
    assert summary["coverage_90"] == plain_summary["coverage_90"]
    assert summary["engine_coverage_90"]["cases"] == 4
    assert plain_summary["engine_coverage_90"] is None


def test_engine_without_stderr_keeps_the_hardware_width(tmp_path, capsys):
    rows, _ = _validate(tmp_path, "none", "--engine", str(_engine(tmp_path, None)))
    assert "the engine profile states none" in capsys.readouterr().out
    for r in rows:
        # The same draws of the hardware profile, shifted by the overhead: the same width.
        w_hw = float(r["predicted_hi_ms"]) - float(r["predicted_lo_ms"])
        width = float(r["engine_hi_ms"]) - float(r["engine_lo_ms"])
        assert width == pytest.approx(w_hw, rel=0.05, abs=0.05)
