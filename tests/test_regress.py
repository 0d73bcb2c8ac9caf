"""The regression gate: statistics and classification, baselines, and the CLI's exit statuses
on small synthetic run directories written through RunStore (so the schema is the real one).
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from inferecon.regress import baselines
from inferecon.regress.gate import GateConfig, classify, compare_bench_runs, compare_case
from inferecon.cli import main
from inferecon.core.errors import UserError
from inferecon.harness.store import RunStore, read_run

CPU = "Synthetic CPU"
H100 = "NVIDIA H100 80GB HBM3"


def _rec(case_id, median_us, rng, n_samples, noise, derive=None, **params):
    samples = median_us * (1 + noise * rng.standard_normal(n_samples))
    q1, med, q3 = np.percentile(samples, [25, 50, 75])
    return {"case_id": case_id, "samples_us": samples.tolist(), "median_us": float(med), "iqr_us": float(q3 - q1),
            "reps": n_samples, "noisy": bool((q3 - q1) / med > 0.10), "throttled": False, "skipped": "", **params,
            **(derive(float(med)) if derive else {})}


def make_run(path: Path, *, device_name=CPU, gpu_count=0, slow=1.0, seed=0, n=60, noise=0.004,
             start="2026-11-01T00:00:00+00:00", driver=None, benches=("matmul", "memory", "launch", "collectives"),
             slow_cases=None, status="complete", extra=None, case_drift=0.0) -> Path:
    """A run of the quick CPU sentinel's shape with a known speed: every time is a simple
    function of the case, times `slow` (only for `slow_cases` when given), with Gaussian
    noise of relative σ `noise`. `case_drift` moves each case's time by its own random factor
    exp(case_drift · N(0, 1)) (seeded by `seed` and the case): a busy node's run-to-run drift."""
    rng = np.random.default_rng(seed)
    device = "cuda" if gpu_count else "cpu"
    meta = {"nvml": {"available": bool(driver), "driver_version": driver,
                     "gpus": [{"name": device_name, "power_limit_w": 700.0}] * gpu_count},
            "torch_version": "2.13.0+cpu", "cpu": {"model": CPU, "logical_cores": 2}}
    store = RunStore(path, {"device": device, "device_name": device_name, "gpu_count": gpu_count,
                            "inferecon_version": "0.1.0", "metadata": meta})
    store.manifest["start_time"] = start
    common = {"device": device, "device_name": device_name, "gpu_count": gpu_count, "benchmark_version": 1}

    def f(case_id):
        moved = math.exp(case_drift * np.random.default_rng([seed, zlib.crc32(case_id.encode())]).standard_normal())
        return moved * (slow if slow_cases is None or case_id in slow_cases else 1.0)

    if "matmul" in benches:
        for m in (1, 4, 16, 64):
            for n_, k in ((512, 512), (1024, 1024), (2048, 512)):
                cid = f"decode:{n_}x{k}/:m{m}n{n_}k{k}:fp32"
                flop = 2 * m * n_ * k
                t = 20 + flop / 2e4 + 4 * n_ * k / 2e4  # µs: overhead + 20 GFLOP/s + 20 GB/s
                store.append("matmul", {**common, **_rec(cid, t * f(cid), rng, n, noise, shape_kind="decode", model="",
                                                         proj="", m=m, n=n_, k=k, dtype="fp32", flop=flop,
                                                         weight_bytes=4 * n_ * k,
                                                         derive=lambda t, flop=flop: {"tflops": flop / t / 1e6})})
        for s in (256, 512):
            cid = f"square:m{s}n{s}k{s}:fp32"
            store.append("matmul", {**common, **_rec(cid, (20 + 2 * s**3 / 5e4) * f(cid), rng, n, noise,
                                                     shape_kind="square", model="", proj="", m=s, n=s, k=s,
                                                     dtype="fp32", flop=2 * s**3, weight_bytes=4 * s * s,
                                                     derive=lambda t, s=s: {"tflops": 2 * s**3 / t / 1e6})})
    if "memory" in benches:
        for mib in (1, 16, 64, 128, 256):
            cid, b = f"read:{mib}MiB", mib * 2**20
            store.append("memory", {**common, **_rec(cid, (5 + b / 1e4) * f(cid), rng, n, noise, op="read", bytes=b,
                                                     bytes_moved=b,
                                                     derive=lambda t, b=b: {"gbps": b / t / 1e3})})
    if "launch" in benches:
        store.append("launch", {**common, **_rec("kernel_eager", 8.0 * f("kernel_eager"), rng, n, noise,
                                                 op="kernel_eager", derive=lambda t: {"time_us": t})})
    if "collectives" in benches:
        for b in (8, 4096, 1048576):
            cid = f"all_reduce/eager/{b}B/w2n1/gloo"
            store.append("collectives", {**common, **_rec(cid, (50 + b / 1e3) * f(cid), rng, n, noise, op="all_reduce",
                                                          mode="eager", bytes=b, world_size=2, nodes=1, scope="intra",
                                                          backend="gloo", busbw_factor=1.0,
                                                          derive=lambda t, b=b: {"algbw_gbps": b / t / 1e3,
                                                                                 "busbw_gbps": b / t / 1e3})})
    for bench, recs in (extra or {}).items():
        for r in recs:
            store.append(bench, {**common, **r})
    store.finish(status)
    return path


def _digest(d: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


def _regress(*args):
    return main(["regress", "--no-model", *map(str, args)])


# ---------------------------------------------------------------------------------------
# Statistics and classification

CFG = GateConfig()


@pytest.mark.parametrize("ratio,lo,hi,flagged,verdict", [
    (1.05, 1.04, 1.06, False, "regression"),
    (1.02, 1.01, 1.03, False, "unchanged"),  # significant but below tolerance: not a regression
    (1.05, 0.99, 1.11, False, "noisy"),  # beyond tolerance but the CI includes 1
    (0.95, 0.94, 0.96, False, "improvement"),
    (1.00, 0.80, 1.30, False, "noisy"),  # CI wider than max_ci_width
    (1.20, 1.15, 1.25, True, "noisy"),  # harness flagged the case noisy: vetoed by default
])
def test_classify(ratio, lo, hi, flagged, verdict):
    assert classify(ratio, lo, hi, flagged, CFG)[0] == verdict


def test_whole_ci_rule_is_stricter():
    whole = GateConfig(rule="whole")
    assert classify(1.05, 1.02, 1.08, False, CFG)[0] == "regression"
    assert classify(1.05, 1.02, 1.08, False, whole)[0] != "regression"
    assert classify(1.05, 1.035, 1.065, False, whole)[0] == "regression"


def test_flag_policy_ci_lets_a_clear_change_through():
    assert classify(1.20, 1.15, 1.25, True, GateConfig(noisy_flag="ci"))[0] == "regression"
    assert classify(1.01, 0.99, 1.03, True, GateConfig(noisy_flag="ci"))[0] == "noisy"


def test_bootstrap_ci_of_a_slowed_copy_is_not_degenerate():
    rng = np.random.default_rng(3)
    x = 100 * (1 + 0.01 * rng.standard_normal(80))
    r = compare_case("matmul", "c", {"samples_us": x}, {"samples_us": x * 1.05}, CFG)
    assert r.ratio == pytest.approx(1.05)
    assert r.ci_low < 1.05 < r.ci_high  # independent resample streams per side
    assert r.verdict == "regression"
    # Same inputs, same seed: the same CI (reproducible gate).
    r2 = compare_case("matmul", "c", {"samples_us": x}, {"samples_us": x * 1.05}, CFG)
    assert (r.ci_low, r.ci_high) == (r2.ci_low, r2.ci_high)


def test_drift_widens_the_ci():
    rng = np.random.default_rng(4)
    x = 100 * (1 + 0.003 * rng.standard_normal(200))
    tight = compare_case("m", "c", {"samples_us": x}, {"samples_us": x * 1.04}, CFG)
    loose = compare_case("m", "c", {"samples_us": x}, {"samples_us": x * 1.04}, GateConfig(drift=0.05))
    assert tight.verdict == "regression" and loose.verdict == "noisy"
    assert loose.ci_low < tight.ci_low and loose.ci_high > tight.ci_high


def test_throttled_and_too_few_samples_give_no_verdict():
    x = np.full(20, 100.0)
    assert compare_case("m", "c", {"samples_us": x, "throttled": True}, {"samples_us": 2 * x}, CFG).verdict == "noisy"
    assert compare_case("m", "c", {"samples_us": x[:2]}, {"samples_us": 2 * x}, CFG).verdict == "noisy"


def test_matching_missing_skipped_and_version(tmp_path):
    a = make_run(tmp_path / "a", benches=("launch", "memory"))
    b = make_run(tmp_path / "b", seed=1, benches=("launch", "collectives"),
                 extra={"memory": [{"case_id": "read:1MiB", "samples_us": [], "median_us": float("nan"),
                                    "iqr_us": float("nan"), "reps": 0, "noisy": False, "throttled": False,
                                    "skipped": "oom"}]})
    _, ta = read_run(a)
    _, tb = read_run(b)
    import pandas as pd

    tb["launch"]["benchmark_version"] = 2
    tb["launch"] = pd.concat([tb["launch"], pd.DataFrame([{**tb["launch"].iloc[0].to_dict(), "case_id": "other",
                                                           "benchmark_version": 1}])], ignore_index=True)
    ta["launch"] = pd.concat([ta["launch"], pd.DataFrame([{**ta["launch"].iloc[0].to_dict(), "case_id": "other"}])],
                             ignore_index=True)
    res = {(c.benchmark, c.case_id): c for c in compare_bench_runs(ta, tb).cases}
    assert res[("launch", "kernel_eager")].verdict == "missing" and "benchmark_version" in res[("launch", "kernel_eager")].reason
    assert res[("memory", "read:1MiB")].verdict == "missing" and "oom" in res[("memory", "read:1MiB")].reason
    assert res[("memory", "read:16MiB")].reason == "not in the candidate run"
    assert res[("collectives", "all_reduce/eager/8B/w2n1/gloo")].reason == "not in the baseline run"
    assert res[("launch", "other")].verdict == "unchanged"


def test_no_case_in_common_raises(tmp_path):
    _, ta = read_run(make_run(tmp_path / "a", benches=("launch",)))
    _, tb = read_run(make_run(tmp_path / "b", benches=("memory",)))
    with pytest.raises(UserError, match="no measured case in common"):
        compare_bench_runs(ta, tb)


# ---------------------------------------------------------------------------------------
# CLI exit statuses


def test_exit_0_on_identical_speed_and_outputs(tmp_path, capsys):
    a, b = make_run(tmp_path / "a", seed=1), make_run(tmp_path / "b", seed=2)
    before = _digest(a)
    assert _regress("--baseline", a, "--candidate", b) == 0
    out = capsys.readouterr().out
    assert "UNCHANGED within 3%" in out
    assert (b / "regress.md").is_file() and (b / "regress.json").is_file()
    assert _digest(a) == before  # the baseline is never written
    assert not any(p.name.startswith(".") for p in b.iterdir())  # no temp files left


def test_exit_1_on_a_5pct_slowdown_with_table_first(tmp_path, capsys):
    a = make_run(tmp_path / "a", seed=1)
    b = make_run(tmp_path / "b", seed=2, slow=1.05, slow_cases={"read:64MiB", "kernel_eager"})
    assert _regress("--baseline", a, "--candidate", b) == 1
    out = capsys.readouterr().out
    assert "REGRESSION: 2 case(s)" in out
    table = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| verdict")]
    assert [row.split("|")[1].strip() for row in table] == ["regression", "regression"]
    rep = json.loads((b / "regress.json").read_text())
    assert rep["exit_status"] == 1 and rep["counts"]["regression"] == 2
    assert {c["case_id"] for c in rep["cases"] if c["verdict"] == "regression"} == {"read:64MiB", "kernel_eager"}


@pytest.mark.slow
def test_slowdown_below_tolerance_is_exit_0_and_tolerance_flag(tmp_path):
    a = make_run(tmp_path / "a", seed=1)
    b = make_run(tmp_path / "b", seed=2, slow=1.05)
    assert _regress("--baseline", a, "--candidate", b, "--tolerance", "8%", "--out", tmp_path / "o") == 0
    assert _regress("--baseline", a, "--candidate", b, "--tolerance", "0.02", "--out", tmp_path / "o") == 1


@pytest.mark.slow
def test_improvement_is_exit_0_and_json(tmp_path, capsys):
    a = make_run(tmp_path / "a", seed=1)
    b = make_run(tmp_path / "b", seed=2, slow=0.9)
    assert _regress("--baseline", a, "--candidate", b, "--json") == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["counts"]["improvement"] == rep["counts"]["unchanged"] + rep["counts"]["improvement"] > 20
    assert rep["verdict_line"].startswith("IMPROVED")


def test_manifest_diff_is_reported(tmp_path, capsys):
    a = make_run(tmp_path / "a", device_name=H100, gpu_count=8, driver="550.54.15", seed=1)
    b = make_run(tmp_path / "b", device_name=H100, gpu_count=8, driver="560.35.03", seed=2)
    assert _regress("--baseline", a, "--candidate", b) == 0
    assert "- driver: 550.54.15 → 560.35.03" in capsys.readouterr().out


def test_different_gpu_models_refused_unless_force(tmp_path, capsys):
    a = make_run(tmp_path / "a", device_name=H100, gpu_count=8)
    b = make_run(tmp_path / "b", device_name="NVIDIA H200", gpu_count=8, seed=3)
    assert _regress("--baseline", a, "--candidate", b) == 2
    err = capsys.readouterr().err
    assert "H100 80GB HBM3" in err and "H200" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert not (b / "regress.md").exists()
    assert _regress("--baseline", a, "--candidate", b, "--force") in (0, 1)


def test_no_case_in_common_is_exit_2(tmp_path, capsys):
    a = make_run(tmp_path / "a", benches=("launch",))
    b = make_run(tmp_path / "b", benches=("memory",))
    assert _regress("--baseline", a, "--candidate", b) == 2
    assert "no measured case in common" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate", "hand-edit"])
def test_damaged_parquet_is_exit_2_and_nothing_overwritten(tmp_path, capsys, damage):
    a, b = make_run(tmp_path / "a", seed=1), make_run(tmp_path / "b", seed=2)
    p = b / "memory.parquet"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2] if damage == "truncate" else data.replace(b"read", b"rEad", 1)[:-40] + b"\0" * 40)
    (b / "regress.md").write_text("previous check\n")
    before_a, before_b = _digest(a), _digest(b)
    assert _regress("--baseline", a, "--candidate", b) == 2
    err = capsys.readouterr().err
    assert "memory.parquet" in err and len(err.strip().splitlines()) == 1
    assert _digest(a) == before_a and _digest(b) == before_b


def test_bad_arguments_are_exit_2(tmp_path, capsys):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b", seed=1)
    assert _regress("--baseline", tmp_path / "nope", "--candidate", b) == 2
    assert _regress("--baseline", a, "--candidate", tmp_path / "nope") == 2
    assert _regress("--baseline", a, "--candidate", b, "--tolerance", "3") == 2  # ambiguous: 3% or 300%?
    assert _regress("--baseline", a, "--candidate", b, "--tolerance", "abc") == 2
    assert _regress("--baseline", a, "--candidate", b, "--out", a) == 2
    assert _regress("--baseline", a, "--candidate", a) == 2
    assert _regress("--baseline", a, "--candidate", b, "--confidence", "1.5") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 7 and all(line.startswith("inferecon: error: ") for line in err)


# ---------------------------------------------------------------------------------------
# Baselines


@pytest.mark.slow
def test_save_name_and_pick_newest_of_the_same_gpu(tmp_path, capsys):
    root = tmp_path / "baselines"
    old = make_run(tmp_path / "old", device_name=H100, gpu_count=8, driver="550.54.15", start="2026-10-01T00:00:00+00:00")
    new = make_run(tmp_path / "new", device_name=H100, gpu_count=8, driver="560.35.03", start="2026-11-01T00:00:00+00:00", seed=1)
    four = make_run(tmp_path / "four", device_name=H100, gpu_count=4, driver="560.35.03", start="2026-11-20T00:00:00+00:00")
    other = make_run(tmp_path / "other", device_name="NVIDIA H200", gpu_count=8, start="2026-11-21T00:00:00+00:00")
    for r in (old, new, four, other):
        assert main(["regress", "--save-baseline", str(r), "--baselines-dir", str(root)]) == 0
    names = sorted(p.name for p in root.iterdir())
    assert "nvidia-h100-80gb-hbm3-x8-driver550.54.15-20261001" in names
    assert "nvidia-h100-80gb-hbm3-x8-driver560.35.03-20261101" in names
    assert "nvidia-h100-80gb-hbm3-x4-driver560.35.03-20261120" in names
    saved = root / "nvidia-h100-80gb-hbm3-x8-driver560.35.03-20261101"
    assert {"manifest.json", "matmul.parquet", "baseline.json"} <= {p.name for p in saved.iterdir()}
    # A second save of the same run gets its own name, never overwrites.
    assert main(["regress", "--save-baseline", str(new), "--baselines-dir", str(root)]) == 0
    assert (root / "nvidia-h100-80gb-hbm3-x8-driver560.35.03-20261101-2").is_dir()

    cand = make_run(tmp_path / "cand", device_name=H100, gpu_count=8, driver="560.35.03", seed=5)
    capsys.readouterr()
    assert _regress("--candidate", cand, "--baselines-dir", root) == 0
    out = capsys.readouterr().out
    assert "baseline picked automatically" in out and "driver560.35.03-20261101" in out
    assert baselines.pick(read_run(cand)[0], root).name.startswith("nvidia-h100-80gb-hbm3-x8-driver560.35.03-20261101")


def test_no_baseline_for_this_gpu_is_exit_2_with_how_to(tmp_path, capsys):
    cand = make_run(tmp_path / "cand")
    assert _regress("--candidate", cand, "--baselines-dir", tmp_path / "empty") == 2
    err = capsys.readouterr().err
    assert "no baseline for Synthetic CPU" in err and "--save-baseline" in err


def test_cpu_baseline_name_and_incomplete_run_refused(tmp_path, capsys):
    run = make_run(tmp_path / "r", status="interrupted")
    root = tmp_path / "b"
    assert main(["regress", "--save-baseline", str(run), "--baselines-dir", str(root)]) == 2
    assert "interrupted" in capsys.readouterr().err
    assert main(["regress", "--save-baseline", str(run), "--baselines-dir", str(root), "--force"]) == 0
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == ["synthetic-cpu-cpu-nodriver-20261101"]


# ---------------------------------------------------------------------------------------
# Model impact (fits both profiles: the slowest test here, a few seconds)


@pytest.mark.slow
def test_model_impact_of_a_memory_slowdown(tmp_path, capsys):
    a = make_run(tmp_path / "a", seed=1)
    b = make_run(tmp_path / "b", seed=2, slow=1.25, slow_cases={f"read:{m}MiB" for m in (1, 16, 64, 128, 256)})
    rc = main(["regress", "--baseline", str(a), "--candidate", str(b), "--model", "llama-3-8b", "--max-gpus", "2"])
    assert rc == 1
    out = capsys.readouterr().out
    rep = json.loads((b / "regress.json").read_text())
    imp = rep["model_impact"]
    assert "error" not in imp, imp
    assert f"max tok/s for llama-3-8b: {imp['max_tok_s'][0]:.4g} → {imp['max_tok_s'][1]:.4g}" in out
    assert math.isfinite(imp["max_tok_s_change"]) and imp["moved"] in ("compute", "network", "latency")


# ---------------------------------------------------------------------------------------
# A baseline of several runs: the CI includes their measured between-run spread


@pytest.mark.slow
def test_baseline_set_widens_by_between_run_spread(tmp_path, capsys):
    drifting = [make_run(tmp_path / f"a{i}", seed=i, slow=f) for i, f in enumerate((1.0, 1.06, 0.95))]
    cand = make_run(tmp_path / "c", seed=9, slow=1.05)
    # Against the first run alone, the 5% is significant: a regression.
    assert _regress("--baseline", drifting[0], "--candidate", cand, "--out", tmp_path / "o1") == 1
    # Against all three, 5% is inside the node's own run-to-run spread (σ of the three factors'
    # logs ≈ 5.5%, × √2 for a ratio ≈ 7.8% > 3%): no verdict, and it says why (exit 4).
    args = [x for d in drifting for x in ("--baseline", d)]
    assert _regress(*args, "--candidate", cand, "--out", tmp_path / "o3") == 4
    rep = json.loads((tmp_path / "o3" / "regress.json").read_text())
    assert rep["verdict"] == "INCONCLUSIVE" and "drift" in rep["verdict_line"]
    assert 0.07 < rep["between_run_drift"] < 0.085
    assert rep["counts"]["regression"] == 0 and rep["counts"]["noisy"] > 20
    assert all("3 baseline runs" in c["reason"] for c in rep["cases"] if c["verdict"] == "noisy")
    # Three steady runs leave the CI tight: a 10% slowdown is still caught.
    steady = [make_run(tmp_path / f"s{i}", seed=20 + i) for i in range(3)]
    slow = make_run(tmp_path / "slow", seed=30, slow=1.10)
    args = [x for d in steady for x in ("--baseline", d)]
    assert _regress(*args, "--candidate", slow, "--out", tmp_path / "o4") == 1


@pytest.mark.slow
def test_auto_pick_of_a_baseline_set(tmp_path, capsys):
    root = tmp_path / "baselines"
    for i, day in enumerate(("01", "02", "03", "04")):
        r = make_run(tmp_path / f"r{i}", seed=i, start=f"2026-11-{day}T00:00:00+00:00")
        assert main(["regress", "--save-baseline", str(r), "--baselines-dir", str(root)]) == 0
    cand = make_run(tmp_path / "cand", seed=9)
    capsys.readouterr()
    assert _regress("--candidate", cand, "--baselines-dir", root, "--baseline-runs", "3") == 0
    rep = json.loads((cand / "regress.json").read_text())
    picked = rep["baseline"].split(", ")
    assert [Path(p).name[-8:] for p in picked] == ["20261102", "20261103", "20261104"]
    assert _regress("--candidate", cand, "--baselines-dir", root, "--baseline-runs", "0") == 2


def test_fewer_saved_baselines_than_asked_are_said(tmp_path, capsys):
    """--baseline-runs 3 with one saved baseline used that one without a word: the gate then
    sees no between-run spread while the user believes it does."""
    root = tmp_path / "baselines"
    r = make_run(tmp_path / "r0", seed=0, start="2026-11-01T00:00:00+00:00")
    assert main(["regress", "--save-baseline", str(r), "--baselines-dir", str(root)]) == 0
    cand = make_run(tmp_path / "cand", seed=9)
    capsys.readouterr()
    assert _regress("--candidate", cand, "--baselines-dir", root, "--baseline-runs", "3") == 0
    err = capsys.readouterr().err
    assert "--baseline-runs 3: only 1 saved baseline(s) of this GPU model and count" in err
    assert _regress("--candidate", cand, "--baselines-dir", root, "--baseline-runs", "1") == 0
    assert "only 1 saved" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Run-level verdicts: INCOMPLETE (3), INCONCLUSIVE (4), and how many cases were judged


def test_interrupted_candidate_missing_cases_is_incomplete_not_improved(tmp_path, capsys):
    a = make_run(tmp_path / "a", seed=1)
    # Interrupted after matmul: 14 matmul cases of the sentinel's 23, and 20% faster. Before
    # the fix this read "IMPROVED", exit 0.
    b = make_run(tmp_path / "b", seed=2, slow=0.8, benches=("matmul",), status="interrupted")
    assert _regress("--baseline", a, "--candidate", b) == 3
    rep = json.loads((b / "regress.json").read_text())
    assert rep["verdict"] == "INCOMPLETE" and rep["exit_status"] == 3
    line = rep["verdict_line"]
    assert "the candidate lacks 9 case(s)" in line and "the candidate run was interrupted" in line
    assert "14 of 14 cases measured in both runs judged" in line and "9 missing" in line
    assert rep["counts"]["improvement"] == 14


def test_complete_run_lacking_cases_is_incomplete(tmp_path):
    a = make_run(tmp_path / "a", seed=1, benches=("matmul", "memory"))
    b = make_run(tmp_path / "b", seed=2)  # has launch and collectives too: the baseline lacks them
    assert _regress("--baseline", a, "--candidate", b) == 3
    rep = json.loads((b / "regress.json").read_text())
    assert "the baseline lacks 4 case(s)" in rep["verdict_line"]


def test_interrupted_baseline_with_every_case_is_still_incomplete(tmp_path):
    a = make_run(tmp_path / "a", seed=1, status="interrupted")
    b = make_run(tmp_path / "b", seed=2)
    assert _regress("--baseline", a, "--candidate", b) == 3
    assert "the baseline run was interrupted" in json.loads((b / "regress.json").read_text())["verdict_line"]


def test_regression_beats_incomplete(tmp_path):
    # A real slowdown among the cases both runs hold is reported even when a run is partial.
    a = make_run(tmp_path / "a", seed=1)
    b = make_run(tmp_path / "b", seed=2, slow=1.2, benches=("matmul", "memory"), status="interrupted")
    assert _regress("--baseline", a, "--candidate", b) == 1
    line = json.loads((b / "regress.json").read_text())["verdict_line"]
    assert line.startswith("REGRESSION: 19 case(s)") and "also incomplete" in line


def test_busy_node_drift_beyond_tolerance_is_inconclusive_not_regression(tmp_path):
    # Same software, but every case's median moved by its own ±8% (σ) between the runs, as on
    # the shared CPU. Per case, several land beyond 3% with tight within-run CIs.
    a = make_run(tmp_path / "a", seed=1, case_drift=0.08)
    b = make_run(tmp_path / "b", seed=2, case_drift=0.08)
    gate = compare_bench_runs(read_run(a)[1], read_run(b)[1])
    assert gate.regressed  # what used to be exit 1 "REGRESSION"
    assert _regress("--baseline", a, "--candidate", b) == 4
    rep = json.loads((b / "regress.json").read_text())
    assert rep["verdict"] == "INCONCLUSIVE" and "drift" in rep["verdict_line"]
    # Two runs of σ 8% each: the ratio's σ is about 8% x √2 ≈ 11% (a 23-case MAD estimate).
    assert 0.05 < rep["between_run_drift"] < 0.2
    # The same node with a tolerance above its drift judges again.
    assert _regress("--baseline", a, "--candidate", b, "--tolerance", "40%", "--out", tmp_path / "o") == 0


def test_a_uniform_slowdown_is_not_mistaken_for_drift(tmp_path):
    a = make_run(tmp_path / "a", seed=1)
    b = make_run(tmp_path / "b", seed=2, slow=1.10)
    assert _regress("--baseline", a, "--candidate", b) == 1
    rep = json.loads((b / "regress.json").read_text())
    assert rep["between_run_drift"] < 0.01
    assert "23 of 23 cases measured in both runs judged" in rep["verdict_line"]


def _throttled(case_id, t, seed):
    rng = np.random.default_rng(seed)
    return {"case_id": case_id, "samples_us": (t * (1 + 0.004 * rng.standard_normal(60))).tolist(),
            "median_us": t, "iqr_us": 0.0, "reps": 60, "noisy": False, "throttled": True, "skipped": "",
            "op": "read", "bytes": 1, "bytes_moved": 1, "gbps": 1.0}


def test_one_judged_case_of_eleven_gives_no_verdict(tmp_path):
    # 10 cases throttled (no verdict) and 1 case 10% slower: "REGRESSION" on 1 of 11 would
    # rest on one case; the gate says how few it judged instead.
    def run(path, seed, slow):
        recs = [_throttled(f"read:{i}", 100.0 + i, seed * 100 + i) for i in range(10)]
        recs.append({**_throttled("read:x", 50.0 * slow, seed), "throttled": False})
        return make_run(path, seed=seed, benches=(), extra={"memory": recs})

    a, b = run(tmp_path / "a", 1, 1.0), run(tmp_path / "b", 2, 1.10)
    assert _regress("--baseline", a, "--candidate", b) == 4
    line = json.loads((b / "regress.json").read_text())["verdict_line"]
    assert line.startswith("INCONCLUSIVE: only 1 of 11 cases") and "1 slower beyond 3%" in line
