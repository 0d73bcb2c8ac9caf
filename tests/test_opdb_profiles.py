"""inferecon/calibration/opdb_profiles.py: the op-DB profiles of many GPU x engine pairs, each fitted
once (a stand-in for calibrate --op-db's fit here, so no database is needed), saved in the folder
layout `calibrate --op-db` writes and read back from the cache instead of fitted again."""

from __future__ import annotations

from inferecon.calibration import opdb_fit
from inferecon.calibration.opdb_profiles import load_calibration, opdb_profiles, save_calibration
from inferecon.core.errors import UserError
from inferecon.model.engine import EngineProfile
from inferecon.model.published import get_profile


def _fake_fit(monkeypatch):
    """calibrate_from_opdb replaced: an H100 with a 7 us step for (h100-sxm, trtllm), the
    database's one-line refusal for any other GPU. Returns the list of the pairs it fitted."""
    fitted = []

    def fit(db_path, gpu, engine, engine_version=None):
        fitted.append((gpu, engine))
        if gpu != "h100-sxm":
            raise UserError(f"the database has no {gpu}")
        eng = EngineProfile(name=f"op-DB {engine}", step_overhead_us=7.0)
        return opdb_fit.OpDbCalibration(profile=get_profile("h100-sxm"), engine=eng)

    monkeypatch.setattr(opdb_fit, "calibrate_from_opdb", fit)
    return fitted


def test_each_pair_is_fitted_once_and_a_refusal_is_its_reason(monkeypatch):
    fitted = _fake_fit(monkeypatch)
    got = opdb_profiles([("h100-sxm", "trtllm"), ("h100-sxm", "trtllm"), ("mi300x", "vllm")])
    assert fitted == [("h100-sxm", "trtllm"), ("mi300x", "vllm")]  # once each, in sorted order
    hw, eng = got[("h100-sxm", "trtllm")]
    assert hw.name == get_profile("h100-sxm").name and eng.step_overhead_us == 7.0
    assert got[("mi300x", "vllm")] == "the database has no mi300x"


def test_the_cache_is_read_back_instead_of_fitting_again(monkeypatch, tmp_path):
    fitted = _fake_fit(monkeypatch)
    first = opdb_profiles([("h100-sxm", "trtllm")], cache_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "h100-sxm-trtllm").iterdir()) == ["engine.json", "profile.json"]
    again = opdb_profiles([("h100-sxm", "trtllm")], cache_dir=tmp_path)
    assert fitted == [("h100-sxm", "trtllm")]  # the second call fitted nothing
    (hw1, eng1), (hw2, eng2) = first[("h100-sxm", "trtllm")], again[("h100-sxm", "trtllm")]
    assert eng2.step_overhead_us == eng1.step_overhead_us == 7.0
    assert hw2.memory.bandwidth_gbps == hw1.memory.bandwidth_gbps


def test_a_half_written_folder_is_fitted_again(monkeypatch, tmp_path):
    fitted = _fake_fit(monkeypatch)
    cal = opdb_fit.OpDbCalibration(profile=get_profile("h100-sxm"), engine=EngineProfile(name="x"))
    _, engine = save_calibration(cal, tmp_path / "h100-sxm-trtllm")
    engine.unlink()
    assert load_calibration(tmp_path / "h100-sxm-trtllm") is None
    opdb_profiles([("h100-sxm", "trtllm")], cache_dir=tmp_path)
    assert fitted == [("h100-sxm", "trtllm")] and engine.is_file()
