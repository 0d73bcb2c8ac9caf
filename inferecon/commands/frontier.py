"""`inferecon frontier`: the speed-versus-cost Pareto frontier of serving a model on a GPU."""

from __future__ import annotations

import argparse
from pathlib import Path


from inferecon import cli_args
from inferecon.core.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("frontier", help="Pareto frontier of tokens/s per sequence vs $ per million tokens")
    p.add_argument("--model", action="append", required=True,
                   help="catalog name or path to a Hugging Face config.json; repeat or comma-separate for several")
    p.add_argument("--name", action="append", default=None,
                   help="display name of each --model, in order (default: the catalog name, the config's "
                        "_name_or_path, else its file name); repeat or comma-separate")
    p.add_argument("--gpu", action="append", default=None,
                   help="published GPU profile (default h100-sxm); repeat or comma-separate for several")
    p.add_argument("--hardware", action="append", default=None, metavar="PROFILE_JSON",
                   help="a HardwareProfile JSON (e.g. results/RUN/profile.json); repeatable")
    p.add_argument("--context", type=cli_args.CONTEXT_TOKENS, default=None,
                   help="tokens in context per sequence (default 4096, or input + output/2 with --input-len)")
    p.add_argument("--precision", type=int, default=None, choices=(16, 8, 4), metavar="BITS",
                   help="weight precision in bits: 16, 8 or 4 (default: the model's native one, e.g. 8 for DeepSeek-V3)")
    p.add_argument("--kv-precision", type=int, default=None, choices=(16, 8, 4), metavar="BITS",
                   help="KV-cache precision in bits (default: the model's, 16 for every catalog model)")
    p.add_argument("--no-latency", action="store_true",
                   help="the paper's counterfactual: every fixed latency (collectives and kernel launches) at zero, "
                        "tensor parallelism not capped by the head count, instances up to 65536 GPUs")
    p.add_argument("--price", type=cli_args.PRICE_USD_PER_HOUR, default=None, metavar="USD_PER_HOUR",
                   help="$ per GPU-hour (default: the profile's)")
    p.add_argument("--spec-decode", default=None, metavar="DRAFT", type=cli_args.given("a draft model, e.g. llama-3-8b"),
                   help="draft model for speculative decoding")
    p.add_argument("--acceptance", type=cli_args.ACCEPTANCE, default=None,
                   help="per-token acceptance probability of the draft (default 0.8 with --spec-decode)")
    p.add_argument("--max-gpus", type=cli_args.MAX_GPUS, default=None,
                   help="largest instance to consider (default 512; 65536 with --no-latency)")
    p.add_argument("--out", default="frontier", help="directory for frontier.csv and frontier.png (default ./frontier)")
    p.add_argument("--rows", type=cli_args.ROWS, default=16, help="frontier rows printed per model and GPU (default 16)")
    p.add_argument("--draws", type=cli_args.int_in(0, 10_000), default=200,
                   help="parameter draws for the 90%% band and P(optimal) (default 200; 0: no band)")
    p.add_argument("--seed", type=cli_args.int_in(0, 2**32 - 1), default=0, help="seed of the draws (default 0)")
    p.add_argument("--engine", default=None, metavar="ENGINE_JSON", type=cli_args.given("an engine profile (engine.json)"),
                   help="engine profile (from `inferecon calibrate --engine-results`): every configuration pays its "
                        "per-step and per-layer overheads and its weight-read efficiency")
    p.add_argument("--compare", action="store_true",
                   help="with --hardware: draw the published and the calibrated frontiers together and say "
                        "where they differ and which term moved (published profile: --gpu, else the matching one)")
    from inferecon import request_args

    request_args.add_frontier_flags(p)
    p.set_defaults(func=run)


def _split(values):
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _named(values, flag):
    """The comma-separated names of a repeatable option; a given option that names nothing
    (`--model ",,"`) is refused rather than read as absent."""
    names = _split(values)
    if values is not None and not names:
        raise UserError(f"{flag} names nothing: give a name, e.g. {flag} {_EXAMPLE[flag]}")
    return names


_EXAMPLE = {"--model": "llama-3-70b", "--gpu": "h100-sxm", "--hardware": "results/RUN/profile.json",
            "--name": "my-model"}


def _profiles(args):
    """[(label, profile)]: labels tell two calibrated profiles of one GPU model apart."""
    from inferecon.model.published import get_profile
    from inferecon.model.hardware import HardwareProfile
    from inferecon.model.names import profile_labels

    profiles = [get_profile(g) for g in _named(args.gpu, "--gpu")]
    sources = [None] * len(profiles)
    paths = _named(args.hardware, "--hardware")
    # The same profile twice would be one curve drawn twice under two names.
    for flag, keys in (("--gpu", [p.name for p in profiles]), ("--hardware", [str(Path(p).resolve()) for p in paths])):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise UserError(f"{flag} {twice[0]} is given twice")
    profiles += [HardwareProfile.load(p) for p in paths]
    sources += paths
    if not profiles:
        profiles, sources = [get_profile("h100-sxm")], [None]
    if args.price is not None:
        profiles = [p.with_price(args.price) for p in profiles]
    return list(zip(profile_labels(profiles, sources), profiles))


def _comparison_pairs(args, labelled):
    """[((label, published), (label, calibrated))] for --compare, from the labelled profiles."""
    from inferecon.calibration.build import published_base

    calibrated = [(lab, hw) for lab, hw in labelled if hw.provenance.kind != "published"]
    if not calibrated:
        raise UserError("--compare needs a calibrated profile: --hardware results/RUN/profile.json")
    named = [(lab, hw) for lab, hw in labelled if hw.provenance.kind == "published"]
    pairs = []
    for cal in calibrated:
        if named:
            pub = named[0]
        else:
            base = published_base(cal[1].display_name)
            if base is None:
                raise UserError(f"--compare: no published profile matches {cal[1].display_name!r}; name one with --gpu")
            pub = (base.name, base.with_price(args.price) if args.price is not None else base)
        pairs.append((pub, cal))
    return pairs


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import pandas as pd

    from inferecon.model.catalog import resolve_model
    from inferecon.model.names import model_display_names
    from inferecon.core.outpath import atomic_path, check_out_dir
    from inferecon.model.compare import band_lines, compare
    from inferecon.model.frontier import NO_LATENCY_MAX_GPUS, WIDE_BATCH_GRID, SearchSpace, search_near
    from inferecon.model.layout import RequestError
    from inferecon.report.frontier_plot import plot_frontiers
    from inferecon.report.frontier_table import frontier_table

    from inferecon import request_args

    request_args.check_frontier(args)
    args.max_gpus_given = args.max_gpus is not None
    if args.max_gpus is None:
        args.max_gpus = 512
    # --max-gpus, --context and --rows are bounded where they are parsed (cli_args).
    if args.acceptance is not None and args.spec_decode is None:
        raise UserError("--acceptance needs --spec-decode DRAFT")
    acceptance = 0.8 if args.acceptance is None else args.acceptance
    out = check_out_dir(args.out)  # before the search: a bad --out fails in one line, not after the work

    entries = _named(args.model, "--model")
    specs = [resolve_model(m) for m in entries]
    try:
        names = model_display_names(entries, specs, _named(args.name, "--name") if args.name is not None else None)
    except RequestError as exc:
        raise cli_args.flag_error(exc) from None
    models = [dataclasses.replace(s, name=n).with_precision(args.precision, args.kv_precision)
              for s, n in zip(specs, names)]
    # Everything printed waits in `lines` until every search has succeeded: an error (an SLA
    # nothing meets, an impossible layout of a later model or GPU) is then the only thing said,
    # never after tables that read as an answer.
    lines: list[str] = []
    say = lines.append
    for m in models:
        request_args.check_window(args, m)
    for m in models:
        if m.context_note(args.context):
            say(f"note: {m.context_note(args.context)}")
    labelled = _profiles(args)
    comparisons = _comparison_pairs(args, labelled) if args.compare else []
    draft = None
    if args.spec_decode:
        draft = resolve_model(args.spec_decode).with_precision(args.precision, args.kv_precision)
    if comparisons:
        # Each calibrated profile next to its published one, in that order (a published one
        # shared by several calibrated profiles is searched once).
        labelled = list({lab: (lab, hw) for pair in comparisons for lab, hw in pair}.values())
    space = SearchSpace(max_gpus=args.max_gpus)
    if args.no_latency:
        def no_latency(pair):
            return f"{pair[0]}-no-latency", pair[1].without_latency()

        labelled = [no_latency(p) for p in labelled]
        comparisons = [(no_latency(pub), no_latency(cal)) for pub, cal in comparisons]  # the fronts' keys
        space = SearchSpace(max_gpus=args.max_gpus if args.max_gpus_given else NO_LATENCY_MAX_GPUS,
                            unbounded_tp=True, batch_grid=WIDE_BATCH_GRID)
    acc = acceptance if draft else 0.0
    engine = None
    if args.engine:
        from inferecon.model.engine import EngineProfile

        engine = EngineProfile.load(args.engine)
    from inferecon.model.quant import engine_deployed_model

    # The modules the checkpoint or the engine keeps in 16 bit, as predict and the public scorecards price them.
    deployed = [engine_deployed_model(m, engine) for m in models]
    for m, kept in zip(models, deployed):
        if kept is not m:
            say(f"note: {m.name} keeps {kept.kept_16bit_summary()} in 16 bit ({kept.kept_16bit_source})")
    models = deployed
    draft = engine_deployed_model(draft, engine) if draft is not None else None

    frames, curves, fronts, request_frames, request_curves = [], {}, {}, [], {}
    for hw_label, hw in labelled:
        for model in models:
            try:
                df, near = search_near(model, hw, args.context, space, draft=draft, acceptance=acc, engine=engine)
            except RequestError as exc:
                raise cli_args.flag_error(exc) from None
            if engine is not None and engine.hardware and hw.name not in engine.hardware.split(","):
                say(f"note: engine profile {engine.name!r} was fitted against {engine.hardware}, not {hw_label}: "
                    "its overheads are relative to that profile")
            if args.draws and not hw.uncertainty:
                why = ("an op-DB profile: its fits state held-out errors (heldout_mape in profile.json), not a "
                       "parameter band" if hw.op_fits is not None else
                       "a profile saved before inferecon recorded it; recalibrate for a band")
                say(f"note: {hw_label} carries no uncertainty ({why}): no band")
            elif args.draws:
                df = _with_band(df, model, hw, args.context, near, draft, acc, args.draws, args.seed, engine)
            df.insert(3, "profile_label", hw_label)  # "gpu" is the GPU model; this tells two profiles of it apart
            # Points whose TP/EP group leaves the world sizes the profile's collectives were fitted
            # at carry a flag in the CSV and one note: never an extrapolated figure without a word.
            from inferecon.model.network import extrapolation_note

            groups = df[["tp", "ep"]].max(axis=1).astype(int)
            notes_by_group = {n: extrapolation_note(hw, n) for n in set(groups)}
            df["collectives_extrapolated"] = groups.map(lambda n: notes_by_group[n] is not None)
            if df["collectives_extrapolated"].any():
                first = next(v for n, v in sorted(notes_by_group.items(), reverse=True) if v)
                say(f"note: {int(df['collectives_extrapolated'].sum())} of {len(df)} frontier points of {model.name} "
                    f"on {hw_label} are extrapolated; the widest: {first}")
            df["engine"] = engine.name if engine is not None else ""
            label = f"{model.name} on {hw_label}" + (f" ({hw.provenance.kind})" if hw.provenance.kind != "published" else "")
            if draft:
                label += f" + {draft.name} draft (α={acceptance:g})"
            if engine is not None:
                label += f" with engine {engine.name}"
            say(frontier_table(df, label, hw, args.rows))
            try:
                req = request_args.frontier_requests(args, model, hw, label, space, engine, draft, acc)
            except RequestError as exc:
                raise cli_args.flag_error(exc) from None
            if req is not None:
                req, text = req
                say(text)
                request_frames.append(req.assign(profile_label=hw_label))
                request_curves[label] = req
            frames.append(df)
            curves[label] = df
            fronts[(hw_label, model.name)] = df
    for (pub_label, pub), (cal_label, cal) in comparisons:
        for model in models:
            delta = compare(model, pub, cal, fronts[(pub_label, model.name)], fronts[(cal_label, model.name)],
                            args.context, draft=draft, acceptance=acc)
            say(f"\n{model.name}: {pub_label} (published) vs {cal_label} (calibrated)")
            for line in delta.lines("published", "calibrated"):
                say(f"  {line}")
            if args.draws:
                for line in band_lines(fronts[(pub_label, model.name)], fronts[(cal_label, model.name)],
                                       "published", "calibrated"):
                    say(f"  {line}")

    for line in lines:
        print(line)

    all_df = pd.concat(frames, ignore_index=True)
    csv = out / "frontier.csv"
    with atomic_path(csv) as tmp:
        all_df.to_csv(tmp, index=False)
    from inferecon.report.plotting import optional_plot

    png = optional_plot(plot_frontiers, curves, out / "frontier.png",  # the CSV stands without matplotlib
                        title=f"context {args.context}, " + ", ".join(sorted({f"{m.weight_bits}-bit weights, {m.kv_bits}-bit KV" for m in models})))
    print(f"wrote {csv} ({len(all_df)} frontier points)" + (f" and {png}" if png else ""))
    if request_frames:
        from inferecon.report.request_plot import plot_request_frontiers

        req_csv = out / "request_frontier.csv"
        with atomic_path(req_csv) as tmp:
            pd.concat(request_frames, ignore_index=True).to_csv(tmp, index=False)
        req_png = optional_plot(plot_request_frontiers, request_curves, out / "request_frontier.png",
                                ttft_ms=args.ttft_ms, tpot_ms=args.tpot_ms,
                                title=f"requests of {args.input_len} tokens in, {args.output_len} out")
        print(f"wrote {req_csv} (the request frontier: TTFT, TPOT, $ per request and per million input and output "
              f"tokens)" + (f" and {req_png}" if req_png else ""))
    return 0


def _with_band(df, model, hw, context, near, draft, acceptance, draws, seed, engine=None):
    """The frontier with its 90% band (speed_lo/hi, usd_per_mtok_lo/hi, each term's lo/hi) and
    p_pareto: the share of draws in which each point stays Pareto-optimal."""
    from inferecon.model.uncertainty import frontier_band, overlaps_neighbour

    cols = frontier_band(model, hw, df, context, near, draft=draft, acceptance=acceptance, draws=draws, seed=seed,
                         engine=engine)
    df = df.copy()
    names = {"tokens_per_s_per_seq": "speed", "usd_per_mtok": "usd_per_mtok"}
    for key in ("tokens_per_s_per_seq", "usd_per_mtok", "t_step_s", "t_arithmetic_s", "t_memory_s",
                "t_network_s", "t_latency_s"):
        for end in ("lo", "median", "hi"):
            df[f"{names.get(key, key)}_{end}"] = cols[f"{key}_{end}"]
    df["p_pareto"] = cols["p_pareto"]
    df["overlaps_neighbour"] = overlaps_neighbour(df["speed_lo"].to_numpy(), df["speed_hi"].to_numpy(),
                                                  df["usd_per_mtok_lo"].to_numpy(), df["usd_per_mtok_hi"].to_numpy())
    df["band_draws"] = draws
    return df
