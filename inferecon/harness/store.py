"""The result store: one run directory per `inferecon bench` invocation.

    <run_dir>/manifest.json       run context (command line, versions, device, start/end)
    <run_dir>/<benchmark>.parquet one row per timed case (tidy), rewritten after every case

Every write is atomic (temp file in the same directory, fsync, os.replace), so a run killed at
any instant leaves the last complete table, never a half-written one; `resume=True` reopens a
run and `done()` tells the sweep which cases are already stored.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from inferecon.core.errors import UserError
from inferecon.core.outpath import atomic_write as _atomic_write_bytes
from inferecon.core.outpath import check_out_dir

# Bump when a column is renamed, removed or changes meaning; readers refuse other versions.
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
# The run directory's writer lock (harness/session.py): not a result, so an otherwise empty folder is new.
LOCK_NAME = ".inferecon.lock"
_META_KEY = b"inferecon.schema_version"

# Columns every record carries; benchmarks add their own parameters and derived figures.
COMMON_COLUMNS = (
    "benchmark",
    "benchmark_version",
    "schema_version",
    "case_id",
    "device",
    "device_name",
    "gpu_count",
    "samples_us",
    "median_us",
    "iqr_us",
    "reps",
    "noisy",
    "throttled",
    "skipped",
)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, obj) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode()
    _atomic_write_bytes(Path(path), lambda f: f.write(data))


def _check_record(benchmark: str, record: dict) -> dict:
    rec = dict(record)
    rec.setdefault("benchmark", benchmark)
    rec.setdefault("schema_version", SCHEMA_VERSION)
    rec.setdefault("skipped", "")
    if rec["benchmark"] != benchmark:
        raise ValueError(f"record for {rec['benchmark']!r} appended to {benchmark!r}")
    missing = [c for c in COMMON_COLUMNS if c not in rec]
    if missing:
        raise ValueError(f"record {rec.get('case_id')!r} lacks columns {missing}")
    rec["samples_us"] = [float(x) for x in (rec["samples_us"] or [])]
    return rec


def _to_table(records: list[dict]) -> pa.Table:
    df = pd.DataFrame.from_records(records)
    table = pa.Table.from_pandas(df, preserve_index=False)
    # An all-skipped table has empty sample lists pandas cannot type; force list<double>.
    idx = table.schema.get_field_index("samples_us")
    if idx >= 0 and table.schema.field(idx).type != pa.list_(pa.float64()):
        col = pa.array([list(map(float, r.get("samples_us") or [])) for r in records], type=pa.list_(pa.float64()))
        table = table.set_column(idx, "samples_us", col)
    meta = dict(table.schema.metadata or {})
    meta[_META_KEY] = str(SCHEMA_VERSION).encode()
    return table.replace_schema_metadata(meta)


def read_table(path: Path) -> pd.DataFrame:
    """Read one benchmark table; a clear UserError for corrupt files or another schema."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"cannot read {path}: not a complete Parquet file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    meta = table.schema.metadata or {}
    found = meta.get(_META_KEY)
    if found is None:
        raise UserError(f"{path} has no inferecon schema version: not written by inferecon bench")
    try:
        version = int(found.decode())
    except ValueError:
        version = None
    if version != SCHEMA_VERSION:
        raise UserError(
            f"{path} has schema version {found.decode(errors='replace')}, this inferecon reads version {SCHEMA_VERSION}"
        )
    return table.to_pandas()


def read_manifest(run_dir: Path) -> dict:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{path}: not a run manifest (a JSON object)")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UserError(f"{path} has schema version {version}, this inferecon reads version {SCHEMA_VERSION}")
    return normalize_manifest(manifest)


# What harness.device.collect_metadata describes beyond the identity kept at the top level.
# Older validate runs and the standalone collectives module wrote these at the top level.
_METADATA_KEYS = ("python", "platform", "cpu", "env", "torch_version", "torch_cuda_version", "cudnn_version",
                  "cuda_available", "nccl_version", "nccl_error", "torch_devices", "nvml")


def normalize_manifest(manifest: dict) -> dict:
    """A manifest in the one shape harness.session writes: `run_kind` (older calibrate runs
    said `purpose`; older runs said neither), the machine's description under `metadata`
    (older validate and standalone-collectives runs spread it over the top level). A manifest
    already in that shape comes back unchanged."""
    m = dict(manifest)
    kind = run_kind(m)
    if "purpose" in m and m.get("run_kind") is None:
        m.pop("purpose")
    if kind is not None:
        m["run_kind"] = kind
    spread = [k for k in _METADATA_KEYS if k in m]
    if spread and not isinstance(m.get("metadata"), dict):
        meta = {k: m.pop(k) for k in spread}
        # The identity stays at the top level too: readers of either place find it.
        for k in ("device", "device_name", "gpu_count", "inferecon_version"):
            if k in m:
                meta.setdefault(k, m[k])
        m["metadata"] = meta
    return m


def read_run(run_dir) -> tuple[dict, dict[str, pd.DataFrame]]:
    """(manifest, {benchmark: DataFrame}) of a finished or interrupted run."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    tables = {p.stem: read_table(p) for p in sorted(run_dir.glob("*.parquet"))}
    return manifest, tables


# A run directory holds one kind of run measured on one machine: every row is read against
# the manifest that describes it, so a resume that would add rows of another machine or merge
# one command's cases into another's run is refused, with the field that differs.
RUN_KINDS = ("bench", "calibrate", "validate")
_IDENTITY = (  # manifest key, how it reads in the refusal
    ("device", "measured on {old}, not {new}"),
    ("device_name", "measured on {old!r}, this machine has {new!r}"),
    ("gpu_count", "measured with {old} GPU(s), this machine has {new}"),
    ("host_class", "measured on host class {old!r}, this host is {new!r}"),
    ("cpu_threads", "measured with {old} CPU thread(s), this run uses {new} (--threads)"),
)


def run_kind(manifest: dict) -> Optional[str]:
    """bench, calibrate or validate; inferred for manifests written before `run_kind` existed."""
    kind = manifest.get("run_kind") or manifest.get("purpose")
    if kind:
        return str(kind)
    if "validate" in manifest:
        return "validate"
    if "benchmarks_requested" in manifest or "collectives" in manifest:
        return "bench"
    return None


def check_same_run(run_dir, old: dict, new: dict) -> None:
    """UserError naming the difference when `new` (the resuming command's manifest) describes
    another kind of run or another machine than `old` (the run on disk). A field missing on
    either side (an older manifest, the collectives' ranks attaching) is not compared."""
    old_kind, new_kind = run_kind(old), run_kind(new)
    if old_kind and new_kind and old_kind != new_kind:
        raise UserError(f"--resume: {run_dir} is a {old_kind} run, not a {new_kind} run (continue it with "
                        f"`inferecon {old_kind} --resume --out {run_dir}`, or choose another --out)")
    for key, text in _IDENTITY:
        if old.get(key) is None or new.get(key) is None:
            continue
        if str(old[key]) != str(new[key]):
            why = text.format(old=old[key], new=new[key])
            raise UserError(f"--resume: {run_dir} was {why}; a run directory holds one machine's "
                            "measurements: choose another --out")


class RunStore:
    """Append-only store of one run. Not thread-safe; one process writes a run directory
    (under torchrun, rank 0)."""

    def __init__(self, run_dir, manifest: Optional[dict] = None, resume: bool = False):
        self.run_dir = check_out_dir(run_dir)  # a file, read-only or impossible path: one line, before any work
        self._records: dict[str, list[dict]] = {}
        self._done: set[tuple[str, str]] = set()
        manifest = dict(manifest or {})
        if resume:
            if not (self.run_dir / MANIFEST).is_file():
                raise UserError(f"--resume: no run to resume at {self.run_dir}")
            old = read_manifest(self.run_dir)
            check_same_run(self.run_dir, old, manifest)  # before anything on disk is touched
            # A run killed (SIGKILL, power loss) inside a write leaves its temp file behind;
            # the table it was replacing is intact, so the temp file is only litter.
            for tmp in self.run_dir.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
            for path in sorted(self.run_dir.glob("*.parquet")):
                df = read_table(path)
                recs = df.to_dict(orient="records")
                for r in recs:
                    r["samples_us"] = [float(x) for x in (r.get("samples_us") if r.get("samples_us") is not None else [])]
                self._records[path.stem] = recs
                self._done.update((path.stem, str(c)) for c in df["case_id"])
            # Keep the original start and command; list every resumption with its own context.
            resumes = list(old.get("resumes", []))
            resumes.append({k: manifest.get(k) for k in ("command_line", "start_time", "device") if k in manifest} or {"start_time": utc_now()})
            self.manifest = {**old, "resumes": resumes, "status": "running", "end_time": None}
        else:
            if self.run_dir.exists() and any(p.name != LOCK_NAME for p in self.run_dir.iterdir()):
                raise UserError(f"{self.run_dir} already holds results: pass --resume to continue it, or choose another --out")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.manifest = {
                "schema_version": SCHEMA_VERSION,
                "host": socket.gethostname(),
                "start_time": utc_now(),
                **manifest,
                "status": "running",
                "end_time": None,
            }
            self.manifest["schema_version"] = SCHEMA_VERSION
        self.manifest.setdefault("benchmarks", {})
        self._write_manifest()

    # ---------------------------------------------------------------------------------------
    def _write_manifest(self) -> None:
        write_json_atomic(self.run_dir / MANIFEST, self.manifest)

    def path(self, benchmark: str) -> Path:
        return self.run_dir / f"{benchmark}.parquet"

    def done(self, benchmark: str, case_id: str) -> bool:
        return (benchmark, str(case_id)) in self._done

    def case_ids(self, benchmark: str) -> set[str]:
        """Ids of the cases of `benchmark` already stored (what a resumed sweep skips)."""
        return {cid for (bench, cid) in self._done if bench == benchmark}

    def records(self, benchmark: str) -> list[dict]:
        return list(self._records.get(benchmark, []))

    def benchmarks(self) -> list[str]:
        return list(self._records)

    def append(self, benchmark: str, record: dict) -> None:
        """Add one case and rewrite the benchmark's table atomically."""
        rec = _check_record(benchmark, record)
        key = (benchmark, str(rec["case_id"]))
        if key in self._done:
            raise ValueError(f"case {key} is already stored")
        recs = self._records.setdefault(benchmark, [])
        recs.append(rec)
        try:
            table = _to_table(recs)
            _atomic_write_bytes(self.path(benchmark), lambda f: pq.write_table(table, f))
        except BaseException:
            recs.pop()  # the file still holds the previous complete table
            raise
        self._done.add(key)
        info = self.manifest["benchmarks"].setdefault(benchmark, {})
        info["benchmark_version"] = rec.get("benchmark_version")
        info["cases"] = len(recs)
        self._write_manifest()

    def note(self, **fields) -> None:
        """Merge fields into the manifest (e.g. a benchmark's planned case count)."""
        self.manifest.update(fields)
        self._write_manifest()

    def finish(self, status: str = "complete") -> None:
        """Stamp the end time; status is "complete" or "interrupted"."""
        self.manifest["end_time"] = utc_now()
        self.manifest["status"] = status
        self._write_manifest()

    def read(self, benchmark: str) -> pd.DataFrame:
        return read_table(self.path(benchmark))
