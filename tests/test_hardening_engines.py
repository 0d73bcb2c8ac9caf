"""Serving-engine result files as untrusted data (ingest/engine_results.py): wrong types, units
and physically impossible figures are refused in one line naming the file and the field; the
unit a file states is the unit it is read in."""

import copy
import json
from pathlib import Path

import pytest

from inferecon.core.errors import UserError
from inferecon.ingest.engine_results import read_engine_results

ENG = Path(__file__).parent / "fixtures" / "engines"
VLLM = json.loads((ENG / "vllm_bench_serve_llama-3.1-8b_c8.json").read_text())
TRT = json.loads((ENG / "trtllm_bench_llama-3.1-70b_tp4_report.json").read_text())
GP_DIR = "meta_llama-3.1-8b-instruct-openai-chat-concurrency4"
GP = json.loads((ENG / "genai-perf" / GP_DIR / "profile_export_genai_perf.json").read_text())


def _with(doc, path, value):
    d = copy.deepcopy(doc)
    node = d
    for k in path[:-1]:
        node = node[k]
    if value is KeyError:
        node.pop(path[-1])
    else:
        node[path[-1]] = value
    return d


CASES = [
    (VLLM, ["completed"], True, "completed must be a number, got true"),
    (VLLM, ["completed"], 80.5, "completed must be a whole number"),
    (VLLM, ["completed"], "80", "completed must be a number"),
    (VLLM, ["median_tpot_ms"], 1e308, "median_tpot_ms = 1e+308 ms is outside the physical range"),
    (VLLM, ["median_tpot_ms"], 7_420_000.0, "a unit slip"),
    (VLLM, ["median_tpot_ms"], [7.4], "median_tpot_ms must be a number, got a list"),
    (VLLM, ["median_tpot_ms"], -7.4, "must be a positive number"),
    (VLLM, ["max_concurrency"], -8, "max_concurrency must be a positive number"),
    (VLLM, ["max_concurrency"], 1e9, "max_concurrency = 1e+09 is outside the physical range"),
    (VLLM, ["max_concurrency"], True, "max_concurrency must be a number, got true"),
    (VLLM, ["tensor_parallel_size"], 2.5, "tensor_parallel_size must be a whole number, got 2.5"),
    (VLLM, ["tensor_parallel_size"], 0, "tensor_parallel_size = 0 is outside [1, 65,536]"),
    (VLLM, ["tensor_parallel_size"], [2], "tensor_parallel_size must be a whole number"),
    (VLLM, ["total_output_tokens"], 1e300, "total_output_tokens = 1e+300 is outside the physical range"),
    (VLLM, ["total_output_tokens"], 10**14, "total_output_tokens / completed"),
    (TRT, ["world_info"], "tp4", "world_info must be an object"),
    (TRT, ["world_info", "tp_size"], 4.5, "world_info.tp_size must be a whole number"),
    (TRT, ["world_info", "tp_size"], True, "world_info.tp_size must be a whole number, got true"),
    (TRT, ["engine"], ["trt"], "engine must be an object, got a list"),
    (TRT, ["engine", "model"], 70, "engine.model must be a string"),
    (TRT, ["request_info"], "x", "request_info must be an object"),
    (TRT, ["request_info", "avg_input_length"], "2048", "avg_input_length must be a number"),
    (TRT, ["request_info", "avg_num_concurrent_requests"], -3.0, "avg_num_concurrent_requests must be a positive"),
    (TRT, ["streaming_metrics", "tpot_percentiles"], [1, 2], "streaming_metrics.tpot_percentiles must be an object"),
    (TRT, ["streaming_metrics", "tpot_percentiles", "p50"], 1e308, "outside the physical range"),
    (TRT, ["machine"], "H100", "machine must be an object"),
    (GP, ["inter_token_latency", "unit"], "furlongs", "is not a time unit"),
    (GP, ["inter_token_latency", "unit"], 5, "is not a time unit"),
    (GP, ["input_config"], "x", "input_config must be an object"),
    (GP, ["input_sequence_length"], [1], "input_sequence_length must be an object"),
    (GP, ["output_sequence_length", "avg"], "128", "output_sequence_length.avg must be a number"),
    (GP, ["input_config", "concurrency"], -4, "input_config.concurrency must be a positive number"),
    (GP, ["input_config", "concurrency"], True, "input_config.concurrency must be a number, got true"),
]


@pytest.mark.parametrize("doc, path, value, fragment", CASES,
                         ids=[f"{'.'.join(map(str, c[1]))}={str(c[2])[:10]}" for c in CASES])
def test_wrong_field_is_one_line(tmp_path, doc, path, value, fragment):
    folder = tmp_path / GP_DIR if doc is GP else tmp_path
    folder.mkdir(exist_ok=True)
    p = folder / ("profile_export_genai_perf.json" if doc is GP else "result.json")
    p.write_text(json.dumps(_with(doc, path, value)))
    with pytest.raises(UserError) as exc:
        read_engine_results(p)
    msg = str(exc.value)
    assert "\n" not in msg and str(p) in msg and fragment in msg, msg


@pytest.mark.parametrize("unit, factor", [("ns", 1e6), ("us", 1e3), ("µs", 1e3), ("s", 1e-3), ("ms", 1.0)])
def test_genai_perf_json_is_read_in_its_unit(tmp_path, unit, factor):
    # The same run written in another unit: every unit gives the fixture's ms figure.
    (base,) = read_engine_results(ENG / "genai-perf" / GP_DIR / "profile_export_genai_perf.json")
    itl = {k: (v * factor if isinstance(v, (int, float)) else v) for k, v in GP["inter_token_latency"].items()}
    itl["unit"] = unit
    folder = tmp_path / GP_DIR
    folder.mkdir()
    p = folder / "profile_export_genai_perf.json"
    p.write_text(json.dumps({**GP, "inter_token_latency": itl}))
    (run,) = read_engine_results(p)
    assert run.tpot_ms == pytest.approx(base.tpot_ms, rel=1e-9)


def test_genai_perf_csv_in_nanoseconds(tmp_path):
    src = next((ENG / "genai-perf").glob("*concurrency16/profile_export_genai_perf.csv"))
    (base,) = read_engine_results(src)
    lines = []
    for line in src.read_text().splitlines():
        if line.startswith("Inter Token Latency (ms)"):
            cells = line.split(",")
            vals = [f"{float(c) * 1e6:.0f}" for c in cells[1:]]  # ms -> ns
            line = ",".join(["Inter Token Latency (ns)"] + vals)
        lines.append(line)
    folder = tmp_path / src.parent.name
    folder.mkdir()
    p = folder / src.name
    p.write_text("\n".join(lines) + "\n")
    (run,) = read_engine_results(p)
    assert run.tpot_ms == pytest.approx(base.tpot_ms, rel=1e-6)


def test_huge_and_deep_json_are_one_line(tmp_path):
    p = tmp_path / "result.json"
    p.write_text('{"median_tpot_ms": ' + "9" * 5000 + "}")
    with pytest.raises(UserError, match="result.json"):
        read_engine_results(p)
    p.write_text('{"a": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(UserError, match="nested too deeply"):
        read_engine_results(p)
