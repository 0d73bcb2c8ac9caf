"""Starting a world of ranks with torchrun on this node, and the plumbing every rank shares.

The parent side (`relaunch`): start `python -m torch.distributed.run --standalone` on a
module, pass a Ctrl-C or SIGTERM on to it once, stop it when it goes silent for too long,
keep the ranks' output in a log beside the run, forward their progress lines, and turn
their failure into one line (a UserError). The ranks append to the parent's run directory;
the parent owns its manifest.

The rank side: die with the torchrun agent that started us (`bind_to_parent`) and leave with
one line and a status without waiting on peers that may be dead (`fail`, `exit_now`); the
run itself (manifest, signals, status) is harness.session's, as for every command.

What runs on the ranks (which module, its arguments) is the caller's: harness/ never
imports kernels/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from inferecon.core.errors import ERROR_PREFIX, UserError
from inferecon.harness.session import sigterm_as_interrupt

# Set by the re-launching parent: it owns the run directory; the ranks only append to it.
ATTACH_ENV = "INFERECON_TORCHRUN_ATTACH"
_NCCL_TIMEOUT = "Watchdog caught collective operation timeout"


def attached() -> bool:
    """True in a rank started by `relaunch` (the parent owns the run directory)."""
    return bool(os.environ.get(ATTACH_ENV))


# --------------------------------------------------------------------------------------------
# Rank side


def _set_parent_death_signal(sig: int) -> bool:
    """Ask Linux to send `sig` to this process when its parent dies (prctl PR_SET_PDEATHSIG);
    False where that does not exist."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _die_with_parent(sig: int):
    parent = os.getpid()

    def preexec():  # runs in the child between fork and exec; the setting survives exec
        if _set_parent_death_signal(sig) and os.getppid() != parent:
            os._exit(1)  # the parent died before prctl took effect

    return preexec if sys.platform.startswith("linux") else None


def bind_to_parent() -> None:
    """Die with the torchrun agent that started us: an orphaned rank can only wait for peers
    that are gone (Linux; elsewhere the process-group timeout still ends it)."""
    if _set_parent_death_signal(signal.SIGKILL) and os.getppid() == 1:
        os._exit(1)  # the agent died before prctl took effect


def exit_now(code: int):
    # os._exit, not sys.exit: with a peer dead or hung, destroy_process_group and atexit
    # hooks can block; every finished case is already on disk.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def fail(code: int, msg: str, session=None):
    """One line with the error prefix (the parent looks for it), stamp the run "failed" when
    this rank's session owns it, leave."""
    sys.stderr.write(ERROR_PREFIX + msg.replace("\n", " ") + "\n")
    if session is not None:
        session.finish_quietly("failed")
    exit_now(code)


# --------------------------------------------------------------------------------------------
# Parent side


@dataclass(frozen=True)
class Launch:
    """One torchrun world on this node: `python -m <module> <argv>` on each of `nproc` ranks."""

    module: str
    argv: tuple[str, ...]
    nproc_per_node: int
    run_dir: Path
    timeout_s: float  # the ranks' bound on one collective call
    progress_prefix: str  # rank lines starting with it are shown to the user ("": none)
    what: str  # names the work in error messages ("collectives")

    def command(self) -> list[str]:
        # `python -m torch.distributed.run` is torchrun with this very interpreter.
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                str(self.nproc_per_node), "-m", self.module, *self.argv]

    @property
    def stall_limit_s(self) -> float:
        # Backstop above the process-group timeout: start-up (imports, rendezvous) plus a few
        # timeouts' worth of silence before the parent decides the world itself is stuck.
        return 3 * self.timeout_s + 120

    @property
    def log_path(self) -> Path:
        return Path(self.run_dir) / f"{self.what}.log"


def relaunch(launch: Launch, session=None) -> None:
    """Run the world and wait; raises UserError on failure and KeyboardInterrupt when
    interrupted (after the ranks stopped and saved what finished). `session`: the parent's
    RunSession whose run the ranks append to, or None (the ranks hand back their results
    some other way)."""
    store = session.store if session is not None else None
    run_dir = Path(launch.run_dir)
    log_path = launch.log_path
    env = dict(os.environ, **{ATTACH_ENV: "1"})
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default; said here to silence its warning
    errors: list[str] = []
    watchdog: list[str] = []  # NCCL's watchdog kills a rank on timeout before it can say why
    last_activity = [time.monotonic()]

    # torchrun gets a session of its own so a terminal's Ctrl-C reaches it once, forwarded by
    # us, not twice (a second SIGINT interrupts torchrun's own shutdown of the ranks); and it
    # is told to stop (SIGTERM) if we die, so no orphaned world keeps running.
    proc = subprocess.Popen(launch.command(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, bufsize=1, start_new_session=True,
                            preexec_fn=_die_with_parent(signal.SIGTERM))

    def pump():
        with open(log_path, "a") as log:
            for line in proc.stdout:
                last_activity[0] = time.monotonic()
                log.write(line)
                log.flush()
                if line.startswith(ERROR_PREFIX):
                    errors.append(line[len(ERROR_PREFIX):].strip())
                elif _NCCL_TIMEOUT in line and not watchdog:
                    watchdog.append(line.strip())
                elif launch.progress_prefix and line.startswith(launch.progress_prefix):
                    sys.stderr.write(line)
                    sys.stderr.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    stalled = False
    with sigterm_as_interrupt():
        try:
            while proc.poll() is None:
                try:
                    proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    if time.monotonic() - last_activity[0] > launch.stall_limit_s:
                        stalled = True
                        _stop(proc, signal.SIGTERM)
                        break
        except KeyboardInterrupt:
            # Ctrl-C (or SIGTERM) reached only us: pass it to torchrun, which passes it to the
            # ranks; rank 0 stops between cases, so every finished case is on disk.
            _stop(proc, signal.SIGINT)
            reader.join(timeout=5)
            merge_manifest(store, run_dir)
            raise
    reader.join(timeout=5)
    merge_manifest(store, run_dir)
    rc = proc.returncode
    saved = f"finished cases are saved in {run_dir}; log: {log_path}"
    if stalled:
        raise UserError(f"{launch.what}: no progress for {launch.stall_limit_s:g} s, run stopped ({saved})")
    if rc == 0:
        return
    if rc in (130, -signal.SIGINT) and not errors:
        raise KeyboardInterrupt
    if errors:
        raise UserError(errors[0])
    if watchdog:
        raise UserError(f"{launch.what}: a collective exceeded --timeout-s {launch.timeout_s:g} and NCCL's watchdog "
                        f"stopped the run (a rank died or hung); {saved}")
    raise UserError(f"{launch.what}: torchrun exited with status {rc} ({saved})")


def _stop(proc: subprocess.Popen, sig: int, grace_s: float = 45.0) -> None:
    """Signal torchrun (it forwards the signal to every rank), then kill it after grace_s
    (torchrun itself gives its ranks 30 s before SIGKILL)."""
    try:
        proc.send_signal(sig)
        proc.wait(timeout=grace_s)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def merge_manifest(store, run_dir: Path) -> None:
    """The ranks appended to the run and updated the manifest's per-benchmark counts; copy
    them into the parent's store so its finish() does not write stale ones back. Nothing to
    do for a caller without a store (its ranks hand their records back in a file)."""
    from inferecon.harness.store import read_manifest

    if store is None:
        return
    try:
        disk = read_manifest(run_dir)
    except UserError:
        return
    if "benchmarks" in disk:
        store.note(benchmarks=disk["benchmarks"])


def is_writer_rank(env=None) -> bool:
    """False on every rank of a torchrun/srun world but rank 0: those must not open a store."""
    from inferecon.harness import distributed as hdist

    env = env if env is not None else hdist.detect()
    return env is None or env.rank == 0

