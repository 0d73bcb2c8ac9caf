"""TTFT and online-serving TPOT scorecard: inferecon's serving model (model/serving.py) against
sourced public measurements (benchmarks/data/public_ttft.csv), with aiconfigurator's estimates
of the same deployments beside it where benchmarks/data/aiconfigurator_ttft_estimates.csv has
them (written by `.venv-aic/bin/python benchmarks/aiconfigurator_estimates.py --csv
benchmarks/data/public_ttft.csv --out benchmarks/data/aiconfigurator_ttft_estimates.csv`).

    .venv/bin/python benchmarks/ttft_accuracy.py [--hardware PROFILE_JSON] [--csv PATH] [--out CSV]

Each point is one published serving run (closed loop of C clients, input I, output O). For it:

- TTFT: `serve(..., concurrency=C)`: the closed loop's prompts arrive in bunches that share a
  step (serving.bunch_size), queueing of bunches (M/D/1, capped at the bunches that can be
  ahead; clients beyond the KV cache's room wait for a slot) plus the bunch's packed prefill
  riding in the decode steps;
- TPOT "before": the decode-only step at batch C and context I + O/2 (what the decode scorecard
  benchmarks/accuracy.py predicts: no prefill in the steps);
- TPOT "after": the serving model's mean TPOT, chunked prefill of arriving prompts included;
- "sim": the explicit step-by-step simulation of the closed loop (serving.simulate_closed_loop:
  all clients start together, fixed lengths, 2C warm-up and 10C measured requests), with the
  step scheduler of the point's engine (serving.engine_scheduler: NIM runs TensorRT-LLM, whose
  default schedules whole prompts).

A point the model refuses (an impossible layout, a KV cache that cannot hold one request) is
counted as not covered, never as a number. Scores: share of points within ±25%, MAPE and the
median of predicted / measured.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CSV = HERE / "data" / "public_ttft.csv"
AIC_CSV = HERE / "data" / "aiconfigurator_ttft_estimates.csv"
TOLERANCE = 0.25


@dataclass
class Point:
    row: int  # 0-based data row of its TTFT figure in the CSV
    source_id: str
    engine: str
    model: str
    gpu: str
    tp: int
    concurrency: int
    input_len: int
    output_len: int
    weight_bits: int
    kv_bits: int
    ttft_ms: float | None = None
    itl_ms: float | None = None
    itl_row: int | None = None


def load_points(path: Path) -> list[Point]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    points: dict[tuple, Point] = {}
    for i, r in enumerate(rows):
        key = (r["source_id"], r["model"], r["gpu"], int(r["tp"]), int(r["batch"]), int(r["input_len"]),
               int(r["output_len"]))
        p = points.setdefault(key, Point(i, r["source_id"], r["engine"], r["model"], r["gpu"], int(r["tp"]), int(r["batch"]),
                                         int(r["input_len"]), int(r["output_len"]), int(r["weight_bits"]),
                                         int(r["kv_bits"])))
        if r["metric"] == "ttft_ms_mean":
            p.ttft_ms, p.row = float(r["value"]), i
        elif r["metric"] in ("itl_ms_mean", "tpot_ms_mean"):
            p.itl_ms, p.itl_row = float(r["value"]), i
        else:
            raise SystemExit(f"{path}:{i + 2}: unknown metric {r['metric']!r}")
    return list(points.values())


def load_aic(path: Path) -> dict[int, dict]:
    """aiconfigurator's rows by the data-row index of the point they estimate."""
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        return {int(r["point"]): r for r in csv.DictReader(fh)}


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--aic", default=str(AIC_CSV))
    ap.add_argument("--hardware", default=None, help="a HardwareProfile JSON (default: the published profile of each point's GPU)")
    ap.add_argument("--out", default=None, help="write the per-point table as CSV here")
    ap.add_argument("--no-sim", action="store_true", help="skip the explicit closed-loop simulation column")
    ap.add_argument("--kv-bits", type=int, default=None, choices=(8, 16),
                    help="price every point's KV cache at this precision instead of the CSV's (the NIM pages do "
                         "not state it; a sensitivity check)")
    args = ap.parse_args(argv)

    from inferecon.core.errors import UserError
    from inferecon.model.catalog import resolve_model
    from inferecon.model.hardware import HardwareProfile
    from inferecon.model.predict import predict
    from inferecon.model.published import get_profile
    from inferecon.model.serving import engine_scheduler, serve, simulate_closed_loop

    points = load_points(Path(args.csv))
    aic = load_aic(Path(args.aic))
    fixed_hw = HardwareProfile.load(args.hardware) if args.hardware else None
    out_rows = []
    t0 = time.time()
    for p in points:
        hw = fixed_hw or get_profile(p.gpu)
        model = resolve_model(p.model).with_precision(p.weight_bits, args.kv_bits or p.kv_bits)
        row = dict(source_id=p.source_id, model=p.model, gpu=p.gpu, tp=p.tp, concurrency=p.concurrency,
                   input_len=p.input_len, output_len=p.output_len, ttft_ms=p.ttft_ms, itl_ms=p.itl_ms,
                   pred_ttft_ms=None, pred_tpot_before_ms=None, pred_tpot_after_ms=None, decode_batch=None,
                   refused="", sim_ttft_ms=None, sim_tpot_ms=None)
        try:
            before = predict(model, hw, tp=p.tp, batch=p.concurrency, context=p.input_len + p.output_len // 2,
                             draws=0)
            row["pred_tpot_before_ms"] = before.t_step_ms if before.feasible else None
            r = serve(model, hw, input_len=p.input_len, output_len=p.output_len, tp=p.tp, concurrency=p.concurrency)
            row.update(pred_ttft_ms=r.ttft_s * 1e3, pred_tpot_after_ms=r.tpot_s * 1e3, decode_batch=r.decode_batch)
            if not args.no_sim:
                sim = simulate_closed_loop(model, hw, input_len=p.input_len, output_len=p.output_len, tp=p.tp,
                                           concurrency=p.concurrency, scheduler=engine_scheduler(p.engine))
                row.update(sim_ttft_ms=sim.ttft_mean_s * 1e3, sim_tpot_ms=sim.tpot_mean_s * 1e3)
        except UserError as exc:
            row["refused"] = str(exc)
        a = aic.get(p.itl_row) or aic.get(p.row) or {}
        row["aic_ttft_ms"] = _f(a.get("ttft_ms")) if a.get("status") == "ok" else None
        row["aic_tpot_ms"] = _f(a.get("tpot_ms")) if a.get("status") == "ok" else None
        row["aic_status"] = a.get("status", "absent")
        out_rows.append(row)
    elapsed = time.time() - t0

    def pairs(pred, meas, rows=out_rows):
        return [(r[pred], r[meas]) for r in rows]

    unsat = [r for r in out_rows if r["decode_batch"] is not None and r["decode_batch"] >= 0.9 * r["concurrency"]]
    print(f"TTFT / online TPOT scorecard: {len(out_rows)} points from {args.csv} "
          f"({sum(1 for r in out_rows if r['refused'])} refused), {elapsed:.1f} s")
    print(f"TTFT    inferecon         {_fmt_score(score(pairs('pred_ttft_ms', 'ttft_ms')))}")
    print(f"TTFT    closed-loop sim   {_fmt_score(score(pairs('sim_ttft_ms', 'ttft_ms')))}")
    print(f"TTFT    aiconfigurator    {_fmt_score(score(pairs('aic_ttft_ms', 'ttft_ms')))}")
    both = [r for r in out_rows if r["pred_ttft_ms"] is not None and r["aic_ttft_ms"] is not None]
    print(f"TTFT    inferecon (both)  {_fmt_score(score(pairs('pred_ttft_ms', 'ttft_ms', both)))}")
    print(f"TTFT    aiconf.   (both)  {_fmt_score(score(pairs('aic_ttft_ms', 'ttft_ms', both)))}")
    print(f"TTFT    all clients fit   {_fmt_score(score(pairs('pred_ttft_ms', 'ttft_ms', unsat)))}")
    print(f"TPOT    before (decode)   {_fmt_score(score(pairs('pred_tpot_before_ms', 'itl_ms')))}")
    print(f"TPOT    after (serving)   {_fmt_score(score(pairs('pred_tpot_after_ms', 'itl_ms')))}")
    print(f"TPOT    closed-loop sim   {_fmt_score(score(pairs('sim_tpot_ms', 'itl_ms')))}")
    print(f"TPOT    aiconfigurator    {_fmt_score(score(pairs('aic_tpot_ms', 'itl_ms')))}")
    c1 = [r for r in out_rows if r["concurrency"] == 1]
    print(f"TTFT    C = 1 (no load)   {_fmt_score(score(pairs('pred_ttft_ms', 'ttft_ms', c1)))}")
    print(f"TTFT    C = 1 aiconf.     {_fmt_score(score(pairs('aic_ttft_ms', 'ttft_ms', c1)))}")
    same = [r for r in out_rows if r["pred_tpot_before_ms"] is not None and r["pred_tpot_after_ms"] is not None]
    print(f"TPOT    before, same pts  {_fmt_score(score(pairs('pred_tpot_before_ms', 'itl_ms', same)))}")
    print(f"TPOT    after, same pts   {_fmt_score(score(pairs('pred_tpot_after_ms', 'itl_ms', same)))}")
    online = [r for r in out_rows if r["concurrency"] >= 5]
    print(f"TPOT    C >= 5 before     {_fmt_score(score(pairs('pred_tpot_before_ms', 'itl_ms', online)))}")
    print(f"TPOT    C >= 5 after      {_fmt_score(score(pairs('pred_tpot_after_ms', 'itl_ms', online)))}")
    for lo, hi in ((1, 1), (2, 25), (26, 100), (101, 10**9)):
        sel = [r for r in out_rows if lo <= r["concurrency"] <= hi]
        label = f"C = {lo}" if lo == hi else (f"C {lo}-{hi}" if hi < 10**9 else f"C > {lo - 1}")
        for col, name in (("pred_ttft_ms", "inferecon"), ("sim_ttft_ms", "sim"), ("aic_ttft_ms", "aiconf.")):
            print(f"TTFT    {label:<9} {name:<9} {_fmt_score(score(pairs(col, 'ttft_ms', sel)))}")
    print()
    hdr = (f"{'source':22s} {'C':>4} {'I':>6} {'O':>5} | {'TTFT':>9} {'pred':>9} {'aic':>9} | "
           f"{'ITL':>6} {'before':>6} {'after':>6} {'aic':>6} | {'B':>6} | {'simTTFT':>9} {'simTPOT':>7}")
    print(hdr)

    def n(v, w, d=1):
        return f"{v:{w}.{d}f}" if v is not None else f"{'-':>{w}}"

    for r in out_rows:
        print(f"{r['source_id']:22s} {r['concurrency']:4d} {r['input_len']:6d} {r['output_len']:5d} | "
              f"{n(r['ttft_ms'], 9)} {n(r['pred_ttft_ms'], 9)} {n(r['aic_ttft_ms'], 9)} | "
              f"{n(r['itl_ms'], 6, 2)} {n(r['pred_tpot_before_ms'], 6, 2)} {n(r['pred_tpot_after_ms'], 6, 2)} "
              f"{n(r['aic_tpot_ms'], 6, 2)} | {n(r['decode_batch'], 6)} | {n(r['sim_ttft_ms'], 9)} {n(r['sim_tpot_ms'], 7, 2)}" + (f"  refused: {r['refused']}" if r['refused'] else ""))
    if args.out:
        with open(args.out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(out_rows[0]))
            w.writeheader()
            w.writerows(out_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
