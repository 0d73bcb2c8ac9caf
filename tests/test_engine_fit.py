"""The engine-profile fit: runs made with a known engine profile give that profile back, a
parameter the runs cannot separate keeps its published value and says why, and the held-out
error is of runs left out of the fit. Plus the EngineProfile file and run -> deployment rules."""

import json

import numpy as np
import pytest

from inferecon.calibration.engine_fit import (
    EngineCase,
    catalog_model_for,
    fit_engine_profile,
    predict_case,
    resolve_cases,
    score_engine_runs,
)
from inferecon.ingest.engine_results import EngineRun, read_engine_results
from inferecon.model.published import get_profile
from inferecon.core.errors import UserError
from inferecon.model.catalog import get_model
from inferecon.model.engine import ENGINE_SCHEMA_VERSION, EngineProfile

H100 = get_profile("h100-sxm")
TRUTH = EngineProfile("truth", step_overhead_us=300.0, per_layer_us=4.0, per_sequence_us=20.0,
                      weight_read_efficiency={"8": 0.7, "4": 0.45})


def synthetic(models_tp, bits_list, batches, truth=TRUTH, noise=0.0, seed=0):
    """Runs whose per-token time is what the cost model gives with `truth` (times 1 + noise)."""
    rng = np.random.default_rng(seed)
    cases = []
    for name, tp in models_tp:
        for bits in bits_list:
            for b in batches:
                model = get_model(name).with_precision(bits, 16)
                probe = EngineCase(EngineRun("x", "vllm", "vllm", b, "x", 1000, 200, 1.0, "x"), model, H100, tp)
                t = predict_case(probe, truth).ms_per_token * (1.0 + noise * rng.standard_normal())
                run = EngineRun(f"{name}-{bits}-{b}", "vllm", "vllm", b, "max_concurrency", 1000, 200, t, "median_tpot_ms")
                cases.append(EngineCase(run, model, H100, tp))
    return cases


def test_fit_recovers_a_known_profile():
    cases = synthetic([("llama-3-8b", 1), ("llama-3-70b", 4), ("qwen3-32b", 2)], (16, 8, 4), (1, 16))
    fit = fit_engine_profile(cases)
    p = fit.profile
    assert p.step_overhead_us == pytest.approx(300.0, rel=1e-6)
    assert p.per_layer_us == pytest.approx(4.0, rel=1e-6)
    assert p.per_sequence_us == pytest.approx(20.0, rel=1e-6)
    assert p.weight_efficiency(8) == pytest.approx(0.7, rel=1e-6)
    assert p.weight_efficiency(4) == pytest.approx(0.45, rel=1e-6)
    assert p.weight_efficiency(16) == pytest.approx(1.0, rel=1e-6)
    assert all(q.fitted for q in fit.params)
    assert fit.mape_hardware_pct > 10.0  # the hardware profile alone misses these runs …
    assert fit.mape_heldout_pct < 1e-6  # … the fitted one predicts runs it never saw
    assert p.name == "vllm" and p.hardware == "h100-sxm"


def test_noisy_runs_give_a_close_profile_and_an_honest_heldout_error():
    cases = synthetic([("llama-3-8b", 1), ("llama-3-70b", 4), ("qwen3-32b", 2)], (16, 8, 4), (1, 8, 32),
                      noise=0.02, seed=1)
    fit = fit_engine_profile(cases)
    assert fit.profile.weight_efficiency(8) == pytest.approx(0.7, abs=0.07)
    assert fit.profile.weight_efficiency(4) == pytest.approx(0.45, abs=0.05)
    # 2% noise per run: fitted and held-out errors are of that size, and held out is not better.
    assert 0.5 < fit.mape_fitted_pct < 4.0
    assert fit.mape_fitted_pct <= fit.mape_heldout_pct < 6.0
    assert all(p.stderr is not None and p.stderr > 0 for p in fit.params if p.fitted)


def test_one_model_one_tp_fits_only_the_step_overhead_and_says_why():
    truth = EngineProfile("t", step_overhead_us=250.0)
    cases = synthetic([("llama-3-8b", 1)], (16,), (1, 4, 16, 64), truth=truth)
    fit = fit_engine_profile(cases)
    by = {p.name: p for p in fit.params}
    assert by["step_overhead_us"].fitted and by["step_overhead_us"].value == pytest.approx(250.0, rel=1e-6)
    assert not by["weight_read_efficiency[16]"].fitted and by["weight_read_efficiency[16]"].value == 1.0
    assert "same weight bytes per step" in by["weight_read_efficiency[16]"].note
    assert not by["per_layer_us"].fitted and "every run has 32 layers" in by["per_layer_us"].note
    assert fit.profile.weight_read_efficiency == {} and fit.profile.per_layer_us == 0.0
    assert any("published value" in n for n in fit.profile.notes)


def test_runs_of_one_concurrency_keep_no_per_sequence_time_and_say_why():
    """Three models at batch 8 only: a per-sequence time adds the same 8 x t to every run, the
    per-step overhead's column, so it is not fitted and the note names the batch."""
    truth = EngineProfile("t", step_overhead_us=250.0)
    fit = fit_engine_profile(synthetic([("llama-3-8b", 1), ("llama-3-70b", 4), ("qwen3-32b", 2)], (16,), (8,),
                                       truth=truth))
    by = {p.name: p for p in fit.params}
    assert not by["per_sequence_us"].fitted and fit.profile.per_sequence_us == 0.0
    assert "every run decodes 8 sequence(s) a step" in by["per_sequence_us"].note
    assert by["step_overhead_us"].value == pytest.approx(250.0, rel=1e-6)


def test_a_single_run_fits_nothing_and_has_no_heldout_error():
    fit = fit_engine_profile(synthetic([("llama-3-8b", 1)], (16,), (1,)))
    assert not any(p.fitted for p in fit.params)
    assert fit.mape_heldout_pct is None and fit.rows[0]["heldout_ms"] is None
    assert "1 run(s) support at most 0" in fit.params[0].note


def test_heldout_prediction_is_made_without_its_run():
    # Four runs made with a 200 µs step overhead and a fifth measured 1.2x slower than that:
    # fitted to the other four, the fifth's held-out prediction is exactly the 200 µs one.
    cases = synthetic([("llama-3-8b", 1)], (16,), (1, 2, 4, 8, 16), truth=EngineProfile("t", step_overhead_us=200.0))
    odd = cases[2]
    cases[2] = EngineCase(EngineRun(odd.run.source, "vllm", "vllm", odd.run.concurrency, "x", 1000, 200,
                                    odd.measured_ms * 1.2, "x"), odd.model, H100, 1)
    fit = fit_engine_profile(cases)
    assert fit.rows[2]["heldout_error_pct"] == pytest.approx(100 * (1 / 1.2 - 1), rel=1e-6)
    assert fit.rows[2]["heldout_ms"] == pytest.approx(odd.measured_ms, rel=1e-9)


def test_engine_profile_json_round_trip_and_errors(tmp_path):
    fit = fit_engine_profile(synthetic([("llama-3-8b", 1), ("llama-3-70b", 4)], (16, 8), (1, 16)))
    path = fit.profile.save(tmp_path / "engine.json")
    back = EngineProfile.load(path)
    assert back == fit.profile and back.schema_version == ENGINE_SCHEMA_VERSION
    assert back.fit_quality["runs"] == 8 and "step_overhead_us" in back.fit_quality["parameters"]

    data = json.loads(path.read_text())
    for change, message in ((dict(schema_version=99), "schema_version 99"),
                            (dict(step_overhead_us=-1), "step_overhead_us must be a finite number >= 0"),
                            (dict(per_sequence_us=-5), "per_sequence_us must be a finite number >= 0"),
                            (dict(per_sequence_us="40"), "per_sequence_us must be a number"),
                            (dict(per_sequence_us=1e300), "per_sequence_us 1e\\+300 is above"),
                            (dict(weight_read_efficiency={"3": 0.5}), "key '3' is not one of 16, 8, 4"),
                            (dict(weight_read_efficiency={"8": 0}), r"weight_read_efficiency\[8\] must be > 0")):
        (tmp_path / "bad.json").write_text(json.dumps({**data, **change}))
        with pytest.raises(UserError, match=message):
            EngineProfile.load(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(UserError, match="not a JSON object"):
        EngineProfile.load(tmp_path / "list.json")


@pytest.mark.parametrize("model_id,name,bits", [
    ("meta-llama/Llama-3.1-8B-Instruct", "llama-3-8b", None),
    ("neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8", "llama-3-8b", 8),
    ("hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4", "llama-3-70b", 4),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b", None),
    ("Qwen/Qwen3-32B", "qwen3-32b", None),
    ("deepseek-ai/DeepSeek-R1", "deepseek-v3", None),
    ("someone/unknown-model-7b", None, None),
])
def test_recorded_model_ids_map_to_the_catalog(model_id, name, bits):
    spec, guessed = catalog_model_for(model_id)
    assert (spec.name if spec else None) == name and guessed == bits


def test_runs_resolve_from_what_the_files_record():
    notes = []
    runs = read_engine_results("tests/fixtures/engines/trtllm_bench_llama-3.1-70b_tp4_report.json")
    runs += read_engine_results("tests/fixtures/engines/trtllm_bench_llama-3.1-8b_fp8_streaming.txt")
    cases = resolve_cases(runs, tp=2, notes=notes)
    assert [(c.model.name, c.tp, c.model.weight_bits, c.model.kv_bits, c.hw.name) for c in cases] == [
        ("llama-3-70b", 4, 16, 16, "h100-sxm"), ("llama-3-8b", 1, 8, 8, "h100-sxm")]
    assert any("records TP 4; --tp 2 ignored" in n for n in notes)
    # Concurrency 7.93 -> batch 8; context 2048 + 512/2.
    assert (cases[0].batch, cases[0].context) == (8, 2304)
    rows = score_engine_runs(cases)
    assert rows[0]["measured_ms"] == 14.21 and rows[0]["error_pct"] == pytest.approx(
        100 * (rows[0]["predicted_ms"] - 14.21) / 14.21)


def test_runs_that_lack_model_tp_or_gpu_say_which_flag_to_pass():
    sglang = read_engine_results("tests/fixtures/engines/sglang_bench_serving.jsonl")
    with pytest.raises(UserError, match="records no model; pass --model"):
        resolve_cases(sglang, hardware=H100, tp=1)
    with pytest.raises(UserError, match="records no tensor-parallel size; pass --tp"):
        resolve_cases(sglang, model="llama-3-8b", hardware=H100)
    with pytest.raises(UserError, match="records no GPU; pass --gpu or --hardware"):
        resolve_cases(sglang, model="llama-3-8b", tp=1)
    cases = resolve_cases(sglang, model="llama-3-8b", hardware=H100, tp=1, weight_bits=8)
    assert [c.batch for c in cases] == [1, 4, 16] and all(c.model.weight_bits == 8 for c in cases)


def test_heldout_pass_can_be_skipped_without_changing_the_profile():
    cases = synthetic([("llama-3-8b", 1), ("llama-3-70b", 4)], (16, 8), (1, 16))
    with_loo, without = fit_engine_profile(cases), fit_engine_profile(cases, heldout=False)
    assert without.profile.step_overhead_us == with_loo.profile.step_overhead_us
    assert without.profile.weight_read_efficiency == with_loo.profile.weight_read_efficiency
    assert without.mape_heldout_pct is None and all(r["heldout_ms"] is None for r in without.rows)
    assert with_loo.mape_heldout_pct is not None


def test_a_quantised_model_id_sets_the_weight_bits_even_with_model_given():
    run = EngineRun("r", "vllm", "vllm", 8, "max_concurrency", 1000, 100, 7.0, "median_tpot_ms",
                    model="neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8", tp=1)
    (case,) = resolve_cases([run], model="llama-3-8b", hardware=H100)
    assert case.model.weight_bits == 8
    (case,) = resolve_cases([run], model="llama-3-8b", hardware=H100, weight_bits=16)
    assert case.model.weight_bits == 16



def test_engine_parameters_are_typed_keys_and_draws_are_profiles():
    from inferecon.model.engine import EngineParam
    from inferecon.model.uncertainty import draw_engine

    p = EngineParam.from_key("weight_read_efficiency[8]")
    assert (p.kind, p.bits, p.key) == ("weight_read_efficiency", 8, "weight_read_efficiency[8]")
    with pytest.raises(UserError, match="not one of 16, 8, 4"):
        EngineParam.efficiency(3)
    eng = EngineProfile("e", step_overhead_us=500.0, weight_read_efficiency={"8": 0.7},
                        fit_quality={"parameters": {"step_overhead_us": {"value": 500.0, "stderr": 100.0, "fitted": True}}})
    drawn = draw_engine(eng, draws=3, seed=0, rows=2)
    # A real EngineProfile: 3 draws of the overhead, each repeated over the 2 configurations;
    # the efficiency without a standard error stays the profile's number.
    assert isinstance(drawn, EngineProfile) and drawn.step_overhead_us.shape == (6,)
    assert np.array_equal(drawn.step_overhead_us[::2], drawn.step_overhead_us[1::2])
    assert drawn.weight_efficiency(8) == 0.7 and eng.step_overhead_us == 500.0
