"""harness.store: atomic tables, resume bookkeeping, schema checks."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inferecon.core.errors import UserError
from inferecon.harness import store as store_mod
from inferecon.harness.store import SCHEMA_VERSION, RunStore, read_run


def rec(case_id, median=10.0, skipped=""):
    return {
        "benchmark": "memory",
        "benchmark_version": 1,
        "case_id": case_id,
        "device": "cpu",
        "device_name": "Test CPU",
        "gpu_count": 0,
        "samples_us": [] if skipped else [median, median + 1, median + 2],
        "median_us": float("nan") if skipped else median + 1,
        "iqr_us": float("nan") if skipped else 1.0,
        "reps": 0 if skipped else 3,
        "noisy": False,
        "throttled": False,
        "skipped": skipped,
        "op": "read",
        "bytes": 1024,
    }


def test_append_writes_table_after_every_case(tmp_path):
    s = RunStore(tmp_path / "run", {"command_line": ["x"]})
    s.append("memory", rec("a"))
    assert len(s.read("memory")) == 1
    s.append("memory", rec("b", skipped="out of memory"))
    df = s.read("memory")
    assert list(df["case_id"]) == ["a", "b"]
    assert list(df.loc[0, "samples_us"]) == [10.0, 11.0, 12.0]
    assert len(df.loc[1, "samples_us"]) == 0 and df.loc[1, "skipped"] == "out of memory"
    assert (df["schema_version"] == SCHEMA_VERSION).all()
    assert not list((tmp_path / "run").glob("*.tmp"))
    s.finish()
    manifest, tables = read_run(tmp_path / "run")
    assert manifest["status"] == "complete" and manifest["end_time"]
    assert manifest["command_line"] == ["x"]
    assert manifest["benchmarks"]["memory"]["cases"] == 2
    assert set(tables) == {"memory"}


def test_all_skipped_table_is_readable(tmp_path):
    s = RunStore(tmp_path / "run", {})
    s.append("memory", rec("a", skipped="out of memory"))
    assert s.read("memory")["skipped"].tolist() == ["out of memory"]


def test_missing_common_column_rejected(tmp_path):
    s = RunStore(tmp_path / "run", {})
    r = rec("a")
    del r["device_name"]
    with pytest.raises(ValueError, match="device_name"):
        s.append("memory", r)


def test_resume_knows_finished_cases_and_keeps_them(tmp_path):
    s = RunStore(tmp_path / "run", {"command_line": ["first"]})
    s.append("memory", rec("a"))
    s.append("memory", rec("b"))
    # no finish(): the run was interrupted
    s2 = RunStore(tmp_path / "run", {"command_line": ["second"]}, resume=True)
    assert s2.done("memory", "a") and s2.done("memory", "b") and not s2.done("memory", "c")
    with pytest.raises(ValueError):
        s2.append("memory", rec("a"))
    s2.append("memory", rec("c"))
    s2.finish()
    manifest, tables = read_run(tmp_path / "run")
    assert tables["memory"]["case_id"].tolist() == ["a", "b", "c"]
    assert manifest["command_line"] == ["first"]
    assert manifest["resumes"][0]["command_line"] == ["second"]


def test_existing_run_without_resume_is_refused(tmp_path):
    RunStore(tmp_path / "run", {})
    with pytest.raises(UserError, match="--resume"):
        RunStore(tmp_path / "run", {})


def test_resume_of_nothing_is_refused(tmp_path):
    with pytest.raises(UserError, match="no run"):
        RunStore(tmp_path / "nothing", {}, resume=True)


def test_truncated_parquet_gives_clear_error(tmp_path):
    s = RunStore(tmp_path / "run", {})
    s.append("memory", rec("a"))
    path = s.path("memory")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="not a complete Parquet file"):
        read_run(tmp_path / "run")
    with pytest.raises(UserError):
        RunStore(tmp_path / "run", {}, resume=True)


def test_wrong_schema_version_is_refused(tmp_path):
    s = RunStore(tmp_path / "run", {})
    s.append("memory", rec("a"))
    table = pq.read_table(s.path("memory"))
    table = table.replace_schema_metadata({b"inferecon.schema_version": b"999"})
    pq.write_table(table, s.path("memory"))
    with pytest.raises(UserError, match="schema version 999"):
        s.read("memory")
    # a foreign parquet file without the version
    pq.write_table(pa.table({"x": [1]}), tmp_path / "run" / "other.parquet")
    with pytest.raises(UserError, match="no inferecon schema version"):
        store_mod.read_table(tmp_path / "run" / "other.parquet")


def test_manifest_schema_version_checked(tmp_path):
    RunStore(tmp_path / "run", {})
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    m["schema_version"] = 0
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(UserError, match="schema version 0"):
        read_run(tmp_path / "run")


def test_failed_write_keeps_previous_table(tmp_path, monkeypatch):
    s = RunStore(tmp_path / "run", {})
    s.append("memory", rec("a"))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    # A failed write is one line for the user (inferecon.core.outpath), naming the kept file.
    with pytest.raises(UserError, match="previous file is intact"):
        s.append("memory", rec("b"))
    monkeypatch.undo()
    assert s.read("memory")["case_id"].tolist() == ["a"]
    assert not s.done("memory", "b")
    assert not list((tmp_path / "run").glob(".*.tmp"))
