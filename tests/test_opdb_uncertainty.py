"""The op-DB profile's band: each op family's k-fold held-out error over the tables' shapes as a
multiplier on that family's time (OpFits.time_scale; calibration/fit_uncertainty.py
opdb_uncertainty). Expected values are hand-computed from the toy fits of tests/test_ops.py
(its per-layer arithmetic is repeated where used) and from the held-out errors set here."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cli_check import one_line_error
from inferecon.calibration.fit_uncertainty import opdb_uncertainty
from inferecon.cli import main
from inferecon.core.errors import UserError
from inferecon.model.hardware import HardwareProfile
from inferecon.model.opfits import (AttentionFit, CollectiveOpFit, EngineOpFits, FitQuality, GemmFit, MoeFit, OpFits,
                                    time_scale_key)
from inferecon.model.terms import Layouts, evaluate
from inferecon.model.uncertain import entries
from inferecon.model.uncertainty import apply

from test_ops import FITS, _engine, _hw, MODEL

FIXTURE = Path(__file__).parent / "fixtures" / "opdb" / "db"

# tests/test_ops.py's toy model on one GPU at batch 1 (its comment block gives each op):
# GEMMs: 2 layers x (4 intercepts of 4 us + 16.797696 us of bytes) + lm head (4 + 32.801024 us).
GEMM_US = 2 * (4 * 4.0 + 16.797696) + (4.0 + 32.801024)  # 102.396416
ATTENTION_US = 2 * (10.0 + 4.096)  # floor + KV bytes at 1000 GB/s, per layer
# tp 2: two all-reduces a layer of 2048 B on the engine's own line (3 us + 2048 B / 100 GB/s).
ALLREDUCE_US = 2 * 2 * (3.0 + 2048 / 100e3)


def _families_us(fits, tp=1, batch=1):
    r = evaluate(MODEL, _hw(fits), Layouts(tp_r=1, tp_c=tp, pp=1, ep=1, micro_batch=batch), context=1000,
                 engine=_engine())
    return {f: getattr(r, f"t_{f}_s") * 1e6 for f in ("gemm", "attention", "allreduce", "elementwise")}, r


@pytest.mark.parametrize("key, family, base_us, scale, tp", [
    ("gemm_bf16", "gemm", GEMM_US, 1.5, 1),
    ("attention_bf16", "attention", ATTENTION_US, 2.0, 1),
    ("allreduce", "allreduce", ALLREDUCE_US, 1.25, 2),
])
def test_a_family_scale_moves_that_family_alone(key, family, base_us, scale, tp):
    before, r0 = _families_us(FITS, tp)
    assert before[family][0] == pytest.approx(base_us, rel=1e-9)
    after, r1 = _families_us(dataclasses.replace(FITS, time_scale={key: scale}), tp)
    assert after[family][0] == pytest.approx(scale * base_us, rel=1e-9)
    for other in set(before) - {family}:
        assert after[other][0] == pytest.approx(before[other][0], rel=1e-12)
    # The step grows by the family's extra time, nothing else.
    assert (r1.t_step_s[0] - r0.t_step_s[0]) * 1e6 == pytest.approx((scale - 1.0) * base_us, rel=1e-9)


def test_a_scale_of_one_prices_bit_for_bit_as_none():
    _, r0 = _families_us(FITS, tp=2, batch=8)
    keys = ("gemm_bf16", "attention_bf16", "allreduce")
    _, r1 = _families_us(dataclasses.replace(FITS, time_scale=dict.fromkeys(keys, 1.0)), tp=2, batch=8)
    assert r1.t_step_s[0] == r0.t_step_s[0]


def test_draws_put_one_scale_per_configuration():
    # Two identical configurations under draws 0.5 and 2 of the GEMM scale (uncertainty.apply
    # follows the entry's path into op_fits.time_scale): their GEMM times are 0.5x and 2x.
    fits = dataclasses.replace(FITS, time_scale={"gemm_bf16": 1.0})
    hw = dataclasses.replace(_hw(fits), uncertainty=[{
        "name": "op-level gemm bf16", "paths": ["op_fits.time_scale.gemm_bf16"], "dist": "lognormal",
        "relative": True, "median": 1.0, "sigma": 0.1, "source": "test"}])
    drawn = apply(hw, entries(hw), [np.array([0.5, 2.0])])
    r = evaluate(MODEL, drawn, Layouts(tp_r=1, tp_c=np.array([1, 1]), pp=1, ep=1, micro_batch=1), context=1000,
                 engine=_engine())
    assert r.t_gemm_s * 1e6 == pytest.approx([0.5 * GEMM_US, 2.0 * GEMM_US], rel=1e-9)
    assert r.t_attention_s[0] == r.t_attention_s[1]


def _q(mape, n=100):
    return FitQuality(n_points=n, folds=5, heldout_mape=mape)


def test_each_family_gets_its_held_out_error_as_a_lognormal_spread():
    gemm = GemmFit("bf16", 4.0, 500.0, 2000.0, None, None, quality=_q(0.10))
    borrowed = GemmFit("int4_wo", 15.1, 500.0, 2834.0, None, None, quality=None)  # a published figure
    attention = AttentionFit("fp8", floor_us=10.0, gbps=1000.0, tflops=100.0, quality=_q(0.30, 40))
    lines = [CollectiveOpFit("nccl", "all_reduce", n, "intra", "graph", alpha_us=10.0, beta_gbps=100.0,
                             quality=_q(e, 7)) for n, e in ((2, 0.03), (8, 0.04))]
    moe = [MoeFit("fp8", 40.0, 3000.0, 500.0, quality=_q(e, 50), distribution=d)
           for e, d in ((0.10, "balanced"), (0.20, "power_law_1.2"))]
    fits = OpFits("h100-sxm", "vllm", "0", gemm=[gemm, borrowed], attention=[attention], collectives=lines)
    scale, ents = opdb_uncertainty(fits, EngineOpFits("h100-sxm", "vllm", "0", moe=moe))
    assert scale == {"gemm_bf16": 1.0, "attention_fp8": 1.0, "allreduce": 1.0, "moe_fp8": 1.0}
    by = {e["paths"][0].rsplit(".", 1)[1]: e for e in ents}
    # sigma = ln(1 + MAPE x sqrt(pi/2)); two fits of a family: the RMS of their MAPEs.
    sd = math.sqrt(math.pi / 2)
    assert by["gemm_bf16"]["sigma"] == pytest.approx(math.log1p(0.10 * sd), rel=1e-12)
    assert by["attention_fp8"]["sigma"] == pytest.approx(math.log1p(0.30 * sd), rel=1e-12)
    assert by["allreduce"]["sigma"] == pytest.approx(math.log1p(0.035355339 * sd), rel=1e-7)  # RMS(3%, 4%)
    assert by["moe_fp8"]["sigma"] == pytest.approx(math.log1p(0.158113883 * sd), rel=1e-7)  # RMS(10%, 20%)
    assert all(e["dist"] == "lognormal" and e["relative"] and e["median"] == 1.0 for e in ents)
    assert "over 14 shapes" in by["allreduce"]["source"] and "RMS of 2" in by["allreduce"]["source"]
    assert time_scale_key("gemm", "int4_wo") not in scale  # no held-out error: no band claimed


def test_calibrate_op_db_writes_the_band_and_predict_prints_it(tmp_path, capsys):
    out = tmp_path / "cal"
    assert main(["calibrate", "--op-db", str(FIXTURE), "--gpu", "h100-sxm", "--engine", "vllm", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "band (90%), each op family's time:" in said and "op-level gemm bf16: x time" in said
    saved = json.loads((out / "profile.json").read_text())
    assert saved["uncertainty"] and all(p.startswith("op_fits.time_scale.") for u in saved["uncertainty"]
                                        for p in u["paths"])
    assert set(saved["op_fits"]["time_scale"]) == {p.rsplit(".", 1)[1] for u in saved["uncertainty"]
                                                   for p in u["paths"]}
    argv = ["predict", "--model", "llama-3-8b", "--hardware", str(out / "profile.json"),
            "--engine", str(out / "engine.json")]
    assert main(argv) == 0
    banded = capsys.readouterr().out
    assert "90% interval" in banded
    assert main(argv + ["--draws", "0"]) == 0
    plain = capsys.readouterr().out
    assert "90% interval" not in plain
    # The point figures do not move with the band (the same table row either way).
    row = lambda text: next(line for line in text.splitlines() if line.strip().startswith("1 "))  # noqa: E731
    assert row(banded) == row(plain)


@pytest.mark.parametrize("value", [0.0, -1.0, "fast", None])
def test_a_bad_time_scale_in_a_profile_is_one_line(tmp_path, capsys, value):
    out = tmp_path / "cal"
    assert main(["calibrate", "--op-db", str(FIXTURE), "--gpu", "h100-sxm", "--engine", "vllm", "--out", str(out)]) == 0
    capsys.readouterr()
    data = json.loads((out / "profile.json").read_text())
    data["op_fits"]["time_scale"]["gemm_bf16"] = value
    with pytest.raises(UserError, match=r"time_scale"):
        HardwareProfile.from_dict(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    line = one_line_error(capsys, ["predict", "--model", "llama-3-8b", "--hardware", str(bad)])
    assert "time_scale" in line


def test_a_profile_without_its_op_fits_drops_the_entries_that_moved_them():
    # bench_ops and the speed fixture price an op-DB profile with the four-term model too: the
    # entries naming op_fits.* would otherwise name fields the profile no longer has.
    from inferecon.calibration.opdb_fit import calibrate_from_opdb

    p = calibrate_from_opdb(str(FIXTURE), "h100-sxm", "vllm").profile
    assert p.uncertainty
    plain = p.without_op_fits()
    assert plain.op_fits is None and not any("op_fits." in q for u in plain.uncertainty for q in u["paths"])
    assert len(plain.uncertainty) == sum(not any("op_fits." in q for q in u["paths"]) for u in p.uncertainty)


def test_drawn_scales_over_a_searchs_many_configurations_stay_per_configuration():
    # From 2^14 configurations the op-level model prices each op once per distinct row
    # (ops._keyable); drawn scales belong to the configurations and must keep it element-wise,
    # whatever order the scale keys come in (a plain 1.0 first, the drawn array after).
    n = (1 << 14) + 16
    draws = np.where(np.arange(n) % 2 == 0, 0.5, 2.0)
    fits = dataclasses.replace(FITS, time_scale={"allreduce": 1.0, "gemm_bf16": draws})
    r = evaluate(MODEL, _hw(fits), Layouts(tp_r=1, tp_c=np.ones(n, dtype=int), pp=1, ep=1, micro_batch=1),
                 context=1000, engine=_engine())
    assert r.t_gemm_s[:2] * 1e6 == pytest.approx([0.5 * GEMM_US, 2.0 * GEMM_US], rel=1e-9)
    assert np.allclose(r.t_gemm_s * 1e6, draws * GEMM_US, rtol=1e-9)


def _prefill(fits, tp=1, input_len=512):
    from inferecon.model.prefill import prefill_plan

    return prefill_plan(MODEL, _hw(fits), input_len=input_len, tp=tp, engine=_engine())


@pytest.mark.parametrize("key, family, tp", [("gemm_bf16", "gemm", 1), ("allreduce", "allreduce", 2)])
def test_a_family_scale_moves_that_family_of_a_prompts_prefill_alone(key, family, tp):
    before = _prefill(FITS, tp)
    after = _prefill(dataclasses.replace(FITS, time_scale={key: 3.0}), tp)
    assert getattr(after, f"t_{family}_s") == pytest.approx(3.0 * getattr(before, f"t_{family}_s"), rel=1e-12)
    assert getattr(before, f"t_{family}_s") > 0
    for other in {"gemm", "attention", "allreduce", "elementwise", "kv_write"} - {family}:
        assert getattr(after, f"t_{other}_s") == getattr(before, f"t_{other}_s")
    assert after.t_prefill_s - before.t_prefill_s == pytest.approx(2.0 * getattr(before, f"t_{family}_s"), rel=1e-9)


def test_a_lone_prompts_ttft_band_spans_the_prefill_under_the_drawn_scales():
    # One entry drawing the GEMM scale from {0.5, 2} (a "samples" distribution): 200 draws hold
    # both, so the band's ends are the prefill at x 0.5 and at x 2 exactly.
    from inferecon.model.request import lone_ttft_band
    from inferecon.model.prefill import PrefillOptions

    fits = dataclasses.replace(FITS, time_scale={"gemm_bf16": 1.0})
    hw = dataclasses.replace(_hw(fits), uncertainty=[{
        "name": "op-level gemm bf16", "paths": ["op_fits.time_scale.gemm_bf16"], "dist": "samples",
        "samples": [0.5, 2.0], "relative": True, "source": "test"}])
    lo, hi = lone_ttft_band(MODEL, hw, input_len=512, chunk_tokens=8192, tp=1, pp=1, ep=1, engine=_engine(),
                            popts=PrefillOptions(), draws=200, seed=0)
    at = lambda s: _prefill(dataclasses.replace(fits, time_scale={"gemm_bf16": s})).t_prefill_s  # noqa: E731
    assert (lo, hi) == pytest.approx((at(0.5), at(2.0)), rel=1e-9)
    assert lo < _prefill(fits).t_prefill_s < hi


def test_predict_prints_a_lone_prompts_ttft_band_and_draws_0_leaves_it_out(tmp_path, capsys):
    out = tmp_path / "cal"
    assert main(["calibrate", "--op-db", str(FIXTURE), "--gpu", "h100-sxm", "--engine", "vllm", "--out", str(out)]) == 0
    capsys.readouterr()
    argv = ["predict", "--model", "llama-3-8b", "--hardware", str(out / "profile.json"), "--engine",
            str(out / "engine.json"), "--batch", "1,8", "--input-len", "2000", "--output-len", "100"]
    assert main(argv + ["--json"]) == 0
    reqs = [json.loads(line)["request"] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(reqs) == 2 and reqs[0]["ttft_lo_ms"] < reqs[0]["ttft_ms"] < reqs[0]["ttft_hi_ms"]
    assert (reqs[1]["ttft_lo_ms"], reqs[1]["ttft_hi_ms"]) == (reqs[0]["ttft_lo_ms"], reqs[0]["ttft_hi_ms"])
    assert main(argv + ["--draws", "0"]) == 0
    assert "TTFT 90% interval" not in capsys.readouterr().out
