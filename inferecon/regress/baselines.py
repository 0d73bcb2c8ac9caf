"""Saved baselines for the regression gate: results/baselines/<gpu>-x<count>-driver<ver>-<date>/.

A baseline is a copy of a run directory's measurements (manifest.json, *.parquet, and
profile.json when present) plus baseline.json saying where it came from. `pick` finds the
newest baseline of the same device model and GPU count as a candidate run.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from inferecon.core.errors import UserError
from inferecon.core.outpath import check_out_dir
from inferecon.harness.store import read_manifest, read_run

DEFAULT_DIR = Path("results") / "baselines"
# What a baseline keeps of a run: the measurements and their context, not plots or reports.
KEEP = ("manifest.json", "*.parquet", "profile.json")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", (text or "unknown").lower()).strip("-.") or "unknown"


def identity(manifest: dict) -> tuple[str, int]:
    """(device model, GPU count) of a run: what a baseline must share with a candidate."""
    return str(manifest.get("device_name") or ""), int(manifest.get("gpu_count") or 0)


def driver_version(manifest: dict) -> str | None:
    return (manifest.get("metadata", {}).get("nvml", {}) or {}).get("driver_version")


def baseline_name(manifest: dict) -> str:
    """<device-model-slug>-x<count>-driver<ver>-<YYYYMMDD> (the run's date, not today's); a
    CPU run is named -cpu- instead of -x0- and -nodriver when NVML gave no driver."""
    name, count = identity(manifest)
    drv = driver_version(manifest)
    date = str(manifest.get("start_time") or "")[:10].replace("-", "") or datetime.now(timezone.utc).strftime("%Y%m%d")
    where = f"x{count}" if manifest.get("device") == "cuda" or count else "cpu"
    return f"{_slug(name)}-{where}-{'driver' + _slug(drv) if drv else 'nodriver'}-{date}"


def save(run_dir, root=DEFAULT_DIR, allow_incomplete: bool = False) -> Path:
    """Copy a run into root/<name>/ atomically (a temp directory renamed into place); a name
    already taken gets -2, -3, …. Refuses runs that cannot be read or did not finish."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"--save-baseline: {run_dir} is not a directory")
    manifest, tables = read_run(run_dir)  # UserError on a corrupt table: never save one
    if not tables:
        raise UserError(f"--save-baseline: {run_dir} holds no measurements")
    if manifest.get("status") != "complete" and not allow_incomplete:
        raise UserError(f"--save-baseline: {run_dir} is {manifest.get('status')!r}, not complete "
                        f"(finish it with --resume, or pass --force to save it anyway)")
    root = check_out_dir(root, flag="--baselines-dir")  # a file or read-only folder: one line, nothing copied
    root.mkdir(parents=True, exist_ok=True)
    base = baseline_name(manifest)
    dest, k = root / base, 1
    while dest.exists():
        k += 1
        dest = root / f"{base}-{k}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{base}.", dir=root))
    try:
        for pattern in KEEP:
            for p in sorted(run_dir.glob(pattern)):
                shutil.copy2(p, tmp / p.name)
        info = {"name": dest.name, "source": str(run_dir.resolve()), "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "device_name": identity(manifest)[0], "gpu_count": identity(manifest)[1],
                "driver_version": driver_version(manifest), "run_start_time": manifest.get("start_time")}
        (tmp / "baseline.json").write_text(json.dumps(info, indent=2) + "\n")
        tmp.rename(dest)
    except OSError as exc:  # a full disk mid-copy: the partial copy goes, nothing is saved
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"--save-baseline: cannot copy {run_dir} to {root} ({exc.strerror or exc}); nothing was saved") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


@dataclass
class Candidate:
    path: Path
    start_time: str


def pick(candidate_manifest: dict, root=DEFAULT_DIR, exclude: Path | None = None) -> Path:
    """The newest baseline (by its run's start time) with the candidate's device model and
    GPU count; UserError saying how to save one if there is none."""
    return pick_newest(candidate_manifest, root, exclude, 1)[0]


def pick_newest(candidate_manifest: dict, root=DEFAULT_DIR, exclude: Path | None = None, count: int = 1) -> list[Path]:
    """Up to `count` newest matching baselines, newest last (a baseline set for the gate)."""
    want = identity(candidate_manifest)
    root = Path(root)
    found = []
    for m in sorted(root.glob("*/manifest.json")) if root.is_dir() else []:
        if exclude is not None and m.parent.resolve() == Path(exclude).resolve():
            continue
        try:
            man = read_manifest(m.parent)
        except UserError:
            continue  # a damaged baseline is skipped, not fatal: others may match
        if identity(man) == want:
            found.append(Candidate(m.parent, str(man.get("start_time") or "")))
    if not found:
        what = f"{want[0] or 'this device'}" + (f" x{want[1]}" if want[1] else "")
        raise UserError(f"no baseline for {what} under {root}: save one from a good run with "
                        f"`inferecon regress --save-baseline RUN_DIR`, or pass --baseline RUN_DIR")
    found.sort(key=lambda c: (c.start_time, c.path.name))
    return [c.path for c in found[-count:]]
