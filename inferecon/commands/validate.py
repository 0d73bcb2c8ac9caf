"""`inferecon validate`: run a real transformer decode on this node and compare its measured
step time with the cost model's prediction, for the calibrated profile (--hardware) and the
published profile of the same GPU; print the table and both MAPEs, and save the
measurements (decode.parquet), validation.csv, validation.png and validation.json in one run
directory."""

from __future__ import annotations

from inferecon.core.text import first_paragraph

import sys
from datetime import datetime, timezone
from pathlib import Path

from inferecon import cli_args
from inferecon.core.errors import UserError
from inferecon.core.outpath import atomic_path, check_out_dir

# Defaults per device: the GPU grid; on CPU a grid a 2-core machine measures in
# seconds (a batch-256 × 8192-token cache of even a tiny model is gigabytes on CPU).
DEFAULT_BATCH = {"cuda": "1,8,64,256", "cpu": "1,8"}
DEFAULT_CONTEXT = {"cuda": "512,8192", "cpu": "128,512"}


def register(subparsers) -> None:
    p = subparsers.add_parser("validate", help="measure a real decode step and compare with the prediction",
                              description=first_paragraph(__doc__))
    p.add_argument("--hardware", metavar="PROFILE", default=None, type=cli_args.given("a profile, e.g. results/RUN/profile.json"),
                   help="calibrated HardwareProfile JSON (e.g. from `inferecon calibrate --out DIR`: DIR/profile.json); "
                        "required for a decode run")
    p.add_argument("--model", default=None, type=cli_args.given("a model, e.g. tiny-llama"),
                   help="catalog model, validation model (tiny-llama, tiny-moe) or a Hugging Face config.json; required "
                        "for a decode run; with --engine-results, the model of every run (default: what the file records)")
    p.add_argument("--engine-results", nargs="+", default=None, metavar="FILE", type=cli_args.given("a result file"),
                   help="instead of measuring: serving-engine benchmark results (vLLM/SGLang bench serve JSON/JSONL, "
                        "genai-perf profile export JSON/CSV, trtllm-bench output) compared with the prediction per run")
    p.add_argument("--gpu", default=None, type=cli_args.given("a GPU, e.g. h100-sxm"),
                   help="with --engine-results: published GPU profile the runs used (default: what the file records)")
    p.add_argument("--precision", type=int, default=None, choices=(32, 16, 8, 4), metavar="BITS",
                   help="with --engine-results: weight bits (default: the file's quantisation or model name, else 16; "
                        "32 with a CPU profile as --hardware)")
    p.add_argument("--kv-precision", type=int, default=None, choices=(32, 16, 8, 4), metavar="BITS",
                   help="with --engine-results: KV-cache bits (default: the file's, else 16; 32 with a CPU profile)")
    p.add_argument("--engine", default=None, metavar="ENGINE_JSON", type=cli_args.given("an engine profile (engine.json)"),
                   help="with --engine-results: also predict each run with this engine profile "
                        "(from `calibrate --engine-results`), e.g. one fitted to other runs")
    p.add_argument("--batch", default=None, help="comma-separated batch sizes (default 1,8,64,256 on GPU; 1,8 on CPU)")
    p.add_argument("--context", default=None,
                   help="comma-separated context lengths, KV cache pre-filled (default 512,8192 on GPU; 128,512 on CPU)")
    p.add_argument("--tp", type=cli_args.PARALLEL, default=1, help="tensor-parallel ranks, started with torchrun (default 1)")
    p.add_argument("--layers", type=cli_args.LAYERS, default=None,
                   help="build K layers and extrapolate to the full model from K and K//2 (default: all that fit)")
    p.add_argument("--published", metavar="GPU", default=None, type=cli_args.given("a GPU, e.g. h100-sxm"),
                   help="published profile to compare with (default: matched from the GPU's name)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default=None,
                   help="precision of weights, KV cache and activations (default bf16 on GPU, fp32 on CPU: "
                        "what `inferecon calibrate` measures there)")
    p.add_argument("--threads", type=cli_args.THREADS, default=None,
                   help="CPU only: torch/OpenMP threads (default 1, as `inferecon calibrate` uses)")
    p.add_argument("--quick", action="store_true", help="shorter timing budgets (CI)")
    p.add_argument("--out", metavar="DIR", default=None, type=cli_args.given("a folder, e.g. results/run1"),
                   help="run directory (default results/validate-<model>-<device>-<UTC>/)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted validate run in --out: measure only the cases it lacks")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=handler)


def parse_ints(text: str, what: str) -> list[int]:
    # The bounds every command shares (cli_args): a batch or context beyond them is a typo.
    parse = cli_args.BATCHES if what == "batch" else cli_args.CONTEXTS
    return sorted(set(cli_args.parsed(parse, f"--{what}", text)))


def _default_out(model: str, device_name: str) -> Path:
    from inferecon.core.text import slug

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / f"validate-{slug(model)}-{slug(device_name)}-{stamp}"


def handler(args) -> int:
    if args.engine_results:
        return engine_handler(args)
    if args.engine:
        raise UserError("--engine applies to serving-engine runs: give them with --engine-results FILE...")
    if not args.hardware or not args.model:
        raise UserError("a decode run needs --hardware PROFILE and --model M (or --engine-results FILE... "
                        "to check serving-engine runs)")
    if args.resume and not args.out:
        raise UserError("--resume needs --out DIR: the validate run to continue")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("validate needs torch: install it (make install pulls the CPU build)") from None
    import pandas as pd

    from inferecon.validation import decode as v
    from inferecon.harness.device import resolve_device
    from inferecon.harness.device import apply_cpu_threads, device_identity
    from inferecon.harness.session import RunSession, manifest_for
    from inferecon.harness.store import write_json_atomic
    from inferecon.kernels import decode
    from inferecon.model.hardware import HardwareProfile

    # Everything the user typed is checked before any measurement starts.
    hw = HardwareProfile.load(args.hardware)
    spec = v.resolve_model(args.model)
    device = resolve_device(args.device)
    v.check_profile_device(hw, device, args.hardware)
    threads = apply_cpu_threads(device, args.threads)
    # `is None`, not falsy: an empty --batch '' is refused by parse_ints ("no batch sizes given"),
    # never read as the default sizes.
    batches = parse_ints(DEFAULT_BATCH[device] if args.batch is None else args.batch, "batch")
    contexts = parse_ints(DEFAULT_CONTEXT[device] if args.context is None else args.context, "context")
    # --tp and --layers are bounded where they are parsed (cli_args.PARALLEL, LAYERS).
    if device == "cuda" and args.tp > torch.cuda.device_count():
        raise UserError(f"--tp {args.tp}: only {torch.cuda.device_count()} GPU(s) visible")
    args.dtype = args.dtype or ("bf16" if device == "cuda" else "fp32")
    shape = v.decoder_shape(spec, args.dtype)
    shape.check_tp(args.tp)
    spec_run = v.spec_for_dtype(spec, args.dtype)
    v.check_compute_dtype(spec_run, hw, args.dtype)
    device_name, gpu_count = device_identity(device)
    published, published_why = v.published_for_device(device, device_name, hw, args.published)
    plan = v.plan_layers(shape, args.layers, batches, contexts, args.tp, v.device_memory_bytes(device))

    out = Path(args.out) if args.out else _default_out(spec.name, device_name)
    manifest = manifest_for("validate", device, cpu_threads=threads, quick=args.quick, sections={
                "benchmark": decode.BENCHMARK,
                "validate": {"model": spec.name, "hardware": str(args.hardware), "profile_name": hw.name,
                             "profile_kind": hw.provenance.kind, "published": published.name if published else None,
                             "published_reason": published_why, "batches": batches, "contexts": contexts,
                             "tp": args.tp, "dtype": args.dtype, "layers_measured": list(plan.layers),
                             "n_layers_full": plan.n_layers_full, "layer_reason": plan.reason,
                             "torch_threads": torch.get_num_threads()}})
    session = RunSession.open(out, manifest, resume=args.resume,
                              same_run=lambda run_dir, old: _same_validation(run_dir, old, manifest.sections["validate"]))
    store = session.store
    cal_threads = hw.provenance.versions.get("cpu_threads")
    if threads is not None and cal_threads and int(cal_threads) != threads:  # said once the input and --out stand
        print(f"inferecon: warning: {args.hardware} was calibrated with {cal_threads} CPU threads, this run uses "
              f"{threads} (--threads): the comparison mixes two machines", file=sys.stderr)
    progress = None if args.no_progress else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if progress and plan.extrapolated:
        progress(f"[validate] {plan.reason}: measuring {plan.layers} layers, extrapolating to {plan.n_layers_full}")

    def keep(rec):
        # Stored as each case finishes; Ctrl-C waits for the write, so a case is whole or absent.
        session.append(decode.BENCHMARK, {
            **rec, "benchmark": decode.BENCHMARK, "benchmark_version": decode.BENCHMARK_VERSION,
            "device": device, "device_name": device_name, "gpu_count": gpu_count,
            "model": spec.name, "n_layers_full": plan.n_layers_full, "skipped": "",
        })

    done = store.case_ids(decode.BENCHMARK)
    try:
        with session.running():  # a scheduler's SIGTERM stops like Ctrl-C; an error stamps "failed"
            v.measure_decode(shape, plan, batches, contexts, args.tp, device, args.quick, out, progress,
                             done=done, keep=keep)
    except KeyboardInterrupt:
        session.say_interrupted(f"validate --resume --out {out} and the same options",
                                saved=len(store.records(decode.BENCHMARK)))
        return 130
    rows = store.records(decode.BENCHMARK)  # this run's cases and, resumed, the earlier ones

    profiles = {"calibrated": hw}
    if published is not None:
        profiles["published"] = published
    table = v.compare(spec_run, rows, plan, args.tp, profiles)
    for r in table:
        r.update(device=device, device_name=device_name, gpu_count=gpu_count)
    labels = list(profiles)
    with atomic_path(out / "validation.csv") as tmp:
        pd.DataFrame(table).to_csv(tmp, index=False)
    title = (f"{spec.name} ({plan.measured}/{plan.n_layers_full} layers, tp {args.tp}, {args.dtype}) on {device_name}")
    from inferecon.report.plotting import optional_plot

    optional_plot(v.plot, table, labels, out / "validation.png", title)  # the CSV stands without matplotlib
    summary = {
        "model": spec.name, "device": device, "device_name": device_name, "tp": args.tp, "dtype": args.dtype,
        "layers_measured": plan.measured, "n_layers_full": plan.n_layers_full, "layer_reason": plan.reason,
        "cases": len(table),
        "mape_pct": {label: v.mape(table, label) for label in labels},
        "full_model_mape_pct": {label: v.mape(table, label, full=True) for label in labels} if plan.extrapolated else None,
        "calibrated_profile": {"path": str(args.hardware), "name": hw.name, "kind": hw.provenance.kind},
        "published_profile": published.name if published else None,
        "published_reason": published_why,
        "noisy_cases": int(sum(bool(r["noisy"]) for r in table)),
        "coverage_90": {label: dict(zip(("inside", "cases"), v.coverage(table, f"{label}_covered"))) for label in labels},
        "layer_fit_notes": {f"batch {r['batch']} context {r['context']}": r["layer_fit_note"]
                            for r in table if r.get("layer_fit_note")},
    }
    write_json_atomic(out / "validation.json", summary)
    store.note(validation=summary)
    session.finish("complete")

    print(f"{spec.name}: {plan.measured} of {plan.n_layers_full} layers, tp {args.tp}, {args.dtype}, {device_name}"
          + (f" ({plan.reason}; full model extrapolated from {list(plan.layers)} layers)" if plan.extrapolated else ""))
    from inferecon.report.validation_table import validation_table

    print(validation_table(table, labels))
    for r in table:
        if r.get("layer_fit_note"):
            print(f"batch {r['batch']} context {r['context']}: {r['layer_fit_note']}")
    cal = summary["mape_pct"]["calibrated"]
    print(f"MAPE calibrated ({hw.name}): {cal:.1f}%")
    if published is not None:
        print(f"MAPE published ({published.name}): {summary['mape_pct']['published']:.1f}%")
    else:
        print(f"MAPE published: none ({published_why})")
    for label in labels:
        inside, n = summary["coverage_90"][label]["inside"], summary["coverage_90"][label]["cases"]
        print(f"coverage {label}: " + (f"{inside} of {n} measured cases inside the predicted 90% interval "
                                       f"({100 * inside / n:.0f}%; a calibrated uncertainty covers about 90%)" if n else
                                       "none (the profile carries no uncertainty: recalibrate)"))
    if plan.extrapolated:
        full = {k: x for k, x in summary["full_model_mape_pct"].items() if x is not None}
        print("full-model MAPE (extrapolated): " + (", ".join(f"{k} {x:.1f}%" for k, x in full.items()) if full else
                                                   "none: no case had a positive per-layer slope (see above)"))
    print(f"saved {out}/ (decode.parquet, validation.csv, validation.png, validation.json)")
    return 0


def _same_validation(out: Path, old: dict, now: dict) -> None:
    """A resumed validation is the same validation: same model and plan (a decode case's id
    does not name the model, so mixing models would mix rows); the session has checked the
    kind of run and the machine."""
    was = old.get("validate") or {}
    for key in ("model", "tp", "dtype", "layers_measured", "n_layers_full", "batches", "contexts"):
        if key in was and was[key] != now[key]:
            raise UserError(f"--resume: {out} validates {key} {was[key]}, this command asks for {now[key]} "
                            "(resume with the options it was started with, or choose another --out)")


def engine_handler(args) -> int:
    """Serving-engine runs: predicted (hardware profile alone) vs measured ms per output token."""
    decode_only = [flag for flag, value in (("--batch", args.batch), ("--context", args.context),
                                            ("--layers", args.layers), ("--published", args.published),
                                            ("--device", args.device), ("--dtype", args.dtype),
                                            ("--threads", args.threads), ("--quick", args.quick),
                                            ("--resume", args.resume)) if value is not None and value is not False]
    if decode_only:
        raise UserError(f"--engine-results compares result files: {', '.join(decode_only)} apply to a decode run only")
    from inferecon.calibration.engine_fit import load_cases, mape, score_engine_runs
    from inferecon.validation.decode import DEFAULT_DRAWS, coverage
    from inferecon.core.text import slug
    from inferecon.report import engine_report as er

    notes: list[str] = []
    cases = load_cases(args.engine_results, model=args.model, gpu=args.gpu, hardware_path=args.hardware,
                       tp=args.tp, weight_bits=args.precision, kv_bits=args.kv_precision, notes=notes)
    rows = score_engine_runs(cases, draws=DEFAULT_DRAWS)
    # A run the model says cannot fit in its GPUs' memory at that concurrency was not the run
    # the file describes (another precision, offloading, a smaller KV cache): its error is shown
    # but it is named and kept out of the MAPE, never scored as if the prediction applied.
    for r in rows:
        if not r["feasible"]:
            notes.append(f"{r['source']}: {r['model']} at tp {r['tp']}, concurrency {r['concurrency']:g} does not fit "
                         f"({r['infeasible_reason']}): left out of the MAPE")
    scored = [r for r in rows if r["feasible"]]
    if not scored:
        raise UserError(f"no run fits in its GPUs' memory as the model sees it ({rows[0]['source']}: "
                        f"{rows[0]['infeasible_reason']}): check --precision, --kv-precision and --tp")
    engine = None
    if args.engine:
        from inferecon.model.engine import EngineProfile

        engine = EngineProfile.load(args.engine)
        # With draws the interval widens by the engine profile's own standard errors where its fit
        # stored them (model/uncertainty.draw_engine), on top of the hardware profile's.
        for r, e in zip(rows, score_engine_runs(cases, engine, draws=DEFAULT_DRAWS)):
            r["engine_ms"], r["engine_error_pct"] = e["predicted_ms"], e["error_pct"]
            if "covered" in e:
                r["engine_lo_ms"], r["engine_hi_ms"] = e["predicted_lo_ms"], e["predicted_hi_ms"]
                r["engine_covered"] = e["covered"]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else Path("results") / f"validate-engine-{slug(cases[0].model.name)}-{stamp}"
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    for note in notes:
        print(f"inferecon: note: {note}", file=sys.stderr)
    columns = [(f"{cases[0].hw.provenance.kind}", "predicted_ms", "error_pct")]
    if engine is not None:
        columns.append((f"+{engine.name}"[:10], "engine_ms", "engine_error_pct"))
    print(er.comparison_table(rows, columns))
    total = mape(r["error_pct"] for r in scored)
    print(f"MAPE over {len(scored)} run(s): {total:.1f}% (predicted per-token time of the hardware profile alone; "
          f"positive error = predicted slower than measured)")
    engine_mape = None
    if engine is not None:
        engine_mape = mape(r["engine_error_pct"] for r in scored)
        print(f"MAPE with engine profile {engine.name!r} ({args.engine}): {engine_mape:.1f}%")
    from inferecon.validation.ttft import format_ttft, ttft_rows

    print(format_ttft(ttft_rows(cases, engine)))  # with --engine, its overheads in TTFT and serving TPOT
    inside, n = coverage(scored, "covered")
    print("coverage: " + (f"{inside} of {n} runs inside the predicted 90% interval ({100 * inside / n:.0f}%; a "
                           "calibrated uncertainty covers about 90%; engine overheads are not in the interval)" if n else
                           "none (the hardware profile carries no uncertainty)"))
    engine_coverage = None
    if engine is not None:
        from inferecon.model.uncertainty import fitted_engine_params

        e_inside, e_n = coverage(scored, "engine_covered")
        engine_coverage = {"inside": e_inside, "cases": e_n}
        what = ("the hardware profile's and the engine profile's fitted standard errors" if fitted_engine_params(engine)
                else "the hardware profile's uncertainty alone: the engine profile states none")
        print(f"coverage with engine profile {engine.name!r}: " +
              (f"{e_inside} of {e_n} runs inside the predicted 90% interval ({100 * e_inside / e_n:.0f}%; {what})"
               if e_n else "none (neither profile carries uncertainty)"))
    er.write_rows_csv(rows, out / "engine_validation.csv")
    er.write_json({"runs": len(rows), "mape_pct": total, "engine_profile": args.engine, "engine_mape_pct": engine_mape, "coverage_90": {"inside": inside, "cases": n}, "engine_coverage_90": engine_coverage, "files": list(args.engine_results), "notes": notes},
                  out / "engine_validation.json")
    series = [("hardware profile", "predicted_ms")] + ([(f"with engine profile {engine.name}", "engine_ms")]
                                                       if engine is not None else [])
    from inferecon.report.plotting import optional_plot

    optional_plot(er.plot_predicted_vs_measured, rows, series, out / "engine_validation.png",
                                  f"{len(rows)} serving-engine runs: predicted vs measured")
    print(f"saved {out}/ (engine_validation.csv, engine_validation.png, engine_validation.json)")
    return 0
