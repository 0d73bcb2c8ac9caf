"""A CPU calibration keeps two sets of op fits: the engine's kernels (`op_fits`, what the vLLM
loop validates) and the torch ops of inferecon's own decoder (`decoder_op_fits`, what
`inferecon validate` runs and prices with). Fast: synthetic tables whose rows are generated
from stated parameters, so each fit must recover what made its own rows."""

from __future__ import annotations

import pandas as pd
import pytest

from inferecon.kernels import cpu_ops

# Generating parameters of each path's GEMM rows: t0 + weight-and-activation bytes / B (the
# FLOP rate is set high enough never to bind). The decoder's aten::mm reads at half the rate.
GEMM = {"engine": (20.0, 30.0), "decoder": (10.0, 15.0)}  # (t0 µs, GB/s)
EW_US = {"engine": 50.0, "decoder": 120.0}  # elementwise per layer


def _table():
    rows = []
    for p in cpu_ops.planned_params(quick=True):
        path = cpu_ops.path_of(p)
        if p["op"] == "gemm":
            t0, gbps = GEMM[path]
            eb = cpu_ops.ELEMENT_BYTES[p["dtype"]]
            nbytes = p["n"] * p["k"] * eb + p["m"] * (p["k"] + p["n"]) * eb
            t = t0 + nbytes / (gbps * 1e3)
        elif p["op"] == "attention":
            t = 6.0 + p["kv_bytes"] / ((10.0 if path == "engine" else 5.0) * 1e3)
        elif p["op"] == "elementwise":
            t = EW_US[path]
        else:
            t = 2.5
        rows.append({**p, "case_id": cpu_ops.case_id(p), "time_us": t, "median_us": t, "skipped": "",
                     "sliced": False, "kernel": "synthetic"})
    return pd.DataFrame(rows)


def _profile(table=None):
    from inferecon.calibration.build import profile_from_tables

    manifest = {"device": "cpu", "device_name": "AMD EPYC",
                "metadata": {"torch_version": "2.13.0+cpu", "cpu": {"logical_cores": 2}}}
    return profile_from_tables(manifest, {"cpu_ops": _table() if table is None else table}, run_id="r").profile


def test_each_path_is_fitted_on_its_own_rows_and_both_survive_a_save(tmp_path):
    from inferecon.model.hardware import HardwareProfile

    prof = _profile()
    for fits, path in ((prof.op_fits, "engine"), (prof.decoder_op_fits, "decoder")):
        for g in fits.gemm:
            assert (g.t0_us, g.gbps) == pytest.approx(GEMM[path], rel=0.03), (path, g)
        assert fits.elementwise_per_layer_us == pytest.approx(EW_US[path])
    assert prof.decoder_op_fits.engine == "inferecon-decoder"
    assert any("x @ W.t()" in n for n in prof.decoder_op_fits.notes)
    # Each set's uncertainty entries move its own fields.
    paths = [p for u in prof.uncertainty for p in u["paths"]]
    assert "1/op_fits.gemm.0.gbps" in paths and "1/decoder_op_fits.gemm.0.gbps" in paths
    prof.save(tmp_path / "p.json")
    again = HardwareProfile.load(tmp_path / "p.json")
    assert again.decoder_op_fits == prof.decoder_op_fits and again.op_fits == prof.op_fits


def test_validate_prices_the_decoders_fits():
    """Batch 1, fp32 tiny-llama: every GEMM is byte-bound, so at half the read rate of the
    engine's fit the decoder's GEMM time is about twice it (t0 and the lm head's share aside:
    at least 1.8x), and the elementwise time is the decoder's 120 µs x 4 layers."""
    from inferecon.validation import decode as v

    prof = _profile()
    spec = v.spec_for_dtype(v.resolve_model("tiny-llama"), "fp32")
    as_decoder = v.as_decoder_runs(prof)
    assert as_decoder.op_fits == prof.decoder_op_fits and as_decoder.decoder_op_fits is None
    names = [u["name"] for u in as_decoder.uncertainty]
    assert all(p.removeprefix("1/").startswith(("op_fits.", "compute.", "memory.", "network.", "latency."))
               for u in as_decoder.uncertainty for p in u["paths"]), names
    engine = v.predict(spec, prof, 1, 128, 1, draws=0)  # predict reads the decoder's fits itself
    from inferecon.model.terms import Layouts, evaluate
    import numpy as np

    lay = Layouts(tp_r=np.array([1]), tp_c=np.array([1]), pp=np.array([1]), ep=np.array([1]),
                  micro_batch=np.array([1]))
    eng = evaluate(spec, prof, lay, 128).at(0)
    dec = evaluate(spec, as_decoder, lay, 128).at(0)
    assert dec["t_gemm_s"] >= 1.8 * eng["t_gemm_s"]
    assert dec["t_elementwise_s"] >= 4 * 120e-6 > eng["t_elementwise_s"]
    assert engine.t_step_s == pytest.approx(dec["t_step_s"])


def test_a_run_of_the_engine_path_alone_is_priced_as_before():
    """An older cpu_ops table (no path column: every row the engine's) gives no decoder fits,
    and validate prices its profile unchanged."""
    from inferecon.validation import decode as v

    t = _table()
    old = t[t["path"] == "engine"].drop(columns="path")
    prof = _profile(old)
    assert prof.decoder_op_fits is None and prof.op_fits.gemm[0].gbps == pytest.approx(30.0, rel=0.03)
    assert v.as_decoder_runs(prof) is prof
    assert "decoder_op_fits" not in prof.to_dict()


def test_the_decoders_gemv_regime_is_fitted_apart_where_it_predicts_better():
    """aten::mm at M = 1 is a GEMV; at M >= 2 a GEMM reading the weights at half the rate.
    Rows generated so: M = 1 t0 10 µs + bytes at 20 GB/s, M >= 2 t0 10 µs + bytes at 10 GB/s.
    The one roofline cannot hold both (held-out error well above 5%); the two regimes recover
    their generators, and a 1024 x 1024 fp32 GEMM is priced by hand: 4,194,304 weight bytes +
    (1 + 1) x 1024 x 4 activation bytes = 4,202,496 -> 10 + 210.1 = 220.1 µs at M = 1, and
    4,194,304 + 2 x 2048 x 4 = 4,210,688 -> 10 + 421.1 = 431.1 µs at M = 2."""
    from inferecon.calibration.fit_ops import fit_cpu_gemms

    rows = []
    for p in cpu_ops.planned_params(quick=True):
        if p["op"] != "gemm" or p["dtype"] != "fp32" or cpu_ops.path_of(p) != "decoder":
            continue
        nbytes = 4 * (p["n"] * p["k"] + p["m"] * (p["k"] + p["n"]))
        t = 10.0 + nbytes / ((20.0 if p["m"] == 1 else 10.0) * 1e3)
        rows.append({**p, "time_us": t, "median_us": t, "skipped": "", "sliced": False, "kernel": "synthetic"})
    df = pd.DataFrame(rows)
    (one,), _ = fit_cpu_gemms(df, 2.5)
    assert one.decode_m_max is None and one.quality.heldout_mape > 0.05
    (fit,), _ = fit_cpu_gemms(df, 2.5, gemv=True)
    assert fit.decode_m_max == 1 and fit.quality.heldout_mape < 0.01
    # (the M = 1 solver may trade a little t0 against its FLOP rate: the prices are the check)
    assert (fit.t0_us, fit.gbps) == pytest.approx((10.0, 10.0), rel=0.02)
    assert fit.time_us(1, 1024, 1024) == pytest.approx(220.1, rel=0.02)
    assert fit.time_us(2, 1024, 1024) == pytest.approx(431.1, rel=0.02)
