"""`inferecon bench`: measure this node's matmul, memory, launch and collective figures into a
run directory (manifest.json + one Parquet table per benchmark), then print a summary."""

from __future__ import annotations

from inferecon.cli_text import first_paragraph, slug

import importlib
import math
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path

from inferecon import __version__
from inferecon.errors import UserError

BENCHMARKS = ("matmul", "memory", "launch", "collectives")
CHOICES = BENCHMARKS + ("all",)
# Single-device benchmarks: module in inferecon.kernels with BENCHMARK, BENCHMARK_VERSION, cases().
LOCAL = ("matmul", "memory", "launch")


# --------------------------------------------------------------------------------------------
# Published peaks for the "fraction of peak" column: the published profiles' datasheet figures
# (calibration/published.py, from shared/reference/hardware.md), matched by device name.


def published_peak(device_name: str, what: str):
    """Datasheet peak of `what` ("bf16", "fp16", "fp8", "tf32", "fp32" in TFLOP/s; "hbm" in
    GB/s) for a GPU name, or None (CPUs, unknown GPUs, unknown figures)."""
    from inferecon.calibration.published import match_published

    prof = match_published(device_name)
    if prof is None:
        return None
    if what == "hbm":
        return prof.memory.bandwidth_gbps
    return prof.compute.peak_tflops.get(what)


# --------------------------------------------------------------------------------------------


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="measure this node (matmul, memory, launch, collectives)",
                              description=first_paragraph(__doc__))
    p.add_argument("benchmark", choices=CHOICES, help="what to measure; all = " + ", ".join(BENCHMARKS))
    p.add_argument("--device", choices=("cuda", "cpu"), default=None,
                   help="default: cuda if available, else cpu")
    p.add_argument("--quick", action="store_true", help="a small sweep (CI, smoke tests)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="run directory (default results/<device>-<UTC time>/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping stored cases")
    p.add_argument("--nproc-per-node", type=int, default=None,
                   help="collectives: processes (GPUs) per node, started with torchrun (default 1)")
    p.add_argument("--timeout-s", type=float, default=300.0,
                   help="collectives: give up on a hung collective after this many seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=handler)


def default_out(device_name: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / f"{slug(device_name)}-{stamp}"


def resolve_device(requested) -> str:
    from inferecon.harness.device import cuda_available

    has_cuda = cuda_available()
    if requested == "cuda" and not has_cuda:
        raise UserError("--device cuda: no CUDA device is available here (use --device cpu)")
    return requested or ("cuda" if has_cuda else "cpu")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def handler(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("bench needs torch: install it (make install pulls the CPU build)") from None
    from inferecon.harness.device import collect_metadata, device_identity
    from inferecon.harness.runner import Progress, SweepContext, run_sweep, warm_device
    from inferecon.harness.store import RunStore, read_manifest

    if args.resume and not args.out:
        raise UserError("--resume needs --out DIR: the run directory to continue")
    if args.nproc_per_node is not None and args.nproc_per_node < 1:
        raise UserError("--nproc-per-node must be at least 1")
    if args.timeout_s <= 0:
        raise UserError("--timeout-s must be positive")
    device = resolve_device(args.device)
    names = list(BENCHMARKS) if args.benchmark == "all" else [args.benchmark]
    world = _launcher_world()
    if world is not None and world.world_size > 1:
        # Under torchrun/srun every rank runs this command: only the collectives need them all,
        # and only rank 0 may own the run directory.
        if names != ["collectives"]:
            raise UserError("inside a torchrun/srun world only `bench collectives` runs; start the others on their own")
        if world.rank != 0:
            args.device = device
            return _run_collectives(args, None, None) or 0
    device_name, gpu_count = device_identity(device)
    ctx = SweepContext(device=device, device_name=device_name, gpu_count=gpu_count, quick=args.quick)
    out = Path(args.out) if args.out else default_out(device_name)
    manifest = {
        "command_line": list(sys.argv),
        "inferecon_version": __version__,
        "device": device,
        "device_name": device_name,
        "gpu_count": gpu_count,
        "quick": args.quick,
        "benchmarks_requested": names,
        "metadata": collect_metadata(device),
    }
    if args.resume:
        # Checked before the store touches the run: a CPU run is not continued on a GPU.
        old_device = read_manifest(out).get("device") if (out / "manifest.json").is_file() else None
        if old_device not in (None, device):
            raise UserError(f"--resume: {out} was measured on {old_device}, not {device}")
    store = RunStore(out, manifest, resume=args.resume)
    # The collectives read these from args: the resolved values, not the defaults.
    args.out, args.device = str(out), device
    progress = Progress(enabled=not args.no_progress)
    progress.message(f"inferecon bench {args.benchmark} on {device_name} ({device}) -> {out}")

    # SIGTERM (job schedulers, `timeout`) stops like Ctrl-C: finished cases are already saved.
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        warm_device(device, 0.3 if args.quick else 2.0)
        for name in names:
            if name == "collectives":
                _run_collectives(args, store, progress)
                continue
            mod = importlib.import_module(f"inferecon.kernels.{name}")
            run_sweep(store, mod.BENCHMARK, mod.BENCHMARK_VERSION, mod.cases(ctx, args.quick), ctx, progress)
    except KeyboardInterrupt:
        store.finish("interrupted")
        progress.close()
        print_summary(store, sys.stdout)
        sys.stderr.write(f"inferecon: interrupted; finished cases are saved in {out} "
                         f"(continue with --resume --out {out})\n")
        return 130
    except Exception:
        store.finish("failed")  # what finished is saved; the manifest says the run broke
        raise
    finally:
        signal.signal(signal.SIGTERM, old_term)
    store.finish("complete")
    print_summary(store, sys.stdout)
    print(f"\nrun directory: {out}")
    return 0


def _launcher_world():
    try:
        from inferecon.harness import distributed
    except ModuleNotFoundError:
        return None
    return distributed.detect()


def _run_collectives(args, store, progress):
    try:
        mod = importlib.import_module("inferecon.kernels.collectives")
    except ModuleNotFoundError as exc:
        if exc.name != "inferecon.kernels.collectives":
            raise
        mod = None
    run = getattr(mod, "run_from_cli", None)
    if run is None:
        if progress is not None:
            progress.message("[collectives] not available in this version of inferecon: skipped")
        return None
    return run(args, store)


# --------------------------------------------------------------------------------------------
# Summary


def _derived(row: dict):
    """(figure, unit, fraction of published peak or None) of one record."""
    bench = row.get("benchmark")
    name = row.get("device_name", "")
    if bench == "matmul":
        v = row.get("tflops")
        peak = published_peak(name, row.get("dtype", ""))
        return v, "TFLOP/s", (v / peak if peak and _ok(v) else None)
    if bench == "memory":
        v = row.get("gbps")
        peak = published_peak(name, "hbm") if row.get("device") == "cuda" else None
        return v, "GB/s", (v / peak if peak and _ok(v) else None)
    if bench == "launch":
        return row.get("time_us"), "us", None
    if bench == "collectives" and _ok(row.get("algbw_gbps")):
        # busbw is 0 by definition at world size 1; algbw still says what one call moved.
        return row["algbw_gbps"], f"GB/s algbw, busbw {_fmt(row.get('busbw_gbps'))}", None
    for key, unit in (("busbw_gbps", "GB/s busbw"), ("gbps", "GB/s"), ("tflops", "TFLOP/s")):
        if key in row and _ok(row[key]):
            return row[key], unit, None
    return None, "", None


def _ok(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _fmt(v, digits=3) -> str:
    if not _ok(v):
        return "-"
    v = float(v)
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits - 1}g}"


def summary_rows(run_dir) -> list[list[str]]:
    """One row per stored case, read back from disk: collectives are written by their own
    worker processes, so the files, not this process's memory, are the whole run."""
    from inferecon.harness.store import read_run

    _, tables = read_run(run_dir)
    order = {b: i for i, b in enumerate(BENCHMARKS)}
    rows = []
    for bench in sorted(tables, key=lambda b: (order.get(b, len(order)), b)):
        for r in tables[bench].to_dict(orient="records"):
            fig, unit, frac = _derived(r)
            flags = []
            if r.get("skipped"):
                flags.append(f"skipped: {r['skipped']}")
            if r.get("noisy"):
                flags.append("noisy")
            if r.get("throttled"):
                flags.append("throttled")
            figure = f"{_fmt(fig)} {unit}" if _ok(fig) else "-"
            if bench == "matmul" and _ok(r.get("weight_gbps")):
                figure += f", W {_fmt(r['weight_gbps'])} GB/s"  # decode GEMMs: weight-read bound
            rows.append([bench, str(r["case_id"]), _fmt(r.get("median_us")), _fmt(r.get("iqr_us")), figure,
                         f"{100 * frac:.0f}%" if frac is not None else "-", ", ".join(flags)])
    return rows


def print_summary(store, stream) -> None:
    header = ["benchmark", "case", "median_us", "iqr_us", "figure", "of_peak", "flags"]
    rows = summary_rows(store.run_dir)
    if not rows:
        stream.write("no cases measured\n")
        return
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    stream.write(line(header) + "\n")
    stream.write(line(["-" * w for w in widths]) + "\n")
    for r in rows:
        stream.write(line(r) + "\n")
    stream.flush()
