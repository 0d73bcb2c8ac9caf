"""Op-DB calibrations kept in folders: what `calibrate --op-db` writes for one GPU x engine (a
HardwareProfile in profile.json, an EngineProfile in engine.json), and the set of them a caller
pricing many GPU x engine pairs uses (the scorecards), each fitted once with `calibrate --op-db`'s
own fit (calibration/opdb_fit.py) and, given a cache folder, read back from it the next time.

A cache folder holds one `calibrate --op-db` output folder per pair, named `<gpu>-<engine>`, so a
folder `calibrate --op-db --out CACHE/h100-sxm-trtllm` wrote is one the cache reads, and back."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from inferecon.core.errors import UserError
from inferecon.model.engine import EngineProfile
from inferecon.model.hardware import HardwareProfile

if TYPE_CHECKING:  # the fit pulls in pandas and the database reader: loaded only when one is fitted
    from inferecon.calibration.opdb_fit import OpDbCalibration

PROFILE_FILE = "profile.json"
ENGINE_FILE = "engine.json"


def save_calibration(cal: OpDbCalibration, folder: Path) -> tuple[Path, Path]:
    """Write the calibration's hardware and engine profiles into `folder` (made if missing);
    returns (profile.json, engine.json)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    profile, engine = folder / PROFILE_FILE, folder / ENGINE_FILE
    cal.profile.save(profile)
    cal.engine.save(engine)
    return profile, engine


def load_calibration(folder: Path) -> tuple[HardwareProfile, EngineProfile] | None:
    """The (HardwareProfile, EngineProfile) a `save_calibration` folder holds; None where either
    file is missing (a folder never written, or written half)."""
    profile, engine = Path(folder) / PROFILE_FILE, Path(folder) / ENGINE_FILE
    if not (profile.is_file() and engine.is_file()):
        return None
    return HardwareProfile.load(profile), EngineProfile.load(engine)


def opdb_profiles(pairs, op_db=None, cache_dir=None) -> dict:
    """(gpu, engine) -> (HardwareProfile, EngineProfile) fitted by `calibrate --op-db`'s fit on the
    database's newest version of that engine (op_db: a folder in the tables' layout, None for the
    installed aiconfigurator-core), or -> the reason there is none (the fit's one-line error).
    With `cache_dir`, each pair's fit is saved in <cache_dir>/<gpu>-<engine> and read back from
    there next time."""
    from inferecon.calibration.opdb_fit import calibrate_from_opdb

    out = {}
    for gpu, engine in sorted(set(pairs)):
        where = Path(cache_dir) / f"{gpu}-{engine}" if cache_dir else None
        cached = load_calibration(where) if where is not None else None
        if cached is not None:
            out[(gpu, engine)] = cached
            continue
        try:
            cal = calibrate_from_opdb(op_db, gpu, engine)
        except UserError as exc:
            out[(gpu, engine)] = str(exc)
            continue
        if where is not None:
            save_calibration(cal, where)
        out[(gpu, engine)] = (cal.profile, cal.engine)
    return out
