"""The request-level flags of `inferecon predict` (and of `frontier`) (--input-len, --output-len, --concurrency,
--request-rate, --chunk-size) and what they add to its answer: TTFT, prefill tokens/s, TPOT,
request latency and $ per million input and output tokens (model/request.py)."""

from __future__ import annotations

from inferecon import cli_args

# A prompt or output beyond 10 M tokens is beyond any model's window (cli_args.CONTEXT_TOKENS).
LENGTH_TOKENS = cli_args.int_in(1, 10_000_000)
# Token budget per step: at least a decode token and a prompt token; 10 M as the lengths.
CHUNK_TOKENS = cli_args.int_in(2, 10_000_000)
# A latency limit: positive; a billion ms (11.6 days) is beyond any SLA.
LIMIT_MS = cli_args.float_in(0.0, 1e9, lo_open=True)
# Prefill and decode instances: no more than the GPUs an instance may have (cli_args.PARALLEL).
INSTANCES = cli_args.int_list_in(1, 65_536, "instance counts")


def _add_lengths(g, input_help: str) -> None:
    """--input-len and --output-len: the request, for predict and frontier alike."""
    g.add_argument("--input-len", type=LENGTH_TOKENS, default=None, metavar="TOKENS", help=input_help)
    g.add_argument("--output-len", type=LENGTH_TOKENS, default=None, metavar="TOKENS",
                   help="generated tokens per request (with --input-len)")


def _check_lengths(args, needs: list[tuple[str, object]], what: str) -> None:
    """--input-len and --output-len together; the flags in `needs` (given as (flag, value))
    only with them; the context defaulted to the request's (input + output/2)."""
    from inferecon.core.errors import UserError

    if (args.input_len is None) != (args.output_len is None):
        raise UserError("--input-len and --output-len go together: a request has both")
    given = [f for f, v in needs if v is not None]
    if given and args.input_len is None:
        raise UserError(f"{given[0]} needs --input-len and --output-len ({what})")
    if args.context is None:
        args.context = 4096 if args.input_len is None else args.input_len + args.output_len // 2


def check_window(args, model) -> None:
    """A request longer than the model's context window (known from its config.json) is
    refused: an engine rejects such a prompt, so no TTFT or price of it is an answer. A decode
    --context beyond the window stays a note (spec.context_note): the paper prices such steps."""
    from inferecon.core.errors import UserError

    window = model.max_context_tokens
    if args.input_len is None or not window or args.input_len + args.output_len <= window:
        return
    raise UserError(f"--input-len {args.input_len} + --output-len {args.output_len} = "
                    f"{args.input_len + args.output_len:,} tokens is beyond {model.name}'s {window:,}-token context "
                    "(max_position_embeddings or its rope scaling's reach): no engine serves such a request")


def add_flags(p) -> None:
    g = p.add_argument_group("request (prefill, TTFT and serving load)")
    _add_lengths(g, "prompt tokens per request: adds TTFT, prefill tok/s, request latency and $ per million "
                    "input and output tokens (decode context defaults to input + output/2)")
    load = g.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=cli_args.int_in(1, 1_000_000), default=None, metavar="C",
                      help="closed loop of C clients: steady-state decode batch, queueing TTFT, TPOT with "
                           "chunked-prefill interference")
    load.add_argument("--request-rate", type=cli_args.float_in(0.0, 1e6, lo_open=True), default=None,
                      metavar="R", help="Poisson arrivals of R requests/s (M/D/1 prefill queue)")
    g.add_argument("--chunk-size", type=CHUNK_TOKENS, default=None, metavar="TOKENS",
                   help="token budget per step (prefill chunk + decode tokens; default the --engine's own: "
                        "TensorRT-LLM 8192; SGLang 8192 below 160 GiB, else 16384; vLLM and no engine: 8192 "
                        "on H100/H200, 16384 on >= 160 GiB GPUs, 2048 on A100 and smaller)")
    g.add_argument("--scheduler-steps", type=cli_args.int_in(1, 1024), default=None, metavar="N",
                   help="with --concurrency or --request-rate: decode steps per scheduling round (vLLM V0's "
                        "--num-scheduler-steps; default 1): a prompt is admitted only at a round's end")
    g.add_argument("--disaggregated", default=None, metavar="P,D",
                   help="with --request-rate: P prefill instances and D decode instances (each of --tp/--pp/--ep; "
                        "prefill instances of --prefill-tp GPUs if given), the KV cache moved between them")
    g.add_argument("--prefill-tp", type=cli_args.int_in(1, 65_536), default=None,
                   help="with --disaggregated: tensor parallelism of each prefill instance (default --tp)")
    g.add_argument("--kv-link", choices=("nvlink", "network"), default="nvlink",
                   help="with --disaggregated: prefill and decode instances share a node (nvlink, default) or not")


def _pair(text: str) -> tuple[int, int]:
    """P,D of --disaggregated: two instance counts, each bounded by cli_args' parser."""
    from inferecon.core.errors import UserError

    counts = cli_args.parsed(INSTANCES, "--disaggregated", text)
    if len(counts) != 2:
        raise UserError(f"argument --disaggregated: expected P,D (prefill and decode instances), got {text!r}")
    return counts[0], counts[1]


def check(args) -> None:
    """Refuse load flags without a request; default the decode context to the request's."""
    from inferecon.core.errors import UserError

    _check_lengths(args, [("--concurrency", args.concurrency), ("--request-rate", args.request_rate),
                          ("--chunk-size", args.chunk_size)], "the request it loads the deployment with")
    if args.disaggregated is not None and args.request_rate is None:
        raise UserError("--disaggregated needs --request-rate R (and --input-len, --output-len)")
    if args.scheduler_steps is not None and (args.concurrency is None and args.request_rate is None
                                             or args.disaggregated is not None):
        raise UserError("--scheduler-steps applies to an aggregated load: give --concurrency C or --request-rate R "
                        "(without --disaggregated)")
    if args.prefill_tp is not None and args.disaggregated is None:
        raise UserError("--prefill-tp applies to --disaggregated serving only")
    if args.spec_decode and (args.concurrency is not None or args.request_rate is not None):
        # model/request.py's loaded instance decodes without a draft: the answer would be the
        # plain deployment's under the speculative one's name.
        load = "--concurrency" if args.concurrency is not None else "--request-rate"
        raise UserError(f"--spec-decode with {load}: the serving-load model prices plain decoding only; drop one "
                        "(frontier --input-len/--output-len --spec-decode prices speculative requests)")


def _check_cache_room(args, model, engine, rows) -> None:
    """A load on a deployment whose weights leave the KV cache no room under the engine's rule
    is one line saying so, with the weights' and the HBM's sizes: the serving model's own
    refusal names a 'usable' figure that, without room, is the weights' size ('141 GB usable per
    GPU' for Llama 3 70B on one 80 GB H100)."""
    from inferecon.core.errors import UserError
    from inferecon.model.serving import kv_admission, kv_budget_bytes

    r = rows[0]  # the weights per GPU do not depend on the batch
    adm = kv_admission(engine.name if engine is not None else None)
    if float(kv_budget_bytes(r.hbm_per_gpu_gb * 1e9, r.weights_per_gpu_gb * 1e9, adm)) > 0:
        return
    flag, value = (("--concurrency", args.concurrency) if args.concurrency is not None
                   else ("--request-rate", f"{args.request_rate:g}"))
    raise UserError(f"{flag} {value}: {model.name}'s weights, {r.weights_per_gpu_gb:.1f} GB per GPU at tp {args.tp}, "
                    f"pp {args.pp}, ep {args.ep}, leave no KV cache in {r.hbm_per_gpu_gb:g} GB of HBM ({adm.rule}): "
                    "no request fits; raise --tp or --pp, or lower --precision")


def requests_for(args, model, hw, engine, rows) -> list:
    """One RequestPrediction per decode row (all alike under a load: the load sets the batch)."""
    if args.input_len is None:
        return []
    from inferecon.model.request import predict_request

    if args.concurrency is not None or args.request_rate is not None:
        _check_cache_room(args, model, engine, rows)

    if args.disaggregated is not None:
        from inferecon.core.errors import RequestError
        from inferecon.model.request import predict_disaggregated

        p, d = _pair(args.disaggregated)
        try:
            return [predict_disaggregated(model, hw, input_len=args.input_len, output_len=args.output_len,
                                          request_rate_per_s=args.request_rate, tp=args.tp, pp=args.pp, ep=args.ep,
                                          prefill_tp=args.prefill_tp or args.tp, prefill_instances=p,
                                          decode_instances=d, same_node=args.kv_link == "nvlink", engine=engine)]
        except RequestError as exc:
            # The prefill instances' layout is --prefill-tp's, not --tp's: name the flag given.
            if exc.param == "tp" and args.prefill_tp not in (None, args.tp) and exc.value == args.prefill_tp:
                raise exc.for_flag("--prefill-tp") from None
            raise
    if args.concurrency is not None or args.request_rate is not None:
        one = predict_request(model, hw, input_len=args.input_len, output_len=args.output_len, tp=args.tp,
                              pp=args.pp, ep=args.ep, concurrency=args.concurrency,
                              request_rate_per_s=args.request_rate, chunk_tokens=args.chunk_size, engine=engine,
                              scheduler_steps=args.scheduler_steps or 1)
        return [one]
    out, band = [], None
    for r in rows:  # the prompt's TTFT band is the same whatever the decode batch: drawn once
        req = predict_request(model, hw, input_len=args.input_len, output_len=args.output_len, tp=args.tp, pp=args.pp,
                              ep=args.ep, decode_step_s=r.t_step_ms / 1e3 / r.tokens_per_step, decode_batch=r.batch,
                              decode_usd_per_mtok=r.usd_per_mtok, chunk_tokens=args.chunk_size, engine=engine,
                              draws=args.draws, seed=args.seed, ttft_band=band)
        if band is None and req.ttft_lo_ms is not None:
            band = (req.ttft_lo_ms / 1e3, req.ttft_hi_ms / 1e3)
        out.append(req)
    return out


def add_frontier_flags(p) -> None:
    g = p.add_argument_group("requests (price a whole request under latency limits)")
    _add_lengths(g, "prompt tokens per request: adds the request frontier (TTFT, TPOT, $ per request and per "
                    "million input and output tokens; with --spec-decode, speculative configurations too; "
                    "context defaults to input + output/2)")
    g.add_argument("--ttft-ms", type=LIMIT_MS, default=None, metavar="MS",
                   help="keep configurations whose time to first token is at most MS")
    g.add_argument("--tpot-ms", type=LIMIT_MS, default=None, metavar="MS",
                   help="keep configurations whose time per output token is at most MS")
    g.add_argument("--chunk-size", type=CHUNK_TOKENS, default=None, metavar="TOKENS",
                   help="token budget per step (default vLLM's: 8192 on H100/H200, 16384 on >= 160 GiB, 2048 on A100)")


def check_frontier(args) -> None:
    _check_lengths(args, [("--ttft-ms", args.ttft_ms), ("--tpot-ms", args.tpot_ms), ("--chunk-size", args.chunk_size)],
                   "the request it limits")


def frontier_requests(args, model, hw, label, space, engine, draft=None, acceptance=0.0):
    """The request frontier of one model on one profile (speculative configurations too with a
    draft): (its rows, its printed table), or None without --input-len. The caller prints the
    table once every search has succeeded."""
    if args.input_len is None:
        return None
    from inferecon.model.request_frontier import request_frontier, request_table
    from inferecon.report.request_table import format_request_frontier

    table = request_table(model, hw, input_len=args.input_len, output_len=args.output_len, space=space,
                          chunk_tokens=args.chunk_size, engine=engine, draft=draft, acceptance=acceptance)
    front = request_frontier(table, ttft_ms=args.ttft_ms, tpot_ms=args.tpot_ms)
    return front, format_request_frontier(front, label, args.ttft_ms, args.tpot_ms, args.rows)
