"""Public accuracy scorecard: the cost model against published serving-engine decode figures.

    python benchmarks/accuracy.py [--csv benchmarks/data/public_decode.csv] [--markdown] [--json OUT]

Every row of the CSV is one published measurement (model, GPU, TP, batch or concurrency,
input/output length, weight and KV precision, engine, measured TPOT/ITL or per-user tok/s,
source URL). For each row this prints the measured and predicted time per output token and
their ratio, then the mean absolute percentage error (MAPE) per engine and per GPU for

  (a) published: the published hardware profile of the GPU, no engine profile;
  (b) engine, leave-one-source-out: for each source, an EngineProfile (fixed time per step,
      time per layer, weight-read efficiency per weight format) fitted on the *other* sources'
      points of the same engine, then used to predict that source's points. An engine with no
      other source keeps the published prediction, and says so.

Beside (a), on the same points, the peer: aiconfigurator's own estimate of each deployment, read
from benchmarks/data/aiconfigurator_estimates.csv (written by benchmarks/aiconfigurator_estimates.py
in its own venv; how each point was mapped is in that file), as MAPE, median predicted/measured and
share within ±20% per engine, GPU, precision, dense/MoE and batch bucket (`--aiconfigurator CSV`);
and (c) the op-DB profile of each point's GPU x engine (`calibrate --op-db`). Every slice table is
`slice_table` (MAPE through inferecon.core.stats). The ten worst points of the published and the
op-DB column are listed with the reason the point's own notes give (eager engine, a max-batch
throughput table, a figure that includes the prefill ...), never a reason read from the model.

A point whose notes say its engine ran without CUDA graphs (vLLM --enforce-eager, eager PyTorch)
is priced in every column with the host launching every kernel: model/engine.py's built-in
'eager' engine for the published column, a fitted or op-DB engine `run_eagerly()` for the others.

The fit is `inferecon.calibration.engine_fit.fit_engine_profile`, the one `calibrate
--engine-results` runs: a parameter the training points cannot pin down keeps its published
value (no overhead, efficiency 1.0) and the fit says which and why. Every prediction goes
through `inferecon.model.predict.predict`, the call the `predict` command makes.

The time per token a row is compared on is the decode step time at the mean context of the
generation (input + output / 2). How each published metric becomes milliseconds per token
is in `measured_ms_per_token`. A figure that is a whole run over its output tokens (a static-batch
throughput table, benchmark_latency's end-to-end latency: WHOLE_RUN_METRICS) holds the prefill too,
so every column's prediction for it is the whole run as well: the batch's prompts prefilled in one
step plus O - 1 decode steps, over O (`price`, `whole_run_ms`). The leave-one-source-out engine fit
still trains on the measured figures as they are (their prefill share included).

A point measured by a serving benchmark (the CSV's `load` column is `concurrency`: a client keeping C =
`batch` requests in flight, LOADS says which sources are which and why) is priced in every column with
the serving model the TTFT scorecard uses (model/serving.py `serve(..., concurrency=C)`: the steady-state
decode batch of the closed loop and the arriving prompts' prefill chunks inside its steps), its mean
TPOT compared with the measured TPOT / ITL (`serving_tpot_ms`). A `static` point keeps the decode step
at batch = `batch`. The engine fit trains on both kinds as measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from inferecon.calibration.engine_fit import EngineCase, EngineFit, fit_engine_profile, predict_case
from inferecon.ingest.engine_results import EngineRun
from inferecon.calibration.opdb_profiles import opdb_profiles
from inferecon.model.published import get_profile
from inferecon.core.errors import UserError
from inferecon.core.stats import mape_pct_of
from inferecon.model.engine import EngineProfile

# benchmarks/point_pricing.py, beside this file: how both scorecards price a point.
from point_pricing import (EAGER_NOTE, OPDB_BACKEND, eager_engine, kept_model, opdb_model, resolve_model, runs_eagerly,
                           with_engine_facts)

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_CSV = DATA_DIR / "public_decode.csv"

REQUIRED_COLUMNS = ("source_id", "engine", "engine_version", "model", "gpu", "n_gpu", "tp", "batch", "load",
                    "input_len", "output_len", "weight_format", "weight_bits", "kv_bits", "metric",
                    "value", "source_url", "notes")

# How a point's source ran its measurement (the CSV's `load` column), read from each source's own
# description of the run, never from how the point scores:
#   static       every sequence of the batch starts together and no request arrives during the run:
#                benchmark_latency / `vllm bench latency`, the gptSessionBenchmark and LMDeploy
#                profile_generation throughput tables, gpt-fast / torchao generate.py, Hugging Face
#                generate (AutoAWQ). `batch` is the batch size.
#   concurrency  a serving benchmark client keeps `batch` requests in flight against a server and sends
#                the next as one completes (genai-perf / AIPerf --concurrency, benchmark_serving /
#                `vllm bench serve --max-concurrency`, SGLang bench_serving under InferenceX, LLMPerf's
#                concurrent requests, tt-inference-server's client, LMDeploy's concurrency benchmark):
#                the arriving prompts are prefilled inside the other requests' decode steps. `batch` is
#                the concurrency C. Such a point is priced with the serving model (`serving_tpot_ms`).
LOADS = ("static", "concurrency")

# Published metric -> milliseconds per output token of one sequence.
METRICS = {
    "tpot_ms_mean": lambda r: r.value,
    "tpot_ms_median": lambda r: r.value,
    "itl_ms_mean": lambda r: r.value,
    "itl_ms_median": lambda r: r.value,
    "tok_s_per_user": lambda r: 1e3 / r.value,
    # Static-batch throughput of the whole instance: every sequence gets one token per step.
    "out_tok_s_total": lambda r: 1e3 * r.batch / r.value,
    "out_tok_s_per_gpu": lambda r: 1e3 * r.batch / (r.value * r.n_gpu),
    # End-to-end latency of a fixed-length generation (benchmark_latency): the prefill is
    # included (WHOLE_RUN_METRICS).
    "e2e_latency_s": lambda r: 1e3 * r.value / r.output_len,
}

# Metrics that are a whole run's time over its output tokens: one prefill step of the batch's
# prompts (which yields each sequence's first token), then O - 1 decode steps. The static-batch
# throughput tables (TensorRT-LLM's gptSessionBenchmark: out_tps = output_seqlen x batch /
# total_latency; LMDeploy's profile_generation) and benchmark_latency's end-to-end latency are all
# such figures, so each prediction is put on the same basis with `whole_run_ms` before it is
# compared. The per-step metrics (TPOT, ITL, a generate loop's tok/s after a 5-token prompt) are not.
WHOLE_RUN_METRICS = frozenset({"out_tok_s_total", "out_tok_s_per_gpu", "e2e_latency_s"})


def whole_run_ms(step_ms: float, prefill_ms: float, output_len: int) -> float:
    """ms per output token of a run that prefills once (prefill_ms, the first token) and then
    decodes O - 1 steps of step_ms each, divided by its O output tokens."""
    return (prefill_ms + (output_len - 1) * step_ms) / output_len

def eager_flags(points: pd.DataFrame) -> pd.Series:
    """Each point's eager flag (ran without CUDA graphs): the `eager` column load_points writes,
    or, for a frame built without it, read from the notes. The one place every column looks it up."""
    if "eager" in points.columns:
        return points["eager"].astype(bool)
    return points["notes"].map(runs_eagerly)


# -- data ------------------------------------------------------------------------------------
def load_points(path: str | Path = DEFAULT_CSV) -> pd.DataFrame:
    """The published points, checked: every column present, every row with a source URL,
    a known metric and positive figures. A bad row is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    df = pd.read_csv(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    df["notes"] = df["notes"].fillna("")
    for i, r in df.iterrows():
        where = f"{path}: row {i + 2} ({r.source_id})"
        if not str(r.source_url).startswith(("http://", "https://")):
            raise UserError(f"{where}: source_url must be an http(s) address, got {r.source_url!r}")
        if r.metric not in METRICS:
            raise UserError(f"{where}: unknown metric {r.metric!r} (one of {', '.join(METRICS)})")
        if r.load not in LOADS:
            raise UserError(f"{where}: load must be one of {', '.join(LOADS)}, got {r.load!r}")
        if r.load == "concurrency" and r.metric in WHOLE_RUN_METRICS:
            raise UserError(f"{where}: a concurrency point's figure is per output token (TPOT, ITL), "
                            f"not a whole run's {r.metric!r}")
        for col in ("n_gpu", "tp", "batch", "output_len", "value"):
            if not (float(r[col]) > 0):
                raise UserError(f"{where}: {col} must be > 0, got {r[col]!r}")
        if int(r.n_gpu) != int(r.tp):
            raise UserError(f"{where}: n_gpu {r.n_gpu} != tp {r.tp} (only pure tensor-parallel points are scored)")
    df["measured_ms"] = [measured_ms_per_token(r) for r in df.itertuples()]
    df["eager"] = eager_flags(df)
    df["context"] = (df["input_len"] + df["output_len"] / 2.0).round().astype(int)
    return df


def measured_ms_per_token(row) -> float:
    return float(METRICS[row.metric](row))


# -- cases and fits ----------------------------------------------------------------------------
def to_case(row) -> EngineCase:
    """A published point as an engine run the calibration code evaluates and fits."""
    run = EngineRun(source=row.source_id, format="published", engine=row.engine,
                    concurrency=float(row.batch), concurrency_from="batch column of the CSV",
                    input_len=float(row.input_len), output_len=float(row.output_len),
                    tpot_ms=float(row.measured_ms), tpot_metric=row.metric, model=row.model, tp=int(row.tp),
                    weight_bits=int(row.weight_bits), kv_bits=int(row.kv_bits), gpu=row.gpu,
                    version=str(row.engine_version))
    model = resolve_model(row.model).with_precision(int(row.weight_bits), int(row.kv_bits))
    # The modules its checkpoint or engine keeps in 16 bit (point_pricing.kept_model: sourced rules).
    model = kept_model(model, row.engine, getattr(row, "notes", ""), str(row.engine_version))
    return EngineCase(run=run, model=model, hw=get_profile(row.gpu), tp=int(row.tp))


def leave_one_source_out(df: pd.DataFrame, cases: list[EngineCase]) -> dict[str, EngineFit | None]:
    """For each source, the engine profile fitted (calibration.engine_fit, the fit `calibrate`
    uses) on the other sources' points of the same engine; None where there is no other source."""
    fits = {}
    for src, engine in df.groupby("source_id", sort=False)["engine"].first().items():
        train = [c for c, e, s in zip(cases, df["engine"], df["source_id"]) if e == engine and s != src]
        fits[src] = fit_engine_profile(train, name=f"{engine} without {src}", heldout=False) if train else None
    return fits


def describe(fit: EngineFit) -> str:
    p = fit.profile
    eff = ", ".join(f"eff{k} {v:.2f}" for k, v in sorted(p.weight_read_efficiency.items())) or "no efficiency fitted"
    held = [n for n in fit.params if not n.fitted]
    held_txt = ("; kept published: " + "; ".join(f"{n.name} ({n.note})" for n in held)) if held else ""
    per_seq = f"{p.per_sequence_us:.1f} us/sequence, " if p.per_sequence_us else ""
    return (f"{p.step_overhead_us:.0f} us/step, {p.per_layer_us:.1f} us/layer, {per_seq}{eff} "
            f"[{len(fit.rows)} points from {', '.join(p.sources)}{held_txt}]")


# -- the scorecard ---------------------------------------------------------------------------
COVERAGE_DRAWS = 200  # parameter draws behind each point's predicted 90% interval


def _covered(pred, measured_ms: float, on_basis=lambda ms: ms) -> bool:
    """Whether the measured ms per token lies inside the predicted 90% interval (ms per token is
    1 / speed, so the slow end of the speed interval is its long end), each end put on the
    measured figure's basis by `on_basis` (whole_run_ms rises with the step time)."""
    return (on_basis(1e3 / pred.tokens_per_s_per_seq_hi) <= measured_ms
            <= on_basis(1e3 / pred.tokens_per_s_per_seq_lo))


def prefill_ms(case: EngineCase, engine: EngineProfile | None) -> float:
    """ms to prefill the point's whole batch of prompts in one step (the static batch of a
    throughput table or of benchmark_latency: every prompt arrives at once and is packed into one
    token dimension, model/prefill.py's prefill_step), on the case's hardware profile and engine."""
    from inferecon.model.prefill import prefill_step

    chunks = [(max(1, int(round(case.run.input_len))), 0, True)] * case.batch
    return 1e3 * prefill_step(case.model, case.hw, chunks=chunks, tp=case.tp, pp=case.pp, ep=case.ep,
                              engine=engine).t_prefill_s


def serving_tpot_ms(case: EngineCase, engine: EngineProfile | None) -> float:
    """Mean TPOT, ms, of the closed loop a `concurrency` point measured: C = the case's batch clients,
    each sending its next request of input I / output O as the last completes, served with chunked
    prefill (model/serving.py `serve`, the serving model benchmarks/ttft_accuracy.py prices its TPOT
    'after' with, on the same model, profile and engine). A deployment the model refuses (a KV cache
    that cannot hold one request) is a UserError naming the point."""
    from inferecon.core.errors import RequestError
    from inferecon.model.serving import serve

    i, o = max(1, int(round(case.run.input_len))), max(1, int(round(case.run.output_len)))
    try:
        r = serve(case.model, case.hw, input_len=i, output_len=o, tp=case.tp, pp=case.pp, ep=case.ep,
                  concurrency=case.batch, engine=engine)
    except RequestError as exc:
        raise UserError(f"{case.run.source} (concurrency {case.batch}, {i} in / {o} out, tp {case.tp}): "
                        f"the serving model refuses it: {exc}") from None
    return r.tpot_s * 1e3


def price(case: EngineCase, engine: EngineProfile | None, metric: str, draws: int = 0, load: str = "static"):
    """(ms per token on the measured metric's basis, the Prediction, the basis function): the decode
    step at the mean context, for a WHOLE_RUN_METRICS figure the whole run (prefill + O - 1
    steps) over O, and for a `concurrency` point the serving model's mean TPOT (serving_tpot_ms).
    The basis function puts a decode-step time (the Prediction's interval ends) on that basis; for a
    concurrency point it scales by the served TPOT over the decode step at batch C."""
    pred = predict_case(case, engine, draws=draws)
    if load == "concurrency":
        served = serving_tpot_ms(case, engine)
        scale = served / pred.ms_per_token
        return served, pred, (lambda ms: ms * scale)
    if metric not in WHOLE_RUN_METRICS:
        return pred.ms_per_token, pred, (lambda ms: ms)
    o = int(round(case.run.output_len))
    first = prefill_ms(case, engine)
    basis = lambda ms: whole_run_ms(ms, first, o)  # noqa: E731 -- bound to this point's prefill
    return basis(pred.ms_per_token), pred, basis


def scorecard(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per-point predictions (published and engine leave-one-source-out) and the fits used."""
    cases = [to_case(r) for r in df.itertuples()]
    fits = leave_one_source_out(df, cases)
    out = df.copy()
    pub, eng, used, feasible, dominant, cov_pub, cov_eng = [], [], [], [], [], [], []
    for case, src, engine, metric, no_graphs, load in zip(cases, df["source_id"], df["engine"], df["metric"],
                                                          eager_flags(df), df["load"]):
        # A point whose source ran without CUDA graphs is priced with the host's launch floor.
        ms, base, basis = price(case, eager_engine(None) if no_graphs else None, metric, draws=COVERAGE_DRAWS,
                                load=load)
        pub.append(ms)
        cov_pub.append(_covered(base, case.measured_ms, basis))
        feasible.append(bool(base.feasible))
        dominant.append(str(base.dominant))
        fit = fits[src]
        if fit is None:
            eng.append(ms)
            cov_eng.append(cov_pub[-1])
            used.append(f"published (no other {engine} source)" + (", run eagerly" if no_graphs else ""))
        else:
            ms, p, basis = price(case, eager_engine(fit.profile) if no_graphs else fit.profile, metric,
                                 draws=COVERAGE_DRAWS, load=load)
            eng.append(ms)
            cov_eng.append(_covered(p, case.measured_ms, basis))
            used.append(describe(fit) + (" (run eagerly)" if no_graphs else ""))
    out["pred_published_ms"] = pub
    out["pred_engine_ms"] = eng
    out["ratio_published"] = out["pred_published_ms"] / out["measured_ms"]
    out["ratio_engine"] = out["pred_engine_ms"] / out["measured_ms"]
    out["engine_fit"] = used
    out["covered_published"] = cov_pub
    out["covered_engine"] = cov_eng
    out["feasible"] = feasible
    out["dominant"] = dominant
    # For reference only (not scored): each engine with two or more sources, fitted on all of them.
    whole = {}
    for e in sorted(df["engine"].unique()):
        mask = (df["engine"] == e).to_numpy()
        if df.loc[mask, "source_id"].nunique() >= 2:
            whole[e] = fit_engine_profile([c for c, m in zip(cases, mask) if m], name=e, heldout=False)
    return out, {"loso": fits, "all_sources": whole}


# -- the peer: aiconfigurator's own estimates -------------------------------------------------
# Written by benchmarks/aiconfigurator_estimates.py (run in .venv-aic, where aiconfigurator is
# installed): real outputs of the real tool, committed, so the scorecard needs no aiconfigurator.
AIC_CSV = DATA_DIR / "aiconfigurator_estimates.csv"
# What identifies a published point in both files (a row index would silently shift when points are added).
AIC_KEY = ("source_id", "model", "gpu", "tp", "batch", "input_len", "output_len", "weight_format")
WITHIN = 0.20  # "within ±20%": |predicted / measured - 1| <= 0.20


def load_aiconfigurator(path: str | Path = AIC_CSV) -> pd.DataFrame | None:
    """aiconfigurator's estimates, one row per published point (None where the file is absent)."""
    path = Path(path)
    if not path.is_file():
        return None
    aic = pd.read_csv(path, keep_default_na=False, dtype={"tp": int, "batch": int, "input_len": int, "output_len": int})
    missing = [c for c in AIC_KEY + ("status", "ms_per_token", "aic_version", "reason") if c not in aic.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    if aic.duplicated(list(AIC_KEY)).any():
        raise UserError(f"{path}: two estimates for one point ({', '.join(AIC_KEY)} repeat)")
    aic["ms_per_token"] = pd.to_numeric(aic["ms_per_token"].replace("", np.nan))
    bad = aic[(aic["status"] == "ok") & ~(aic["ms_per_token"] > 0)]
    if len(bad):
        raise UserError(f"{path}: row {bad.index[0] + 2}: status ok but ms_per_token is {bad.iloc[0]['ms_per_token']!r}")
    return aic


def add_aiconfigurator(res: pd.DataFrame, aic: pd.DataFrame | None) -> pd.DataFrame:
    """The scorecard with aiconfigurator's ms per token (pred_aic_ms; NaN where it gave none, with
    why in aic_note). A published point with no row in the estimates file is NaN too ("not run")."""
    out = res.copy()
    if aic is None:
        out["pred_aic_ms"], out["aic_note"], out["aic_engine_substituted"] = np.nan, "no estimates file", ""
    else:
        cols = list(AIC_KEY) + ["status", "ms_per_token", "reason", "engine_substituted", "aic_version"]
        merged = out[list(AIC_KEY)].merge(aic[cols], on=list(AIC_KEY), how="left", validate="many_to_one")
        ok = (merged["status"] == "ok").to_numpy()
        out["pred_aic_ms"] = np.where(ok, merged["ms_per_token"].to_numpy(dtype=float), np.nan)
        out["aic_note"] = np.where(merged["status"].isna(), "not run (no row in the estimates file)",
                                   merged["reason"].fillna("").to_numpy())
        out["aic_engine_substituted"] = merged["engine_substituted"].fillna("").to_numpy()
        out.attrs["aic_version"] = ", ".join(sorted(set(aic["aic_version"].astype(str))))
    out["ratio_aic"] = out["pred_aic_ms"] / out["measured_ms"]
    return out


def batch_bucket(batch: int) -> str:
    return "1" if batch <= 1 else "2-16" if batch <= 16 else "17-64" if batch <= 64 else ">64"


def slice_columns(res: pd.DataFrame) -> pd.DataFrame:
    """The slices the peer comparison is read by: precision (weight bits), dense/MoE, batch bucket."""
    moe = {m: resolve_model(m).is_moe for m in res["model"].unique()}
    return res.assign(precision=res["weight_bits"].map(lambda b: f"w{int(b)}"),
                      arch=res["model"].map(lambda m: "moe" if moe[m] else "dense"),
                      batch_bucket=res["batch"].map(batch_bucket))


# -- the slice tables: one function for every tool and slice ----------------------------------------
# Tag -> the ratio column (predicted / measured ms per token) each tool's predictions are scored on.
TOOLS = {"pub": "ratio_published", "eng": "ratio_engine", "opdb": "ratio_opdb", "aic": "ratio_aic"}
PEER_SLICES = ("engine", "gpu", "precision", "arch", "batch_bucket", "load")


def _errors(ratio) -> dict:
    """MAPE % (core/stats.py's rule), median predicted/measured and % of points within ±20%, over the
    finite ratios given (NaN where there is none)."""
    r = np.asarray(ratio, dtype=float)
    r = r[np.isfinite(r)]
    if not len(r):
        return {"mape": np.nan, "med": np.nan, "w20": np.nan}
    return {"mape": mape_pct_of(r, np.ones_like(r)), "med": float(np.median(r)),
            "w20": float(np.mean(np.abs(r - 1.0) <= WITHIN) * 100.0)}


def slice_table(res: pd.DataFrame, by: str, tools: tuple[str, ...], same_points: bool = False,
                both: tuple[str, str] | None = None) -> pd.DataFrame:
    """Per value of `by` and over all points ("all"): points, sources, and for each tool (tags of
    TOOLS) the points it predicted ({tag}_n), MAPE % ({tag}_mape), median predicted/measured
    ({tag}_med) and % within ±20% ({tag}_w20), each on the points that tool predicted.
    same_points: every tool is scored on the points all of them predicted instead (`compared`).
    both=(a, b): also a's and b's MAPE on the points both predicted ({a}_mape_both, {b}_mape_both)."""
    res = res if by in res.columns else slice_columns(res)
    cols = [TOOLS[t] for t in tools]
    rows = []
    for key, g in list(res.groupby(by)) + [("all", res)]:
        row = {by: key, "points": len(g)}
        if "source_id" in g.columns:
            row["sources"] = g["source_id"].nunique()
        if same_points:
            g = g[g[cols].notna().all(axis=1)]
            row["compared"] = len(g)
        for tag, col in zip(tools, cols):
            if not same_points:
                row[f"{tag}_n"] = int(g[col].notna().sum())
            row.update({f"{tag}_{k}": v for k, v in _errors(g[col]).items()})
        if both:
            pair = g[g[TOOLS[both[0]]].notna() & g[TOOLS[both[1]]].notna()]
            row["both"] = len(pair)
            for tag in both:
                row[f"{tag}_mape_both"] = _errors(pair[TOOLS[tag]])["mape"]
        rows.append(row)
    return pd.DataFrame(rows)


def slice_report(res: pd.DataFrame, slices, tools, markdown: bool = False, **kw) -> list[str]:
    """slice_table for each slice, as text: a {tag}_n column that equals `points` on every row
    (the tool predicted every point) is left out."""
    out = []
    for by in slices:
        table = slice_table(res, by, tools, **kw)
        table = table[[c for c in table.columns if not (c.endswith("_n") and (table[c] == table["points"]).all())]]
        out += [f"by {by}", _table(table, markdown), ""]
    return out


def peer_report(res: pd.DataFrame, markdown: bool = False) -> list[str]:
    if "pred_aic_ms" not in res.columns:
        return []
    n_est = int(res["pred_aic_ms"].notna().sum())
    out = [f"Peer: aiconfigurator {res.attrs.get('aic_version', '?')}'s own estimates of the same deployments "
           f"(benchmarks/data/aiconfigurator_estimates.csv, real outputs of the tool), beside the published "
           f"profile on the same {n_est} of {len(res)} points (compared); pub = published profile, aic = "
           f"aiconfigurator; med = median predicted/measured; w20 = % of points within ±20% of the measured figure"]
    out += slice_report(res, PEER_SLICES, ("pub", "aic"), markdown, same_points=True)
    real = res[(res["aic_engine_substituted"] == "no") & res["pred_aic_ms"].notna()]
    e_pub, e_aic = _errors(real["ratio_published"]), _errors(real["ratio_aic"])
    out.append(f"Only the {len(real)} points whose engine aiconfigurator models itself (trtllm, vllm, sglang, NIM's "
               f"TRT-LLM): aic MAPE {e_aic['mape']:.0f}%, within ±20% {e_aic['w20']:.0f}%; published "
               f"MAPE {e_pub['mape']:.0f}%, within ±20% {e_pub['w20']:.0f}%")
    none = res[res["pred_aic_ms"].isna()]
    if len(none):
        out.append("Points aiconfigurator gave no estimate for:")
        out += [f"  {r.source_id} {r.model} {r.gpu} tp{r.tp} b{r.batch}: {r.aic_note}" for r in none.itertuples()]
    out.append("")
    return out


# -- the op-DB profile of each point's GPU x engine (calibrate --op-db; point_pricing.OPDB_BACKEND) --
def add_opdb(res: pd.DataFrame, op_db=None, cache_dir=None) -> pd.DataFrame:
    """The scorecard with the op-DB profile's ms per token (pred_opdb_ms, ratio_opdb) and which
    tables priced the point (opdb_profile, opdb_note)."""
    import dataclasses

    out = res.copy()
    backends = [OPDB_BACKEND.get(e, (None, f"no op-DB backend for {e}")) for e in out["engine"]]
    profiles = opdb_profiles([(g, b) for g, (b, _) in zip(out["gpu"], backends) if b], op_db, cache_dir)
    pred, used, note, covered = [], [], [], []
    for r, (backend, why), no_graphs in zip(out.itertuples(), backends, eager_flags(out)):
        got = profiles.get((r.gpu, backend)) if backend else why
        if not isinstance(got, tuple):
            pred.append(np.nan)
            used.append("")
            note.append(str(got))
            covered.append(None)
            continue
        hw, eng = got
        eng, facts = with_engine_facts(eng, r.engine, r.engine_version)
        case = to_case(r)
        case = dataclasses.replace(case, hw=hw, model=opdb_model(case.model, r.weight_format))
        ms, p, basis = price(case, eager_engine(eng) if no_graphs else eng, r.metric, draws=COVERAGE_DRAWS,
                             load=r.load)
        pred.append(ms)
        # The op-DB profile's band: each op family's held-out error over the tables' shapes.
        covered.append(_covered(p, case.measured_ms, basis) if p.tokens_per_s_per_seq_lo is not None else None)
        used.append(f"{backend} {hw.op_fits.engine_version}" + (" run eagerly" if no_graphs else "")
                    + (f" + {facts} ({r.engine} fact{'s' if ', ' in facts else ''})" if facts else ""))
        note.append(why)
    out["pred_opdb_ms"] = pred
    out["ratio_opdb"] = out["pred_opdb_ms"] / out["measured_ms"]
    out["opdb_profile"] = used
    out["opdb_note"] = note
    out["covered_opdb"] = covered
    return out


def opdb_report(res: pd.DataFrame, markdown: bool = False) -> list[str]:
    if "ratio_opdb" not in res.columns:
        return []
    n = int(res["ratio_opdb"].notna().sum())
    versions = ", ".join(sorted({u for u in res["opdb_profile"] if u}))
    has_aic = "ratio_aic" in res.columns
    out = [f"Op-DB profiles (calibrate --op-db on the per-op database, newest version of each backend: {versions}), "
           f"{n} of {len(res)} points; pub = published profile, opdb = op-level model on the op-DB profile, "
           f"aic = aiconfigurator, each on the points it predicted (*_n where not all); med = median "
           f"predicted/measured; w20 = % within ±20%; *_mape_both = MAPE on the points opdb and aic both predicted"]
    tools = ("pub", "opdb", "aic") if has_aic else ("pub", "opdb")
    out += slice_report(res, PEER_SLICES, tools, markdown, both=("opdb", "aic") if has_aic else None)
    banded = res["covered_opdb"].dropna() if "covered_opdb" in res.columns else pd.Series([], dtype=object)
    if len(banded):
        out += [f"Coverage of the op-DB profiles' 90% interval (each op family's k-fold held-out error over the "
                f"tables' shapes, {COVERAGE_DRAWS} draws): {int(banded.astype(bool).sum())} of {len(banded)} points; "
                f"a band says how well the fits reproduce the tables, not how far an engine run departs from "
                f"its tables", ""]
    missing = res[res["ratio_opdb"].isna()]
    if len(missing):
        out.append("Points with no op-DB prediction:")
        out += [f"  {r.source_id} {r.model} {r.gpu} tp{r.tp} b{r.batch}: {r.opdb_note}" for r in missing.itertuples()]
        out.append("")
    return out


# -- the ten worst points of a column, with what the source says about them -------------------------
# A phrase of a point's CSV notes -> the short reason shown beside it. Reasons come from what the
# source (or the row's transcription of it) says about the measurement, never from the model.
NOTE_REASONS = (
    (EAGER_NOTE, "eager: no CUDA graphs"),
    (r"peak-throughput table|max-throughput|high-throughput table", "max-batch throughput table"),
    (r"whether all \d+ sequences were resident", "batch = engine max (residency not stated)"),
    (r"includes the prefill|includes the [\d.]+ s first token|includes the \d+ x \d+-token prefill",
     "figure includes the prefill"),
    (r"prefills of arriving requests interleave", "prefills interleave with decode steps"),
    (r"int8 dynamic quantization suits compute-bound", "int8 dynamic quant at batch 1 (source: memory bound, slow)"),
    (r"2 nodes|infiniband", "two nodes over InfiniBand"),
    (r"modelled as all 4-bit", "FP4 experts + FP8 rest modelled as all 4-bit"),
    (r"power-limited to 330 w", "A100 power-limited to 330 W"),
    (r"noisy", "noisy table"),
    (r"two digits", "figure given to two digits"),
    (r"engine taken as vllm|engine vllm / bf16 / one gpu assumed", "engine, precision and GPU count not stated"),
)


def note_reason(notes: str) -> str:
    """The reasons a point's notes give for treating its figure with care, "; "-joined ("" for none)."""
    text = str(notes or "").lower()
    return "; ".join(reason for pattern, reason in NOTE_REASONS if re.search(pattern, text))


def worst_ten(res: pd.DataFrame, tag: str, n: int = 10) -> pd.DataFrame:
    """The n points a tool (a tag of TOOLS) predicts worst, by |log(predicted / measured)|, with the
    reason the point's notes give (reason)."""
    ratio = res[TOOLS[tag]]
    err = np.abs(np.log(ratio.astype(float))).dropna().sort_values(ascending=False)
    pred = TOOLS[tag].replace("ratio_", "pred_") + "_ms"
    cols = ["source_id", "engine", "gpu", "model", "tp", "batch", "context", "weight_format", "measured_ms", pred,
            TOOLS[tag]]
    return res.loc[err.index[:n], cols].assign(reason=res.loc[err.index[:n], "notes"].map(note_reason))


def worst_report(res: pd.DataFrame, markdown: bool = False) -> list[str]:
    out = []
    for tag, name in (("pub", "published profile"), ("opdb", "op-DB profile")):
        if TOOLS[tag] in res.columns and res[TOOLS[tag]].notna().any():
            out += [f"Ten worst points, {name} (by |log ratio|); reason = what the point's source notes say",
                    _table(worst_ten(res, tag), markdown), ""]
    return out


def worst(res: pd.DataFrame, n: int = 6, column: str = "ratio_engine") -> pd.DataFrame:
    """The worst-predicted point of each source, the n worst sources first (by |log ratio|)."""
    err = np.abs(np.log(res[column]))
    idx = err.groupby(res["source_id"]).idxmax()
    return res.loc[idx].assign(_err=err[idx]).sort_values("_err", ascending=False).head(n).drop(columns="_err")


# -- printing --------------------------------------------------------------------------------
def _points_table(res: pd.DataFrame) -> str:
    cols = ["source_id", "engine", "gpu", "model", "tp", "batch", "context", "weight_bits", "measured_ms",
            "pred_published_ms", "ratio_published", "pred_engine_ms", "ratio_engine"]
    return res[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}")


def _fmt(col: str, v) -> str:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (float, np.floating)):
        return str(v)
    if np.isnan(v):
        return "-"
    if col.startswith("ratio") or col.endswith("_med"):
        return f"{v:.2f}"
    if col.endswith("_ms"):
        return f"{v:.1f}"
    return f"{v:.0f}"


def _table(df: pd.DataFrame, markdown: bool = False) -> str:
    """A table as Markdown or as aligned text, cells formatted by _fmt either way."""
    cells = [[_fmt(c, v) for c, v in zip(df.columns, r)] for r in df.itertuples(index=False)]
    if markdown:
        lines = ["| " + " | ".join(df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])
    return pd.DataFrame(cells, columns=df.columns).to_string(index=False)


def report(res: pd.DataFrame, fits: dict, markdown: bool = False) -> str:
    out = []
    if not markdown:
        out += ["Per point: time per output token, ms (measured; predicted with the published profile; "
                "with the engine fitted leave-one-source-out); ratio = predicted / measured", _points_table(res), ""]
    out += ["Every point: pub = published profile, eng = the engine fitted leave-one-source-out (MAPE %, "
            "med = median predicted/measured, w20 = % within ±20%)"]
    out += slice_report(res, ("engine", "gpu"), ("pub", "eng"), markdown)
    out += peer_report(res, markdown)
    out += opdb_report(res, markdown)
    out += worst_report(res, markdown)
    n = len(res)
    n_eager = int(eager_flags(res).sum())
    if n_eager:
        out += [f"{n_eager} points ran without CUDA graphs (their notes say so): every column prices them with the "
                f"host launching every kernel (model/engine.py's built-in 'eager' engine; a fitted or op-DB engine "
                f"run eagerly), the published column included", ""]
    n_served = int((res["load"] == "concurrency").sum()) if "load" in res.columns else 0
    if n_served:
        out += [f"{n_served} points are serving-benchmark measurements (load = concurrency: a client keeping C = batch "
                f"requests in flight): every column prices them with the serving model (model/serving.py, C clients, "
                f"the arriving prompts' prefill chunks inside the decode steps), the other {n - n_served} as the "
                f"static batch they ran (a decode step, or the whole run with its prefill)", ""]
    out += [f"Coverage of the predicted 90% interval (parameter draws of the profile and engine fit): published "
            f"profile {int(res['covered_published'].sum())} of {n} points, with the engine fitted leave-one-source-out "
            f"{int(res['covered_engine'].sum())} of {n}", ""]
    w = worst(res)
    cols = ["source_id", "engine", "gpu", "model", "tp", "batch", "weight_bits", "measured_ms",
            "pred_published_ms", "pred_engine_ms", "ratio_published", "ratio_engine"]
    out += ["Worst-predicted point of each source, worst sources first (engine-fitted, by |log ratio|)",
            _table(w[cols], markdown), ""]
    if not markdown:
        out.append("Engine profiles used for each held-out source (fitted on the engine's other sources):")
        for src, fit in fits["loso"].items():
            out.append(f"  {src}: " + ("none (no other source of its engine)" if fit is None else describe(fit)))
        out.append("Engine profiles fitted on all sources of an engine (for reference, not scored):")
        for e, fit in fits["all_sources"].items():
            out.append(f"  {e}: {describe(fit)}")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", default=str(DEFAULT_CSV), help="published points (default: %(default)s)")
    ap.add_argument("--markdown", action="store_true", help="print the summary tables as Markdown")
    ap.add_argument("--aiconfigurator", metavar="CSV", default=str(AIC_CSV),
                    help="aiconfigurator's estimates of the points (default: %(default)s; absent: no peer column)")
    ap.add_argument("--op-db", metavar="PATH", default=None,
                    help="per-op database folder for the op-DB column (default: the installed aiconfigurator-core)")
    ap.add_argument("--no-op-db", action="store_true", help="leave the op-DB column out")
    ap.add_argument("--op-db-cache", metavar="DIR", default=None,
                    help="keep the fitted op-DB profiles here (profile.json, engine.json per GPU x backend) and reuse them")
    ap.add_argument("--json", metavar="OUT", help="also write every point's figures to this JSON file")
    args = ap.parse_args(argv)
    try:
        res, fits = scorecard(load_points(args.csv))
        res = add_aiconfigurator(res, load_aiconfigurator(args.aiconfigurator))
        if not args.no_op_db:
            res = add_opdb(res, args.op_db, args.op_db_cache)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        print(report(res, fits, markdown=args.markdown), flush=True)
    except BrokenPipeError:  # `| head`: the reader left; end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if args.json:
        records = json.loads(res.to_json(orient="records"))
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
