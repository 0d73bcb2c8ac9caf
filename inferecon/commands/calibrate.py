"""`inferecon calibrate`: measure what the cost model needs (or read a run that did, or an
operator's nccl-tests / nvbandwidth logs without measuring), fit the four terms with
uncertainty and held-out error, and write a calibrated HardwareProfile, a plot per term and a
self-contained report.html."""

from __future__ import annotations

from inferecon.core.text import first_paragraph

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from inferecon import cli_args
from inferecon.core.errors import UserError, existing_dir
from inferecon.core.outpath import check_out_dir, write_text


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="fit a HardwareProfile to this node's measurements",
                       description=first_paragraph(__doc__))
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda if available, else cpu")
    p.add_argument("--quick", action="store_true",
                   help="the sentinel set: GEMM peak and decode shapes, HBM read, small/large all-reduce, launch")
    p.add_argument("--out", metavar="DIR", default=None, type=cli_args.given("a folder, e.g. results/run1"),
                   help="run directory (default results/calibrate-<device>-<UTC time>/; with --from, that run)")
    p.add_argument("--from", dest="from_run", metavar="RUN_DIR", default=None, type=cli_args.given("a run directory"),
                   help="refit the measurements of an existing run instead of measuring")
    p.add_argument("--nccl-tests", action="append", default=[], metavar="FILE[:OP[:WORLD[:NODES]]]",
                   type=cli_args.given("an nccl-tests output file"),
                   help="nccl-tests *_perf output (log text as found, or -J JSON; also a PyTorch all_reduce_bench "
                        "table) as collective measurements; repeatable. Without --from: a profile from the files "
                        "alone (network from the files, the rest from --gpu's published profile), no measuring")
    p.add_argument("--nvbandwidth", action="append", default=[], metavar="FILE", type=cli_args.given("an nvbandwidth output file"),
                   help="nvbandwidth (text or -j JSON) or p2pBandwidthLatencyTest output: GPU link bandwidth; "
                        "repeatable")
    p.add_argument("--force", action="store_true",
                   help="use files measured on another GPU model or GPUs-per-node count than the profile's")
    p.add_argument("--nproc-per-node", type=cli_args.NPROC_PER_NODE, default=None,
                   help="ranks for the collectives (default: GPUs on this node; 2 on CPU)")
    p.add_argument("--timeout-s", type=cli_args.TIMEOUT_S, default=300.0, help="bound on a hung collective")
    p.add_argument("--threads", type=cli_args.THREADS, default=None,
                   help="CPU only: torch/OpenMP threads for every measurement (default 1; use the same for validate)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted calibration in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    eng = p.add_argument_group("engine profile, from serving-engine benchmark results instead of measuring")
    eng.add_argument("--engine-results", nargs="+", default=None, metavar="FILE", type=cli_args.given("a result file"),
                     help="vLLM/SGLang bench serve JSON/JSONL, genai-perf profile export JSON/CSV or trtllm-bench "
                          "output: fit the engine's per-step and per-layer overheads and weight-read efficiency per "
                          "weight format into --out DIR/engine.json (for `predict --engine`)")
    eng.add_argument("--gpu", default=None, type=cli_args.given("a GPU, e.g. h100-sxm"),
                     help="published GPU profile the runs used (default: what the files record); "
                          "with --nccl-tests/--nvbandwidth alone, the profile the files' network terms replace")
    eng.add_argument("--hardware", default=None, metavar="PROFILE_JSON", type=cli_args.given("a profile.json"),
                     help="HardwareProfile JSON of the GPU the runs used (instead of --gpu)")
    eng.add_argument("--model", default=None, type=cli_args.given("a model, e.g. llama-3-8b"),
                     help="the model of every run (default: what each file records)")
    eng.add_argument("--tp", type=cli_args.PARALLEL, default=None, help="tensor-parallel size of runs whose file does not record it")
    eng.add_argument("--precision", type=int, default=None, choices=(32, 16, 8, 4), metavar="BITS",
                     help="weight bits of every run (default: the file's quantisation or model name, else 16; "
                          "32 with a CPU profile as --hardware)")
    eng.add_argument("--kv-precision", type=int, default=None, choices=(32, 16, 8, 4), metavar="BITS",
                     help="KV-cache bits of every run (default: the file's, else 16; 32 with a CPU profile)")
    eng.add_argument("--engine-name", default=None, type=cli_args.given("a name"), help="profile name (default: the engine the files name)")
    opdb = p.add_argument_group("per-op database (aiconfigurator-core's tables, or a folder in their layout)")
    opdb.add_argument("--op-db", nargs="?", const="", default=None, metavar="PATH",
                      help="fit --out DIR/profile.json (GEMM, attention, collectives) and DIR/engine.json (engine "
                           "all-reduce, kernel floors, MoE) for --gpu under --engine from a per-op database: the "
                           "installed aiconfigurator-core's (pip install 'inferecon[opdb]') or the folder PATH")
    opdb.add_argument("--engine", choices=("vllm", "sglang", "trtllm"), default=None,
                      help="with --op-db: the serving engine whose kernels to fit")
    opdb.add_argument("--engine-version", default=None, metavar="V", type=cli_args.given("a version, e.g. 0.24.0"),
                      help="with --op-db: the engine version (default: the newest with GEMM and attention tables)")
    p.set_defaults(func=run)


def _ingest(args, run_dir):
    """Ingested files as extra tables of the run in `run_dir`, checked against its device."""
    import dataclasses

    from inferecon.calibration.build import published_base
    from inferecon.calibration.build_files import ingest_files
    from inferecon.harness.store import read_manifest
    import pandas as pd

    if not args.nccl_tests and not args.nvbandwidth:
        return {}, []
    manifest = read_manifest(run_dir)
    base = published_base(manifest.get("device_name", "")) if manifest.get("device") == "cuda" else None
    if base is None:
        if not args.force:
            raise UserError(f"{run_dir} was measured on {manifest.get('device_name') or manifest.get('device')}, which "
                            "has no published GPU profile: a GPU cluster's files do not belong in its profile "
                            "(--force to mix them anyway, or leave out --from for a profile from the files alone)")
        from inferecon.model.published import get_profile

        base = get_profile(args.gpu or "h100-sxm")
    elif manifest.get("gpu_count"):
        # The run's own node, not the datasheet's: a 4-GPU run takes 4-GPU-per-node files.
        base = dataclasses.replace(base, network=dataclasses.replace(
            base.network, gpus_per_node=int(manifest["gpu_count"])))
    file_fits, links = ingest_files(args.nccl_tests, args.nvbandwidth, base, force=args.force)
    tables = {}
    frames = [ff.table.frame() for ff in file_fits if ff.in_profile]
    if frames:
        tables["collectives"] = pd.concat(frames, ignore_index=True)
    if links is not None:
        for bench, g in links.groupby("benchmark"):
            tables[bench] = g
    return tables, file_fits


def _from_files(args) -> int:
    """calibrate --nccl-tests/--nvbandwidth without --from: no measuring, no torch."""
    from inferecon.calibration.build_files import profile_from_files
    from inferecon.report.calibration_report import file_report_text, write_calibration_outputs

    if args.quick or args.resume or args.device or args.threads or args.nproc_per_node:
        raise UserError("a profile from files measures nothing: --quick, --resume, --device, --threads and "
                        "--nproc-per-node do not apply")
    gpu = args.gpu or _gpu_from_files(args)
    started = time.monotonic()
    result = profile_from_files(args.nccl_tests, args.nvbandwidth, gpu, force=args.force)
    fit_s = time.monotonic() - started
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = check_out_dir(args.out if args.out else Path("results") / f"calibrate-files-{gpu}-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    result.profile.save(out / "profile.json")
    summary = write_calibration_outputs(result, out, fit_s=fit_s)
    print(file_report_text(result.file_fits, result.fits))
    for note in _notes(result.profile):
        print(f"note: {note}")
    print(f"\nfitted in {fit_s:.1f} s; wrote {out / 'profile.json'}, {out / 'report.html'} "
          f"and {len(summary['plots'])} plots")
    print(f"use it: inferecon frontier --model llama-3-70b --hardware {out / 'profile.json'}")
    write_text(out / "calibration.json", json.dumps(summary, indent=2, default=str) + "\n")
    return 0


def _gpu_from_files(args) -> str:
    """The published profile the files' device lists name; an error when none or several do."""
    from inferecon.ingest.files import read_collective_file
    from inferecon.model.published import match_published

    from inferecon.ingest.files import read_link_file

    devices = [t.device_name for spec in args.nccl_tests for t in read_collective_file(spec)]
    devices += [d for path in args.nvbandwidth for d in set(read_link_file(path)["device_name"])]
    names = {prof.name for prof in (match_published(d) for d in devices if d) if prof is not None}
    if len(names) != 1:
        said = f"they name {', '.join(sorted(names))}" if names else "none names its GPU"
        raise UserError(f"a profile from files needs its GPU: {said}; give --gpu (e.g. --gpu h100-sxm)")
    return names.pop()


def _measure(args, out: Path) -> None:
    """Run the calibration sweep into `out` (an ordinary run directory)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("measuring needs torch (make install pulls the CPU build); or use --from RUN_DIR") from None
    from inferecon.sweeps import calibration as cs
    from inferecon.sweeps.collectives import CollectiveOptions, run as run_collectives
    from inferecon.harness.device import apply_cpu_threads, resolve_device
    from inferecon.harness.runner import Progress, SweepContext, run_sweep, warm_device
    from inferecon.harness.session import RunSession, manifest_for
    from inferecon.kernels import cpu_ops, gpu_ops, launch, matmul, memory
    from inferecon.report.summary import print_summary

    device = resolve_device(args.device)
    threads = apply_cpu_threads(device, args.threads)
    manifest = manifest_for("calibrate", device, cpu_threads=threads, quick=args.quick)
    device_name, gpu_count = manifest.device_name, manifest.gpu_count
    ctx = SweepContext(device=device, device_name=device_name, gpu_count=gpu_count, quick=args.quick)
    plan = cs.plan(device, args.quick, matmul.supports_fp8(device))
    session = RunSession.open(out, manifest, resume=args.resume)
    store = session.store
    progress = Progress(enabled=not args.no_progress)
    progress.message(f"inferecon calibrate{' --quick' if args.quick else ''} on {device_name} ({device}) -> {out}")
    try:
        with session.running():  # SIGTERM stops like Ctrl-C: finished cases are already saved
            warm_device(device, 0.5 if args.quick else 2.0)
            for mod, cases in ((matmul, cs.matmul_cases), (cpu_ops, cs.cpu_op_cases), (gpu_ops, cs.gpu_op_cases),
                               (memory, cs.memory_cases), (launch, cs.launch_cases)):
                run_sweep(store, mod.BENCHMARK, mod.BENCHMARK_VERSION, cases(ctx, plan, args.quick), ctx, progress)
            nproc = args.nproc_per_node or (max(1, gpu_count) if device == "cuda" else 2)
            run_collectives(CollectiveOptions(device=device, out=str(out), quick=args.quick, resume=args.resume,
                                              nproc_per_node=nproc, timeout_s=args.timeout_s,
                                              ops=tuple(plan.collective_ops), max_bytes=plan.collective_max_bytes,
                                              progress=not args.no_progress), session)
    except KeyboardInterrupt:
        progress.close()
        session.say_interrupted(f"calibrate --resume --out {out}")
        raise
    session.finish("complete")
    progress.close()
    if not args.no_progress:
        print_summary(store, sys.stderr)


def run(args) -> int:
    if args.op_db is not None:
        return _op_db(args)
    if args.engine or args.engine_version:
        raise UserError("--engine and --engine-version go with --op-db")
    if args.engine_results:
        return _engine_profile(args)
    from inferecon.calibration.build import profile_from_run
    from inferecon.report.calibration_report import write_calibration_outputs

    if args.from_run and (args.quick or args.resume or args.device or args.threads):
        raise UserError("--from refits an existing run: --quick, --resume, --device and --threads do not apply")
    if args.resume and not args.out:
        raise UserError("--resume needs --out DIR: the calibration run to continue")
    _refuse_stray_flags(args)
    if (args.nccl_tests or args.nvbandwidth) and not args.from_run:
        return _from_files(args)
    started = time.monotonic()
    if args.from_run:
        run_dir = existing_dir(args.from_run, flag="--from")  # a file named here is --from's fault, not --out's
        out = check_out_dir(args.out if args.out else run_dir)  # before the fit: one line if unwritable
        measured_s = None
        extra, file_fits = _ingest(args, run_dir)
    else:
        extra, file_fits = {}, []
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = Path(args.out) if args.out else Path("results") / f"calibrate-{args.device or 'node'}-{stamp}"
        run_dir = out
        try:
            _measure(args, out)
        except KeyboardInterrupt:
            return 130
        measured_s = time.monotonic() - started
    result = profile_from_run(run_dir, extra_tables=extra)
    result.file_fits = file_fits
    fit_s = time.monotonic() - started - (measured_s or 0.0)
    out.mkdir(parents=True, exist_ok=True)
    result.profile.save(out / "profile.json")
    summary = write_calibration_outputs(result, out, measured_s=measured_s, fit_s=fit_s)
    from inferecon.report.calibration_table import calibration_table

    print(calibration_table(result))
    if file_fits:
        from inferecon.report.calibration_report import file_report_text

        print(file_report_text(file_fits, []))
    for note in _notes(result.profile):
        print(f"note: {note}")
    took = f"measured in {measured_s:.1f} s, " if measured_s is not None else ""
    print(f"\n{took}fitted in {fit_s:.1f} s; wrote {out / 'profile.json'}, {out / 'report.html'} "
          f"and {len(summary['plots'])} plots")
    print(f"use it: inferecon frontier --model llama-3-70b --hardware {out / 'profile.json'}")
    write_text(out / "calibration.json", json.dumps(summary, indent=2, default=str) + "\n")
    return 0


def _refuse_stray_flags(args) -> None:
    """Measuring this node or refitting --from's run reads none of the engine-profile flags; a
    --gpu there would label this node's measurements with a published GPU's name (or be dropped
    without a word), so it is refused unless files measured on that GPU come with it."""
    given = [flag for flag, value in (("--hardware", args.hardware), ("--model", args.model), ("--tp", args.tp),
                                      ("--precision", args.precision), ("--kv-precision", args.kv_precision),
                                      ("--engine-name", args.engine_name)) if value is not None]
    if given:
        raise UserError(f"{', '.join(given)}: only with --engine-results (measuring this node or refitting --from's "
                        "run reads none of them)")
    if args.gpu is not None and not (args.nccl_tests or args.nvbandwidth):
        raise UserError(f"--gpu {args.gpu} names a published GPU whose files are missing: give --nccl-tests/"
                        "--nvbandwidth files measured on it, --op-db or --engine-results (without them calibrate "
                        "measures this node under its own name: leave out --gpu)")


def _op_db(args) -> int:
    """calibrate --op-db: a profile and an engine profile fitted to a per-op measurement database."""
    others = [flag for flag, on in (("--from", args.from_run), ("--quick", args.quick), ("--resume", args.resume),
                                    ("--engine-results", args.engine_results), ("--nccl-tests", args.nccl_tests),
                                    ("--nvbandwidth", args.nvbandwidth), ("--hardware", args.hardware)) if on]
    if others:
        raise UserError(f"--op-db fits from the database alone: {', '.join(others)} do not apply")
    if not args.gpu or not args.engine:
        raise UserError("--op-db needs --gpu GPU and --engine vllm|sglang|trtllm")
    from inferecon.calibration.opdb_fit import calibrate_from_opdb
    from inferecon.calibration.opdb_profiles import save_calibration

    started = time.monotonic()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = check_out_dir(args.out if args.out else Path("results") / f"opdb-{args.gpu}-{args.engine}-{stamp}")
    fit = calibrate_from_opdb(args.op_db, args.gpu, args.engine, args.engine_version)
    profile, engine = save_calibration(fit, out)  # the folder layout the scorecards' op-DB cache reads too
    print("\n".join(fit.summary))
    from inferecon.model.uncertain import entries

    bands = entries(fit.profile)
    if bands:  # the profile's band: each op family's time, x its held-out error over the tables' shapes
        print("band (90%), each op family's time:")
        print("\n".join(f"  {u.describe()}" for u in bands))
    for note in fit.profile.provenance.notes[1:]:
        print(f"note: {note}")
    print(f"\nfitted in {time.monotonic() - started:.1f} s; wrote {profile} and {engine}")
    print(f"use it: inferecon predict --model llama-3-70b --hardware {profile} --engine {engine}")
    return 0


def _engine_profile(args) -> int:
    """calibrate --engine-results: an EngineProfile fitted to the runs, with held-out error."""
    if args.from_run or args.quick or args.resume or args.nccl_tests or args.nvbandwidth:
        raise UserError("--engine-results fits an engine profile from result files: --from, --quick, --resume, "
                        "--nccl-tests and --nvbandwidth do not apply")
    from inferecon.calibration.engine_fit import fit_engine_profile, load_cases
    from inferecon.report import engine_report as er

    if args.out:
        check_out_dir(args.out)  # before reading and fitting the runs
    notes: list[str] = []
    cases = load_cases(args.engine_results, model=args.model, gpu=args.gpu, hardware_path=args.hardware,
                       tp=args.tp, weight_bits=args.precision, kv_bits=args.kv_precision, notes=notes)
    # A run the model says cannot fit in its GPUs' memory is not the run the file describes
    # (another precision, offloading): fitting overheads to it would bend them; named, not fitted.
    from inferecon.calibration.engine_fit import predict_case

    fits = [c for c in cases if predict_case(c, None, 0).feasible]
    for c in cases:
        if c not in fits:
            notes.append(f"{c.run.source}: {c.model.name} at tp {c.tp}, concurrency {c.run.concurrency:g} does not fit "
                         f"in its GPUs' memory as the model sees it: not fitted")
    if not fits:
        raise UserError("no engine run fits in its GPUs' memory as the model sees it: check --precision, "
                        "--kv-precision and --tp")
    cases = fits
    fit = fit_engine_profile(cases, name=args.engine_name)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = check_out_dir(args.out if args.out else Path("results") / f"engine-{fit.profile.name}-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    for note in notes:
        print(f"inferecon: note: {note}", file=sys.stderr)
    print(er.comparison_table(fit.rows, [("hardware", "predicted_ms", "error_pct"),
                                         ("fitted", "fitted_ms", "fitted_error_pct"),
                                         ("held-out", "heldout_ms", "heldout_error_pct")]))
    print()
    print(er.fit_summary(fit))
    fit.profile.save(out / "engine.json")
    er.write_rows_csv(fit.rows, out / "engine_fit.csv")
    from inferecon.report.plotting import optional_plot

    optional_plot(er.plot_predicted_vs_measured, fit.rows, [("hardware profile alone", "predicted_ms"),
                                             ("engine profile, held out", "heldout_ms")],
                                  out / "engine_fit.png", f"engine profile {fit.profile.name!r}: {len(fit.rows)} runs")
    print(f"wrote {out / 'engine.json'}, engine_fit.csv and engine_fit.png")
    print(f"use it: inferecon predict --model {cases[0].model.name} --gpu {cases[0].hw.name} --tp {cases[0].tp} "
          f"--engine {out / 'engine.json'}")
    return 0


def _notes(profile) -> list[str]:
    """The profile's notes, and the line saying which fitted collectives a decode step does not
    read (model/compare.py), where some are not."""
    from inferecon.model.compare import decode_collectives_note

    extra = decode_collectives_note(profile)
    return [*profile.provenance.notes, *([extra] if extra else [])]
