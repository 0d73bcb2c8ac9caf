"""The op-DB column of the public scorecard (benchmarks/accuracy.py): which tables price which
engine, the weight format a point's label names, and a prediction through the op-level model
from saved profiles (synthetic fits, so no database is needed)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from inferecon.model.published import get_profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_ops import FITS, _engine  # noqa: E402  (synthetic op fits, worked out by hand there)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scorecards import point_pricing beside them
import accuracy as acc  # noqa: E402


@pytest.fixture(scope="module")
def points():
    return acc.load_points(acc.DEFAULT_CSV)


def test_every_engine_of_the_points_has_its_tables_named(points):
    for engine in points["engine"].unique():
        backend, why = acc.OPDB_BACKEND[engine]
        assert backend in ("vllm", "sglang", "trtllm")
        # A substitute says so; an engine priced by its own tables needs no reason.
        assert (why == "") == (backend == engine)


@pytest.mark.parametrize("label, bits, name", [
    ("int8 weight-only", 8, "int8-wo"), ("awq int4", 4, "w4a16"), ("fp8", 8, "fp8"), ("bf16", 16, "bf16")])
def test_point_label_sets_the_format(label, bits, name):
    from inferecon.model.catalog import get_model
    from inferecon.model.quant import format_of

    m = acc.opdb_model(get_model("llama-3-8b").with_precision(bits), label)
    assert format_of(m).name == name


def test_native_format_wins_over_a_vaguer_label():
    from inferecon.model.catalog import get_model

    # DeepSeek-V3 points are labelled "fp8"; its checkpoint is block-scaled FP8.
    assert acc.opdb_model(get_model("deepseek-v3"), "fp8").weight_format == "fp8-block"


def test_opdb_column_from_saved_profiles(points, tmp_path):
    # One lmdeploy point (llama-2-7b, A100, batch 1) priced with synthetic fits saved where the
    # scorecard's cache looks for a100-sxm-80gb x trtllm: the prediction is the op-level model's.
    row = points[(points["engine"] == "lmdeploy") & (points["batch"] == 1)].head(1)
    # Read as a per-step figure: a whole-run throughput would add its prefill (accuracy.WHOLE_RUN_METRICS).
    row = row.assign(metric="tpot_ms_mean")
    where = tmp_path / "a100-sxm-80gb-trtllm"
    where.mkdir()
    hw = dataclasses.replace(get_profile("a100"), op_fits=FITS)
    hw.save(where / "profile.json")
    _engine().save(where / "engine.json")
    res = row.assign(ratio_published=1.0)
    out = acc.add_opdb(res, cache_dir=tmp_path)
    assert out["opdb_profile"].iloc[0] == "trtllm 0"
    assert "TensorRT-LLM" in out["opdb_note"].iloc[0]
    from inferecon.model.terms import Layouts, evaluate

    r = row.iloc[0]
    case = acc.to_case(next(row.itertuples()))
    lay = Layouts(tp_r=1, tp_c=1, pp=1, ep=1, micro_batch=1)
    want = evaluate(case.model, hw, lay, case.context, engine=_engine()).t_step_s[0] * 1e3
    assert out["pred_opdb_ms"].iloc[0] == pytest.approx(want, rel=1e-9)
    assert np.isfinite(out["ratio_opdb"].iloc[0]) and r["measured_ms"] > 0
