"""The engine cost of the vLLM CPU loop beyond its warm-cache null models (issue 21):
scripts/vllm_cpu_loop.py null-engine --cold-host (the null models' cost x the slowdown of vLLM's
small host ops inside the served model's step) and nullw-profile (the weight-heavy null model's
GEMMs priced by their own shapes).

Where the expected values come from: null-engine's own output without the factor (the factor
doubles it: hand), the committed files under results/ (the loop's outputs when they were made),
and, for nullw-profile, timings made up here from a roofline written out by hand.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RUN8 = ROOT / "results" / "vllm-cpu-20261202-6"


def _loop():
    spec = importlib.util.spec_from_file_location("vllm_cpu_loop", ROOT / "scripts" / "vllm_cpu_loop.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not in this checkout")
    return path


def _step_and_layer(engine_json: Path) -> tuple[float, float, float]:
    d = json.loads(engine_json.read_text())
    p = d["fit_quality"]["parameters"]
    return d["step_overhead_us"], d["per_layer_us"], p["step_overhead_us"]["stderr"]


def test_cold_host_factor_scales_both_costs_and_their_stderr(tmp_path):
    """A factor of 2 doubles the step and per-layer costs and the step's stderr of the same fits
    (run 8's committed null-model fits), over all concurrencies and at each."""
    loop = _loop()
    fit, deep = _need(RUN8 / "engine-null-fit-fp32"), _need(RUN8 / "engine-null8-fit-fp32")
    loop.null_engine(fit, tmp_path / "warm", deep)
    loop.null_engine(fit, tmp_path / "cold", deep, cold=(2.0, "by hand"))
    for name in ("engine.json", "engine-c1.json", "engine-c8.json"):
        warm, cold = _step_and_layer(tmp_path / "warm" / name), _step_and_layer(tmp_path / "cold" / name)
        assert cold == pytest.approx(tuple(2 * v for v in warm), rel=1e-12)
    notes = json.loads((tmp_path / "cold" / "engine.json").read_text())["notes"]
    assert any("x2.000" in n and "by hand" in n for n in notes)
    # the per-run table keeps what was measured
    assert (tmp_path / "cold" / "null_engine.csv").read_text() == (tmp_path / "warm" / "null_engine.csv").read_text()


def _grid(cost):
    """Null-model runs of 1 and 8 layers at concurrency 1, 2, 4, 8, two prompt sets each."""
    return [(L, c, cost(L, c, seed)) for L in (1, 8) for c in (1, 2, 4, 8) for seed in (0, 1)]


def test_fit_costs_separates_step_layer_and_sequence():
    """Costs made up by hand as 1000 + 100 x layers + 50 x concurrency us give those three back.
    With the two prompt sets +-100 us about that, the residual sd is sqrt(16 x 100^2 / 13) =
    110.94 us (16 runs, 3 parameters) and, the design being balanced, the per-sequence slope's
    stderr is s / sqrt(4 x sum (c - 3.75)^2) = 110.94 / sqrt(115) = 10.345 us; the step's is one
    new run's spread s x sqrt(1 + 1/16) = 114.36 us."""
    loop = _loop()
    exact, s, dof = loop.fit_costs(_grid(lambda L, c, seed: 1000.0 + 100.0 * L + 50.0 * c))
    assert [exact[k][0] for k in ("step_overhead_us", "per_layer_us", "per_sequence_us")] == \
        pytest.approx([1000.0, 100.0, 50.0], abs=1e-9)
    assert s == pytest.approx(0.0, abs=1e-9) and dof == 13
    noisy, s, dof = loop.fit_costs(_grid(lambda L, c, seed: 1000.0 + 100.0 * L + 50.0 * c + (100.0 if seed else -100.0)))
    assert s == pytest.approx(110.94, abs=0.01) and dof == 13
    assert noisy["per_sequence_us"] == pytest.approx((50.0, 10.345), abs=1e-3)
    assert noisy["step_overhead_us"] == pytest.approx((1000.0, 114.36), abs=0.01)


def test_fit_costs_drops_a_negative_slope_and_refits():
    """A cost that falls with concurrency (1000 + 100 x layers - 20 x c) holds no per-sequence
    time: the slope is left out and the rest refitted. Concurrency is balanced across the layer
    counts, so the layer slope stays 100 and the step takes the mean of -20 c: 1000 - 20 x 3.75 =
    925 us (hand)."""
    fit, _, dof = _loop().fit_costs(_grid(lambda L, c, seed: 1000.0 + 100.0 * L - 20.0 * c))
    assert fit["per_sequence_us"] is None and dof == 14
    assert fit["per_layer_us"][0] == pytest.approx(100.0) and fit["step_overhead_us"][0] == pytest.approx(925.0)


def test_null_engine_writes_the_per_sequence_time(tmp_path):
    """Run 10's committed null-model fits (results/vllm-cpu-20261202-8/): engine.json carries a
    per-sequence time with its stderr, and a step and per-layer time, each of fit_costs over the
    rows null_engine.csv lists (the same rows: the profile is that fit, not another)."""
    import csv

    loop = _loop()
    res = _need(ROOT / "results" / "vllm-cpu-20261202-8")
    loop.null_engine(res / "engine-null-fit-fp32", tmp_path, res / "engine-null8-fit-fp32")
    with open(tmp_path / "null_engine.csv", newline="") as f:
        rows = [(int(r["layers"]), int(r["concurrency"]), float(r["engine_step_us"])) for r in csv.DictReader(f)]
    assert len(rows) == 16
    expected, _, _ = loop.fit_costs(rows)
    d = json.loads((tmp_path / "engine.json").read_text())
    for key in ("step_overhead_us", "per_layer_us", "per_sequence_us"):
        assert d[key] == pytest.approx(expected[key][0], rel=1e-12)
        assert d["fit_quality"]["parameters"][key]["stderr"] == pytest.approx(expected[key][1], rel=1e-12)
    assert d["per_sequence_us"] > 2 * d["fit_quality"]["parameters"]["per_sequence_us"]["stderr"]
    # The per-concurrency profiles carry a step and a per-layer time only (one concurrency each).
    assert json.loads((tmp_path / "engine-c8.json").read_text())["per_sequence_us"] == 0.0


def test_cold_host_json_read_and_refused(tmp_path):
    loop = _loop()
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"fp32": {"cold_us": 30.0, "warm_us": 20.0, "ratio": 1.5, "pairs": 9}}))
    f, where = loop.cold_host_factor(good, "fp32")
    assert f == 1.5 and "30.0 us" in where
    with pytest.raises(SystemExit, match="no ratio for bf16"):
        loop.cold_host_factor(good, "bf16")
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"fp32": {"cold_us": 300.0, "warm_us": 20.0, "ratio": 15.0, "pairs": 9}}))
    with pytest.raises(SystemExit, match="outside"):
        loop.cold_host_factor(bad, "fp32")


def test_committed_cold_engines_are_what_null_engine_writes_now(tmp_path):
    """results/vllm-cpu-20261202-{5,6}/engine-null-cold-<dtype>/engine.json: the committed null-model
    fits of each run with the committed cold-host measurement (results/vllm-cpu-20261202-6/cold-host/).
    Those runs were written before the per-sequence fit: per_sequence=False is their rule."""
    loop = _loop()
    cold_json = _need(RUN8 / "cold-host" / "cold-host.json")
    for run in ("vllm-cpu-20261202-5", "vllm-cpu-20261202-6"):
        res = ROOT / "results" / run
        for dtype in ("bf16", "fp32"):
            committed = _need(res / f"engine-null-cold-{dtype}" / "engine.json")
            out = tmp_path / run / dtype
            loop.null_engine(res / f"engine-null-fit-{dtype}", out, res / f"engine-null8-fit-{dtype}",
                             cold=loop.cold_host_factor(cold_json, dtype), per_sequence=False)
            assert _step_and_layer(out / "engine.json") == pytest.approx(_step_and_layer(committed), rel=1e-9)


def test_nullw_profile_prices_the_nullw_shapes_by_their_own_rows(tmp_path):
    """Rows made up by hand: the nullw shapes take 20 + bytes / 10 GB/s, the served shapes 3x as long
    per byte (which, pooled, would pull one fit off the nullw shapes). The refitted profile prices
    nullw_gate_up at M = 1 as its rows say: 20 + (158,208 x 64 x 4 + 64 x 4 + 158,208 x 4) / 1e4 us."""
    pd = pytest.importorskip("pandas")
    loop = _loop()
    rows = []
    for label, n, k in (("nullw_gate_up", 158_208, 64), ("nullw_down", 64, 79_104), ("gate_up", 8192, 1024),
                        ("down", 1024, 4096)):
        gbps = 10.0 if label.startswith("nullw") else 10.0 / 3
        for m in (1, 2, 4, 8):
            nbytes = 4 * (n * k + m * k + m * n)
            t = 20.0 + nbytes / (gbps * 1e3)
            rows.append({"op": "gemm", "label": label, "dtype": "fp32", "m": m, "n": n, "k": k, "time_us": t,
                         "median_us": t, "skipped": "", "kernel": "made_up", "sliced": False})
    rows.append({"op": "floor", "label": "add_1", "dtype": "fp32", "time_us": 1.0, "median_us": 1.0, "skipped": "",
                 "sliced": False})
    parquet = tmp_path / "cpu_ops.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    base = json.loads(_need(RUN8 / "calibrate" / "profile.json").read_text())
    src = tmp_path / "profile.json"
    src.write_text(json.dumps(base))
    loop.nullw_profile(tmp_path / "out", src, [parquet])
    doc = json.loads((tmp_path / "out" / "profile.json").read_text())
    fit = next(f for f in doc["op_fits"]["gemm"] if f["dtype"] == "fp32")
    from inferecon.model.opfits import GemmFit

    g = GemmFit(dtype="fp32", t0_us=fit["t0_us"], tflops=fit["tflops"], gbps=fit["gbps"], compute_efficiency=None,
                hbm_efficiency=None)
    hand = 20.0 + (158_208 * 64 * 4 + 64 * 4 + 158_208 * 4) / 1e4
    assert g.time_us(1, 158_208, 64) == pytest.approx(hand, rel=0.02)
    # the bf16 fit (no nullw rows here) is left as it was
    assert next(f for f in doc["op_fits"]["gemm"] if f["dtype"] == "bf16") == \
        next(f for f in base["op_fits"]["gemm"] if f["dtype"] == "bf16")


def test_null_engine_on_a_missing_or_foreign_table_says_so(tmp_path):
    """A fit folder without engine_fit.csv, or a CSV without inferecon's columns: one line, no traceback."""
    loop = _loop()
    with pytest.raises(SystemExit, match="engine_fit.csv: cannot read"):
        loop.null_engine(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "foreign.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit, match="no 'feasible' column"):
        loop.null_runs(tmp_path / "foreign.csv", tmp_path / "kept.txt")


def test_one_kept_8_layer_run_still_places_the_per_layer_slope(tmp_path):
    """Run 11 (results/vllm-cpu-20261203/) kept 1 of its 16 bf16 8-layer null runs (the others came
    in one burst). The least squares takes its spread from all 9 runs, so null-engine writes a
    profile from them: fit_costs over the 9 rows null_engine.csv lists, per-layer slope included.
    The means rule needs a spread of the 8-layer runs alone, and says so in one line."""
    import csv

    loop = _loop()
    res = _need(ROOT / "results" / "vllm-cpu-20261203")
    loop.null_engine(res / "engine-null-fit-bf16", tmp_path / "lsq", res / "engine-null8-fit-bf16")
    with open(tmp_path / "lsq" / "null_engine.csv", newline="") as f:
        rows = [(int(r["layers"]), int(r["concurrency"]), float(r["engine_step_us"])) for r in csv.DictReader(f)]
    assert sorted(L for L, _, _ in rows) == [1] * 8 + [8]
    expected, _, dof = loop.fit_costs(rows)
    assert dof == 6
    d = json.loads((tmp_path / "lsq" / "engine.json").read_text())
    for key in ("step_overhead_us", "per_layer_us", "per_sequence_us"):
        assert d[key] == pytest.approx(expected[key][0], rel=1e-12)
    with pytest.raises(SystemExit, match=r"engine-null8-fit-bf16: 1 null-model run\(s\); a spread needs 2 or more"):
        loop.null_engine(res / "engine-null-fit-bf16", tmp_path / "means", res / "engine-null8-fit-bf16",
                         per_sequence=False)
