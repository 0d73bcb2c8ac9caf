"""`inferecon bench`: measure this node's matmul, memory, launch and collective figures into a
run directory (manifest.json + one Parquet table per benchmark), then print a summary."""

from __future__ import annotations

from inferecon.core.text import first_paragraph, slug

import importlib
import sys
from datetime import datetime, timezone
from pathlib import Path

from inferecon import cli_args
from inferecon.core.errors import UserError

BENCHMARKS = ("matmul", "memory", "launch", "collectives")
CHOICES = BENCHMARKS + ("all",)
# Single-device benchmarks: module in inferecon.kernels with BENCHMARK, BENCHMARK_VERSION, cases().
LOCAL = ("matmul", "memory", "launch")


# --------------------------------------------------------------------------------------------


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="measure this node (matmul, memory, launch, collectives)",
                              description=first_paragraph(__doc__))
    p.add_argument("benchmark", choices=CHOICES, help="what to measure; all = " + ", ".join(BENCHMARKS))
    p.add_argument("--device", choices=("cuda", "cpu"), default=None,
                   help="default: cuda if available, else cpu")
    p.add_argument("--quick", action="store_true", help="a small sweep (CI, smoke tests)")
    p.add_argument("--out", metavar="DIR", default=None, type=cli_args.given("a folder, e.g. results/run1"),
                   help="run directory (default results/<device>-<UTC time>/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping stored cases")
    p.add_argument("--nproc-per-node", type=cli_args.NPROC_PER_NODE, default=None,
                   help="collectives: processes (GPUs) per node, started with torchrun (default 1)")
    p.add_argument("--timeout-s", type=cli_args.TIMEOUT_S, default=300.0,
                   help="collectives: give up on a hung collective after this many seconds")
    p.add_argument("--threads", type=cli_args.THREADS, default=None,
                   help="CPU only: torch/OpenMP threads for every measurement (default 1, as calibrate and validate use)")
    p.add_argument("--no-progress", action="store_true", help="no per-case progress lines on stderr")
    p.set_defaults(func=handler)


def default_out(device_name: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / f"{slug(device_name)}-{stamp}"


from inferecon.harness.device import resolve_device  # noqa: E402,F401  (calibrate and validate use it too)


def handler(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("bench needs torch: install it (make install pulls the CPU build)") from None
    from inferecon.harness import distributed
    from inferecon.harness.device import apply_cpu_threads
    from inferecon.harness.runner import Progress, SweepContext, run_sweep, warm_device
    from inferecon.harness.session import RunSession, manifest_for
    from inferecon.sweeps import collectives

    if args.resume and not args.out:
        raise UserError("--resume needs --out DIR: the run directory to continue")
    # --nproc-per-node, --timeout-s and --threads are bounded where they are parsed (cli_args).
    device = resolve_device(args.device)
    # One thread by default on CPU, as calibrate and validate: a bench figure then means the
    # same as the calibration's (two threads on a busy 2-core machine measure 2x slower).
    threads = apply_cpu_threads(device, args.threads)
    names = list(BENCHMARKS) if args.benchmark == "all" else [args.benchmark]
    world = distributed.detect()
    if world is not None and world.world_size > 1:
        # Under torchrun/srun every rank runs this command: only the collectives need them all,
        # and only rank 0 may own the run directory.
        if names != ["collectives"]:
            raise UserError("inside a torchrun/srun world only `bench collectives` runs; start the others on their own")
        if world.rank != 0:
            # Rank 0 alone writes; this rank's --out only names the run in its messages.
            return collectives.run(_collective_options(args, device, args.out or "rank 0's run directory"), None) or 0
    manifest = manifest_for("bench", device, cpu_threads=threads, quick=args.quick,
                            sections={"benchmarks_requested": names})
    ctx = SweepContext(device=device, device_name=manifest.device_name, gpu_count=manifest.gpu_count,
                       quick=args.quick)
    out = Path(args.out) if args.out else default_out(manifest.device_name)
    # On --resume the session refuses, before touching the run, a run of another kind (calibrate,
    # validate) or measured on another machine (device, model, GPU count, host, threads).
    session = RunSession.open(out, manifest, resume=args.resume)
    store = session.store
    progress = Progress(enabled=not args.no_progress)
    progress.message(f"inferecon bench {args.benchmark} on {manifest.device_name} ({device}) -> {out}")
    try:
        with session.running():  # SIGTERM stops like Ctrl-C: finished cases are already saved
            warm_device(device, 0.3 if args.quick else 2.0)
            for name in names:
                if name == "collectives":
                    collectives.run(_collective_options(args, device, str(out)), session)
                    continue
                mod = importlib.import_module(f"inferecon.kernels.{name}")
                run_sweep(store, mod.BENCHMARK, mod.BENCHMARK_VERSION, mod.cases(ctx, args.quick), ctx, progress)
    except KeyboardInterrupt:
        progress.close()
        print_summary(store, sys.stdout)
        session.say_interrupted(f"--resume --out {out}")
        return 130
    session.finish("complete")
    print_summary(store, sys.stdout)
    print(f"\nrun directory: {out}")
    return 0


def _collective_options(args, device: str, out):
    from inferecon.sweeps.collectives import CollectiveOptions, DEFAULT_TIMEOUT_S

    return CollectiveOptions(device=device, out=str(out or ""), quick=args.quick, resume=args.resume,
                             nproc_per_node=args.nproc_per_node or 1,
                             timeout_s=DEFAULT_TIMEOUT_S if args.timeout_s is None else float(args.timeout_s),
                             progress=not args.no_progress)


# The summary table is shared with calibrate, so it lives in report/ (a command never imports another).
from inferecon.report.summary import print_summary  # noqa: E402
