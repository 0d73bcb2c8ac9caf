"""`inferecon bench all --device cpu --quick` end to end: a complete run directory whose
every table holds the planned cases with consistent derived figures."""

import math

import numpy as np
import pytest

from inferecon import cli
from inferecon.harness.runner import SweepContext
from inferecon.harness.store import SCHEMA_VERSION, read_run
from inferecon.kernels import launch, matmul, memory


pytestmark = pytest.mark.slow  # every test reads one real `bench --quick` run (module fixture)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "run"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = cli.main(["bench", "all", "--device", "cpu", "--quick", "--out", str(out), "--no-progress"])
    manifest, tables = read_run(out)
    return rc, out, manifest, tables, stdout.getvalue()


def _planned_ids(mod):
    ctx = SweepContext("cpu", "test", 0, quick=True)
    return {c.case_id for c in mod.cases(ctx, True)}


def test_run_completes_with_every_table(quick_run):
    rc, out, manifest, tables, _ = quick_run
    assert rc == 0
    assert set(tables) == {"matmul", "memory", "launch", "collectives"}
    assert manifest["status"] == "complete" and manifest["end_time"]
    assert manifest["device"] == "cpu"
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["command_line"]
    meta = manifest["metadata"]
    assert meta["cpu"]["model"] and meta["cpu"]["logical_cores"] >= 1
    assert "available" in meta["nvml"]  # recorded whether or not NVML exists
    assert meta["torch_version"]


@pytest.mark.parametrize("mod", [matmul, memory, launch], ids=lambda m: m.BENCHMARK)
def test_tables_hold_exactly_the_planned_cases(quick_run, mod):
    df = quick_run[3][mod.BENCHMARK]
    assert set(df["case_id"]) == _planned_ids(mod)
    assert df["case_id"].is_unique
    assert (df["device"] == "cpu").all() and (df["gpu_count"] == 0).all()
    assert df["device_name"].str.len().min() > 0  # the device identity is in every row
    assert (df["benchmark_version"] == mod.BENCHMARK_VERSION).all()
    assert (df["schema_version"] == SCHEMA_VERSION).all()
    for _, r in df[df["skipped"] == ""].iterrows():
        s = np.asarray(r["samples_us"])
        assert len(s) == r["reps"] >= 5
        assert r["median_us"] == pytest.approx(np.median(s))
        q1, q3 = np.percentile(s, [25, 75])
        assert r["iqr_us"] == pytest.approx(q3 - q1)
        assert r["noisy"] == bool(r["iqr_us"] / r["median_us"] > 0.10)


def test_matmul_derived_figures(quick_run):
    df = quick_run[3]["matmul"]
    assert (df["skipped"] == "").all()
    for _, r in df.iterrows():
        assert r["flop"] == 2 * r["m"] * r["n"] * r["k"]
        assert r["tflops"] == pytest.approx(r["flop"] / (r["median_us"] * 1e-6) / 1e12)
        assert r["weight_bytes"] == r["n"] * r["k"] * matmul.BYTES_PER_ELEMENT[r["dtype"]]
        if r["shape_kind"] == "decode":
            assert r["weight_gbps"] == pytest.approx(r["weight_bytes"] / (r["median_us"] * 1e-6) / 1e9)
        else:
            assert math.isnan(r["weight_gbps"])
    assert set(df["shape_kind"]) == {"square", "decode"}
    assert {"fp32", "bf16"} <= set(df["dtype"])


def test_memory_bytes_counted_per_design(quick_run):
    df = quick_run[3]["memory"]
    assert (df["skipped"] == "").all()
    assert set(df["op"]) == {"read", "write", "copy"}
    for _, r in df.iterrows():
        assert r["bytes_moved"] == (2 * r["bytes"] if r["op"] == "copy" else r["bytes"])
        assert r["gbps"] == pytest.approx(r["bytes_moved"] / (r["median_us"] * 1e-6) / 1e9)
    assert (df.loc[df["op"] == "read", "kernel"] == "torch_sum").all()


def test_launch_cpu_measures_eager_and_skips_gpu_only_ops(quick_run):
    df = quick_run[3]["launch"].set_index("op")
    assert df.loc["kernel_eager", "skipped"] == ""
    assert df.loc["kernel_eager", "time_us"] == df.loc["kernel_eager", "median_us"] > 0
    for op in ("kernel_graph", "sync"):
        assert "CUDA" in df.loc[op, "skipped"]
        assert len(df.loc[op, "samples_us"]) == 0


def test_summary_table_lists_every_case(quick_run):
    _, _, _, tables, stdout = quick_run
    lines = stdout.splitlines()
    assert lines[0].split()[:4] == ["benchmark", "case", "median_us", "iqr_us"]
    for name, df in tables.items():
        for cid in df["case_id"]:
            assert any(cid in line for line in lines), cid
    assert "run directory:" in stdout
