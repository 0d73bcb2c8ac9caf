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

A parameter the training points cannot pin down stays at its published value (no overhead,
efficiency 1.0) and the fit says which and why. Predictions go through
`inferecon.model.predict.predict`, the same call the `predict` command makes.

The time per token a row is compared on is the decode step time at the mean context of the
generation (input + output / 2). How each published metric becomes milliseconds per token
is in `measured_ms_per_token`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from inferecon.calibration.published import get_profile
from inferecon.errors import UserError
from inferecon.model.catalog import get_model
from inferecon.model.engine import EngineProfile
from inferecon.model.predict import predict
from inferecon.model.spec import ModelSpec

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_CSV = DATA_DIR / "public_decode.csv"
CONFIG_DIR = DATA_DIR / "configs"

REQUIRED_COLUMNS = ("source_id", "engine", "engine_version", "model", "gpu", "n_gpu", "tp", "batch",
                    "input_len", "output_len", "weight_format", "weight_bits", "kv_bits", "metric",
                    "value", "source_url", "notes")

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
    # included, so this is an upper bound on the step time.
    "e2e_latency_s": lambda r: 1e3 * r.value / r.output_len,
}

# Engine parameters and their published values (what the hardware profile alone assumes).
PUBLISHED = {"step_overhead_us": 0.0, "per_layer_us": 0.0, "eff16": 1.0, "eff8": 1.0, "eff4": 1.0}
BOUNDS = {"step_overhead_us": (0.0, 50_000.0), "per_layer_us": (0.0, 2_000.0),
          # An efficiency above 1/0.75 would read faster than the HBM peak (published
          # profiles assume 75% of it).
          "eff16": (0.1, 1.0 / 0.75), "eff8": (0.1, 1.0 / 0.75), "eff4": (0.1, 1.0 / 0.75)}
# Probe efficiency used to measure how a point's step time responds to slower weight reads.
PROBE_EFF = 0.1


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
        for col in ("n_gpu", "tp", "batch", "output_len", "value"):
            if not (float(r[col]) > 0):
                raise UserError(f"{where}: {col} must be > 0, got {r[col]!r}")
        if int(r.n_gpu) != int(r.tp):
            raise UserError(f"{where}: n_gpu {r.n_gpu} != tp {r.tp} (only pure tensor-parallel points are scored)")
    df["measured_ms"] = [measured_ms_per_token(r) for r in df.itertuples()]
    df["context"] = (df["input_len"] + df["output_len"] / 2.0).round().astype(int)
    return df


def measured_ms_per_token(row) -> float:
    return float(METRICS[row.metric](row))


def resolve_model(name: str) -> ModelSpec:
    """A config.json written for the scorecard (benchmarks/data/configs/<name>.json), else the
    catalog."""
    path = CONFIG_DIR / f"{name}.json"
    if path.is_file():
        return ModelSpec.from_hf_config(path, name=name)
    return get_model(name)


# -- prediction ------------------------------------------------------------------------------
@dataclass
class Basis:
    """What the fit needs of one point, from three `predict` calls: the published step time,
    its memory and arithmetic terms, and the step time with the weight reads slowed to
    PROBE_EFF (how much of the step is weight reading)."""

    step_ms: float
    mem_ms: float
    arith_ms: float
    probe_ms: float
    n_layers: int
    bits: int
    feasible: bool
    dominant: str


def _spec(row) -> tuple[ModelSpec, object]:
    model = resolve_model(row.model).with_precision(int(row.weight_bits), int(row.kv_bits))
    return model, get_profile(row.gpu)


def predict_row(row, engine: EngineProfile | None = None) -> dict:
    model, hw = _spec(row)
    return predict(model, hw, tp=int(row.tp), batch=int(row.batch), context=int(row.context), engine=engine)


def basis(row) -> Basis:
    base = predict_row(row)
    probe = predict_row(row, EngineProfile("probe", weight_read_efficiency={str(int(row.weight_bits)): PROBE_EFF}))
    return Basis(step_ms=base["ms_per_token"], mem_ms=base["t_memory_ms"], arith_ms=base["t_arithmetic_ms"],
                 probe_ms=probe["ms_per_token"], n_layers=resolve_model(row.model).n_layers,
                 bits=int(row.weight_bits), feasible=bool(base["feasible"]), dominant=str(base["dominant"]))


def surrogate_ms(b: Basis, theta: dict) -> float:
    """The step time `predict` gives with engine parameters `theta`, from the point's Basis:
    fixed times add; slower weight reads (u = 1/efficiency) lengthen the memory term by
    t_weights·(u − 1), which counts only where it exceeds the arithmetic term (they overlap).
    t_weights comes from the probe. Used inside the fit only; reported figures are `predict`'s."""
    u_probe = 1.0 / PROBE_EFF
    overlapped = max(b.mem_ms, b.arith_ms)
    delta = b.probe_ms - b.step_ms  # = max(mem + tw(u_probe-1), arith) - overlapped
    tw = 0.0 if delta <= 0 else (delta + overlapped - b.mem_ms) / (u_probe - 1.0)
    u = 1.0 / theta[f"eff{b.bits}"] if b.bits in (16, 8, 4) else 1.0
    slower = max(b.mem_ms + tw * (u - 1.0), b.arith_ms) - overlapped
    fixed_ms = (theta["step_overhead_us"] + theta["per_layer_us"] * b.n_layers) * 1e-3
    return b.step_ms + slower + fixed_ms


def engine_profile(name: str, theta: dict, note: list[str], sources: list[str]) -> EngineProfile:
    eff = {k[3:]: theta[k] for k in ("eff16", "eff8", "eff4") if theta[k] != PUBLISHED[k]}
    return EngineProfile(name=name, step_overhead_us=theta["step_overhead_us"], per_layer_us=theta["per_layer_us"],
                         weight_read_efficiency=eff, sources=sources, notes=note)


# -- fitting ---------------------------------------------------------------------------------
@dataclass
class Fit:
    theta: dict
    free: list[str]
    held: dict[str, str] = field(default_factory=dict)  # parameter -> why it kept its published value
    n_points: int = 0
    sources: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"overhead {self.theta['step_overhead_us']:.0f} us/step",
                 f"{self.theta['per_layer_us']:.1f} us/layer"]
        parts += [f"eff{b} {self.theta[f'eff{b}']:.2f}" for b in (16, 8, 4)]
        held = "; held at published: " + ", ".join(f"{k} ({v})" for k, v in self.held.items()) if self.held else ""
        return f"{', '.join(parts)} [{self.n_points} points, {len(self.sources)} sources{held}]"


def supported(train: list[Basis], sources: list[str]) -> tuple[list[str], dict[str, str]]:
    """Which parameters the training points can determine; the others are held, with why.

    The fixed time per step needs two points. The time per layer and a format's weight-read
    efficiency must each be seen in at least two sources: one source's quirk (eager mode, an
    old kernel) is not an engine property, and with one source it cannot be told apart."""
    free, held = [], {}
    if len(train) >= 2:
        free.append("step_overhead_us")
    else:
        held["step_overhead_us"] = "fewer than 2 points"
    layer_sources = {}
    for b, s in zip(train, sources):
        layer_sources.setdefault(b.n_layers, set()).add(s)
    if len(layer_sources) >= 2 and len(set().union(*layer_sources.values())) >= 2:
        free.append("per_layer_us")
    else:
        held["per_layer_us"] = "one layer count only" if len(layer_sources) < 2 else "one source only"
    for bits in (16, 8, 4):
        pts = [(b, s) for b, s in zip(train, sources) if b.bits == bits]
        reads = [b.probe_ms - b.step_ms for b, _ in pts]
        n_src = len({s for _, s in pts})
        # The weight-read time must also vary across points (model size, TP) or it cannot be
        # told apart from the fixed time per step.
        if n_src >= 2 and max(reads) > 1.2 * max(min(reads), 1e-9):
            free.append(f"eff{bits}")
        elif not pts:
            held[f"eff{bits}"] = f"no {bits}-bit points"
        elif n_src < 2:
            held[f"eff{bits}"] = f"{bits}-bit points from one source only"
        else:
            held[f"eff{bits}"] = f"{bits}-bit points of one weight size"
    return free, held


def fit_engine(train: list[Basis], measured_ms: np.ndarray, sources: list[str]) -> Fit:
    """Robust least squares on log(predicted / measured) over the supported parameters: a
    soft-L1 loss, so that one source far off (a figure whose batch was not all resident, a
    multi-node run) bends the engine's parameters less than a plain square would."""
    free, held = supported(train, sources)
    theta = dict(PUBLISHED)
    if free:
        # Start inside the bounds (a start on a bound can stall the trust-region solver).
        x0 = np.array([10.0 if p in ("step_overhead_us", "per_layer_us") else 1.0 for p in free])
        lo = np.array([BOUNDS[p][0] for p in free])
        hi = np.array([BOUNDS[p][1] for p in free])

        def residuals(x):
            th = {**theta, **dict(zip(free, x))}
            pred = np.array([surrogate_ms(b, th) for b in train])
            return np.log(pred / measured_ms)

        # Overheads in µs and efficiencies near 1 have very different scales.
        scale = np.array([100.0 if p in ("step_overhead_us", "per_layer_us") else 0.1 for p in free])
        sol = least_squares(residuals, x0, bounds=(lo, hi), x_scale=scale, loss="soft_l1", f_scale=0.2)
        theta.update(dict(zip(free, sol.x)))
    return Fit(theta=theta, free=free, held=held, n_points=len(train), sources=sorted(set(sources)))


def leave_one_source_out(df: pd.DataFrame, bases: list[Basis]) -> tuple[dict[str, Fit | None], dict[str, str]]:
    """For each source, the fit on the other sources of its engine (None: no other source)."""
    fits, why = {}, {}
    for src, engine in df.groupby("source_id")["engine"].first().items():
        mask = (df["engine"] == engine) & (df["source_id"] != src)
        if not mask.any():
            fits[src] = None
            why[src] = f"no other {engine} source: published prediction kept"
            continue
        idx = np.flatnonzero(mask.to_numpy())
        fits[src] = fit_engine([bases[i] for i in idx], df["measured_ms"].to_numpy()[idx],
                               list(df["source_id"].to_numpy()[idx]))
    return fits, why


# -- the scorecard ---------------------------------------------------------------------------
def scorecard(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per-point predictions (published and engine LOSO) and the fits used."""
    bases = [basis(r) for r in df.itertuples()]
    fits, why = leave_one_source_out(df, bases)
    out = df.copy()
    pub, eng, surr, used = [], [], [], []
    for r, b in zip(df.itertuples(), bases):
        pub.append(b.step_ms)
        fit = fits[r.source_id]
        if fit is None:
            eng.append(b.step_ms)
            surr.append(b.step_ms)
            used.append("published (" + why[r.source_id] + ")")
            continue
        profile = engine_profile(f"{r.engine} without {r.source_id}", fit.theta, [fit.describe()], fit.sources)
        eng.append(predict_row(r, profile)["ms_per_token"])
        surr.append(surrogate_ms(b, fit.theta))
        used.append(fit.describe())
    out["pred_published_ms"] = pub
    out["pred_engine_ms"] = eng
    out["ratio_published"] = out["pred_published_ms"] / out["measured_ms"]
    out["ratio_engine"] = out["pred_engine_ms"] / out["measured_ms"]
    out["engine_fit"] = used
    out["feasible"] = [b.feasible for b in bases]
    out["dominant"] = [b.dominant for b in bases]
    # The fit's fast surrogate must agree with predict(); a gap means the cost model now
    # applies engine terms differently and the fit should follow it.
    gap = float(np.max(np.abs(np.array(surr) / np.array(eng) - 1.0))) if len(eng) else 0.0
    whole = {e: fit_engine([bases[i] for i in np.flatnonzero((df["engine"] == e).to_numpy())],
                           df.loc[df["engine"] == e, "measured_ms"].to_numpy(),
                           list(df.loc[df["engine"] == e, "source_id"]))
             for e in sorted(df["engine"].unique()) if df.loc[df["engine"] == e, "source_id"].nunique() >= 2}
    return out, {"loso": fits, "all_sources": whole, "surrogate_gap": gap}


def mape(pred: pd.Series, meas: pd.Series) -> float:
    return float(np.mean(np.abs(pred / meas - 1.0)) * 100.0)


def summary(res: pd.DataFrame, by: str) -> pd.DataFrame:
    rows = []
    for key, g in res.groupby(by):
        rows.append({by: key, "points": len(g), "sources": g["source_id"].nunique(),
                     "mape_published_pct": mape(g["pred_published_ms"], g["measured_ms"]),
                     "mape_engine_loso_pct": mape(g["pred_engine_ms"], g["measured_ms"])})
    rows.append({by: "all", "points": len(res), "sources": res["source_id"].nunique(),
                 "mape_published_pct": mape(res["pred_published_ms"], res["measured_ms"]),
                 "mape_engine_loso_pct": mape(res["pred_engine_ms"], res["measured_ms"])})
    return pd.DataFrame(rows)


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
    if not isinstance(v, float):
        return str(v)
    if col.startswith("ratio"):
        return f"{v:.2f}"
    if col.endswith("_ms"):
        return f"{v:.1f}"
    return f"{v:.0f}"


def _markdown(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    for r in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(c, v) for c, v in zip(df.columns, r)) + " |")
    return "\n".join(lines)


def report(res: pd.DataFrame, fits: dict, markdown: bool = False) -> str:
    out = []
    if not markdown:
        out += ["Per point: time per output token, ms (measured; predicted with the published profile; "
                "with the engine fitted leave-one-source-out); ratio = predicted / measured", _points_table(res), ""]
    for by in ("engine", "gpu"):
        table = summary(res, by)
        out += [f"MAPE by {by} (%)", _markdown(table) if markdown else table.to_string(index=False,
                float_format=lambda v: f"{v:.0f}"), ""]
    w = worst(res)
    cols = ["source_id", "engine", "gpu", "model", "tp", "batch", "weight_bits", "measured_ms",
            "pred_published_ms", "pred_engine_ms", "ratio_published", "ratio_engine"]
    out += ["Worst-predicted point of each source, worst sources first (engine-fitted, by |log ratio|)",
            _markdown(w[cols]) if markdown else
            w[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"), ""]
    if not markdown:
        out.append("Engine profiles fitted on all sources of an engine (for reference, not scored):")
        for e, fit in fits["all_sources"].items():
            out.append(f"  {e}: {fit.describe()}")
        out.append(f"Fit surrogate vs predict(): largest relative gap {fits['surrogate_gap']:.1e}")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", default=str(DEFAULT_CSV), help="published points (default: %(default)s)")
    ap.add_argument("--markdown", action="store_true", help="print the summary tables as Markdown")
    ap.add_argument("--json", metavar="OUT", help="also write every point's figures to this JSON file")
    args = ap.parse_args(argv)
    try:
        res, fits = scorecard(load_points(args.csv))
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
