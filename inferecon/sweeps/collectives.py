"""Running the collectives benchmark (kernels/collectives.py) as a run: its typed options, the
torchrun world it starts on this node, and what every rank of that world does.

Three ways in, one run session each (harness.session):

- `run(opts, session)` from `inferecon bench collectives` and `inferecon calibrate`: outside a
  world, start `nproc_per_node` ranks with torchrun and wait; the command's session owns the
  run directory and the ranks append to it. Inside a torchrun/srun world (every rank runs the
  command), run the sweep here; rank 0 writes to the command's session.
- `python -m inferecon.sweeps.collectives` (what torchrun starts on every rank; also usable
  alone): rank 0 attaches to its parent's run, or, started by a user's own torchrun/srun,
  opens a bench run itself.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from inferecon.core.errors import UserError, exit_status
from inferecon.harness import distributed as hdist
from inferecon.harness import torchrun
from inferecon.harness.session import RunManifest, RunSession, manifest_for, sigterm_as_interrupt
from inferecon.kernels import collectives as coll

# What torchrun starts on every rank: this module.
RANKS_MODULE = "inferecon.sweeps.collectives"
DEFAULT_TIMEOUT_S = 120.0
# Fault tests only: rank INFERECON_COLLECTIVES_HANG_RANK sleeps forever before the
# INFERECON_COLLECTIVES_HANG_CASE-th case this run measures (0 = the first). The ranks are
# other processes, so the hook travels in their environment; the kernel only sees the
# `before_case` callable built from it here.
HANG_RANK_ENV = "INFERECON_COLLECTIVES_HANG_RANK"
HANG_CASE_ENV = "INFERECON_COLLECTIVES_HANG_CASE"


@dataclass(frozen=True)
class CollectiveOptions:
    """One collectives sweep: where it runs, what it measures and how long a call may hang."""

    device: str
    out: str
    quick: bool = False
    resume: bool = False
    nproc_per_node: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S
    ops: tuple[str, ...] = coll.OPS
    max_bytes: Optional[int] = None
    progress: bool = True  # one line per measured case on stderr

    def __post_init__(self):
        if self.device not in ("cuda", "cpu"):
            raise UserError(f"collectives run on cuda or cpu, not {self.device!r}")
        if not self.out:
            raise UserError("collectives need --out DIR")
        if self.nproc_per_node < 1:
            raise UserError("--nproc-per-node must be at least 1")
        if not self.timeout_s > 0:
            raise UserError("--timeout-s must be positive")
        bad = [o for o in self.ops if o not in coll.OPS]
        if bad:
            raise UserError(f"unknown collective {bad[0]!r}: choose from {', '.join(coll.OPS)}")
        if not self.ops:
            raise UserError(f"no collective to measure: choose from {', '.join(coll.OPS)}")
        if self.max_bytes is not None and self.max_bytes < 1:
            raise UserError(f"--max-bytes must be positive, got {self.max_bytes}")

    def child_argv(self) -> list[str]:
        """This module's arguments on every rank (the parent owns --resume: ranks attach)."""
        argv = ["--device", self.device, "--out", self.out, "--timeout-s", f"{self.timeout_s:g}",
                "--ops", ",".join(self.ops)]
        if self.quick:
            argv.append("--quick")
        if not self.progress:
            argv.append("--no-progress")
        if self.max_bytes is not None:
            argv += ["--max-bytes", str(self.max_bytes)]
        return argv


def _default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def parse_ops(value) -> tuple[str, ...]:
    if value is None or value == "":
        return coll.OPS
    ops = tuple(v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip())
    bad = [o for o in ops if o not in coll.OPS]
    if bad:
        raise UserError(f"unknown collective {bad[0]!r}: choose from {', '.join(coll.OPS)}")
    return ops


def options_from_args(args) -> CollectiveOptions:
    """The options of a parsed command line (`inferecon bench`'s or this module's); flags a
    command does not have (bench has no --ops) take their defaults."""
    nproc = getattr(args, "nproc_per_node", None)
    timeout_s = getattr(args, "timeout_s", None)
    max_bytes = getattr(args, "max_bytes", None)
    return CollectiveOptions(device=getattr(args, "device", None) or _default_device(),
                             out=str(getattr(args, "out", None) or ""), quick=bool(getattr(args, "quick", False)),
                             resume=bool(getattr(args, "resume", False)),
                             nproc_per_node=1 if nproc is None else int(nproc),
                             timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None else float(timeout_s),
                             ops=parse_ops(getattr(args, "ops", None)),
                             max_bytes=None if max_bytes is None else int(max_bytes),
                             progress=not getattr(args, "no_progress", False))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda if available")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller messages and shorter budgets")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out, skipping stored cases")
    parser.add_argument("--no-progress", action="store_true", help="no per-case lines on stderr")
    parser.add_argument("--nproc-per-node", type=int, default=None,
                        help="ranks to start on this node with torchrun when not already under torchrun/srun (default 1)")
    parser.add_argument("--timeout-s", type=float, default=None,
                        help=f"bound on any one collective call; a hung or dead rank ends the run after it (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--ops", default=None, help=f"comma-separated subset of {','.join(coll.OPS)}")
    parser.add_argument("--max-bytes", type=int, default=None, help="largest message (bytes) of the sweep")


def bench_manifest(opts: CollectiveOptions) -> RunManifest:
    # A bench run (run_kind): `bench --resume` may continue it, calibrate --resume may not.
    return manifest_for("bench", opts.device, quick=opts.quick, sections={"collectives": {
        "nproc_per_node": opts.nproc_per_node, "timeout_s": opts.timeout_s, "quick": opts.quick}})


def _fault_hook() -> Optional[Callable[[int, int], None]]:
    want = os.environ.get(HANG_RANK_ENV)
    if want is None:
        return None
    rank_to_hang, case_index = int(want), int(os.environ.get(HANG_CASE_ENV, "0"))

    def hang(rank: int, index: int) -> None:
        if rank == rank_to_hang and index == case_index:
            while True:  # a rank stuck outside any collective: only the peers' timeout ends it
                time.sleep(3600)

    return hang


# --------------------------------------------------------------------------------------------
# Inside the world: every rank runs this


def run_in_world(opts: CollectiveOptions, session: Optional[RunSession] = None,
                 before_case: Optional[Callable[[int, int], None]] = None) -> int:
    """Run the sweep as one rank of the launcher's world. Rank 0 writes to `session` (or opens
    the run itself when given none: attached to a relaunching parent's run, or a bench run of
    its own); other ranks never write. Returns 0; a failure after init is one line on stderr
    and the process exits (status 1), Ctrl-C exits 130 — except that a caller's session (rank
    0 of `inferecon bench`) gets the KeyboardInterrupt back to stamp and summarise the run."""
    env = hdist.detect()
    if torchrun.attached():
        torchrun.bind_to_parent()
    cfg = coll.sweep_config(opts.device, opts.quick, opts.ops, opts.max_bytes)
    progress = coll.SweepProgress(lines=opts.progress)
    callers = session
    ctx = None
    # torchrun stops the other ranks with SIGTERM when one fails: stop like Ctrl-C.
    with sigterm_as_interrupt():
        try:
            ctx = hdist.init(opts.device, opts.timeout_s, env)
            if ctx.rank != 0:
                session = None
            elif session is None:
                # Attached: the parent created the run directory and stamps its end; we append.
                session = RunSession.attach(opts.out) if torchrun.attached() else \
                    RunSession.open(opts.out, bench_manifest(opts), resume=opts.resume)
            stored = (lambda cid: session.store.done(coll.BENCHMARK, cid)) if session is not None else None
            keep = (lambda rec: session.append(coll.BENCHMARK, rec)) if session is not None else None
            coll.run_sweep(ctx, cfg, progress, stored, keep, before_case or _fault_hook())
            if session is not None and session is not callers:
                session.finish("complete")  # a no-op when attached: the parent stamps it
            hdist.destroy()
            return 0
        except KeyboardInterrupt:
            return _interrupted(ctx, progress, opts, session, callers)
        except UserError as exc:
            torchrun.fail(2, str(exc), session)
        except Exception as exc:  # a collective that timed out or lost a peer, mostly
            try:
                # A Ctrl-C forwarded to every rank makes a peer quit, and our call fail, a moment
                # before our own SIGINT is handled: let it land, so it reads as an interruption.
                time.sleep(0.2)
            except KeyboardInterrupt:
                return _interrupted(ctx, progress, opts, session, callers)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            where = ""
            if progress.current is not None:
                c = progress.current
                where = f" during {c.op} {c.mode} {coll.format_bytes(c.nominal_bytes)}"
            rank = ctx.rank if ctx is not None else (env.rank if env else 0)
            saved = f"{progress.saved} finished case(s) saved" if rank == 0 else "finished cases are saved"
            msg = (f"rank {rank}{where}: {type(exc).__name__}: {first[:300]} "
                   f"(a rank died or hung; --timeout-s {opts.timeout_s:g}); {saved} in {opts.out}")
            torchrun.fail(1, msg, session)
    return 1  # not reached


def _interrupted(ctx, progress, opts, session, callers) -> int:
    if ctx is not None and ctx.rank == 0:
        coll._progress(f"interrupted: {progress.saved} finished case(s) saved in {opts.out}")
    if session is not None and session is callers:
        raise KeyboardInterrupt  # the caller stamps "interrupted" and prints what was saved
    if session is not None:
        session.finish_quietly("interrupted")  # a no-op when attached
    torchrun.exit_now(130)
    return 130  # not reached


# --------------------------------------------------------------------------------------------
# Outside any world: start one with torchrun on this node


def launch_spec(opts: CollectiveOptions) -> torchrun.Launch:
    return torchrun.Launch(module=RANKS_MODULE, argv=tuple(opts.child_argv()), nproc_per_node=opts.nproc_per_node,
                           run_dir=Path(opts.out), timeout_s=opts.timeout_s, progress_prefix=coll.PROGRESS_PREFIX,
                           what=coll.BENCHMARK)


def run(opts: CollectiveOptions, session: Optional[RunSession] = None) -> int:
    """Measure the collectives into `session`'s run (opened here, as a bench run, when None).
    Inside a torchrun/srun world: run the sweep on this rank (a session must only be given on
    rank 0). Outside: start `nproc_per_node` ranks with torchrun and wait for them."""
    if hdist.detect() is not None:
        if session is not None and not torchrun.is_writer_rank():
            raise UserError("internal: a run session was opened on a rank other than 0")
        return run_in_world(opts, session)
    own = session is None
    if own:
        session = RunSession.open(opts.out, bench_manifest(opts), resume=opts.resume)
    try:
        torchrun.relaunch(launch_spec(opts), session)
    except KeyboardInterrupt:
        if own:
            session.finish("interrupted")
        raise
    except UserError:
        session.finish("failed")  # the caller turns the error into one line and stops
        raise
    if own:
        session.finish("complete")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {RANKS_MODULE}",
                                     description="collectives microbenchmark (started by torchrun on every rank)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return exit_status(lambda: run(options_from_args(args)))


if __name__ == "__main__":
    raise SystemExit(main())
