"""`inferecon predict`: one deployment (model, GPUs, tp/pp/ep, batch, context, precision)
through the cost model: tokens/s per sequence and per GPU, $ per million tokens, ms per step
of each term, memory per GPU (weights, KV cache, free), and whether it fits."""

from __future__ import annotations

from inferecon import cli_args
from inferecon.core.text import first_paragraph


def register(sub) -> None:
    p = sub.add_parser("predict", help="speed, cost, term breakdown and memory of one deployment",
                       description=first_paragraph(__doc__))
    p.add_argument("--model", required=True, type=cli_args.given("a model, e.g. llama-3-70b or path/to/config.json"),
                   help="catalog name or path to a Hugging Face config.json")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--gpu", default=None, type=cli_args.given("a GPU, e.g. h100-sxm"),
                       help="published GPU profile (default h100-sxm)")
    where.add_argument("--hardware", default=None, metavar="PROFILE_JSON",
                       type=cli_args.given("a profile, e.g. results/RUN/profile.json"), help="a HardwareProfile JSON")
    p.add_argument("--tp", type=cli_args.PARALLEL, default=1, help="tensor-parallel GPUs per pipeline stage (default 1)")
    p.add_argument("--pp", type=cli_args.PARALLEL, default=1, help="pipeline stages (default 1)")
    p.add_argument("--ep", type=cli_args.PARALLEL, default=1, help="expert-parallel ranks, MoE models only (default 1)")
    p.add_argument("--batch", default=None,
                   help="sequences decoded together; a list (1,8,64) prints one row each (default pp x ep: one "
                        "sequence per pipeline micro-batch and expert-parallel rank, 1 without them)")
    p.add_argument("--context", type=cli_args.CONTEXT_TOKENS, default=None,
                   help="tokens in context per sequence (default 4096, or input + output/2 with --input-len)")
    p.add_argument("--precision", type=int, default=None, choices=(32, 16, 8, 4), metavar="BITS",
                   help="weight precision in bits: 16, 8 or 4, or 32 with a CPU profile as --hardware (default: the "
                        "model's native one, as frontier: 8 for DeepSeek-V3, a config.json's quantization_config)")
    p.add_argument("--kv-precision", type=int, default=None, choices=(32, 16, 8, 4), metavar="BITS",
                   help="KV-cache precision in bits (default: the model's, 16 unless its config.json says; 32 with "
                        "a CPU profile)")
    p.add_argument("--spec-decode", default=None, metavar="DRAFT", type=cli_args.given("a draft model, e.g. llama-3-8b"),
                   help="draft model for speculative decoding")
    p.add_argument("--acceptance", type=cli_args.ACCEPTANCE, default=None,
                   help="per-token acceptance probability of the draft (default 0.8 with --spec-decode)")
    p.add_argument("--gamma", type=cli_args.GAMMA, default=None, help="draft tokens per round (default 4 with --spec-decode)")
    p.add_argument("--engine", default=None, metavar="ENGINE_JSON", type=cli_args.given("an engine profile (engine.json)"),
                   help="engine profile (from `inferecon calibrate --engine-results`): adds its per-step and "
                        "per-layer overheads and weight-read efficiency")
    p.add_argument("--price", type=cli_args.PRICE_USD_PER_HOUR, default=None, metavar="USD_PER_HOUR", help="$ per GPU-hour (default: the profile's)")
    p.add_argument("--draws", type=cli_args.int_in(0, 100_000), default=200,
                   help="parameter draws for the 90%% interval (default 200; 0: no interval)")
    p.add_argument("--seed", type=cli_args.int_in(0, 2**32 - 1), default=0, help="seed of the draws (default 0)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per batch size (one line each) instead of the table")
    from inferecon import request_args as predict_request

    predict_request.add_flags(p)
    p.set_defaults(func=run)


def _batches(text: str) -> list[int]:
    from inferecon.core.errors import UserError

    from inferecon import cli_args

    return cli_args.parsed(cli_args.BATCHES, "--batch", text)  # the bounds every command shares


def _one(flag: str, value: str | None, what: str) -> None:
    """predict prices one deployment: a comma list (frontier's way of naming several) is said
    to be that, not looked up as one unknown name with look-alikes suggested."""
    from pathlib import Path

    from inferecon.core.errors import UserError

    if value and "," in value and not Path(value).exists():
        raise UserError(f"{flag} {value}: predict prices one {what}; `inferecon frontier {flag} {value}` "
                        f"compares several")


def run(args) -> int:
    import json
    import sys

    from inferecon.core.errors import UserError
    from inferecon.model.catalog import resolve_model
    from inferecon.model.engine import EngineProfile
    from inferecon.model.hardware import HardwareProfile
    from inferecon.model.layout import RequestError
    from inferecon.model.predict import predict
    from inferecon.report.predict_table import format_predictions

    if (args.acceptance is not None or args.gamma is not None) and not args.spec_decode:
        raise UserError("--acceptance and --gamma need --spec-decode DRAFT")
    from inferecon import request_args as predict_request

    predict_request.check(args)
    _one("--model", args.model, "model")
    _one("--gpu", args.gpu, "GPU")
    # The smallest batch every layout splits: a default of 1 would refuse --pp 2 or --ep 2 (and a
    # serving load, whose batch the load sets, reads only the weights from this row).
    batches = _batches(args.batch if args.batch is not None else str(args.pp * args.ep))
    if args.hardware:
        hw = HardwareProfile.load(args.hardware)
    else:  # the published profiles are built only when one is asked for
        from inferecon.model.published import get_profile

        hw = get_profile(args.gpu or "h100-sxm")
    if args.price is not None:
        hw = hw.with_price(args.price)
    model = resolve_model(args.model).with_precision(args.precision, args.kv_precision)
    predict_request.check_window(args, model)
    from inferecon.model.network import extrapolation_note

    # Notes go to stderr (--json output stays one object per line), and only once the prediction
    # stands: a refusal further on is then the one line said.
    notes = []
    if extrapolation_note(hw, max(args.tp, args.ep)):  # the largest collective group: TP all-reduce, EP all-to-all
        notes.append(extrapolation_note(hw, max(args.tp, args.ep)))
    if model.context_note(args.context):
        notes.append(model.context_note(args.context))
    if 32 in (model.weight_bits, model.kv_bits):
        from inferecon.calibration.engine_fit import prices_fp32

        if not prices_fp32(hw):
            raise UserError(f"32-bit weights or KV cache run on CPUs: give --hardware a CPU profile (from "
                            f"`inferecon calibrate --device cpu`), not {hw.name}")
    draft, gamma, acceptance = None, 0, 0.0
    if args.spec_decode:
        draft = resolve_model(args.spec_decode).with_precision(args.precision, args.kv_precision)
        gamma = 4 if args.gamma is None else args.gamma
        acceptance = 0.8 if args.acceptance is None else args.acceptance  # --gamma >= 1: cli_args.GAMMA
        from inferecon.model.frontier import validate_request

        validate_request(model, hw, args.context, acceptance, draft)  # as frontier: a draft shares the tokenizer
    engine = EngineProfile.load(args.engine) if args.engine else None
    # The modules the checkpoint or the engine keeps in 16 bit, as the public scorecards price them.
    from inferecon.model.quant import engine_deployed_model

    kept = engine_deployed_model(model, engine)
    if kept is not model:
        notes.append(f"{model.name} keeps {kept.kept_16bit_summary()} in 16 bit ({kept.kept_16bit_source})")
    model = kept
    draft = engine_deployed_model(draft, engine) if draft is not None else None
    if engine is not None and engine.hardware and hw.name not in engine.hardware.split(","):
        # Its overheads and efficiencies are what the runs needed on top of *that* profile.
        notes.append(f"engine profile {engine.name!r} was fitted against {engine.hardware}, not {hw.name}")
    if engine is not None and engine.kv_reread_per_query_head and not model.is_mla and model.n_heads > model.n_kv_heads:
        # Not a default anyone expects: say what it costs (model/engine_kernel_facts.py).
        notes.append(f"engine profile {engine.name!r} decodes attention with one thread block per query head: each KV "
                     f"head is read by every query head sharing it (up to {model.n_heads // model.n_kv_heads}x "
                     "the KV-cache traffic)")
    if hw.op_fits is not None:  # which op was priced from which table, where not its own
        from inferecon.model.ops import fallbacks

        for line in fallbacks(model, hw, engine):
            notes.append(f"op-level model: {line}")
    try:
        rows = [predict(model, hw, tp=args.tp, pp=args.pp, ep=args.ep, batch=b, context=args.context,
                        draft=draft, gamma=gamma, acceptance=acceptance, engine=engine, draws=args.draws,
                        seed=args.seed) for b in batches]
        requests = predict_request.requests_for(args, model, hw, engine, rows)
    except RequestError as exc:
        raise cli_args.flag_error(exc) from None
    if requests and draft is not None:  # model/request.py prefills with the target alone
        notes.append(f"the request's TTFT leaves out {draft.name}'s own prefill of the prompt (the draft prefills "
                     "it too; frontier --input-len/--output-len --spec-decode prices that)")
    for note in notes:
        print(f"inferecon: note: {note}", file=sys.stderr)
    if args.json:
        for i, r in enumerate(rows):
            d = r.to_dict()
            if requests:
                d["request"] = requests[min(i, len(requests) - 1)].to_dict()
            print(json.dumps(d))
    else:
        print(format_predictions(rows, hw))
        if requests:
            from inferecon.report.request_table import format_request

            for i, req in enumerate(requests):
                print(format_request(req))
                row = rows[min(i, len(rows) - 1)]
                if req.load == "none" and not row.feasible:
                    # Priced as asked, like the decode row above it, but never without a word.
                    print(f"  batch {row.batch} does not fit in HBM (above): this request's TPOT and prices are "
                          "of a deployment that cannot run")
    return 0
