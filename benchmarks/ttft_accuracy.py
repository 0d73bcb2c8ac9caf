"""TTFT and online-serving TPOT scorecard: inferecon's serving model (model/serving.py) against
sourced public measurements (benchmarks/data/public_ttft.csv), with aiconfigurator's estimates
of the same deployments beside it where benchmarks/data/aiconfigurator_ttft_estimates.csv has
them (written by `.venv-aic/bin/python benchmarks/aiconfigurator_estimates.py --csv
benchmarks/data/public_ttft.csv --out benchmarks/data/aiconfigurator_ttft_estimates.csv`).

    .venv/bin/python benchmarks/ttft_accuracy.py [--published] [--op-db-cache DIR] [--kv-bits 8]
        [--hardware PROFILE_JSON] [--csv PATH] [--out CSV]

Profiles, as a user would price each point: by default the op-DB profile of the point's GPU x
engine (`calibrate --op-db` on the installed aiconfigurator-core's tables, the engine's newest
version there; NIM runs TensorRT-LLM, so its tables) with the engine profile that calibration
writes, plus a published host overhead of the point's own engine version where one exists;
the published profile of the GPU where the tables have no such GPU x engine (the reason is
printed). `--published` prices every point on the published profile (the behaviour before the
op-DB default). The op-DB profiles (inferecon.calibration.opdb_profiles) and how a point is
priced on them (benchmarks/point_pricing.py: engine -> tables, model, weight format, host
overhead, eager engine) are the decode scorecard's (benchmarks/accuracy.py), so both price a
point alike.

Each point is one published serving run: a closed loop of C clients (`batch` = C), or Poisson
arrivals at `request_rate` requests/s (a column; empty for closed loops), input I, output O:

- TTFT: `serve(..., concurrency=C)` (the closed loop's prompts arrive in bunches that share a
  step, queueing of bunches, clients beyond the KV cache's room wait for a slot) or
  `serve(..., request_rate_per_s=R)` (M/D/1 over prompts); the measured figure is the mean,
  the median where the source gives no mean;
- TPOT "before": the decode-only step at batch C and context I + O/2 (what the decode scorecard
  benchmarks/accuracy.py predicts: no prefill in the steps; closed loops only);
- TPOT "after": the serving model's mean TPOT, chunked prefill of arriving prompts included;
- "sim": the explicit step-by-step simulation of the closed loop (serving.simulate_closed_loop,
  closed loops only), with the step scheduler of the point's engine (serving.engine_scheduler).

A point the model refuses (an impossible layout, a KV cache that cannot hold one request, a
rate the deployment cannot sustain) is counted as not covered, never as a number. Scores: share
of points within ±25%, MAPE and the median of predicted / measured, overall and per engine,
per source and per load bucket.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from inferecon.core.text import fixed_or_dash

# benchmarks/point_pricing.py, beside this file: how both scorecards price a point.
from point_pricing import (OPDB_BACKEND, eager_engine, kept_model, opdb_model, overlap_schedule, resolve_model,
                           runs_eagerly, scheduler_steps, with_engine_facts)

HERE = Path(__file__).resolve().parent
DEFAULT_CSV = HERE / "data" / "public_ttft.csv"
AIC_CSV = HERE / "data" / "aiconfigurator_ttft_estimates.csv"
TOLERANCE = 0.25
# The columns load_points needs in every file (request_rate and batch are read where present: a
# closed-loop row without a batch is refused by itself, files without request_rate are closed loops).
REQUIRED_COLUMNS = ("source_id", "engine", "model", "gpu", "tp", "input_len", "output_len", "weight_format",
                    "weight_bits", "kv_bits", "metric", "value")
TTFT_METRICS = ("ttft_ms_mean", "ttft_ms_median")
ITL_METRICS = ("itl_ms_mean", "tpot_ms_mean", "itl_ms_median", "tpot_ms_median")


class BadInput(Exception):
    """A malformed CSV: the one-line reason main prints before exiting 2."""


@dataclass
class Point:
    row: int  # 0-based data row of its TTFT figure in the CSV (aiconfigurator's rows key on it)
    source_id: str
    engine: str
    engine_version: str
    model: str
    gpu: str
    tp: int
    concurrency: int | None  # closed-loop clients (or the cap beside a request rate), None if absent
    request_rate_per_s: float | None  # Poisson arrivals; None for a closed loop
    input_len: int
    output_len: int
    weight_format: str
    weight_bits: int
    kv_bits: int
    notes: str = ""
    ttft_mean_ms: float | None = None
    ttft_median_ms: float | None = None
    itl_ms: float | None = None
    itl_metric: str = ""
    itl_row: int | None = None

    @property
    def ttft_ms(self) -> float | None:
        """The figure TTFT is scored on: the mean, the median where the source gives no mean."""
        return self.ttft_mean_ms if self.ttft_mean_ms is not None else self.ttft_median_ms

    @property
    def closed_loop(self) -> bool:
        return self.request_rate_per_s is None


def _int(r: dict, col: str, where: str, optional: bool = False) -> int | None:
    v = (r.get(col) or "").strip()
    if not v and optional:
        return None
    try:
        return int(v)
    except ValueError:
        raise BadInput(f"{where}: column {col!r} must be a whole number, got {v!r}") from None


def _rate(r: dict, where: str) -> float | None:
    v = (r.get("request_rate") or "").strip()
    if not v:
        return None
    try:
        rate = float(v)
    except ValueError:
        raise BadInput(f"{where}: request_rate must be requests per second, got {v!r}") from None
    if not rate > 0:
        raise BadInput(f"{where}: request_rate must be positive, got {v!r}")
    return rate


def load_points(path: Path) -> list[Point]:
    """The CSV's figures grouped into points (one serving run each). `request_rate` is optional:
    files without the column are all closed loops."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from None
    # A file of another shape (a JSON, the decode scorecard's CSV cut short) reads as a header and
    # no rows: without these checks it scored "no points" and exited 0.
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise BadInput(f"{path}: missing column(s) {', '.join(missing)}")
    if not rows:
        raise BadInput(f"{path}: no points (a header and no rows)")
    points: dict[tuple, Point] = {}
    for i, r in enumerate(rows):
        where = f"{path}:{i + 2}"
        rate = _rate(r, where)
        conc = _int(r, "batch", where, optional=True)
        if rate is None and (conc is None or conc < 1):
            raise BadInput(f"{where}: a closed-loop point needs its concurrency (batch >= 1)")
        tp, input_len, output_len = (_int(r, col, where) for col in ("tp", "input_len", "output_len"))
        key = (r["source_id"], r["model"], r["gpu"], r["weight_format"], tp, conc, rate, input_len, output_len)
        p = points.setdefault(key, Point(
            i, r["source_id"], r["engine"], r.get("engine_version", ""), r["model"], r["gpu"], tp, conc, rate,
            input_len, output_len, r["weight_format"], _int(r, "weight_bits", where), _int(r, "kv_bits", where),
            r.get("notes", "")))
        try:
            value = float(r["value"])
        except ValueError:
            raise BadInput(f"{where}: value must be a number, got {r['value']!r}") from None
        metric = r["metric"]
        if metric in TTFT_METRICS:
            if metric == "ttft_ms_mean":
                p.ttft_mean_ms = value
            else:
                p.ttft_median_ms = value
            if metric == "ttft_ms_mean" or p.ttft_mean_ms is None:
                p.row = i
        elif metric in ITL_METRICS:
            # A mean is preferred to a median; TPOT (excl. the first token) and ITL are the same
            # figure for a stream of single tokens.
            if p.itl_ms is None or ("mean" in metric and "mean" not in p.itl_metric):
                p.itl_ms, p.itl_metric, p.itl_row = value, metric, i
        else:
            raise BadInput(f"{where}: unknown metric {metric!r} (one of {', '.join(TTFT_METRICS + ITL_METRICS)})")
    return list(points.values())


def load_aic(path: Path) -> dict[int, dict]:
    """aiconfigurator's rows by the data-row index of the point they estimate."""
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        return {int(r["point"]): r for r in csv.DictReader(fh)}


@dataclass
class Pricing:
    """What one point is priced with, and why."""
    hw: object
    engine: object  # EngineProfile or None
    label: str  # "published h100-sxm" / "op-DB trtllm 1.3.0rc20 (h100-sxm)"
    why: str = ""  # why the published profile stands in, where it does


def pricings(points: list[Point], published: bool, hardware: str | None, op_db=None, cache_dir=None) -> list[Pricing]:
    from inferecon.calibration.opdb_profiles import opdb_profiles
    from inferecon.model.hardware import HardwareProfile
    from inferecon.model.published import get_profile

    if hardware:
        hw = HardwareProfile.load(hardware)
        return [Pricing(hw, None, f"--hardware {Path(hardware).name}") for _ in points]
    if published:
        return [Pricing(get_profile(p.gpu), None, f"published {p.gpu}") for p in points]
    backends = [OPDB_BACKEND.get(p.engine, (None, f"no op-DB backend for engine {p.engine!r}")) for p in points]
    profiles = opdb_profiles([(p.gpu, b) for p, (b, _) in zip(points, backends) if b], op_db, cache_dir)
    out = []
    for p, (backend, why) in zip(points, backends):
        got = profiles.get((p.gpu, backend)) if backend else why
        if not isinstance(got, tuple):
            out.append(Pricing(get_profile(p.gpu), None, f"published {p.gpu}", str(got)))
            continue
        hw, eng = got
        eng, facts = with_engine_facts(eng, p.engine, p.engine_version)
        out.append(Pricing(hw, eng, f"op-DB {backend} {hw.op_fits.engine_version} ({p.gpu})"
                           + (f" + {facts}" if facts else ""), why))
    return out


def _f(v):
    return float(v) if v not in (None, "") else None


def score(pairs):
    """(n, share within ±25%, MAPE, median ratio) of (predicted, measured) pairs."""
    pairs = [(p, m) for p, m in pairs if p is not None and m]
    if not pairs:
        return 0, None, None, None
    errs = [abs(p / m - 1.0) for p, m in pairs]
    return (len(pairs), sum(e <= TOLERANCE for e in errs) / len(pairs), 100 * statistics.mean(errs),
            statistics.median(p / m for p, m in pairs))


def _fmt_score(s):
    n, share, mape, med = s
    if not n:
        return "no points"
    return f"{n:3d} pts  within ±25%: {share:5.1%}  MAPE {mape:6.1f}%  median ratio {med:5.2f}"


def load_bucket(row: dict) -> str:
    """The load slice of a point: request-rate runs apart, closed loops by concurrency."""
    if row["request_rate"] is not None:
        return "rate"
    c = row["concurrency"]
    return "C = 1" if c == 1 else "C 2-25" if c <= 25 else "C 26-100" if c <= 100 else "C > 100"


def kv_unstated(notes: str) -> bool:
    """Whether a point's notes say its source does not state the KV-cache precision."""
    return "kv precision not stated" in (notes or "").lower()


def price_point(p: Point, pr: Pricing, kv_bits: int | None, sim: bool, chunk_tokens: dict | None = None) -> dict:
    """One point's predictions (None where the model refuses it, with the reason). `chunk_tokens`:
    a token budget per step by engine name (a sensitivity check; default the serving model's)."""
    from inferecon.core.errors import UserError
    from inferecon.model.predict import predict
    from inferecon.model.serving import engine_overlaps, engine_scheduler, serve, simulate_closed_loop

    row = dict(source_id=p.source_id, engine=p.engine, model=p.model, gpu=p.gpu, tp=p.tp,
               concurrency=p.concurrency, request_rate=p.request_rate_per_s, input_len=p.input_len,
               output_len=p.output_len, ttft_ms=p.ttft_ms, ttft_basis="mean" if p.ttft_mean_ms is not None else "median",
               itl_ms=p.itl_ms, pred_ttft_ms=None, pred_tpot_before_ms=None, pred_tpot_after_ms=None,
               decode_batch=None, refused="", sim_ttft_ms=None, sim_tpot_ms=None, profile=pr.label,
               profile_note=pr.why, ttft_lo_ms=None, ttft_hi_ms=None)
    try:
        kv = kv_bits if kv_bits and kv_unstated(p.notes) else p.kv_bits
        model = kept_model(resolve_model(p.model).with_precision(p.weight_bits, kv), p.engine, p.notes,
                           p.engine_version)
        engine = pr.engine
        if pr.engine is not None:
            model = opdb_model(model, p.weight_format)
        if runs_eagerly(p.notes):  # no CUDA graphs: the host launches every kernel
            engine = eager_engine(engine)
        steps = scheduler_steps(p.engine_version)
        chunk = (chunk_tokens or {}).get(p.engine)
        ov = overlap_schedule(p.engine, p.engine_version)  # None: the engine profile's default
        if p.closed_loop:
            before = predict(model, pr.hw, tp=p.tp, batch=p.concurrency, context=p.input_len + p.output_len // 2,
                             engine=engine, draws=0)
            row["pred_tpot_before_ms"] = before.t_step_ms if before.feasible else None
            r = serve(model, pr.hw, input_len=p.input_len, output_len=p.output_len, tp=p.tp,
                      concurrency=p.concurrency, engine=engine, scheduler_steps=steps, chunk_tokens=chunk,
                      overlap_schedule=ov)
        else:
            r = serve(model, pr.hw, input_len=p.input_len, output_len=p.output_len, tp=p.tp,
                      request_rate_per_s=p.request_rate_per_s, engine=engine, scheduler_steps=steps,
                      chunk_tokens=chunk, overlap_schedule=ov)
        row.update(pred_ttft_ms=r.ttft_s * 1e3, pred_tpot_after_ms=r.tpot_s * 1e3, decode_batch=r.decode_batch)
        if p.closed_loop and p.concurrency == 1:
            # One client: TTFT is the prompt's prefill alone, whose 90% interval predict prints
            # (model/request.lone_ttft_band: the profile's draws).
            from inferecon.model.prefill import PrefillOptions
            from inferecon.model.request import lone_ttft_band
            from inferecon.model.serving import default_chunk_tokens
            from inferecon.model.uncertainty import DEFAULT_DRAWS, DEFAULT_SEED

            band = lone_ttft_band(model, pr.hw, input_len=p.input_len,
                                  chunk_tokens=chunk or default_chunk_tokens(pr.hw, engine.name if engine else None),
                                  tp=p.tp, pp=1, ep=1, engine=engine, popts=PrefillOptions(), draws=DEFAULT_DRAWS,
                                  seed=DEFAULT_SEED)
            if band is not None:
                row.update(ttft_lo_ms=band[0] * 1e3, ttft_hi_ms=band[1] * 1e3)
        if sim and p.closed_loop:
            s = simulate_closed_loop(model, pr.hw, input_len=p.input_len, output_len=p.output_len, tp=p.tp,
                                     concurrency=p.concurrency, engine=engine, scheduler=engine_scheduler(p.engine),
                                     chunk_tokens=chunk, overlap=engine_overlaps(p.engine) if ov is None else ov)
            row.update(sim_ttft_ms=s.ttft_mean_s * 1e3, sim_tpot_ms=s.tpot_mean_s * 1e3)
    except UserError as exc:
        row["refused"] = str(exc)
    return row


def summary_lines(out_rows: list[dict]) -> list[str]:
    def pairs(pred, meas, rows=out_rows):
        return [(r[pred], r[meas]) for r in rows]

    def line(tag, label, pred, meas, rows=out_rows):
        return f"{tag:<7} {label:<18} {_fmt_score(score(pairs(pred, meas, rows)))}"

    closed = [r for r in out_rows if r["request_rate"] is None]
    unsat = [r for r in closed if r["decode_batch"] is not None and r["decode_batch"] >= 0.9 * r["concurrency"]]
    both = [r for r in out_rows if r["pred_ttft_ms"] is not None and r["aic_ttft_ms"] is not None]
    same = [r for r in closed if r["pred_tpot_before_ms"] is not None and r["pred_tpot_after_ms"] is not None]
    online = [r for r in out_rows if r["request_rate"] is not None or r["concurrency"] >= 5]
    online_closed = [r for r in closed if r["concurrency"] >= 5]
    out = [line("TTFT", "inferecon", "pred_ttft_ms", "ttft_ms"),
           line("TTFT", "closed-loop sim", "sim_ttft_ms", "ttft_ms"),
           line("TTFT", "aiconfigurator", "aic_ttft_ms", "ttft_ms"),
           line("TTFT", "inferecon (both)", "pred_ttft_ms", "ttft_ms", both),
           line("TTFT", "aiconf.   (both)", "aic_ttft_ms", "ttft_ms", both),
           line("TTFT", "all clients fit", "pred_ttft_ms", "ttft_ms", unsat),
           line("TPOT", "before (decode)", "pred_tpot_before_ms", "itl_ms"),
           line("TPOT", "after (serving)", "pred_tpot_after_ms", "itl_ms"),
           line("TPOT", "closed-loop sim", "sim_tpot_ms", "itl_ms"),
           line("TPOT", "aiconfigurator", "aic_tpot_ms", "itl_ms"),
           line("TPOT", "before, same pts", "pred_tpot_before_ms", "itl_ms", same),
           line("TPOT", "after, same pts", "pred_tpot_after_ms", "itl_ms", same),
           line("TPOT", "C >= 5 before", "pred_tpot_before_ms", "itl_ms", online_closed),
           line("TPOT", "online after", "pred_tpot_after_ms", "itl_ms", online),
           line("TPOT", "online aiconf.", "aic_tpot_ms", "itl_ms", online)]
    banded = [r for r in out_rows if r.get("ttft_lo_ms") is not None and r["ttft_ms"] is not None]
    if banded:
        inside = sum(r["ttft_lo_ms"] <= r["ttft_ms"] <= r["ttft_hi_ms"] for r in banded)
        out.append(f"TTFT    90% interval of a lone prompt's prefill (C = 1, the profile's draws): {inside} of "
                   f"{len(banded)} measured points inside")
    slices = (("load", load_bucket, ("C = 1", "C 2-25", "C 26-100", "C > 100", "rate")),
              ("engine", lambda r: r["engine"], None),
              ("source", lambda r: r["source_id"], None),
              ("profile", lambda r: r["profile"].split(" (")[0], None))
    for name, key, order in slices:
        groups: dict[str, list[dict]] = {}
        for r in out_rows:
            groups.setdefault(key(r), []).append(r)
        out.append("")
        out.append(f"by {name}: TTFT inferecon | TTFT aiconfigurator | TPOT after (serving)")
        for g in (order or sorted(groups)):
            if g not in groups:
                continue
            rows = groups[g]
            for col, meas, label in (("pred_ttft_ms", "ttft_ms", "TTFT"), ("aic_ttft_ms", "ttft_ms", "TTFT aic"),
                                     ("pred_tpot_after_ms", "itl_ms", "TPOT")):
                s = score(pairs(col, meas, rows))
                if s[0]:
                    out.append(f"  {g[:30]:<30} {label:<8} {_fmt_score(s)}")
    return out


def table_lines(out_rows: list[dict]) -> list[str]:
    n = fixed_or_dash

    out = [f"{'source':28s} {'load':>7} {'I':>6} {'O':>5} | {'TTFT':>9} {'pred':>9} {'aic':>9} | "
           f"{'ITL':>6} {'before':>6} {'after':>6} {'aic':>6} | {'B':>6} | {'simTTFT':>9} {'simTPOT':>7}"]
    for r in out_rows:
        load = f"r{r['request_rate']:g}" if r["request_rate"] is not None else f"C{r['concurrency']}"
        out.append(f"{r['source_id'][:28]:28s} {load:>7} {r['input_len']:6d} {r['output_len']:5d} | "
                   f"{n(r['ttft_ms'], 9)} {n(r['pred_ttft_ms'], 9)} {n(r['aic_ttft_ms'], 9)} | "
                   f"{n(r['itl_ms'], 6, 2)} {n(r['pred_tpot_before_ms'], 6, 2)} {n(r['pred_tpot_after_ms'], 6, 2)} "
                   f"{n(r['aic_tpot_ms'], 6, 2)} | {n(r['decode_batch'], 6)} | {n(r['sim_ttft_ms'], 9)} "
                   f"{n(r['sim_tpot_ms'], 7, 2)}" + (f"  refused: {r['refused']}" if r["refused"] else ""))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--aic", default=str(AIC_CSV))
    ap.add_argument("--published", action="store_true",
                    help="price every point on the published profile of its GPU (no op-DB profiles)")
    ap.add_argument("--hardware", default=None, help="price every point on this HardwareProfile JSON")
    ap.add_argument("--op-db", metavar="PATH", default=None,
                    help="per-op database folder (default: the installed aiconfigurator-core's)")
    ap.add_argument("--op-db-cache", metavar="DIR", default=None,
                    help="keep the fitted op-DB profiles here (profile.json, engine.json per GPU x backend) and reuse them")
    ap.add_argument("--out", default=None, help="write the per-point table as CSV here")
    ap.add_argument("--no-sim", action="store_true", help="skip the explicit closed-loop simulation column")
    ap.add_argument("--kv-bits", type=int, default=None, choices=(8, 16),
                    help="price the KV cache at this precision on the points whose notes say their source does not "
                         "state it (the CSV's kv_bits is then an assumption; a sensitivity check)")
    ap.add_argument("--chunk-size", action="append", default=[], metavar="ENGINE=TOKENS",
                    help="price ENGINE's points with this token budget per step (repeatable; a sensitivity check "
                         "of an engine setting its sources do not state; default the serving model's)")
    args = ap.parse_args(argv)

    from inferecon.core.errors import UserError

    chunk_tokens = {}
    for item in args.chunk_size:
        engine_name, _, tokens = item.partition("=")
        if not engine_name or not tokens.isdigit() or int(tokens) < 2:
            print(f"error: --chunk-size {item!r}: give ENGINE=TOKENS, TOKENS a whole number >= 2", file=sys.stderr)
            return 2
        chunk_tokens[engine_name] = int(tokens)

    t0 = time.time()
    try:
        points = load_points(Path(args.csv))
        prices = pricings(points, args.published, args.hardware, args.op_db, args.op_db_cache)
    except (BadInput, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    aic = load_aic(Path(args.aic))
    out_rows = []
    for p, pr in zip(points, prices):
        row = price_point(p, pr, args.kv_bits, not args.no_sim, chunk_tokens)
        a = aic.get(p.itl_row) or aic.get(p.row) or {}
        row["aic_ttft_ms"] = _f(a.get("ttft_ms")) if a.get("status") == "ok" else None
        row["aic_tpot_ms"] = _f(a.get("tpot_ms")) if a.get("status") == "ok" else None
        row["aic_status"] = a.get("status", "absent")
        out_rows.append(row)
    elapsed = time.time() - t0

    print(f"TTFT / online TPOT scorecard: {len(out_rows)} points from {args.csv} "
          f"({sum(1 for r in out_rows if r['refused'])} refused), {elapsed:.1f} s")
    if chunk_tokens:
        print("sensitivity: token budget per step " + ", ".join(f"{e}={n}" for e, n in sorted(chunk_tokens.items()))
              + " (not a sourced setting; the other engines at the serving model's default)")
    used = sorted({r["profile"] for r in out_rows})
    print("profiles: " + "; ".join(used))
    for why in sorted({r["profile_note"] for r in out_rows if r["profile"].startswith("published") and r["profile_note"]}):
        print(f"  published profile where: {why}")
    print("\n".join(summary_lines(out_rows)))
    print()
    print("\n".join(table_lines(out_rows)))
    if args.out:
        with open(args.out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(out_rows[0]))
            w.writeheader()
            w.writerows(out_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
