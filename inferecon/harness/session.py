"""One run session for every command that measures (bench, calibrate, validate, and rank 0 of
the collectives' torchrun world): the manifest in one shape, the store, Ctrl-C/SIGTERM
handling, resume with an identity check, and the final status.

    session = RunSession.open(out, manifest_for("bench", device, ...), resume=args.resume)
    try:
        with session.running():      # SIGTERM stops like Ctrl-C; an escaping error stamps the run
            ...session.store...      # measure; every finished case is saved as it finishes
    except KeyboardInterrupt:
        session.say_interrupted("inferecon bench --resume --out DIR")
        return 130
    session.finish()                 # "complete"

The manifest has one shape (`RunManifest.to_dict`): the identity a resume is checked against
at the top level (run_kind, device, device_name, gpu_count, host_class, cpu_threads), the
machine's full description under `metadata`, and each kind's own section beside them
(`benchmarks_requested`, `collectives`, `validate`). Manifests written before this shape
(calibrate's `purpose` without a host class, validate's metadata at the top level) are read
into it by `store.read_manifest`.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from inferecon import __version__
from inferecon.harness.store import LOCK_NAME, RUN_KINDS, RunStore, check_same_run, read_manifest


# --------------------------------------------------------------------------------------------
# The manifest


@dataclass(frozen=True)
class RunManifest:
    """What a run directory says about itself when it is created."""

    run_kind: str  # bench, calibrate or validate: which command may --resume it
    device: str  # cuda or cpu
    device_name: str
    gpu_count: int
    host_class: str  # CPU model, cores, memory: a resume on another host is refused
    cpu_threads: Optional[int]  # torch/OpenMP threads on CPU (None on GPU)
    quick: bool
    metadata: dict  # harness.device.collect_metadata: versions, clocks, topology, env
    command_line: tuple[str, ...] = ()
    sections: dict = field(default_factory=dict)  # the kind's own top-level keys

    def __post_init__(self):
        if self.run_kind not in RUN_KINDS:
            raise ValueError(f"run_kind {self.run_kind!r} is not one of {RUN_KINDS}")
        clash = set(self.sections) & set(_TOP_LEVEL)
        if clash:
            raise ValueError(f"manifest sections {sorted(clash)} would overwrite the run's identity")

    def to_dict(self) -> dict:
        return {
            "command_line": list(self.command_line),
            "inferecon_version": __version__,
            "run_kind": self.run_kind,
            "device": self.device,
            "device_name": self.device_name,
            "gpu_count": self.gpu_count,
            "host_class": self.host_class,
            "cpu_threads": self.cpu_threads,
            "quick": self.quick,
            **self.sections,
            "metadata": self.metadata,
        }


_TOP_LEVEL = ("command_line", "inferecon_version", "run_kind", "device", "device_name", "gpu_count", "host_class",
              "cpu_threads", "quick", "metadata", "schema_version", "status", "start_time", "end_time", "resumes",
              "benchmarks", "host")


def manifest_for(run_kind: str, device: str, *, cpu_threads: Optional[int] = None, quick: bool = False,
                 sections: Optional[dict] = None, command_line=None) -> RunManifest:
    """The manifest of a run measured here, now: identity and metadata read from this machine."""
    from inferecon.harness.device import collect_metadata, device_identity, host_class

    device_name, gpu_count = device_identity(device)
    return RunManifest(run_kind=run_kind, device=device, device_name=device_name, gpu_count=gpu_count,
                       host_class=host_class(), cpu_threads=cpu_threads, quick=bool(quick),
                       metadata=collect_metadata(device),
                       command_line=tuple(sys.argv if command_line is None else command_line),
                       sections=dict(sections or {}))


# --------------------------------------------------------------------------------------------
# Signals


def raise_interrupt(signum, frame):
    """Signal handler: a SIGTERM (job scheduler, `timeout`, torchrun stopping its ranks) stops
    the run the way Ctrl-C does."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt inside the block (main thread only: Python runs signal
    handlers there, and a handler cannot be installed from another thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM while a record is written, so they land between cases and the table
    on disk always has every case that finished. Python-level handlers (they always run in the
    main thread) rather than a signal mask, which gloo's and NVML's threads would not share."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {sig: signal.signal(sig, lambda signum, frame: got.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if got:
        raise KeyboardInterrupt


# --------------------------------------------------------------------------------------------
# The session


def _lock_run_dir(out, resume: bool):
    """An exclusive lock on the run directory `out` (its .inferecon.lock), or a UserError where
    another process holds it: two `bench` processes on one --out would both end "complete" with
    their cases mixed. filelock (a torch dependency, so already installed wherever inferecon
    measures) takes an flock(2) that the kernel drops when the process dies, even by SIGKILL, so
    a killed run never leaves a stale lock for --resume. Reentrant within a process (is_singleton):
    the lock guards against other processes, and an in-process resume after an error is not one.
    None where the lock file cannot be made (a read-only or impossible --out): RunStore's own
    checks then refuse it in its words."""
    from filelock import FileLock, Timeout

    from inferecon.core.errors import UserError

    path = Path(out)
    if resume and not path.is_dir():
        return None  # nothing to resume: RunStore says so, and no empty folder is left behind
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path / LOCK_NAME), is_singleton=True, thread_local=False)
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{path} is being written by another inferecon process right now: wait for it to end "
                        "(then --resume to continue it), or choose another --out") from None
    except OSError:
        return None
    return lock


class RunSession:
    """One run directory being measured into. `owner` sessions stamp the run's status; an
    attached session (a torchrun rank appending to its parent's run) only appends."""

    def __init__(self, store: RunStore, owner: bool = True, lock=None):
        self.store = store
        self.owner = owner
        self.status: Optional[str] = None
        self._lock = lock  # held from open() to finish(): one writer per run directory

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir

    @classmethod
    def open(cls, out, manifest: RunManifest, resume: bool = False,
             same_run: Optional[Callable[[Path, dict], None]] = None) -> "RunSession":
        """Create the run directory, or reopen it with `resume`. Before anything on disk is
        touched, a resume is refused (UserError naming the difference) when the run is of
        another kind or another machine, or when `same_run(run_dir, old_manifest)` — the
        command's own check (validate: the same model and plan) — refuses it."""
        new = manifest.to_dict()
        if resume and same_run is not None and (Path(out) / "manifest.json").is_file():
            old = read_manifest(out)
            check_same_run(Path(out), old, new)  # the kind and machine first: the clearer refusal
            same_run(Path(out), old)
        lock = _lock_run_dir(out, resume)
        try:
            return cls(RunStore(out, new, resume=resume), lock=lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def attach(cls, out) -> "RunSession":
        """A torchrun rank appending to the run its parent owns (the parent stamps its end)."""
        return cls(RunStore(out, {}, resume=True), owner=False)

    # ---------------------------------------------------------------------------------------
    def append(self, benchmark: str, record: dict) -> None:
        """Store one case; Ctrl-C/SIGTERM wait for the write, so a case is whole or absent."""
        with signals_deferred():
            self.store.append(benchmark, record)

    def finish(self, status: str = "complete") -> None:
        """Stamp the end time and status (once; an attached session leaves it to its owner)."""
        if self.status is not None or not self.owner:
            return
        self.status = status
        try:
            self.store.finish(status)
        finally:
            if self._lock is not None:
                self._lock.release()

    def finish_quietly(self, status: str) -> None:
        """finish() on a way out that must not raise again (a rank leaving after a failure)."""
        try:
            self.finish(status)
        except Exception:
            pass

    @contextlib.contextmanager
    def running(self) -> Iterator["RunSession"]:
        """The measuring part of a command: SIGTERM stops like Ctrl-C; Ctrl-C stamps the run
        "interrupted" and any other escaping error "failed" (what finished is saved either
        way), then the exception goes on to the command."""
        try:
            with sigterm_as_interrupt():
                yield self
        except KeyboardInterrupt:
            self.finish("interrupted")
            raise
        except BaseException:
            self.finish("failed")
            raise

    def say_interrupted(self, resume_with: str, saved: Optional[int] = None) -> None:
        """The one line a command prints when it was interrupted."""
        what = f"{saved} finished case(s) saved" if saved is not None else "finished cases are saved"
        sys.stderr.write(f"inferecon: interrupted; {what} in {self.run_dir} (continue with {resume_with})\n")
        sys.stderr.flush()
