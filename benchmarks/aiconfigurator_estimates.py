"""aiconfigurator's own estimates of the public decode points (the peer column of the scorecard).

    .venv-aic/bin/python benchmarks/aiconfigurator_estimates.py [--csv benchmarks/data/public_decode.csv]
        [--out benchmarks/data/aiconfigurator_estimates.csv] [--only ROW ...]

Runs inside its own virtual environment, never inferecon's (`python3.11 -m venv .venv-aic &&
.venv-aic/bin/pip install aiconfigurator==0.12.0`): it imports aiconfigurator and nothing of
inferecon, and nothing in inferecon or its tests imports it. benchmarks/accuracy.py reads the CSV
this writes, so the scorecard runs without aiconfigurator installed.

For every row of public_decode.csv it asks aiconfigurator (`aiconfigurator.cli.api.cli_estimate`,
the call behind `aiconfigurator cli estimate`) for the same deployment: model, GPU system, backend,
TP, batch (= concurrency), ISL, OSL, weight and KV precision. It writes one row per point with
aiconfigurator's TPOT, TTFT and request latency, or why it gave none, and exactly how the point was
mapped onto what aiconfigurator knows (every substitution is written into the row's `mapping`):

- engine -> backend: trtllm, vllm and sglang are aiconfigurator's own; NIM's TensorRT-LLM backend
  is trtllm; lmdeploy (TurboMind), gpt-fast and AutoAWQ are not modelled by aiconfigurator and are
  priced as trtllm, the only A100 database with weight-only INT8/INT4 GEMMs measured (flagged
  `engine_substituted`);
- engine version -> the one database version aiconfigurator 0.12 ships for that system/backend
  (it has no older versions: a 2023 TRT-LLM point is priced with 2026 kernels);
- model -> a config aiconfigurator ships where one has the same shapes, else the scorecard's own
  config.json (benchmarks/data/configs) with the HF `architectures` and `max_position_embeddings`
  fields it needs added;
- precision -> GEMM/MoE/KV quant modes (fp16 -> bfloat16: aiconfigurator has no fp16 tables and
  the tensor-core rate is the same);
- database: SILICON (measured kernel tables) first; where a table is missing (e.g. INT4
  weight-only GEMMs on H100) HYBRID (its empirical/speed-of-light fill), and the row says so;
- mode: `agg` (in-flight batching at the stated concurrency) for serving-benchmark figures (TPOT,
  ITL), `static` (one static batch) for offline runs (throughput tables, per-user tok/s of a
  generate loop, benchmark_latency). The other mode's TPOT is kept beside it for sensitivity.

`ms_per_token` is aiconfigurator's figure on the measured metric's own basis: TPOT, except where the
published figure includes the prefill (whole-run throughput, end-to-end latency), where it is
aiconfigurator's request latency / OSL.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model config used here is local or shipped

HERE = Path(__file__).resolve().parent
DEFAULT_CSV = HERE / "data" / "public_decode.csv"
DEFAULT_OUT = HERE / "data" / "aiconfigurator_estimates.csv"
CONFIG_DIR = HERE / "data" / "configs"

COLUMNS = ["point", "source_id", "model", "gpu", "engine", "engine_version", "tp", "batch", "input_len",
           "output_len", "weight_format", "metric", "status", "aic_version", "aic_model", "system", "backend",
           "backend_version", "engine_substituted", "database_mode", "mode", "gemm_quant", "moe_quant",
           "kv_quant", "moe_tp", "moe_ep", "tpot_ms", "ttft_ms", "request_latency_ms", "ms_per_token",
           "ms_per_token_basis", "other_mode", "tpot_other_mode_ms", "kv_warning", "mapping", "reason"]

SYSTEMS = {"a100-sxm-80gb": "a100_sxm", "h100-sxm": "h100_sxm", "h200": "h200_sxm", "b200": "b200_sxm"}

# engine -> (backend, why); None why = aiconfigurator models the engine itself.
BACKENDS = {
    "trtllm": ("trtllm", None),
    "nim": ("trtllm", None),  # the NIM points state their TensorRT-LLM backend
    "vllm": ("vllm", None),
    "sglang": ("sglang", None),
    "lmdeploy": ("trtllm", "lmdeploy (TurboMind) is not an aiconfigurator backend; priced as trtllm "
                 "(both descend from FasterTransformer; the only a100_sxm database with int8/int4 weight-only GEMMs)"),
    "gpt-fast": ("trtllm", "gpt-fast (torch.compile) is not an aiconfigurator backend; priced as trtllm "
                 "(the only a100_sxm database with int8/int4 weight-only GEMMs)"),
    "autoawq": ("trtllm", "AutoAWQ (eager transformers) is not an aiconfigurator backend; priced as trtllm "
                "(the only a100_sxm database with int4 weight-only GEMMs)"),
}

# model -> (aiconfigurator model path or None, why). None: the scorecard's config.json is used.
SHIPPED = {
    "llama-3-8b": ("meta-llama/Meta-Llama-3.1-8B", "Llama 3.1 8B config shipped with aiconfigurator "
                   "(same layer shapes as Llama 3 8B; differs in RoPE scaling only)"),
    "llama-3-70b": ("meta-llama/Meta-Llama-3.1-70B", "Llama 3.1 70B config shipped with aiconfigurator "
                    "(same layer shapes as Llama 3 / 3.3 70B)"),
    "qwen3-30b-a3b": ("Qwen/Qwen3-30B-A3B", "Qwen3-30B-A3B config shipped with aiconfigurator"),
    "mixtral-8x7b": ("mistralai/Mixtral-8x7B-v0.1", "Mixtral-8x7B-v0.1 config shipped with aiconfigurator "
                     "(same shapes as the Instruct model)"),
    "deepseek-v3": ("deepseek-ai/DeepSeek-R1", "DeepSeek-R1 config shipped with aiconfigurator "
                    "(every deepseek-v3 point is a DeepSeek-R1 run; same architecture)"),
    "llama-3.1-405b": ("meta-llama/Meta-Llama-3.1-405B", "Llama 3.1 405B config shipped with aiconfigurator"),
    "mixtral-8x22b": ("mistralai/Mixtral-8x22B-v0.1", "Mixtral-8x22B-v0.1 config shipped with aiconfigurator"),
}
# HF fields aiconfigurator needs that the scorecard's minimal configs leave out, from the models'
# published config.json files (Llama-2-*-hf: 4096 positions; Qwen3-14B: 40960).
LOCAL = {
    "llama-2-7b": {"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 4096},
    "llama-2-13b": {"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 4096},
    "llama-2-70b": {"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 4096},
    "qwen3-14b": {"architectures": ["Qwen3ForCausalLM"], "max_position_embeddings": 40960},
    # DBRX (not an aiconfigurator model): its layer written in Mixtral's keys (16 experts, top 4, GQA)
    # and priced as Mixtral's architecture; 32768 positions as databricks/dbrx-instruct's config states.
    "dbrx": {"architectures": ["MixtralForCausalLM"], "max_position_embeddings": 32768},
}

MOE_MODELS = ("deepseek", "qwen3-30b", "mixtral", "dbrx")  # the scorecard's mixture-of-experts models

# Published metrics whose figure includes the prefill: compared on request latency / OSL.
WHOLE_RUN_METRICS = {"out_tok_s_total", "out_tok_s_per_gpu", "e2e_latency_s"}
SERVING_METRICS = {"tpot_ms_mean", "tpot_ms_median", "itl_ms_mean", "itl_ms_median", "ttft_ms_mean", "ttft_ms_median"}


class Unmapped(Exception):
    """A point this script cannot put to aiconfigurator; the message is the row's reason."""


def model_path(name: str, workdir: Path) -> tuple[str, str]:
    if name in SHIPPED:
        hf_id, how = SHIPPED[name]
        from aiconfigurator_core.sdk import common
        if hf_id in common.DefaultHFModels:
            return hf_id, how
        # Shipped in model_configs/ but not on its list of default models (it would try to
        # download it): hand it the shipped file as a local folder instead.
        from importlib.resources import files
        shipped = files("aiconfigurator_core") / "model_configs" / f"{hf_id.replace('/', '--')}_config.json"
        d = workdir / name
        d.mkdir(exist_ok=True)
        (d / "config.json").write_text(shipped.read_text())
        return str(d), how + " (read from its model_configs folder)"
    if name in LOCAL:
        src = CONFIG_DIR / f"{name}.json"
        cfg = json.loads(src.read_text())
        cfg.update(LOCAL[name])
        d = workdir / name
        d.mkdir(exist_ok=True)
        (d / "config.json").write_text(json.dumps(cfg))
        added = ", ".join(f"{k}={v}" for k, v in LOCAL[name].items())
        return str(d), f"benchmarks/data/configs/{name}.json with {added} added"
    raise Unmapped(f"model {name} has no config aiconfigurator can read (none shipped, none in benchmarks/data/configs)")


def quant_modes(row: dict, is_moe: bool) -> tuple[str, str | None, str, str]:
    """(gemm, moe, kv, note) for the point's weight format and KV bits."""
    fmt, bits, kv_bits = row["weight_format"].lower(), int(row["weight_bits"]), int(row["kv_bits"])
    kv = {16: "bfloat16", 8: "fp8"}.get(kv_bits)
    if kv is None:
        raise Unmapped(f"kv_bits {kv_bits}: aiconfigurator has bfloat16/fp8/int8 KV caches only")
    note = ""
    if fmt.startswith("fp4"):
        # The DeepSeek-R1 FP4 checkpoint: routed experts NVFP4, everything else FP8 block-scaled.
        gemm, moe, note = "fp8_block", "nvfp4", "FP4 checkpoint as shipped: routed experts nvfp4, dense GEMMs fp8_block"
    elif bits == 16:
        gemm = moe = "bfloat16"
        if fmt.startswith("fp16"):
            note = "fp16 -> bfloat16 (aiconfigurator has no fp16 tables; same tensor-core rate)"
    elif fmt.startswith("fp8"):
        gemm = moe = "fp8_block" if row["model"].startswith("deepseek") else "fp8"
    elif bits == 8 and "int8" in fmt and "weight-only" not in fmt:
        # int8 weights and int8 dynamic activations (torchao's int8dq): aiconfigurator's W8A8 INT8 mode.
        gemm, moe, note = "sq", None, "int8 dynamic activation + int8 weight -> sq (W8A8 INT8 GEMMs)"
    elif bits == 8 and "int8" in fmt:
        gemm = moe = "int8_wo"
    elif bits == 4 and ("int4" in fmt or "awq" in fmt):
        gemm = moe = "int4_wo"
        if "awq" in fmt:
            note = "AWQ int4 -> int4_wo (group-wise weight-only INT4)"
    else:
        raise Unmapped(f"weight format {row['weight_format']!r} ({bits} bits) has no aiconfigurator quant mode here")
    return gemm, (moe if is_moe else None), kv, note


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--only", type=int, nargs="*", help="data rows (0-based) to estimate; default all. The other "
                    "points' rows already in --out are kept (rows are keyed by point), so new points can be added "
                    "without re-running the old ones")
    args = ap.parse_args(argv)
    try:
        import aiconfigurator
        from aiconfigurator.cli.api import cli_estimate
        from aiconfigurator.sdk.perf_database import get_latest_database_version
    except ImportError as exc:
        print(f"error: aiconfigurator is not importable here ({exc}); run this with .venv-aic/bin/python", file=sys.stderr)
        return 2
    logging.disable(logging.WARNING)  # its per-table fallback notices; failures surface as exceptions
    version = getattr(aiconfigurator, "__version__", "unknown")
    with open(args.csv, newline="") as fh:
        points = list(csv.DictReader(fh))
    rows = []
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="aic-configs-") as tmp:
        for i, p in enumerate(points):
            if args.only is not None and i not in args.only:
                continue
            rows.append(estimate_point(i, p, Path(tmp), cli_estimate, get_latest_database_version, version))
            r = rows[-1]
            print(f"[{i:2d}] {p['source_id']:24s} {r['status']:4s} {r['ms_per_token'] or '':>8} ms "
                  f"({time.time() - t_start:.0f} s) {r['reason'][:100]}", flush=True)
    out = Path(args.out)
    if args.only is not None and out.is_file():
        with open(out, newline="") as fh:
            kept = [r for r in csv.DictReader(fh) if int(r["point"]) not in set(args.only)]
        rows = sorted(kept + rows, key=lambda r: int(r["point"]))
    tmp_out = out.with_suffix(".csv.tmp")
    with open(tmp_out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp_out, out)
    print(f"wrote {out} ({len(rows)} points, {sum(r['status'] == 'ok' for r in rows)} estimated)")
    return 0


def _fmt(v) -> str:
    return f"{float(v):.4f}" if v is not None else ""


def estimate_point(i, p, workdir, cli_estimate, latest_version, aic_version) -> dict:
    row = {c: p.get(c, "") for c in COLUMNS}
    row.update(point=i, status="none", aic_version=aic_version, reason="", mapping="", kv_warning="")
    mapping = []
    try:
        system = SYSTEMS.get(p["gpu"])
        if system is None:
            raise Unmapped(f"gpu {p['gpu']} has no aiconfigurator system here")
        backend, why = BACKENDS.get(p["engine"], (None, None))
        if backend is None:
            raise Unmapped(f"engine {p['engine']} has no aiconfigurator backend")
        row["engine_substituted"] = "yes" if why else "no"
        if why:
            mapping.append(why)
        bver = latest_version(system=system, backend=backend)
        if bver is None:
            raise Unmapped(f"aiconfigurator ships no {backend} database for {system}")
        mapping.append(f"engine version {p['engine_version']!r} -> {backend} {bver} "
                       f"(aiconfigurator {aic_version}'s current {system} {backend} database; it has none for older versions)")
        path, how = model_path(p["model"], workdir)
        mapping.append(f"model {p['model']} -> {how}")
        is_moe = p["model"].startswith(MOE_MODELS)
        gemm, moe, kv, qnote = quant_modes(p, is_moe)
        from aiconfigurator_core.sdk import common
        if moe is not None and not hasattr(common.MoEQuantMode, moe):
            raise Unmapped(f"aiconfigurator {aic_version} has no {moe} MoE quant mode (its MoE modes: "
                           f"{', '.join(m.name for m in common.MoEQuantMode)})")
        if qnote:
            mapping.append(qnote)
        tp = int(p["tp"])
        if (p.get("request_rate") or "").strip():  # public_ttft.csv's Poisson runs
            raise Unmapped("a Poisson request-rate run: aiconfigurator's estimate takes a concurrency, not an arrival rate")
        kwargs = dict(backend_name=backend, backend_version=bver, batch_size=int(p["batch"]),
                      isl=int(p["input_len"]), osl=int(p["output_len"]), tp_size=tp,
                      gemm_quant_mode=gemm, kvcache_quant_mode=kv)
        if is_moe:
            # Every MoE point states TP with no expert parallelism (EP=None / EP=1 / SGLang's TP default).
            kwargs.update(moe_tp_size=tp, moe_ep_size=1, moe_quant_mode=moe)
        mode = "agg" if p["metric"] in SERVING_METRICS else "static"
        other = "static" if mode == "agg" else "agg"
        row.update(system=system, backend=backend, backend_version=bver, mode=mode, other_mode=other,
                   aic_model=(path if not path.startswith("/") else SHIPPED[p["model"]][0] if p["model"] in SHIPPED
                              else f"benchmarks/data/configs/{p['model']}.json"),
                   gemm_quant=gemm, moe_quant=moe or "", kv_quant=kv, moe_tp=tp if is_moe else "",
                   moe_ep=1 if is_moe else "")
        res, dbm, silicon_err = _estimate(cli_estimate, path, system, mode, kwargs)
        row["database_mode"] = dbm
        if silicon_err:
            mapping.append(f"SILICON tables incomplete ({silicon_err}); HYBRID database mode used")
        row["tpot_ms"], row["ttft_ms"] = _fmt(res.tpot), _fmt(res.ttft)
        lat = res.raw.get("request_latency") if isinstance(res.raw, dict) else None
        row["request_latency_ms"] = _fmt(lat)
        if p["metric"] in WHOLE_RUN_METRICS:
            if lat is None:
                raise Unmapped("aiconfigurator gave no request latency for a whole-run metric")
            row["ms_per_token"] = _fmt(float(lat) / int(p["output_len"]))
            row["ms_per_token_basis"] = "request_latency / osl (the published figure includes the prefill)"
        else:
            row["ms_per_token"] = _fmt(res.tpot)
            row["ms_per_token_basis"] = "tpot"
        row["kv_warning"] = res.kv_cache_warning or ""
        try:
            res2, _, _ = _estimate(cli_estimate, path, system, other, kwargs, database_mode=dbm)
            row["tpot_other_mode_ms"] = _fmt(res2.tpot)
        except Exception as exc:  # noqa: BLE001 -- the sensitivity column only; the row stands
            row["tpot_other_mode_ms"] = ""
            mapping.append(f"{other} mode gave no estimate ({type(exc).__name__}: {str(exc)[:120]})")
        row["status"] = "ok"
    except Unmapped as exc:
        row["reason"] = str(exc)
    except Exception as exc:  # noqa: BLE001 -- aiconfigurator's own refusal is the row's finding
        row["reason"] = f"aiconfigurator: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    row["mapping"] = "; ".join(mapping)
    # aiconfigurator names a local config by its folder: keep the temporary folder out of the file.
    for col in ("reason", "kv_warning", "mapping"):
        row[col] = str(row[col]).replace(f"{workdir}/", "")
    return row


def _estimate(cli_estimate, path, system, mode, kwargs, database_mode=None):
    """SILICON first; HYBRID where SILICON lacks a table. Returns (result, mode used, SILICON's error)."""
    if database_mode is not None:
        return cli_estimate(path, system, mode=mode, database_mode=database_mode, **kwargs), database_mode, None
    try:
        return cli_estimate(path, system, mode=mode, database_mode="SILICON", **kwargs), "SILICON", None
    except Exception as exc:  # noqa: BLE001
        if "PerfDataNotAvailable" not in type(exc).__name__ and "perf data missing" not in str(exc).lower():
            raise
        msg = " ".join(str(exc).split())
        msg = msg.split(" at /")[0] if " at /" in msg else msg[:160]
        return cli_estimate(path, system, mode=mode, database_mode="HYBRID", **kwargs), "HYBRID", msg


if __name__ == "__main__":
    sys.exit(main())
