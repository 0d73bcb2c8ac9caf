"""Calibration fits on synthetic measurements with known parameters, held-out scoring, and
the profile builder's handling of missing and failed terms."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from inferecon.calibration.build import profile_from_tables, published_base
from inferecon.calibration.fit import kfold_heldout_mape
from inferecon.calibration.fit_compute import fit_gemm
from inferecon.calibration.fit_latency import fit_launch
from inferecon.calibration.fit_memory import fit_read_bandwidth
from inferecon.calibration.fit_network import fit_collectives
from inferecon.ingest.files import parse_nccl_tests
from inferecon.model.published import get_profile
from inferecon.model.catalog import get_model
from inferecon.model.gemm import gemm_time_s
from inferecon.model.terms import Layouts, evaluate

RNG = np.random.default_rng(7)
FIX = "tests/fixtures/ingest/"


def _rows(bench, **cols):
    n = len(next(iter(cols.values())))
    base = {"benchmark": [bench] * n, "skipped": [""] * n, "noisy": [False] * n}
    return pd.DataFrame({**base, **cols})


def gemm_table(tflops=700.0, gbps=3000.0, t0=5.0, noise=0.01, elem=2):
    ms = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    shapes = [(10240, 8192), (8192, 8192), (57344, 8192), (8192, 28672)]
    rows = []
    for n, k in shapes:
        for m in ms:
            t = t0 + max(2 * m * n * k / (tflops * 1e6), (n * k + m * k + m * n) * elem / (gbps * 1e3))
            rows.append(dict(m=m, n=n, k=k, dtype="bf16", shape_kind="decode",
                             median_us=t * (1 + noise * RNG.standard_normal()), tflops=2 * m * n * k / t / 1e6))
    df = pd.DataFrame(rows)
    df["skipped"] = ""
    return df


def test_gemm_fit_recovers_a_roofline_and_scores_it_held_out():
    fits, results, _ = fit_gemm(gemm_table())
    r = results["bf16"]
    assert r.params["tflops"] == pytest.approx(700, rel=0.05)
    assert r.params["gbps"] == pytest.approx(3000, rel=0.05)
    assert r.heldout_mape is not None and r.heldout_mape < 0.03
    assert set(r.extra["heldout_mape_by_form"]) == {"roofline", "additive", "interp"}
    assert r.form == min(r.extra["heldout_mape_by_form"], key=r.extra["heldout_mape_by_form"].get)
    # The stored fit predicts an unmeasured decode shape like the true roofline does.
    t = gemm_time_s(fits, "bf16", 24, 16384, 8192) * 1e6
    true = 5 + max(2 * 24 * 16384 * 8192 / 700e6, (16384 * 8192 + 24 * 8192 + 24 * 16384) * 2 / 3000e3)
    assert t == pytest.approx(true, rel=0.05)


def test_gemm_interpolation_wins_where_kernels_step():
    df = gemm_table(noise=0.0)
    # A kernel switch: every M in 2..8 runs 2.5x slower than the bound (CPUs do this).
    step = df["m"].between(2, 8)
    df.loc[step, "median_us"] *= 2.5
    _, results, _ = fit_gemm(df)
    held = results["bf16"].extra["heldout_mape_by_form"]
    assert held["interp"] < held["roofline"]
    assert results["bf16"].form != "roofline"


def test_read_bandwidth_fit_uses_streaming_sizes():
    sizes = np.array([2, 8, 32, 128, 512, 1024, 2048, 4096]) * 2**20
    t = 3.0 + sizes / (3000 * 1e3)
    t[:2] /= 3  # inside L2: faster than HBM, must not bend the HBM line
    df = _rows("memory", op=["read"] * 8, bytes=sizes, bytes_moved=sizes, median_us=t, gbps=sizes / t / 1e3)
    fit = fit_read_bandwidth(df, cache_bytes=50e6)
    assert fit.params["gbps"] == pytest.approx(3000, rel=1e-3)
    # Only reads of at least 4 x the 50 MB cache enter the line: 512 MiB and up.
    assert fit.n_points == 4 and fit.heldout_mape < 1e-3


def test_collective_fit_goes_piecewise_when_nccl_switches_protocol():
    df = parse_nccl_tests(FIX + "synthetic_all_reduce_perf_8xh100.txt")
    fits, results = fit_collectives(df)
    assert [r.form for r in results] == ["piecewise alpha + bytes/beta"]
    r = results[0]
    assert r.params["alpha_us_small"] == pytest.approx(24.0, rel=0.02)
    assert r.params["beta_gbps_large"] == pytest.approx(275.0, rel=0.02)
    assert r.heldout_mape < r.extra["heldout_mape_one_line"] * 0.8
    assert len(fits) == 2 and fits[0].max_bytes == fits[1].min_bytes


def test_latency_fit_is_the_median_with_bootstrap_error():
    samples = list(2.0 + 0.1 * RNG.standard_normal(200))
    launch, sync = fit_launch(_rows("launch", op=["kernel_graph", "kernel_eager"], median_us=[2.0, 6.0],
                                    samples_us=[samples, [6.0] * 10]))
    assert launch.term == "latency:kernel_graph"  # graph launch preferred on GPUs
    assert launch.params["us"] == pytest.approx(2.0, abs=0.03)
    assert 0 < launch.stderr["us"] < 0.05
    assert sync is None


def test_kfold_heldout_never_scores_training_points():
    y = np.arange(1.0, 11.0)
    seen = []

    def fit_predict(train, test):
        assert not set(train) & set(test)
        seen.extend(test)
        return y[test]

    assert kfold_heldout_mape(fit_predict, len(y), y) == 0.0
    assert sorted(seen) == list(range(10))


def _manifest(name="NVIDIA H100 80GB HBM3", device="cuda"):
    return {"device": device, "device_name": name, "gpu_count": 1, "metadata": {"cpu": {"logical_cores": 2}}}


def test_profile_from_tables_keeps_published_terms_it_cannot_fit():
    res = profile_from_tables(_manifest(), {"matmul": gemm_table()}, run_id="r1")
    p = res.profile
    assert res.missing == ["memory", "launch", "collectives"]
    assert any("memory" in k for k in res.kept_published)
    assert p.provenance.kind == "calibrated" and p.provenance.run_id == "r1"
    h100 = get_profile("h100-sxm")
    assert p.memory == h100.memory and p.latency == h100.latency  # kept, not invented
    assert p.compute.gemm_fit["bf16"]["form"] in ("roofline", "additive", "interp")
    assert "arithmetic:bf16" in p.provenance.fit_quality


def test_a_fit_that_does_not_converge_keeps_the_published_value(monkeypatch):
    import inferecon.calibration.fit_compute as fc

    real = fc.fit_relative

    def failing(*a, **k):
        params, err, _, _ = real(*a, **k)
        return params, err, False, "forced failure"

    monkeypatch.setattr(fc, "fit_relative", failing)
    res = profile_from_tables(_manifest(), {"matmul": gemm_table()}, run_id="r2")
    assert not res.profile.compute.gemm_fit
    assert any("did not converge" in k for k in res.kept_published)


def test_calibrated_gemm_fit_drives_the_decode_prediction():
    res = profile_from_tables(_manifest(), {"matmul": gemm_table(tflops=700, gbps=1500)}, run_id="r3")
    m = get_model("llama-3-8b")
    lay = Layouts(tp_r=1, tp_c=1, pp=1, ep=1, micro_batch=1)
    pub = evaluate(m, published_base("H100"), lay, 128)
    cal = evaluate(m, res.profile, lay, 128)
    # Weights stream at the fitted 1.5 TB/s, not at 75% of 3.35 TB/s, and each of the
    # 32 x 4 projections + lm head pays the fitted 5 µs overhead.
    weights = (m.total_params - m.embedding_params) * 2
    assert cal.t_gemm_s[0] == pytest.approx(weights / 1.5e12 + (32 * 4 + 1) * 5e-6, rel=0.03)
    assert cal.t_step_s[0] > pub.t_step_s[0] * 1.4
    # With a GEMM fit the GEMMs sit in both compute terms, so max() is still the compute time.
    compute = max(cal.t_arithmetic_s[0], cal.t_memory_s[0])
    assert cal.t_step_s[0] == pytest.approx(compute + cal.t_network_s[0] + cal.t_latency_s[0], rel=1e-12)


def test_a_latency_only_collective_fits_inside_the_profile_schema():
    # gloo on a loaded CPU: 2 ms whatever the size from 1 KB to 1 MB (the time does not grow
    # with bytes). The fitted line is latency only, and its beta must still be a bandwidth a
    # profile file may hold (the schema's physical range stops at 1e5 GB/s): a floor of
    # 1e-12 us/byte wrote 1e9 GB/s, which `calibrate --device cpu` then refused to load.
    from inferecon.calibration.fit_network import fit_points
    from inferecon.model.profile_checks import check_profile_dict

    x = np.array([1, 4, 16, 64, 256, 1024], float) * 1024
    y = np.full(6, 2000.0)
    fits, res = fit_points("all_reduce", 2, "intra", "eager", x, y, "network:all_reduce/w2/intra")
    assert all(f.beta_gbps <= 1e5 for f in fits)
    # The slope that floor allows adds at most 1 MiB / 50,000 GB/s = 0.021 us: the line is flat.
    assert res.train_mape < 0.01
    hw = get_profile("h100-sxm")
    data = hw.to_dict()
    data["network"]["collectives"] = [dataclasses.asdict(f) for f in fits]
    check_profile_dict(data, "fitted")  # raises a one-line UserError outside the physical ranges
