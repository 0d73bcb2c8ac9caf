"""Readers for serving-engine benchmark results: what each run decoded and how fast.

Formats (detected from the content, not the file name):
- vLLM `vllm bench serve --save-result` JSON, and the older `benchmarks/benchmark_serving.py`
  JSON with the same keys (`median_tpot_ms`, `max_concurrency`, `total_input_tokens` …); a file
  of several such objects, one per line (`--append-result`), is read line by line.
- SGLang `python -m sglang.bench_serving --output-file` JSONL: one object per run, the vLLM
  keys plus `total_output_tokens_retokenized`, `concurrency`, `median_e2e_latency_ms`.
- NVIDIA genai-perf (and its successor aiperf) profile export: `profile_export_genai_perf.json`
  (`inter_token_latency: {unit, avg, p50, …}`, `input_config`) or the CSV of the same name
  (`Metric,avg,min,max,p99,…` rows).
- TensorRT-LLM `trtllm-bench throughput` report: the text it prints (the `= PERFORMANCE
  OVERVIEW` block; the per-token time needs `--streaming`) or its `--report_json` file.

Each run becomes an `EngineRun`: concurrency (sequences decoded together), mean input and
output length, the per-output-token time and which statistic it is, and what the file says
about the model, parallelism, precision and GPU (None where it says nothing). Anything that
is not one of these formats, or lacks a per-token time, is a one-line UserError.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from inferecon.core.errors import UserError

FORMATS = ("vllm", "sglang", "genai-perf", "trtllm-bench")


@dataclass(frozen=True)
class EngineRun:
    source: str  # file (and line, for JSONL) the run came from
    format: str  # one of FORMATS
    engine: str  # "vllm", "sglang", "trtllm", or what the file names as backend ("unknown" if nothing)
    concurrency: float  # sequences in flight, i.e. decoded together in steady state
    concurrency_from: str  # the field (or rule) the concurrency came from
    input_len: float  # mean prompt tokens per request
    output_len: float  # mean generated tokens per request
    tpot_ms: float  # time per output token after the first
    tpot_metric: str  # which statistic: "median_tpot_ms", "inter_token_latency.p50", …
    model: str | None = None  # as the file records it (a Hugging Face id, usually)
    tp: int | None = None
    pp: int | None = None
    ep: int | None = None
    weight_bits: int | None = None  # only where the file states the quantisation
    kv_bits: int | None = None
    gpu: str | None = None  # device name where the file records it
    version: str | None = None  # engine version where recorded
    # Time to first token where the file records it (vLLM/SGLang mean_/median_ttft_ms,
    # genai-perf time_to_first_token avg/p50); None where it does not.
    ttft_mean_ms: float | None = None
    ttft_median_ms: float | None = None

    @property
    def context(self) -> float:
        """Mean context over a request's decode: its prompt plus half of what it generates."""
        return self.input_len + self.output_len / 2.0


def read_engine_results(path: str | Path) -> list[EngineRun]:
    """Every run in one result file, whatever of the supported formats it is in."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no such engine result file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: a directory, not an engine result file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (expected vLLM/SGLang JSON, genai-perf JSON/CSV or trtllm-bench output)") from None
    src = str(path)
    stripped = text.strip()
    if not stripped:
        raise UserError(f"{src}: empty file")
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except RecursionError:
            raise UserError(f"{src}: JSON nested too deeply to be an engine result") from None
        except ValueError as exc:
            if not isinstance(exc, json.JSONDecodeError):  # a number of more than 4,300 digits
                raise UserError(f"{src}: not an engine result ({exc})") from None
            # JSON Lines: every line parsed before any is read, so a broken line is named first.
            objs = [(i, _json_line(line, src, i)) for i, line in enumerate(stripped.splitlines(), 1) if line.strip()]
            return [_from_json(d, f"{src}:{i}") for i, d in objs]
        return [_from_json(data, src)]
    if stripped.startswith("Metric,") or "\nMetric," in stripped[:200]:
        return [_genai_perf_csv(stripped, src)]
    if "PERFORMANCE OVERVIEW" in text:
        # A log of several trtllm-bench runs holds one report per run, each opening with its
        # backend block: one run per report.
        starts = [m.start() for m in re.finditer(r"^=+\n=\s*(ENGINE DETAILS|PYTORCH BACKEND|\w+ BACKEND)\s*\n",
                                                 text, re.MULTILINE)]
        if len(starts) <= 1:
            return [_trtllm_text(text, src)]
        bounds = starts + [len(text)]
        return [_trtllm_text(text[a:b], f"{src}#{i}") for i, (a, b) in enumerate(zip(bounds, bounds[1:]), 1)]
    raise UserError(f"{src}: not an engine result inferecon reads (vLLM or SGLang JSON/JSONL, genai-perf "
                    f"profile export JSON/CSV, trtllm-bench output)")


def _json_line(line: str, src: str, i: int) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{src}:{i}: not valid JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # 5000-digit numbers, deep nesting
        raise UserError(f"{src}:{i}: not an engine result ({str(exc)[:80] or 'nested too deeply'})") from None


def _from_json(d, src: str) -> EngineRun:
    if not isinstance(d, dict):
        raise UserError(f"{src}: expected a JSON object")
    if "performance" in d and "world_info" in d:
        return _trtllm_json(d, src)
    if isinstance(d.get("inter_token_latency"), dict):
        return _genai_perf_json(d, src)
    if any(k in d for k in ("median_tpot_ms", "mean_tpot_ms", "median_itl_ms", "mean_itl_ms")):
        return _serving_json(d, src)
    raise UserError(f"{src}: a JSON object, but not a vLLM/SGLang result, a genai-perf profile export or a "
                    f"trtllm-bench report (no per-token latency field)")


# -- helpers -------------------------------------------------------------------------------------
# Physical bounds of what a serving benchmark can report. A per-token time beyond a minute, or
# below a microsecond, is a unit slip (ns or µs read as ms) or a corrupt file, not a measurement.
# 2^20 sequences in flight is the command line's largest batch (cli_args.BATCH); 10 M tokens the
# longest context it accepts.
TPOT_MS_RANGE = (1e-3, 60_000.0)
MAX_CONCURRENCY = 1_048_576
MAX_TOKENS = 10_000_000
MAX_PARALLEL = 65_536
# A first token can wait in a saturated queue for many minutes (NIM's published 20k-token runs:
# 960 s); a day is beyond any benchmark.
TTFT_MS_RANGE = (1e-3, 86_400_000.0)
_BOUNDS = {"tpot": TPOT_MS_RANGE, "ttft": TTFT_MS_RANGE, "concurrency": (0.0, MAX_CONCURRENCY), "length": (0.0, MAX_TOKENS),
           "count": (0.0, 1e15)}


def _num(value, what: str, src: str, positive: bool = True, kind: str | None = None, text_ok: bool = True,
         scale: float = 1.0) -> float:
    """A finite positive figure, read from a JSON number (or, with `text_ok`, a number printed in a
    text report), times `scale` (a unit conversion), inside its kind's physical range. A boolean
    (`"completed": true`), a list, an object, or in JSON a quoted number is refused in one line."""
    if isinstance(value, bool) or isinstance(value, (list, dict)) or (isinstance(value, str) and not text_ok):
        shown = str(value).lower() if isinstance(value, bool) else ("a list" if isinstance(value, list) else
                                                                    "an object" if isinstance(value, dict) else repr(value))
        raise UserError(f"{src}: {what} must be a number, got {shown}")
    try:
        x = float(value) * scale
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{src}: {what} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(x) or (positive and x <= 0):
        raise UserError(f"{src}: {what} must be a positive number, got {str(value)[:40]}")
    if kind is not None:
        lo, hi = _BOUNDS[kind]
        if not lo <= x <= hi:
            unit = " ms" if kind == "tpot" else ""
            hint = " (a unit slip: ns or µs read as ms?)" if kind == "tpot" else ""
            raise UserError(f"{src}: {what} = {x:g}{unit} is outside the physical range [{lo:g}, {hi:g}]{hint}")
    return x


def _jnum(value, what: str, src: str, kind: str | None = None, scale: float = 1.0) -> float:
    """_num for a JSON field: a number written as a string is not the format's."""
    return _num(value, what, src, kind=kind, text_ok=False, scale=scale)


def _opt_ttft(value, what: str, src: str, scale: float = 1.0) -> float | None:
    """An optional time to first token (ms): None where absent, else a checked JSON number."""
    return None if value is None else _jnum(value, what, src, kind="ttft", scale=scale)


def _obj(d: dict, key: str, src: str, where: str = "") -> dict:
    """d[key] as an object ({} where absent); a string or list there is refused naming the field."""
    value = d.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        kind = "a list" if isinstance(value, list) else repr(value)[:40]
        raise UserError(f"{src}: {where}{key} must be an object, got {kind}")
    return value


def _first(d: dict, keys, what: str, src: str, kind: str | None = None) -> tuple[float, str]:
    for k in keys:
        if d.get(k) is not None:
            return _jnum(d[k], k, src, kind=kind), k
    raise UserError(f"{src}: no {what} ({' / '.join(keys)})")


def _opt_int(value, what: str = "parallel size", src: str = "") -> int | None:
    """A parallel degree (TP, PP, EP) where the file records one: a whole number from 1 to 65,536.
    None where absent (or written as null / "N/A"); 2.5, true, 0 or -2 are refused, not rounded."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "n/a", "none", "null")):
        return None
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        raise UserError(f"{src}: {what} must be a whole number, got {str(value).lower()[:40]}")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{src}: {what} must be a whole number, got {str(value)[:40]!r}") from None
    if not math.isfinite(x) or x != int(x):
        raise UserError(f"{src}: {what} must be a whole number, got {value}")
    if not 1 <= x <= MAX_PARALLEL:
        raise UserError(f"{src}: {what} = {int(x)} is outside [1, {MAX_PARALLEL:,}]")
    return int(x)


def _finite(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _concurrency_from_path(src: str) -> float | None:
    m = re.search(r"concurrency[_-]?(\d+)", src, re.IGNORECASE)
    return float(m.group(1)) if m else None


def quant_bits(name) -> int | None:
    """Bits per weight of a quantisation name as engines write it (FP8, W4A16_AWQ, NVFP4,
    INT8 …); None for none/unknown."""
    if name is None:
        return None
    s = str(name).lower()
    if s in ("", "none", "null", "auto", "no_quant"):
        return None
    if re.search(r"fp4|int4|w4a|awq|gptq|nf4|mxfp4|4bit", s):
        return 4
    if re.search(r"fp8|int8|w8a|8bit|(^|_)sq(_|$)", s):  # SQ: TensorRT-LLM SmoothQuant, INT8
        return 8
    if s in ("bfloat16", "float16", "bf16", "fp16", "half"):
        return 16
    return None


# -- vLLM / SGLang ---------------------------------------------------------------------------------
_ENGINE_OF_BACKEND = {"vllm": "vllm", "openai": "vllm", "openai-chat": "vllm", "sglang": "sglang",
                      "sglang-oai": "sglang", "sglang-native": "sglang", "tensorrt-llm": "trtllm", "trt": "trtllm",
                      "lmdeploy": "lmdeploy", "tgi": "tgi", "deepspeed-mii": "deepspeed-mii"}


def _serving_json(d: dict, src: str) -> EngineRun:
    sglang = "total_output_tokens_retokenized" in d or "median_e2e_latency_ms" in d
    fmt = "sglang" if sglang else "vllm"
    backend = str(d.get("backend") or fmt).lower()
    engine = _ENGINE_OF_BACKEND.get(backend, backend)
    tpot, metric = _first(d, ("median_tpot_ms", "mean_tpot_ms", "median_itl_ms", "mean_itl_ms"),
                          "per-output-token time", src, kind="tpot")
    completed = _jnum(d.get("completed"), "completed", src, kind="count")
    if completed != int(completed):
        raise UserError(f"{src}: completed must be a whole number of requests, got {completed:g}")
    input_len = _jnum(d.get("total_input_tokens"), "total_input_tokens", src, kind="count") / completed
    output_len = _jnum(d.get("total_output_tokens"), "total_output_tokens", src, kind="count") / completed
    _num(input_len, "total_input_tokens / completed", src, kind="length")
    _num(output_len, "total_output_tokens / completed", src, kind="length")
    conc, conc_from = _serving_concurrency(d, src)
    meta = _obj(d, "metadata", src)
    merged = {**meta, **d}
    return EngineRun(
        source=src, format=fmt, engine=engine, concurrency=conc, concurrency_from=conc_from,
        input_len=input_len, output_len=output_len, tpot_ms=tpot, tpot_metric=metric,
        model=merged.get("model_id") or merged.get("model") or merged.get("tokenizer_id"),
        tp=_opt_int(merged.get("tensor_parallel_size", merged.get("tp_size", merged.get("tp"))), "tensor_parallel_size", src),
        pp=_opt_int(merged.get("pipeline_parallel_size", merged.get("pp_size")), "pipeline_parallel_size", src),
        ep=_opt_int(merged.get("expert_parallel_size", merged.get("ep_size")), "expert_parallel_size", src),
        weight_bits=quant_bits(merged.get("quantization")),
        kv_bits=quant_bits(merged.get("kv_cache_dtype")),
        gpu=merged.get("gpu") or merged.get("device"),
        version=str(merged["version"]) if merged.get("version") else None,
        ttft_mean_ms=_opt_ttft(d.get("mean_ttft_ms"), "mean_ttft_ms", src),
        ttft_median_ms=_opt_ttft(d.get("median_ttft_ms"), "median_ttft_ms", src),
    )


def _serving_concurrency(d: dict, src: str) -> tuple[float, str]:
    """max_concurrency where the run capped it; otherwise the mean number of requests in flight
    by Little's law (request throughput x mean end-to-end latency), as SGLang's `concurrency`."""
    if d.get("max_concurrency") is not None:
        conc = _jnum(d["max_concurrency"], "max_concurrency", src, kind="concurrency")
        completed = _finite(d.get("completed"))
        if completed is not None and completed < conc:
            return completed, "completed (fewer requests than max_concurrency)"
        return conc, "max_concurrency"
    if _finite(d.get("concurrency")):
        return _jnum(d["concurrency"], "concurrency", src, kind="concurrency"), "concurrency (Little's law)"
    rate = _finite(d.get("request_throughput"))
    e2e = _finite(d.get("mean_e2el_ms", d.get("mean_e2e_latency_ms")))
    if rate and e2e:
        conc = _num(rate * e2e / 1e3, "request_throughput x mean_e2el_ms", src, kind="concurrency")
        return conc, "Little's law (request_throughput x mean_e2el_ms)"
    raise UserError(f"{src}: no concurrency (max_concurrency, or request_throughput with mean_e2el_ms)")


# -- genai-perf ------------------------------------------------------------------------------------
_TIME_UNITS_MS = {"ms": 1.0, "msec": 1.0, "milliseconds": 1.0, "s": 1e3, "sec": 1e3, "seconds": 1e3,
                  "us": 1e-3, "µs": 1e-3, "μs": 1e-3, "usec": 1e-3, "microseconds": 1e-3,
                  "ns": 1e-6, "nsec": 1e-6, "nanoseconds": 1e-6}


def _genai_perf_json(d: dict, src: str) -> EngineRun:
    itl = _obj(d, "inter_token_latency", src)
    unit = itl.get("unit", "ms")
    if not isinstance(unit, str) or unit.strip().lower() not in _TIME_UNITS_MS:
        raise UserError(f"{src}: inter_token_latency.unit {unit!r} is not a time unit (ms, us, ns, s)")
    unit = unit.strip().lower()
    stat = "p50" if itl.get("p50") is not None else "avg"
    # In the file's own unit, then checked as ms: a per-token time outside [1 µs, 1 min] is refused.
    tpot = _jnum(itl.get(stat), f"inter_token_latency.{stat} ({unit})", src, kind="tpot", scale=_TIME_UNITS_MS[unit])
    cfg = _obj(d, "input_config", src)
    stimulus = _obj(_obj(cfg, "perf_analyzer", src, "input_config."), "stimulus", src, "input_config.perf_analyzer.")
    conc, conc_from = None, ""
    for value, name in ((cfg.get("concurrency"), "input_config.concurrency"),
                        (stimulus.get("concurrency"), "input_config.perf_analyzer.stimulus.concurrency"),
                        (d.get("concurrency"), "concurrency"),
                        (_concurrency_from_path(src), "the artifact path (...-concurrencyN)")):
        if value is not None:
            conc, conc_from = _num(value, name, src, kind="concurrency", text_ok=False), name
            break
    if conc is None:
        raise UserError(f"{src}: no concurrency (input_config.concurrency, or a ...-concurrencyN artifact path)")
    model = cfg.get("model") or cfg.get("model_names") or d.get("model")
    if isinstance(model, list):
        model = model[0] if model else None
    return EngineRun(
        source=src, format="genai-perf", engine=str(cfg.get("backend") or cfg.get("service_kind") or "unknown"),
        concurrency=conc, concurrency_from=conc_from,
        input_len=_jnum(_obj(d, "input_sequence_length", src).get("avg"), "input_sequence_length.avg", src, kind="length"),
        output_len=_jnum(_obj(d, "output_sequence_length", src).get("avg"), "output_sequence_length.avg", src, kind="length"),
        tpot_ms=tpot, tpot_metric=f"inter_token_latency.{stat}", model=model,
        **_genai_perf_ttft(d, src),
    )


def _genai_perf_ttft(d: dict, src: str) -> dict:
    ttft = _obj(d, "time_to_first_token", src)
    if not ttft:
        return {}
    unit = str(ttft.get("unit", "ms")).strip().lower()
    if unit not in _TIME_UNITS_MS:
        raise UserError(f"{src}: time_to_first_token.unit {unit!r} is not a time unit (ms, us, ns, s)")
    scale = _TIME_UNITS_MS[unit]
    return dict(ttft_mean_ms=_opt_ttft(ttft.get("avg"), f"time_to_first_token.avg ({unit})", src, scale),
                ttft_median_ms=_opt_ttft(ttft.get("p50"), f"time_to_first_token.p50 ({unit})", src, scale))


def _genai_perf_csv(text: str, src: str) -> EngineRun:
    """The CSV export: a `Metric,avg,min,max,p99,…` table of latencies and lengths, then a
    `Metric,Value` table of throughputs. It records neither model nor concurrency; the
    concurrency is taken from the artifact path genai-perf writes it into."""
    stats: dict[str, dict[str, str]] = {}
    header = None
    for row in csv.reader(io.StringIO(text)):
        if not row or not any(c.strip() for c in row):
            header = None
            continue
        if row[0].strip() == "Metric":
            header = [c.strip().lower() for c in row]
            continue
        if header:
            stats[row[0].strip().lower()] = dict(zip(header[1:], (c.strip().replace(",", "") for c in row[1:])))

    def stat(prefix: str):
        for name, values in stats.items():
            if name.startswith(prefix):
                for key in ("p50", "avg"):
                    if values.get(key) not in (None, "", "N/A"):
                        return values[key], key, name
        return None, None, None

    itl, key, name = stat("inter token latency")
    if itl is None:
        raise UserError(f"{src}: genai-perf CSV without an 'Inter Token Latency' row (was the run --streaming?)")
    # The unit is in the row's name, "Inter Token Latency (ms)"; genai-perf and aiperf have
    # written ms, and exports in ns or µs exist: read as ms, ns would be 10^6 x too slow.
    m = re.search(r"\(([^)]*)\)", name)
    unit = m.group(1).strip().lower() if m else "ms"
    if unit not in _TIME_UNITS_MS:
        raise UserError(f"{src}: the '{name}' row's unit {unit!r} is not a time unit (ms, us, ns, s)")
    scale = _TIME_UNITS_MS[unit]
    conc = _concurrency_from_path(src)
    if conc is None:
        raise UserError(f"{src}: the genai-perf CSV records no concurrency; keep it in its artifact folder "
                        f"(...-concurrencyN/) or use profile_export_genai_perf.json")
    isl, _, _ = stat("input sequence length")
    osl, _, _ = stat("output sequence length")
    return EngineRun(
        source=src, format="genai-perf", engine="unknown", concurrency=conc,
        concurrency_from="the artifact path (...-concurrencyN)",
        input_len=_num(isl, "Input Sequence Length", src, kind="length"),
        output_len=_num(osl, "Output Sequence Length", src, kind="length"),
        tpot_ms=_num(itl, f"Inter Token Latency ({unit})", src, kind="tpot", scale=scale), tpot_metric=f"Inter Token Latency {key}",
    )


# -- trtllm-bench ----------------------------------------------------------------------------------
def _trtllm_json(d: dict, src: str) -> EngineRun:
    engine = _obj(d, "engine", src)
    world = _obj(d, "world_info", src)
    req = _obj(d, "request_info", src)
    if d.get("streaming_metrics") is None:
        raise UserError(f"{src}: trtllm-bench report without streaming_metrics: rerun with --streaming for a per-token time")
    stream = _obj(d, "streaming_metrics", src)
    pct = _obj(stream, "tpot_percentiles", src, "streaming_metrics.")
    if pct.get("p50") is not None:
        tpot, metric = _jnum(pct["p50"], "tpot_percentiles.p50", src, kind="tpot"), "tpot_percentiles.p50"
    else:
        tpot, metric = _jnum(stream.get("avg_tpot_ms"), "avg_tpot_ms", src, kind="tpot"), "avg_tpot_ms"
    conc = _jnum(req.get("avg_num_concurrent_requests"), "request_info.avg_num_concurrent_requests", src,
                 kind="concurrency")
    machine = _obj(d, "machine", src)
    return EngineRun(
        source=src, format="trtllm-bench", engine="trtllm", concurrency=conc,
        concurrency_from="avg_num_concurrent_requests",
        input_len=_jnum(req.get("avg_input_length"), "request_info.avg_input_length", src, kind="length"),
        output_len=_jnum(req.get("avg_output_length"), "request_info.avg_output_length", src, kind="length"),
        tpot_ms=tpot, tpot_metric=metric, model=_text(engine.get("model"), "engine.model", src),
        tp=_opt_int(world.get("tp_size"), "world_info.tp_size", src),
        pp=_opt_int(world.get("pp_size"), "world_info.pp_size", src),
        ep=_opt_int(world.get("ep_size"), "world_info.ep_size", src),
        weight_bits=quant_bits(engine.get("quantization")) or quant_bits(engine.get("dtype")),
        kv_bits=quant_bits(engine.get("kv_cache_dtype")),
        gpu=_text(machine.get("name"), "machine.name", src),
        version=str(engine["version"]) if engine.get("version") else None,
    )


def _text(value, what: str, src: str) -> str | None:
    """A name (model, GPU) where the file records one; a number or list there is refused."""
    if value is None or isinstance(value, str):
        return value
    raise UserError(f"{src}: {what} must be a string, got {str(value)[:40]}")


def _trtllm_text(text: str, src: str) -> EngineRun:
    def field(label: str):
        m = re.search(r"^\s*" + re.escape(label) + r"\s*:\s*(.+?)\s*$", text, re.MULTILINE)
        return m.group(1) if m else None

    tpot, metric = None, None
    p50 = re.search(r"^\s*\[TPOT\]\s*P50\s*:\s*([0-9.eE+-]+)", text, re.MULTILINE)
    if p50:
        tpot, metric = _num(p50.group(1), "[TPOT] P50", src, kind="tpot"), "[TPOT] P50"
    elif field("Average time-per-output-token [TPOT] (ms)"):
        tpot = _num(field("Average time-per-output-token [TPOT] (ms)"), "average TPOT", src, kind="tpot")
        metric = "Average time-per-output-token [TPOT] (ms)"
    if tpot is None:
        raise UserError(f"{src}: trtllm-bench output without a TPOT: rerun with --streaming for a per-token time")
    conc = field("Number of concurrent requests")
    if conc is None:
        raise UserError(f"{src}: trtllm-bench output without 'Number of concurrent requests' (a newer trtllm-bench "
                        f"prints it in REQUEST DETAILS)")
    machine = re.search(r"=\s*MACHINE DETAILS\s*\n=+\n(.+)", text)
    gpu = machine.group(1).split(",")[0].strip() if machine else None
    if gpu and gpu.lower().startswith("no gpu"):
        gpu = None
    dtype = field("Dtype")
    weight_bits = quant_bits(field("Quantization")) or quant_bits(dtype)
    kv = field("KV Cache Dtype")
    return EngineRun(
        source=src, format="trtllm-bench", engine="trtllm",
        concurrency=_num(conc, "Number of concurrent requests", src, kind="concurrency"),
        concurrency_from="Number of concurrent requests",
        input_len=_num(field("Average Input Length (tokens)"), "Average Input Length", src, kind="length"),
        output_len=_num(field("Average Output Length (tokens)"), "Average Output Length", src, kind="length"),
        tpot_ms=tpot, tpot_metric=metric, model=field("Model"),
        tp=_opt_int(field("TP Size"), "TP Size", src), pp=_opt_int(field("PP Size"), "PP Size", src),
        ep=_opt_int(field("EP Size"), "EP Size", src),
        weight_bits=weight_bits, kv_bits=quant_bits(kv),
        gpu=gpu, version=field("TensorRT LLM Version") or field("TensorRT-LLM Version"),
    )
