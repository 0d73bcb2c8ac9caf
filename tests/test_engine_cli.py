"""`validate --engine-results` and `calibrate --engine-results` end to end on the format
fixtures (format examples, not measurements: the errors printed here are no accuracy claim)."""

import csv
import json
import subprocess
import sys

import pytest

from inferecon.cli import main
from plotcheck import assert_points_plotted
from inferecon.model.engine import EngineProfile

F = "tests/fixtures/engines"
ALL_FORMATS = [f"{F}/vllm_bench_serve_llama-3.1-8b_c8.json", f"{F}/benchmark_serving_llama-3-8b_old.json",
               f"{F}/sglang_bench_serving.jsonl",
               f"{F}/genai-perf/meta_llama-3.1-8b-instruct-openai-chat-concurrency4/profile_export_genai_perf.json",
               f"{F}/genai-perf/meta_llama-3.1-8b-instruct-fp8-openai-chat-concurrency16/profile_export_genai_perf.csv",
               f"{F}/trtllm_bench_llama-3.1-8b_fp8_streaming.txt", f"{F}/trtllm_bench_llama-3.1-70b_tp4_report.json"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "inferecon.cli", *args], capture_output=True, text=True, timeout=120)


def test_validate_reads_all_formats_and_writes_table_csv_plot(tmp_path, capsys, saved_figures):
    assert main(["validate", "--engine-results", *ALL_FORMATS, "--model", "llama-3-8b", "--gpu", "h100",
                 "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "MAPE over 9 run(s)" in out  # 1 + 1 + 3 + 1 + 1 + 1 + 1 runs
    for name in ("vllm_bench_serve", "sglang_bench_serving.jsonl:3", "profile_export_genai_perf.csv", "tp4_report.json"):
        assert name in out
    # The 70B report records TP 4; --tp (default 1) does not override it.
    assert "records TP 4" in captured.err
    rows = list(csv.DictReader(open(tmp_path / "engine_validation.csv")))
    assert len(rows) == 9
    tp4 = [r for r in rows if r["source"].endswith("tp4_report.json")][0]
    assert (tp4["tp"], tp4["batch"], tp4["measured_ms"]) == ("4", "8", "14.21")
    summary = json.loads((tmp_path / "engine_validation.json").read_text())
    mape = sum(abs(float(r["error_pct"])) for r in rows) / len(rows)
    assert abs(summary["mape_pct"] - mape) < 1e-9
    (fig,) = saved_figures  # the plot shows the table: each run at (measured, predicted) ms
    assert_points_plotted(fig, [float(r["measured_ms"]) for r in rows], [float(r["predicted_ms"]) for r in rows],
                          rel=1e-3)


def test_validate_takes_model_and_tp_from_the_file(tmp_path, capsys):
    assert main(["validate", "--engine-results", f"{F}/trtllm_bench_llama-3.1-70b_tp4_report.json",
                 "--out", str(tmp_path)]) == 0
    row = next(csv.DictReader(open(tmp_path / "engine_validation.csv")))
    assert (row["model"], row["tp"], row["gpu"]) == ("llama-3-70b", "4", "h100-sxm")


@pytest.mark.slow
def test_validate_with_an_engine_profile_adds_its_column(tmp_path, capsys):
    eng = EngineProfile("five-hundred", step_overhead_us=500.0).save(tmp_path / "engine.json")
    assert main(["validate", "--engine-results", f"{F}/sglang_bench_serving.jsonl", "--model", "llama-3-8b",
                 "--gpu", "h100", "--engine", str(eng), "--out", str(tmp_path / "out")]) == 0
    assert "MAPE with engine profile 'five-hundred'" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "out" / "engine_validation.csv")))
    # 500 µs more per step, one token per step: 0.5 ms more per token on every run.
    assert [round(float(r["engine_ms"]) - float(r["predicted_ms"]), 9) for r in rows] == [0.5, 0.5, 0.5]
    summary = json.loads((tmp_path / "out" / "engine_validation.json").read_text())
    mape = sum(abs(float(r["engine_error_pct"])) for r in rows) / 3
    assert abs(summary["engine_mape_pct"] - mape) < 1e-9


def test_calibrate_fits_an_engine_profile_predict_can_use(tmp_path, capsys, saved_figures):
    files = [f"{F}/sglang_bench_serving.jsonl", f"{F}/vllm_bench_serve_llama-3.1-8b_c8.json",
             f"{F}/genai-perf/meta_llama-3.1-8b-instruct-openai-chat-concurrency4/profile_export_genai_perf.json"]
    assert main(["calibrate", "--engine-results", *files, "--model", "llama-3-8b", "--gpu", "h100", "--tp", "1",
                 "--engine-name", "mix", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "held out (leave one run out)" in out and "published value kept" in out
    profile = EngineProfile.load(tmp_path / "engine.json")
    assert profile.name == "mix" and profile.hardware == "h100-sxm" and profile.fit_quality["runs"] == 5
    assert len(profile.sources) == 3
    rows = list(csv.DictReader(open(tmp_path / "engine_fit.csv")))
    assert len(rows) == 5 and all(r["heldout_ms"] for r in rows)
    (fig,) = saved_figures  # each run at (measured, held-out engine prediction) ms
    assert_points_plotted(fig, [float(r["measured_ms"]) for r in rows], [float(r["heldout_ms"]) for r in rows],
                          rel=1e-3)

    assert main(["predict", "--model", "llama-3-8b", "--engine", str(tmp_path / "engine.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine"] == "mix"


@pytest.mark.slow
def test_engine_result_errors_are_one_line(tmp_path):
    cases = [
        (["validate", "--engine-results", f"{F}/sglang_bench_serving.jsonl", "--gpu", "h100"], "records no model"),
        (["validate", "--engine-results", f"{F}/not_a_result.json", "--gpu", "h100"], "not a vLLM/SGLang result"),
        (["validate", "--model", "llama-3-8b"], "a decode run needs --hardware PROFILE and --model M"),
        (["validate", "--model", "llama-3-8b", "--engine", "e.json"], "--engine applies to serving-engine runs"),
        (["validate", "--engine-results", f"{F}/vllm_bench_serve_llama-3.1-8b_c8.json", "--batch", "4", "--quick"],
         "--batch, --quick apply to a decode run only"),
        (["calibrate", "--engine-results", f"{F}/vllm_bench_serve_llama-3.1-8b_c8.json", "--gpu", "h100",
          "--hardware", "x.json"], "give --gpu or --hardware, not both"),
        (["calibrate", "--engine-results", f"{F}/trtllm_bench_no_streaming.txt", "--gpu", "h100"], "--streaming"),
        (["calibrate", "--engine-results", f"{F}/vllm_bench_serve_llama-3.1-8b_c8.json", "--quick"],
         "--quick, --resume, --nccl-tests and --nvbandwidth do not apply"),
    ]
    for args, message in cases:
        r = run_cli(*args, "--out", str(tmp_path / "out"))
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
