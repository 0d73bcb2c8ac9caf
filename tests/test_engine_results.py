"""Readers of serving-engine results: every format gives the fields its fixture holds (the
fixtures in tests/fixtures/engines/ were written from each format's documentation)."""

import json
import shutil

import pytest

from inferecon.ingest.engine_results import quant_bits, read_engine_results
from inferecon.core.errors import UserError

F = "tests/fixtures/engines"
GENAI = f"{F}/genai-perf"


def one(path):
    runs = read_engine_results(path)
    assert len(runs) == 1
    return runs[0]


def test_vllm_bench_serve_json():
    r = one(f"{F}/vllm_bench_serve_llama-3.1-8b_c8.json")
    assert (r.format, r.engine) == ("vllm", "vllm")
    assert r.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert r.tp == 1  # --metadata tensor_parallel_size=1, saved as a string
    assert (r.concurrency, r.concurrency_from) == (8.0, "max_concurrency")
    # 80 requests: 81920 prompt tokens, 10240 generated.
    assert (r.input_len, r.output_len) == (1024.0, 128.0)
    assert (r.tpot_ms, r.tpot_metric) == (7.42, "median_tpot_ms")
    assert r.gpu == "NVIDIA H100 80GB HBM3"
    assert r.context == 1024 + 64


def test_old_benchmark_serving_json_uses_littles_law():
    r = one(f"{F}/benchmark_serving_llama-3-8b_old.json")
    assert r.format == "vllm" and r.tp is None and r.model == "meta-llama/Meta-Llama-3-8B-Instruct"
    # No max_concurrency: in flight = request_throughput x mean_e2el_ms.
    d = json.load(open(f"{F}/benchmark_serving_llama-3-8b_old.json"))
    assert r.concurrency == pytest.approx(d["request_throughput"] * d["mean_e2el_ms"] / 1e3)
    assert round(r.concurrency) == 64
    assert "Little" in r.concurrency_from
    assert (r.input_len, r.output_len, r.tpot_ms) == (512.0, 256.0, 13.1)


def test_sglang_jsonl_one_run_per_line():
    runs = read_engine_results(f"{F}/sglang_bench_serving.jsonl")
    assert [r.format for r in runs] == ["sglang"] * 3
    assert [r.engine for r in runs] == ["sglang"] * 3
    assert [r.concurrency for r in runs] == [1.0, 4.0, 16.0]
    assert [r.tpot_ms for r in runs] == [6.71, 7.05, 8.62]
    assert [r.source.rsplit(":", 1)[1] for r in runs] == ["1", "2", "3"]
    assert all((r.input_len, r.output_len) == (1024.0, 256.0) and r.model is None for r in runs)


def test_genai_perf_json():
    r = one(f"{GENAI}/meta_llama-3.1-8b-instruct-openai-chat-concurrency4/profile_export_genai_perf.json")
    assert r.format == "genai-perf" and r.engine == "vllm"
    assert (r.concurrency, r.concurrency_from) == (4.0, "input_config.concurrency")
    assert (r.tpot_ms, r.tpot_metric) == (6.94, "inter_token_latency.p50")
    assert (r.input_len, r.output_len) == (550.02, 240.53)
    assert r.model == "meta-llama/Llama-3.1-8B-Instruct"


def test_genai_perf_json_in_seconds_and_newer_config(tmp_path):
    d = json.load(open(f"{GENAI}/meta_llama-3.1-8b-instruct-openai-chat-concurrency4/profile_export_genai_perf.json"))
    d["inter_token_latency"] = {"unit": "s", "avg": 0.0071}
    d["input_config"] = {"model_names": ["x/y"], "perf_analyzer": {"stimulus": {"concurrency": 32}}}
    p = tmp_path / "export.json"
    p.write_text(json.dumps(d))
    r = one(p)
    assert r.tpot_ms == pytest.approx(7.1) and r.tpot_metric == "inter_token_latency.avg"
    assert r.concurrency == 32 and r.model == "x/y"


def test_genai_perf_csv_takes_concurrency_from_its_folder(tmp_path):
    src = f"{GENAI}/meta_llama-3.1-8b-instruct-fp8-openai-chat-concurrency16/profile_export_genai_perf.csv"
    r = one(src)
    assert r.format == "genai-perf"
    assert (r.concurrency, r.tpot_ms, r.tpot_metric) == (16.0, 5.45, "Inter Token Latency p50")
    assert (r.input_len, r.output_len) == (550.0, 241.0)  # p50 rows
    # Out of its artifact folder the CSV has no concurrency: say so.
    shutil.copy(src, tmp_path / "profile_export_genai_perf.csv")
    with pytest.raises(UserError, match="records no concurrency"):
        read_engine_results(tmp_path / "profile_export_genai_perf.csv")


def test_trtllm_bench_streaming_text():
    r = one(f"{F}/trtllm_bench_llama-3.1-8b_fp8_streaming.txt")
    assert (r.format, r.engine) == ("trtllm-bench", "trtllm")
    assert r.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert (r.tp, r.pp, r.ep) == (1, 1, None)
    assert (r.weight_bits, r.kv_bits) == (8, 8)  # Quantization FP8, KV Cache Dtype FP8
    assert r.concurrency == 31.7422 and (r.input_len, r.output_len) == (1024.0, 1024.0)
    assert (r.tpot_ms, r.tpot_metric) == (8.612, "[TPOT] P50")
    assert r.gpu == "NVIDIA H100 80GB HBM3" and r.version == "1.0.0"


def test_a_log_of_several_trtllm_bench_reports_is_one_run_each(tmp_path):
    text = open(f"{F}/trtllm_bench_llama-3.1-8b_fp8_streaming.txt").read()
    second = text.replace("[TPOT] P50    : 8.6120", "[TPOT] P50    : 9.1000").replace("TP Size:                1",
                                                                                       "TP Size:                2")
    (tmp_path / "sweep.log").write_text(text + second)
    runs = read_engine_results(tmp_path / "sweep.log")
    assert [(r.tpot_ms, r.tp) for r in runs] == [(8.612, 1), (9.1, 2)]
    assert [r.source.rsplit("#", 1)[1] for r in runs] == ["1", "2"]


def test_trtllm_bench_report_json():
    r = one(f"{F}/trtllm_bench_llama-3.1-70b_tp4_report.json")
    assert r.format == "trtllm-bench" and r.tp == 4 and r.pp == 1
    assert r.weight_bits == 16 and r.kv_bits is None  # no quantization, bfloat16
    assert (r.concurrency, r.tpot_ms) == (7.9301, 14.21)
    assert (r.input_len, r.output_len) == (2048.0, 512.0)


@pytest.mark.parametrize("name,bits", [("FP8", 8), ("W4A16_AWQ", 4), ("NVFP4", 4), ("W8A8_SQ_PER_CHANNEL", 8),
                                        ("None", None), (None, None), ("bfloat16", 16), ("int4", 4),
                                        ("squad", None)])
def test_quantisation_names(name, bits):
    assert quant_bits(name) == bits


@pytest.mark.parametrize("content,message", [
    ("", "empty file"),
    ('{"name": "h100-sxm", "schema_version": 1}', "not a vLLM/SGLang result"),
    ("hello\nworld\n", "not an engine result inferecon reads"),
    ('{"median_tpot_ms": 5.0, "completed": 0, "total_input_tokens": 1, "total_output_tokens": 1}',
     "completed must be a positive number"),
    ('{"median_tpot_ms": 5.0, "completed": 4, "total_input_tokens": 1, "total_output_tokens": 1}', "no concurrency"),
    ('{"median_tpot_ms": 5.0}\n{not json\n', ":2: not valid JSON"),
])
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    p = tmp_path / "result.json"
    p.write_text(content)
    with pytest.raises(UserError, match=message):
        read_engine_results(p)


def test_trtllm_without_streaming_and_missing_paths(tmp_path):
    with pytest.raises(UserError, match="rerun with --streaming"):
        read_engine_results(f"{F}/trtllm_bench_no_streaming.txt")
    with pytest.raises(UserError, match="no such engine result file"):
        read_engine_results(tmp_path / "missing.json")
    with pytest.raises(UserError, match="a directory"):
        read_engine_results(tmp_path)
