"""Real vLLM result files (tests/fixtures/engines/vllm_real/: written by vLLM's CPU build in a
run of scripts/vllm_cpu_loop.sh, see the README there) still read, and still predict as they
did when they were committed.

Where the expected values come from (none is the code under test restated):
- measured ms per output token: vLLM's own `median_tpot_ms` field, read here with `json`;
- the run's shape (concurrency, prompts, lengths): the bench command in the README, and the
  same fields of vLLM's JSON;
- predicted ms per output token: the table `inferecon validate --engine-results` wrote at
  the time (engine_validation-<dtype>.csv, committed beside the files). A change of the cost
  model moves these on purpose; the test then names every run that moved and by how much, so
  the table is regenerated deliberately (the README's command), never silently.
- the model's parameter count: a hand count of the tiny Llama's shapes (below).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from inferecon.core.errors import UserError

REAL = Path(__file__).parent / "fixtures" / "engines" / "vllm_real"
# Each committed loop: the folder of its real files, model, profile and tables (README there).
# 20261201: run 1, an AVX2-only EPYC, the profile of that day's calibration (GEMM fit only);
# 20261202: run 3, an AVX-512-BF16 EPYC, the profile `vllm_cpu_loop.sh --reuse` calibrated
# with op-level fits (kernels/cpu_ops.py), so its predictions go through model/ops.py.
# 20261202-2: run 4, the same CPU kind as run 3, the loop's own calibration, with the null models
# (vLLM's own work per step and per layer, measured apart from the runs it predicts).
# 20261202-3: run 5, the same loop with PIN=1 (the worker alone on core 1, the server's other
# processes and the bench client on core 0, the calibration on core 1): the contention test.
# 20261202-4: run 6, PIN=1, the calibration timing vLLM's own kernels, once on each core, merged.
RUNS = {"20261201": REAL, "20261202": REAL / "20261202", "20261202-2": REAL / "20261202-2",
        "20261202-3": REAL / "20261202-3", "20261202-4": REAL / "20261202-4", "20261202-5": REAL / "20261202-5"}
# 20261202-5: run 7, as run 6 plus the weight-heavy null model (nullw: the served model's weight
# bytes a layer at hidden 64).
RESULTS = Path(__file__).parent.parent / "results"
DTYPES = {"bf16": (16, 16), "fp32": (32, 32)}  # (weight bits, KV bits) vLLM ran with
CONCURRENCY = (1, 2, 4, 8)
# A prediction may move this much (relative) before the committed table counts as stale:
# float summation order and numpy versions move the 4th digit, a model change moves the 2nd.
PREDICTED_TOLERANCE = 0.01


def _files(dtype: str, run: str = "20261201") -> list[Path]:
    return sorted((RUNS[run] / dtype).glob("*.json"))


def _committed_table(dtype: str, run: str = "20261201") -> dict[str, dict]:
    with open(RUNS[run] / f"engine_validation-{dtype}.csv", newline="") as f:
        return {Path(r["source"]).name: r for r in csv.DictReader(f)}


def _cases(dtype: str, run: str = "20261201"):
    from inferecon.calibration.engine_fit import load_cases

    wb, kb = DTYPES[dtype]
    return load_cases([str(p) for p in _files(dtype, run)], model=str(RUNS[run] / "model"),
                      hardware_path=str(RUNS[run] / "profile.json"), tp=1, weight_bits=wb, kv_bits=kb)


@pytest.mark.parametrize("run", sorted(RUNS))
def test_every_real_file_is_there(run):
    for dtype in DTYPES:
        names = sorted(p.name for p in _files(dtype, run))
        assert names == sorted(f"vllm-{dtype}-c{c}.json" for c in CONCURRENCY), (dtype, names)


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_reader_takes_what_vllm_wrote(dtype, run):
    from inferecon.ingest.engine_results import read_engine_results

    for path in _files(dtype, run):
        raw = json.loads(path.read_text())
        runs = read_engine_results(path)
        assert len(runs) == 1, path
        run = runs[0]
        assert run.engine == "vllm"
        # The bench command ran --max-concurrency c with 2 c prompts of 128 in, 64 out.
        c = int(path.stem.rsplit("-c", 1)[1])
        assert run.concurrency == c == raw["max_concurrency"]
        assert raw["num_prompts"] == 2 * c and raw["completed"] == 2 * c
        assert run.input_len == 128 and run.output_len == 64
        # The reader takes vLLM's median TPOT (the mean is pulled by the first, prefill-laden step).
        assert run.tpot_metric == "median_tpot_ms"
        assert run.tpot_ms == pytest.approx(raw["median_tpot_ms"], rel=1e-12), path.name


def test_model_folder_is_a_model():
    from inferecon.model.catalog import resolve_model

    spec = resolve_model(str(REAL / "model"))  # a folder holding config.json
    # Hand count without norms (inferecon leaves them out): per layer q 1024x1024 + k, v
    # 2 x 256x1024 + o 1024x1024 = 2,621,440 and MLP 3 x 1024x4096 = 12,582,912, so
    # 15,204,352 x 8 layers = 121,634,816; embeddings and lm head 2 x 16384x1024 = 33,554,432.
    assert spec.total_params == 155_189_248
    assert (spec.n_layers, spec.d_model, spec.n_heads, spec.n_kv_heads, spec.d_ff) == (8, 1024, 8, 2, 4096)


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_predictions_match_the_committed_table(dtype, run):
    from inferecon.calibration.engine_fit import score_engine_runs

    table = _committed_table(dtype, run)
    rows = score_engine_runs(_cases(dtype, run))
    assert sorted(Path(r["source"]).name for r in rows) == sorted(table)
    moved = []
    for r in rows:
        was = table[Path(r["source"]).name]
        assert r["measured_ms"] == pytest.approx(float(was["measured_ms"]), rel=1e-9)
        then, now = float(was["predicted_ms"]), r["predicted_ms"]
        if abs(now - then) > PREDICTED_TOLERANCE * then:
            moved.append(f"{Path(r['source']).name}: predicted {then:.3f} ms then, {now:.3f} ms now "
                         f"({100 * (now - then) / then:+.1f}%)")
    assert not moved, (f"{dtype}: the model's predictions of the real vLLM runs moved more than "
                       f"{100 * PREDICTED_TOLERANCE:g}% since the table was committed (regenerate "
                       f"{RUNS[run] / f'engine_validation-{dtype}.csv'} with the README's "
                       "command if the change is meant):\n" + "\n".join(moved))


def test_run3_fixtures_are_the_committed_results():
    """The run-3 fixtures are byte copies of results/vllm-cpu-20261202/ (the real files vLLM
    wrote, the model config, the re-run's profile and tables): what the results README quotes is
    what this test recomputes."""
    res = RESULTS / "vllm-cpu-20261202"
    reruns = sorted(res.glob("rerun-*/calibrate/profile.json"))
    if not reruns:
        pytest.skip("results/vllm-cpu-20261202/ not in this checkout")
    fix = RUNS["20261202"]
    for dtype in DTYPES:
        for path in _files(dtype, "20261202"):
            assert path.read_bytes() == (res / "vllm" / dtype / path.name).read_bytes(), path.name
    assert (fix / "model" / "config.json").read_bytes() == (res / "model" / "config.json").read_bytes()
    rerun = reruns[-1].parent.parent
    assert (fix / "profile.json").read_bytes() == (rerun / "calibrate" / "profile.json").read_bytes()
    for dtype in DTYPES:
        assert (fix / f"engine_validation-{dtype}.csv").read_bytes() == \
            (rerun / f"validate-{dtype}" / "engine_validation.csv").read_bytes()


def test_run3_profile_prices_the_ops_vllm_ran():
    """The run-3 profile carries op-level fits of the kernels vLLM's CPU worker runs: oneDNN on
    prepacked weights in bf16 and fp32, decode attention per KV dtype, an elementwise time per
    layer, timed with the one torch thread vLLM's worker logged (logs/serve-*.log there:
    "Reducing Torch threads from 2 to 1")."""
    from inferecon.model.hardware import HardwareProfile

    prof = HardwareProfile.load(RUNS["20261202"] / "profile.json")
    fits = prof.op_fits
    assert {g.dtype for g in fits.gemm} == {"bf16", "fp32"} and {a.kv_dtype for a in fits.attention} == {"bf16", "fp32"}
    assert all(g.kernels == {"onednn_prepacked": 1.0} for g in fits.gemm)
    assert all(g.quality.folds == 5 and g.quality.heldout_mape is not None for g in fits.gemm)
    assert fits.elementwise_per_layer_us is not None and prof.provenance.versions["cpu_threads"] == "1"
    # The vLLM step on this CPU is fp32 weight-bound at batch 1: 4 bytes x 138,412,032 GEMM
    # weights (hand count in tests/test_cpu_ops.py) read at the fit's bandwidth, within its
    # intercepts (33 GEMMs) and the attention and elementwise times, is the predicted step.
    fp32 = next(g for g in fits.gemm if g.dtype == "fp32")
    weights_s = 4 * 138_412_032 / (fp32.gbps * 1e9)
    row = {Path(r["source"]).name: r for r in csv.DictReader(open(RUNS["20261202"] / "engine_validation-fp32.csv"))}
    predicted_s = float(row["vllm-fp32-c1.json"]["predicted_ms"]) * 1e-3
    assert weights_s < predicted_s < weights_s + 33 * fp32.t0_us * 1e-6 + 8 * 1e-3


def test_fp32_runs_need_a_cpu_profile():
    from inferecon.calibration.engine_fit import load_cases

    with pytest.raises(UserError, match="32-bit weights or KV cache are CPU runs"):
        load_cases([str(_files("fp32")[0])], model=str(REAL / "model"), gpu="h100-sxm", tp=1,
                   weight_bits=32, kv_bits=32)


def test_a_profile_without_uncertainty_gives_no_band():
    """An older CPU profile saved without uncertainty entries is still compared (no interval,
    no coverage), not a TypeError."""
    from inferecon.calibration.engine_fit import load_cases, score_engine_runs

    old = Path(__file__).parent / "fixtures" / "validate" / "cpu_profile.json"
    cases = load_cases([str(p) for p in _files("fp32")], model=str(REAL / "model"), hardware_path=str(old),
                       tp=1, weight_bits=32, kv_bits=32)
    rows = score_engine_runs(cases, draws=20)
    assert len(rows) == 4 and all("covered" not in r for r in rows)


# -- run 4: the engine's own cost measured on null models ------------------------------------------
NULLS = {"null": 1, "null8": 8}  # the null models' folders and their layer counts (hand-built, README)


NULL_RUNS = ("20261202-2", "20261202-3", "20261202-4", "20261202-5")  # the loops with null models


@pytest.mark.parametrize("run", NULL_RUNS)
def test_null_run_fixtures_are_the_committed_results(run):
    """Byte copies of results/vllm-cpu-<run>/: vLLM's files, the configs, the loop's own
    calibration and tables, the null-model engine profiles."""
    res, fixture = RESULTS / f"vllm-cpu-{run}", RUNS[run]
    if not (res / "calibrate" / "profile.json").exists():
        pytest.skip(f"results/vllm-cpu-{run}/ not in this checkout")
    pairs = [(fixture / "profile.json", res / "calibrate" / "profile.json")]
    for d in ("model", "null-model", "null8-model"):
        pairs.append((fixture / d / "config.json", res / d / "config.json"))
    for dtype in DTYPES:
        for sub in [dtype] + [f"{n}-{dtype}" for n in NULLS]:
            files = sorted((fixture / sub).glob("*.json"))
            assert files, sub
            pairs += [(f, res / "vllm" / sub / f.name) for f in files]
        pairs.append((fixture / f"engine_validation-{dtype}.csv", res / f"validate-{dtype}" / "engine_validation.csv"))
        pairs.append((fixture / f"engine-null-{dtype}.json", res / f"engine-null-{dtype}" / "engine.json"))
        pairs.append((fixture / f"engine_validation-{dtype}-engine-null.csv",
                      res / f"validate-{dtype}-engine-null" / "engine_validation.csv"))
    for fix, real in pairs:
        assert fix.read_bytes() == real.read_bytes(), fix.name


def test_run5_was_pinned():
    """Run 5 ran with PIN=1: its manifest says so, and vLLM's own start-up log (copied in the
    fixture) bound the worker to core 1 rather than choosing ('auto')."""
    manifest = json.loads((RUNS["20261202-3"] / "manifest.json").read_text())
    assert manifest["pin"] == {"enabled": True, "worker_core": 1, "other_cores": "0"}
    benches = [r for r in manifest["commands"] if r["phase"].startswith("bench-")]
    assert benches and all(r["command"].startswith("taskset -c 0 ") for r in benches)
    cal = [r for r in manifest["commands"] if r["phase"] == "calibrate"]
    assert cal and cal[0]["command"].startswith("taskset -c 1 ")
    bind = (RUNS["20261202-3"] / "omp-binding.txt").read_text()
    assert "VLLM_CPU_OMP_THREADS_BIND='1'" in bind and "core ids=[1]" in bind


@pytest.mark.parametrize("run", NULL_RUNS)
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_null_models_are_what_the_readme_says(dtype, run):
    """The null models keep the served model's vocabulary and differ in size only: hidden 64,
    one head of 64, SwiGLU 256, 1 or 8 layers; their files are vLLM's bench of them at
    concurrency 1, 2, 4, 8 with two prompt sets (seeds 0 and 1)."""
    from inferecon.model.catalog import resolve_model

    fixture = RUNS[run]
    served = json.loads((fixture / "model" / "config.json").read_text())
    for null, layers in NULLS.items():
        cfg = json.loads((fixture / f"{null}-model" / "config.json").read_text())
        assert (cfg["vocab_size"], cfg["max_position_embeddings"]) == (served["vocab_size"], 2048)
        assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["intermediate_size"]) \
            == (64, layers, 1, 256)
        # Hand count without norms: per layer 4 x 64x64 + 3 x 64x256 = 65,536, embeddings and
        # lm head 2 x 16384x64 = 2,097,152.
        assert resolve_model(str(fixture / f"{null}-model")).total_params == 2_097_152 + layers * 65_536
        names = sorted(p.name for p in (fixture / f"{null}-{dtype}").glob("*.json"))
        assert names == sorted(f"vllm-{null}-{dtype}-c{c}-s{s}.json" for c in CONCURRENCY for s in (0, 1))


@pytest.mark.parametrize("run", NULL_RUNS)
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_null_engine_predictions_match_the_committed_table(dtype, run):
    """The model's runs with the null-model engine profile: the same predicted ms and 90%
    interval as the table the loop wrote (the interval widened by the engine profile's own
    standard errors, commands/validate.py)."""
    from inferecon.calibration.engine_fit import score_engine_runs
    from inferecon.model.engine import EngineProfile
    from inferecon.validation.decode import DEFAULT_DRAWS

    engine = EngineProfile.load(RUNS[run] / f"engine-null-{dtype}.json")
    assert engine.fit_quality["parameters"]["step_overhead_us"]["stderr"] > 0
    with open(RUNS[run] / f"engine_validation-{dtype}-engine-null.csv", newline="") as f:
        table = {Path(r["source"]).name: r for r in csv.DictReader(f)}
    rows = score_engine_runs(_cases(dtype, run), engine, draws=DEFAULT_DRAWS)
    for r in rows:
        was = table[Path(r["source"]).name]
        for now, then in ((r["predicted_ms"], "engine_ms"), (r["predicted_lo_ms"], "engine_lo_ms"),
                          (r["predicted_hi_ms"], "engine_hi_ms")):
            assert now == pytest.approx(float(was[then]), rel=PREDICTED_TOLERANCE), (r["source"], then)
        # The engine's stated uncertainty widens the band beyond the hardware profile's own.
        assert float(was["engine_hi_ms"]) - float(was["engine_lo_ms"]) > \
            float(was["predicted_hi_ms"]) - float(was["predicted_lo_ms"])


# -- run 6: one calibration on each core, merged (scripts/vllm_cpu_loop.py merge-cores) -----------
def _loop_helper():
    import importlib.util

    spec = importlib.util.spec_from_file_location("vllm_cpu_loop", Path(__file__).parents[1] / "scripts" / "vllm_cpu_loop.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_merge_cores_averages_the_fits_and_states_their_spread(tmp_path):
    """Two calibrations whose every op time differs by 1.2x (a slower core: intercepts x 1.2,
    rates / 1.2): the merged fit is their geometric mean, and the spread entry's sigma is
    sd(ln t) x sqrt(1 + 1/n) = (ln 1.2 / sqrt 2) x sqrt(1.5) = 0.15790 (hand: ln 1.2 = 0.182322)."""
    import math

    base = json.loads((RUNS["20261202-3"] / "profile.json").read_text())
    slow = json.loads(json.dumps(base))
    for fam, fields in (("gemm", ("t0_us",)), ("attention", ("floor_us", "per_sequence_head_us"))):
        for f in slow["op_fits"][fam]:
            for k in fields:
                f[k] *= 1.2
            f["tflops"] /= 1.2
            f["gbps"] /= 1.2
    paths = [tmp_path / "core1.json", tmp_path / "core0.json"]
    paths[0].write_text(json.dumps(slow))
    paths[1].write_text(json.dumps(base))
    _loop_helper().merge_cores(tmp_path / "merged", paths)
    merged = json.loads((tmp_path / "merged" / "profile.json").read_text())
    g0, gm = base["op_fits"]["gemm"][0], merged["op_fits"]["gemm"][0]
    assert gm["gbps"] == pytest.approx(g0["gbps"] / math.sqrt(1.2), rel=1e-9)
    assert gm["t0_us"] == pytest.approx(g0["t0_us"] * math.sqrt(1.2), rel=1e-9)
    spread = [u for u in merged["uncertainty"] if u["name"].endswith("core to core")]
    assert len(spread) == len(base["op_fits"]["gemm"]) + len(base["op_fits"]["attention"])
    assert all(u["sigma"] == pytest.approx(0.182322 / math.sqrt(2) * math.sqrt(1.5), rel=1e-5) for u in spread)
    # It moves the same fields as the fit's own k-fold entry, and the profile still loads.
    from inferecon.model.hardware import HardwareProfile

    assert set(spread[0]["paths"]) == {"op_fits.gemm.0.t0_us", "1/op_fits.gemm.0.tflops", "1/op_fits.gemm.0.gbps"}
    assert HardwareProfile.load(tmp_path / "merged" / "profile.json").op_fits.gemm[0].gbps == pytest.approx(gm["gbps"])


def test_run6_profile_times_vllms_kernels_on_each_core():
    """Run 6's calibration timed vLLM's own kernels (its `_C` extension loaded from the serving
    venv), once under `taskset -c 1` and once under `taskset -c 0`; the profile is their merge,
    with one core-to-core uncertainty entry per op fit (the manifest's commands, the profile)."""
    from inferecon.model.hardware import HardwareProfile

    fixture = RUNS["20261202-4"]
    manifest = json.loads((fixture / "manifest.json").read_text())
    cal = {r["phase"]: r["command"] for r in manifest["commands"] if r["phase"].startswith("calibrate-core")}
    assert sorted(cal) == ["calibrate-core0", "calibrate-core1"]
    for phase, cmd in cal.items():
        assert "INFERECON_VLLM_CPU_LIB=" in cmd and "/site-packages/vllm " in cmd
        assert f"taskset -c {phase[-1]} " in cmd and "--threads 1" in cmd
    prof = HardwareProfile.load(fixture / "profile.json")
    assert all(g.kernels == {"vllm_onednn_mm": 1.0} for g in prof.op_fits.gemm)
    assert all(a.kernels == {"vllm_cpu_attention_vec": 1.0} for a in prof.op_fits.attention)
    spread = [u for u in json.loads((fixture / "profile.json").read_text())["uncertainty"]
              if u["name"].endswith("core to core")]
    assert len(spread) == 4 and all(0 < u["sigma"] < 0.1 for u in spread)


@pytest.mark.parametrize("concurrency, profiled_ms", [(1, 10.20), (8, 14.00)])
def test_run6_gemm_fit_prices_the_gemms_vllm_ran(concurrency, profiled_ms):
    """vLLM's torch profiler timed its worker's `_C::onednn_mm` calls inside the server
    (scripts/vllm_profile.sh, bf16, the summaries copied as worker-profile-bf16-c<C>.json):
    10.20 ms a decode step at concurrency 1, 14.00 at 8 (README of results/vllm-cpu-20261202-4).
    The calibration's bf16 GEMM fit, over the same calls (8 layers of qkv 1536x1024, o 1024x1024,
    gate_up 8192x1024, down 1024x4096, and the 16384x1024 lm head, at M = concurrency), is
    within 5% of that."""
    from inferecon.model.hardware import HardwareProfile

    fixture = RUNS["20261202-4"]
    steps = json.loads((fixture / f"worker-profile-bf16-c{concurrency}.json").read_text())["decode_steps"]
    rows = steps[str(concurrency)]["rows_us_median"]
    assert sum(v for k, v in rows.items() if k.startswith("gemm ")) / 1e3 == pytest.approx(profiled_ms, abs=0.005)
    g = next(f for f in HardwareProfile.load(fixture / "profile.json").op_fits.gemm if f.dtype == "bf16")
    m, total_us = concurrency, 0.0
    for n, k, count in ((1536, 1024, 8), (1024, 1024, 8), (8192, 1024, 8), (1024, 4096, 8), (16384, 1024, 1)):
        nbytes = 2 * (n * k + m * k + m * n)
        total_us += count * (g.t0_us + max(2 * m * n * k / (g.tflops * 1e6), nbytes / (g.gbps * 1e3)))
    assert total_us / 1e3 == pytest.approx(profiled_ms, rel=0.05)


def test_run7_weight_heavy_null_model_is_what_the_readme_says():
    """The weight-heavy null model: the 8-layer null model with SwiGLU 79,104, so a layer holds
    4 x 64x64 + 3 x 64 x 79,104 = 15,204,352 weights (the served model: 2,621,440 + 12,582,912 =
    15,204,352, hand counts in scripts/vllm_cpu_loop.py); 8 of them plus the embeddings and lm
    head 2 x 16384 x 64 = 2,097,152, norms aside. Its files: concurrency 1, 2, 4, 8, seeds 0, 1."""
    from inferecon.model.catalog import resolve_model

    fixture = RUNS["20261202-5"]
    cfg = json.loads((fixture / "nullw-model" / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["intermediate_size"]) \
        == (64, 8, 1, 79_104)
    assert 4 * 64 * 64 + 3 * 64 * 79_104 == 2_621_440 + 12_582_912
    assert resolve_model(str(fixture / "nullw-model")).total_params == 2_097_152 + 8 * 15_204_352
    for dtype in DTYPES:
        names = sorted(p.name for p in (fixture / f"nullw-{dtype}").glob("*.json"))
        assert names == sorted(f"vllm-nullw-{dtype}-c{c}-s{s}.json" for c in CONCURRENCY for s in (0, 1))


def test_run7_fixtures_are_the_committed_results():
    res, fixture = RESULTS / "vllm-cpu-20261202-5", RUNS["20261202-5"]
    if not (res / "calibrate" / "profile.json").exists():
        pytest.skip("results/vllm-cpu-20261202-5/ not in this checkout")
    pairs = [(fixture / "nullw-model" / "config.json", res / "nullw-model" / "config.json")]
    for dtype in DTYPES:
        pairs += [(f, res / "vllm" / f"nullw-{dtype}" / f.name) for f in sorted((fixture / f"nullw-{dtype}").glob("*.json"))]
        pairs.append((fixture / f"engine-nullw-{dtype}.json", res / f"engine-nullw-{dtype}" / "engine.json"))
        pairs.append((fixture / f"engine_validation-{dtype}-engine-nullw.csv",
                      res / f"validate-{dtype}-engine-nullw" / "engine_validation.csv"))
    for fix, real in pairs:
        assert fix.read_bytes() == real.read_bytes(), fix.name


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_run7_weight_heavy_engine_predictions_match_the_committed_table(dtype):
    from inferecon.calibration.engine_fit import score_engine_runs
    from inferecon.model.engine import EngineProfile
    from inferecon.validation.decode import DEFAULT_DRAWS

    run = "20261202-5"
    engine = EngineProfile.load(RUNS[run] / f"engine-nullw-{dtype}.json")
    with open(RUNS[run] / f"engine_validation-{dtype}-engine-nullw.csv", newline="") as f:
        table = {Path(r["source"]).name: r for r in csv.DictReader(f)}
    for r in score_engine_runs(_cases(dtype, run), engine, draws=DEFAULT_DRAWS):
        was = table[Path(r["source"]).name]
        assert r["predicted_ms"] == pytest.approx(float(was["engine_ms"]), rel=PREDICTED_TOLERANCE), r["source"]


# -- run 9 re-validated with a prefill-timed calibration (results/vllm-cpu-20261202-7/revalidate-prefill/) --
RUN9 = RESULTS / "vllm-cpu-20261202-7"


def _ttft_table(path: Path) -> dict[int, tuple[float, float]]:
    """{concurrency: (measured mean ms, predicted ms)} of a committed `validate` stdout's TTFT table."""
    rows, inside = {}, False
    for line in path.read_text().splitlines():
        if line.startswith("TTFT"):
            inside = True
            continue
        if inside and line.startswith("predicted:"):
            break
        if inside:
            cells = line.split("|")[1].split()
            rows[int(float(line.split()[0]))] = (float(cells[0]), float(cells[2]))
    return rows


@pytest.mark.skipif(not (RUN9 / "revalidate-prefill").is_dir(), reason="run 9's results are not in this checkout")
@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_run9_revalidated_ttft_matches_the_committed_table(dtype):
    """Measured TTFT: vLLM's own mean_ttft_ms; predicted: the committed table (README there),
    recomputed with the committed profile and engine: a model change that moves it says so."""
    from inferecon.calibration.engine_fit import load_cases
    from inferecon.model.engine import EngineProfile
    from inferecon.validation.ttft import ttft_rows

    files = [RUN9 / "vllm" / dtype / f"vllm-{dtype}-c{c}.json" for c in CONCURRENCY]
    wb, kb = DTYPES[dtype]
    cases = load_cases([str(f) for f in files], model=str(RUN9 / "model"), tp=1, weight_bits=wb, kv_bits=kb,
                       hardware_path=str(RUN9 / "revalidate-prefill" / "calibrate" / "profile.json"))
    engine = EngineProfile.load(RUN9 / f"engine-null-cold-{dtype}" / "engine.json")
    table = _ttft_table(RUN9 / "revalidate-prefill" / f"{dtype}-newcal" / "stdout.txt")
    moved = []
    for f, r in zip(files, sorted(ttft_rows(cases, engine), key=lambda r: r["concurrency"])):
        measured, predicted = table[int(r["concurrency"])]
        assert json.loads(f.read_text())["mean_ttft_ms"] == pytest.approx(measured, abs=0.06)
        if abs(r["pred_ttft_ms"] / predicted - 1.0) > PREDICTED_TOLERANCE:
            moved.append(f"c{r['concurrency']:g}: {predicted} -> {r['pred_ttft_ms']:.1f} ms")
    assert not moved, f"run 9's revalidated TTFT moved ({dtype}): " + "; ".join(moved)


# -- runs 9 to 13: the loop's own folders, cold null engine (README in each) ------------------------
COLD_RUNS = {"run9": RESULTS / "vllm-cpu-20261202-7", "run10": RESULTS / "vllm-cpu-20261202-8",
             "run11": RESULTS / "vllm-cpu-20261203", "run12": RESULTS / "vllm-cpu-20261203-2",
             "run13": RESULTS / "vllm-cpu-20261203-3"}


@pytest.mark.parametrize("run", sorted(COLD_RUNS))
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_cold_engine_predictions_match_the_committed_table(dtype, run):
    """Measured: vLLM's own median_tpot_ms; predicted and its 90% interval: the table the loop's
    `validate --engine engine-null-cold-<dtype>` wrote, recomputed with the run's calibration."""
    from inferecon.calibration.engine_fit import load_cases, score_engine_runs
    from inferecon.model.engine import EngineProfile
    from inferecon.validation.decode import DEFAULT_DRAWS

    res = COLD_RUNS[run]
    if not (res / f"validate-{dtype}-engine-null-cold").is_dir():
        pytest.skip(f"{run}'s results are not in this checkout")
    files = [res / "vllm" / dtype / f"vllm-{dtype}-c{c}.json" for c in CONCURRENCY]
    wb, kb = DTYPES[dtype]
    cases = load_cases([str(f) for f in files], model=str(res / "model"), tp=1, weight_bits=wb, kv_bits=kb,
                       hardware_path=str(res / "calibrate" / "profile.json"))
    engine = EngineProfile.load(res / f"engine-null-cold-{dtype}" / "engine.json")
    with open(res / f"validate-{dtype}-engine-null-cold" / "engine_validation.csv", newline="") as f:
        table = {Path(r["source"]).name: r for r in csv.DictReader(f)}
    moved = []
    for r in score_engine_runs(cases, engine, draws=DEFAULT_DRAWS):
        name = Path(r["source"]).name
        was = table[name]
        assert float(was["measured_ms"]) == pytest.approx(
            json.loads((res / "vllm" / dtype / name).read_text())["median_tpot_ms"], rel=1e-9)
        for now, then in ((r["predicted_ms"], "engine_ms"), (r["predicted_lo_ms"], "engine_lo_ms"),
                          (r["predicted_hi_ms"], "engine_hi_ms")):
            if abs(now / float(was[then]) - 1.0) > PREDICTED_TOLERANCE:
                moved.append(f"{name} {then}: {float(was[then]):.2f} -> {now:.2f}")
    assert not moved, f"{run}'s cold-engine prediction moved ({dtype}): " + "; ".join(moved)
