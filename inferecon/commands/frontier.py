"""`inferecon frontier`: the speed-versus-cost Pareto frontier of serving a model on a GPU."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def register(sub) -> None:
    p = sub.add_parser("frontier", help="Pareto frontier of tokens/s per sequence vs $ per million tokens")
    p.add_argument("--model", action="append", required=True,
                   help="catalog name or path to a Hugging Face config.json; repeat or comma-separate for several")
    p.add_argument("--gpu", action="append", default=None,
                   help="published GPU profile (default h100-sxm); repeat or comma-separate for several")
    p.add_argument("--hardware", action="append", default=None, metavar="PROFILE_JSON",
                   help="a HardwareProfile JSON (e.g. results/RUN/profile.json); repeatable")
    p.add_argument("--context", type=int, default=4096, help="tokens in context per sequence (default 4096)")
    p.add_argument("--precision", type=int, default=16, choices=(16, 8, 4), metavar="BITS",
                   help="weight precision in bits: 16, 8 or 4 (default 16)")
    p.add_argument("--kv-precision", type=int, default=16, choices=(16, 8, 4), metavar="BITS",
                   help="KV-cache precision in bits (default 16)")
    p.add_argument("--price", type=float, default=None, metavar="USD_PER_HOUR",
                   help="$ per GPU-hour (default: the profile's)")
    p.add_argument("--spec-decode", default=None, metavar="DRAFT", help="draft model for speculative decoding")
    p.add_argument("--acceptance", type=float, default=None,
                   help="per-token acceptance probability of the draft (default 0.8 with --spec-decode)")
    p.add_argument("--max-gpus", type=int, default=512, help="largest instance to consider (default 512)")
    p.add_argument("--out", default="frontier", help="directory for frontier.csv and frontier.png (default ./frontier)")
    p.add_argument("--rows", type=int, default=16, help="frontier rows printed per model and GPU (default 16)")
    p.add_argument("--compare", action="store_true",
                   help="with --hardware: draw the published and the calibrated frontiers together and say "
                        "where they differ and which term moved (published profile: --gpu, else the matching one)")
    p.set_defaults(func=run)


def _split(values):
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _profiles(args):
    from inferecon.calibration.published import get_profile
    from inferecon.model.hardware import HardwareProfile

    profiles = [get_profile(g) for g in _split(args.gpu)]
    profiles += [HardwareProfile.load(p) for p in _split(args.hardware)]
    if not profiles:
        profiles = [get_profile("h100-sxm")]
    if args.price is not None:
        profiles = [p.with_price(args.price) for p in profiles]
    return profiles


def _comparison_pairs(args):
    """[(published, calibrated)] for --compare."""
    from inferecon.calibration.build import published_base
    from inferecon.calibration.published import get_profile
    from inferecon.errors import UserError
    from inferecon.model.hardware import HardwareProfile

    calibrated = [HardwareProfile.load(p) for p in _split(args.hardware)]
    if not calibrated:
        raise UserError("--compare needs a calibrated profile: --hardware results/RUN/profile.json")
    named = [get_profile(g) for g in _split(args.gpu)]
    pairs = []
    for cal in calibrated:
        pub = named[0] if named else published_base(cal.display_name)
        if pub is None:
            raise UserError(f"--compare: no published profile matches {cal.display_name!r}; name one with --gpu")
        if args.price is not None:
            pub, cal = pub.with_price(args.price), cal.with_price(args.price)
        pairs.append((pub, cal))
    return pairs


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from inferecon.errors import UserError
    from inferecon.model.catalog import resolve_model
    from inferecon.model.compare import compare
    from inferecon.model.frontier import SearchSpace, search
    from inferecon.report.frontier_plot import plot_frontiers

    if args.max_gpus < 1:
        raise UserError(f"--max-gpus must be at least 1, got {args.max_gpus}")
    if args.context < 1:
        raise UserError(f"--context must be at least 1 token, got {args.context}")
    if args.rows < 1:
        raise UserError(f"--rows must be at least 1, got {args.rows}")
    if args.acceptance is not None and args.spec_decode is None:
        raise UserError("--acceptance needs --spec-decode DRAFT")
    acceptance = 0.8 if args.acceptance is None else args.acceptance
    if not 0.0 <= acceptance <= 1.0:
        raise UserError(f"--acceptance must be in [0, 1], got {acceptance}")

    models = [resolve_model(m).with_precision(args.precision, args.kv_precision) for m in _split(args.model)]
    comparisons = _comparison_pairs(args) if args.compare else []
    draft = None
    if args.spec_decode:
        draft = resolve_model(args.spec_decode).with_precision(args.precision, args.kv_precision)
    profiles = _profiles(args)
    if comparisons:
        # Each calibrated profile next to its published one, in that order.
        profiles = [p for pair in comparisons for p in pair]
    space = SearchSpace(max_gpus=args.max_gpus)
    acc = acceptance if draft else 0.0

    frames, curves, fronts = [], {}, {}
    for hw in profiles:
        for model in models:
            df = search(model, hw, args.context, space, draft=draft, acceptance=acc)
            label = f"{model.name} on {hw.name}" + (f" ({hw.provenance.kind})" if hw.provenance.kind != "published" else "")
            if draft:
                label += f" + {draft.name} draft (α={acceptance:g})"
            print(_table(df, label, hw, args.rows))
            frames.append(df)
            curves[label] = df
            fronts[(hw.name, model.name)] = df
    for pub, cal in comparisons:
        for model in models:
            delta = compare(model, pub, cal, fronts[(pub.name, model.name)], fronts[(cal.name, model.name)],
                            args.context, draft=draft, acceptance=acc)
            print(f"\n{model.name}: {pub.name} (published) vs {cal.name} (calibrated)")
            for line in delta.lines("published", "calibrated"):
                print(f"  {line}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    all_df = pd.concat(frames, ignore_index=True)
    csv = out / "frontier.csv"
    tmp = csv.with_suffix(".csv.tmp")
    all_df.to_csv(tmp, index=False)
    tmp.replace(csv)
    png = plot_frontiers(curves, out / "frontier.png",
                         title=f"context {args.context}, {args.precision}-bit weights, {args.kv_precision}-bit KV")
    print(f"wrote {csv} ({len(all_df)} frontier points) and {png}")
    return 0


def _thin(df, rows):
    """At most `rows` rows spread evenly over log speed, always keeping both ends."""
    if len(df) <= rows:
        return df
    logs = np.log(df["tokens_per_s_per_seq"].to_numpy())
    targets = np.linspace(logs[0], logs[-1], rows)
    idx = sorted({int(np.argmin(np.abs(logs - t))) for t in targets})
    return df.iloc[idx]


def _table(df, label, hw, rows) -> str:
    lines = [f"\n{label}: {len(df)} Pareto-optimal configurations "
             f"(${hw.price_usd_per_gpu_hour:.2f}/GPU-hour, {hw.provenance.kind} profile)"]
    head = (f"{'tok/s/seq':>9} {'$/Mtok':>9} {'GPUs':>5} {'TP':>5} {'PP':>3} {'EP':>3} {'batch':>6} "
            f"{'γ':>2} {'tok/s/GPU':>9} {'MFU':>6} {'dominant':>10} | {'arith':>7} {'memory':>7} "
            f"{'network':>7} {'latency':>7} ms/step")
    lines.append(head)
    for r in _thin(df, rows).itertuples():
        tp = f"{r.tp_r}x{r.tp_c}" if r.tp_r > 1 else f"{r.tp}"
        lines.append(
            f"{r.tokens_per_s_per_seq:9.1f} {r.usd_per_mtok:9.3f} {r.n_gpu:5d} {tp:>5} {r.pp:3d} {r.ep:3d} "
            f"{r.batch:6d} {r.gamma:2d} {r.tokens_per_s_per_gpu:9.1f} {r.mfu:6.1%} {r.dominant:>10} | "
            f"{r.t_arithmetic_s * 1e3:7.3f} {r.t_memory_s * 1e3:7.3f} {r.t_network_s * 1e3:7.3f} "
            f"{r.t_latency_s * 1e3:7.3f}")
    return "\n".join(lines)
