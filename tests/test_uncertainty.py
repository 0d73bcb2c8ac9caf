"""Uncertainty on every prediction: draws of a profile's uncertain parameters propagated
through the cost model, checked against hand calculations, synthetic fits and coverage."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from inferecon.calibration.build import profile_from_tables
from inferecon.model.published import get_profile
from inferecon.validation import decode as v
from inferecon.core.errors import UserError
from inferecon.model.catalog import get_model
from inferecon.model.hardware import HardwareProfile
from inferecon.model.predict import predict
from inferecon.model.terms import Layouts
from inferecon.model.uncertain import Uncertain
from inferecon.model.uncertainty import evaluate_draws, pareto_probability, quantiles

H100 = get_profile("h100-sxm")


def _with(hw, *entries):
    return dataclasses.replace(hw, uncertainty=[e.to_dict() for e in entries])


def test_memory_bound_step_under_uniform_bandwidth_matches_the_hand_quantiles():
    # Llama 3 8B, one H100, batch 1, context 0: every weight but the input embedding read once
    # (8.03e9 - 128256 x 4096 params, 2 bytes) plus 32 layers x (8 x 4096 + 2 x 14336)
    # activations of 2 bytes, over 3.35 TB/s x efficiency; per layer the published H100's decode
    # kernels, 4 GEMM intercepts of 2.53 µs + 11.99 µs attention floor + 7.36 µs elementwise
    # (aiconfigurator-core 0.12.0, h100_sxm vLLM 0.24.0) = 29.47 µs, x 32 layers.
    # Efficiency uniform on [0.6, 0.9] and nothing else uncertain: the step's 5th percentile
    # comes from the 95th percentile of efficiency, 0.6 + 0.95 x 0.3 = 0.885, its 95th from
    # 0.615; the median from 0.75.
    m = get_model("llama-3-8b")
    hw = _with(H100, Uncertain("hbm", ("memory.efficiency",), "uniform", "test", low=0.6, high=0.9))
    nbytes = (m.total_params - 128256 * 4096) * 2 + 32 * (8 * 4096 + 2 * 14336) * 2
    launch = 32 * (4 * 2.53 + 11.99 + 7.36) * 1e-6

    def step(eff):
        return nbytes / (3.35e12 * eff) + launch

    lay = Layouts(tp_r=1, tp_c=1, pp=1, ep=1, micro_batch=1)
    draws = evaluate_draws(m, hw, lay, 0, draws=20000, seed=3)
    lo, med, hi = quantiles(draws["t_step_s"][:, 0])
    assert lo == pytest.approx(step(0.885), rel=5e-3)
    assert med == pytest.approx(step(0.75), rel=5e-3)
    assert hi == pytest.approx(step(0.615), rel=5e-3)
    # Speed is 1/step: its interval is the step's, inverted.
    s_lo, _, s_hi = quantiles(draws["tokens_per_s_per_seq"][:, 0])
    assert s_lo == pytest.approx(1 / step(0.615), rel=5e-3) and s_hi == pytest.approx(1 / step(0.885), rel=5e-3)
    # Only memory moved: the latency term is the same in every draw.
    assert np.ptp(draws["t_latency_s"]) == pytest.approx(0.0, abs=1e-15)


def test_relative_entry_scales_a_term_and_inverse_paths_divide():
    # A collective-time multiplier uniform on [1, 3] on a tp-8 configuration: the network term
    # of every draw is the base term times the draw; an inverse path on memory efficiency
    # with multiplier 2 halves the efficiency, doubling the memory term.
    m = get_model("llama-3-70b")
    lay = Layouts(tp_r=1, tp_c=8, pp=1, ep=1, micro_batch=4)
    base = evaluate_draws(m, _with(H100), lay, 1024, draws=1)  # nothing uncertain: the point figures
    net = evaluate_draws(m, _with(H100, Uncertain("n", ("network.time_scale",), "uniform", "t", relative=True,
                                                  low=1.0, high=3.0)), lay, 1024, draws=500)
    ratio = net["t_network_s"][:, 0] / base["t_network_s"][0, 0]
    assert ratio.min() >= 1.0 and ratio.max() <= 3.0 and np.ptp(ratio) > 1.5
    mem = evaluate_draws(m, _with(H100, Uncertain("m", ("1/memory.efficiency",), "samples", "t", relative=True,
                                                  samples=(2.0,))), lay, 1024, draws=3)
    assert mem["t_memory_s"][:, 0] == pytest.approx([2 * base["t_memory_s"][0, 0]] * 3)


def test_pareto_probability_counts_the_draws_a_point_stays_optimal():
    # Point 0 always dominates point 2; point 1 is faster than point 0 in draws 0 and 1 only
    # (cheaper never), so it is optimal in those two of four draws.
    speed = np.array([[10, 12, 5], [10, 11, 5], [10, 9, 5], [10, 8, 5]], float)
    cost = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3]], float)
    assert pareto_probability(speed, cost).tolist() == [1.0, 0.5, 0.0]


def _memory_table(noise, seed):
    rng = np.random.default_rng(seed)
    sizes = np.array([256, 512, 768, 1024, 1536, 2048, 3072, 4096]) * 2**20
    t = (3.0 + sizes / (2800 * 1e3)) * np.exp(noise * rng.standard_normal(len(sizes)))
    return pd.DataFrame({"benchmark": "memory", "skipped": "", "noisy": False, "op": "read", "bytes": sizes,
                         "bytes_moved": sizes, "median_us": t, "gbps": sizes / t / 1e3})


def _manifest():
    return {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "gpu_count": 1,
            "metadata": {"cpu": {"logical_cores": 2}}}


def _width(hw, model="llama-3-8b", batch=1, context=128):
    r = predict(get_model(model), hw, tp=1, batch=batch, context=context, draws=400)
    return r.t_step_ms_hi / r.t_step_ms_lo - 1


def test_interval_narrows_as_measurement_noise_falls():
    # The same HBM read-bandwidth benchmark measured with 20%, 5% and 1% noise: the fit's
    # held-out error, and with it the band of a memory-bound step, shrink.
    widths = []
    for noise in (0.20, 0.05, 0.01):
        res = profile_from_tables(_manifest(), {"memory": _memory_table(noise, seed=11)}, run_id=f"n{noise}")
        entry = next(e for e in res.profile.uncertainty if e["name"] == "memory bandwidth")
        assert "held-out" in entry["source"]
        widths.append(_width(res.profile))
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] > 3 * widths[2]


def _gemm_table(noise, seed, tflops=700.0, gbps=3000.0, t0=5.0):
    """Decode-shaped bf16 GEMMs on a roofline (t0 + max(FLOP / F, bytes / B)), with noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for n, k in ((10240, 8192), (8192, 8192), (57344, 8192), (8192, 28672)):
        for m in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
            t = t0 + max(2 * m * n * k / (tflops * 1e6), (n * k + m * k + m * n) * 2 / (gbps * 1e3))
            t *= 1 + noise * rng.standard_normal()
            rows.append(dict(m=m, n=n, k=k, dtype="bf16", shape_kind="decode", median_us=t,
                             tflops=2 * m * n * k / t / 1e6, skipped=""))
    return pd.DataFrame(rows)


def test_published_bands_are_wider_than_a_well_fitted_calibration():
    samples = list(2.0 + 0.02 * np.random.default_rng(5).standard_normal(100))
    launch = pd.DataFrame({"benchmark": "launch", "skipped": "", "noisy": False, "op": ["kernel_graph"],
                           "median_us": [2.0], "samples_us": [samples]})
    tables = {"memory": _memory_table(0.01, seed=2), "matmul": _gemm_table(0.01, seed=8), "launch": launch}
    cal = profile_from_tables(_manifest(), tables, run_id="good").profile
    names = {e["name"] for e in cal.uncertainty}
    # Every measured term carries its fit's error; the unmeasured network keeps the stated range.
    assert {"memory bandwidth", "arithmetic (bf16 GEMM fit)", "kernel launch", "collective time"} <= names
    assert "FLOP/s efficiency" not in names and "HBM bandwidth efficiency" not in names
    for batch in (1, 64):  # memory-bound and (with the GEMM fit) weight-GEMM-bound steps
        assert _width(cal, batch=batch, context=1024) < 0.5 * _width(H100, batch=batch, context=1024)


def test_profile_json_round_trip_old_files_and_bad_entries(tmp_path):
    path = H100.save(tmp_path / "p.json")
    again = HardwareProfile.load(path)
    assert again.uncertainty == H100.uncertainty and len(again.uncertainty) == 4
    assert all(e["source"] for e in again.uncertainty)
    # A profile saved before the field existed loads, and predicts without an interval.
    old = HardwareProfile.load("tests/fixtures/validate/cpu_profile.json")
    assert old.uncertainty == []
    r = predict(v.VALIDATION_MODELS["tiny-llama"], old, tp=1, batch=1, context=128)
    assert r.interval_draws is None and r.t_step_ms_lo is None
    data = json.loads(path.read_text())
    for bad, msg in (({"paths": ["memory.nope"]}, "no field 'nope'"), ({"dist": "cauchy"}, "not one of"),
                     ({"low": 0.9, "high": 0.1}, "above high"), ({"paths": "memory.efficiency"}, "list of field paths"),
                     ({"low": -0.5, "high": 0.9}, "non-negative"), ({"paths": ["name"]}, "not a number")):
        d = json.loads(json.dumps(data))
        d["uncertainty"][1].update(bad)
        (tmp_path / "bad.json").write_text(json.dumps(d))
        with pytest.raises(UserError, match=msg):
            HardwareProfile.load(tmp_path / "bad.json")


def test_validate_coverage_against_hand_placed_measurements(tmp_path, saved_figures):
    # The validation model (4 layers, d 512, 8 heads x 64, 4 KV heads x 64, d_ff 1536, vocab
    # 8192, bf16) on one H100 without launch latency, batch b at context 256: memory-bound, so
    # the step is the bytes read over 3.35 TB/s x 0.833 (the published H100's bf16 decode
    # streaming, aiconfigurator-core 0.12.0 h100_sxm vLLM 0.24.0). By hand: weights per layer 2 x 512^2 +
    # 2 x 512 x 256 + 3 x 512 x 1536 = 3,145,728, x 4 layers + the 8192 x 512 LM head =
    # 16,777,216 params = 33,554,432 B; KV per sequence 256 x 4 layers x 2 x 256 x 2 B =
    # 1,048,576 B; activations in and out per layer and token (8 x 512 + 2 x 1536) x 2 B x 4
    # layers = 57,344 B (the same accounting as test_cost_terms' Llama 70B figure).
    spec = v.VALIDATION_MODELS["tiny-llama"]
    base = H100.without_latency()

    def hand_step_us(batch):
        return (33_554_432 + batch * (1_048_576 + 57_344)) / (3.35e12 * 0.833) * 1e6

    # A stated 10% lognormal on the HBM time: the step's 90% interval is its point value times
    # exp(-/+1.645 x 0.10) = [0.848, 1.179]. The "measurements" are the hand steps times
    # 1.10 and 0.92 (inside), 1.30 and 0.75 (outside): 2 of 4 covered. A 1% claim
    # ([0.984, 1.017]) covers none of them.
    factors = {1: 1.10, 2: 0.92, 3: 1.30, 4: 0.75}
    rows = [{"layers_measured": spec.n_layers, "batch": b, "context": 256, "dtype": "bf16",
             "median_us": hand_step_us(b) * f, "iqr_us": 0.0, "noisy": False} for b, f in factors.items()]
    stated = Uncertain("m", ("1/memory.efficiency",), "lognormal", "t", relative=True, median=1.0, sigma=0.10)
    plan = v.LayerPlan(spec.n_layers, (spec.n_layers,), "")
    table = v.compare(spec, rows, plan, 1, {"calibrated": _with(base, stated),
                                             "published": _with(base, dataclasses.replace(stated, sigma=0.01))})
    assert [r["calibrated_covered"] for r in table] == [True, True, False, False]
    assert v.coverage(table, "calibrated_covered") == (2, 4)
    assert v.coverage(table, "published_covered") == (0, 4)
    for r in table:
        point = hand_step_us(r["batch"])
        assert r["calibrated_step_us"] == pytest.approx(point, rel=1e-3)
        # 200 seeded draws: each 5th/95th percentile within 3% of the exact lognormal one.
        assert r["calibrated_step_lo_us"] == pytest.approx(point * np.exp(-1.645 * 0.10), rel=0.03)
        assert r["calibrated_step_hi_us"] == pytest.approx(point * np.exp(1.645 * 0.10), rel=0.03)
    # The printed table shows each interval in ms.
    from inferecon.report.validation_table import validation_table

    text = validation_table(table[:1], ["calibrated"])
    r = table[0]
    assert "90% interval" in text
    assert f"{r['calibrated_step_lo_us'] / 1e3:.2f}-{r['calibrated_step_hi_us'] / 1e3:.2f}" in text
    # The plot: one point per case and profile, and a legend naming the hand figures. MAPE of
    # predicted vs measured by hand: |1/1.10 - 1|, |1/0.92 - 1|, |1/1.30 - 1|, |1/0.75 - 1| =
    # 9.09, 8.70, 23.08, 33.33% -> 18.55%.
    v.plot(table, ["calibrated", "published"], tmp_path / "v.png", "hand-placed")
    (fig,) = saved_figures
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "calibrated 90% interval (2 of 4 cover y = x)" in labels
    assert "published 90% interval (0 of 4 cover y = x)" in labels
    (cal,) = [t for t in labels if t.startswith("calibrated (MAPE")]
    assert float(cal.split("MAPE ")[1].split("%")[0]) == pytest.approx(18.55, abs=0.2)
    scatters = [c for c in ax.collections if type(c).__name__ == "PathCollection"]
    assert [len(c.get_offsets()) for c in scatters] == [4, 4]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert (tmp_path / "v.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_network_from_operators_files_replaces_only_the_collective_range():
    # An nccl-tests table fitted into an H100 profile: the collective-time entry now comes from
    # that fit's held-out error; the FLOP/s, HBM and launch ranges stay the published ones.
    from inferecon.calibration.build_files import profile_from_files

    res = profile_from_files(["tests/fixtures/ingest/synthetic_all_reduce_perf_8xh100.txt"], [], "h100-sxm")
    by_name = {e["name"]: e for e in res.profile.uncertainty}
    assert set(by_name) == {"FLOP/s efficiency", "HBM bandwidth efficiency", "kernel launch", "collective time"}
    net = by_name["collective time"]
    assert net["dist"] == "lognormal" and "held-out" in net["source"]
    held = [r.heldout_mape for r in res.fits if r.term.startswith("network:")]
    assert len(held) == 1 and f"RMS {100 * held[0]:.1f}%" in net["source"] and net["sigma"] > 0
    assert by_name["HBM bandwidth efficiency"] == next(e for e in H100.uncertainty if e["name"] == "HBM bandwidth efficiency")


def test_a_held_out_error_becomes_a_lognormal_spread():
    # A held-out MAPE of 20%: normal errors with that MAPE have sd 0.20 x sqrt(pi/2) = 0.2507,
    # and the lognormal multiplier's sigma is ln(1.2507) = 0.2237; its 90% interval is
    # exp(+-1.645 x 0.2237) = [0.692, 1.445].
    from inferecon.model.uncertain import MAPE_TO_SD, relative_sd_entry

    u = relative_sd_entry("t", ("network.time_scale",), 0.20 * MAPE_TO_SD, "test")
    assert u.sigma == pytest.approx(0.2237, abs=1e-4)
    lo, _, hi = quantiles(u.draw(100_000, np.random.default_rng(1)))
    assert lo == pytest.approx(0.692, rel=0.01) and hi == pytest.approx(1.445, rel=0.01)


def test_each_entry_describes_its_90_percent_range_and_source(capsys):
    from inferecon.cli import main
    from inferecon.report.calibration_table import calibration_table
    from inferecon.model.uncertain import MAPE_TO_SD, relative_sd_entry

    # Same hand figures as above: held-out 20% -> x0.692 to x1.4448 of the term's time (3 digits).
    u = relative_sd_entry("memory bandwidth", ("1/memory.efficiency",), 0.20 * MAPE_TO_SD, "run r: held-out 20%")
    assert u.describe() == "memory bandwidth: x time 0.692-1.44 (lognormal, 90%); run r: held-out 20%"
    assert main(["specs"]) == 0
    # The published H100's band: BabelStream's 0.70-0.87, widened to hold its adopted 0.833 ± 0.05.
    out = capsys.readouterr().out
    assert "HBM bandwidth efficiency: memory.efficiency 0.7-0.883 (uniform); BabelStream" in out
    assert "widened to hold the adopted 0.833 +/- 0.05" in out
    res = profile_from_tables(_manifest(), {"memory": _memory_table(0.05, seed=1)}, run_id="d")
    text = calibration_table(res)
    assert "uncertainty (drawn for every band and interval):" in text
    # Launch was not measured: the published H100's band stays, its 2.53 µs decode GEMM intercept
    # (aiconfigurator-core 0.12.0) / 1.5 = 1.69 µs (rounded) to x 1.5 = 3.795 µs.
    assert "memory bandwidth: x time" in text and "kernel launch: latency.kernel_launch_us 1.69-3.795 (uniform)" in text


def test_fitted_engine_overhead_with_a_standard_error_widens_the_step_by_hand():
    # Nothing in the hardware profile is uncertain; the engine's per-step overhead was fitted as
    # 500 ± 100 µs (its other parameters fixed). The step is the hardware step + 500 µs, and its
    # 90% interval is that ± 1.645 x 100 µs = ± 164.5 µs.
    from inferecon.model.engine import EngineProfile

    hw = _with(H100)
    engine = EngineProfile(name="e", step_overhead_us=500.0, fit_quality={"parameters": {
        "step_overhead_us": {"value": 500.0, "stderr": 100.0, "fitted": True},
        "per_layer_us": {"value": 0.0, "stderr": None, "fitted": False}}})
    m = get_model("llama-3-8b")
    bare = predict(m, hw, tp=1, batch=4, context=1024, draws=0).t_step_ms
    r = predict(m, hw, tp=1, batch=4, context=1024, engine=engine, draws=20000)
    assert r.interval_draws == 20000 and r.t_step_ms == pytest.approx(bare + 0.5)
    assert r.t_step_ms_lo == pytest.approx(bare + 0.5 - 0.1645, abs=0.004)
    assert r.t_step_ms_hi == pytest.approx(bare + 0.5 + 0.1645, abs=0.004)
    # Without a standard error the engine adds no spread (and here nothing else does).
    fixed = EngineProfile(name="e", step_overhead_us=500.0)
    assert predict(m, hw, tp=1, batch=4, context=1024, engine=fixed).interval_draws is None
