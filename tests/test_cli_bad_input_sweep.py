"""Bad input to every subcommand of `inferecon` (the list `inferecon --help` prints): exit 2,
exactly one line on stderr that names the problem, no traceback, and nothing on stdout before
it (no table that reads as an answer ahead of the refusal).

tests/hardening_cases.tsv sweeps predict's and calibrate's numbers, config.json and profile
fields in depth; this module goes across the commands with the kinds of bad input a person
gives any of them: unknown names, numbers out of range (negative, zero, NaN, infinite), a
missing, empty, truncated or wrong-shaped file (a hardware profile where an engine profile is
asked for and the other way round), a folder where a file is asked for, an --out that cannot
be written, flags that conflict, lengths beyond the model's context and a batch beyond HBM.
The expected words are what a person needs to hear (the flag, the file, the bound), written
from the brief, then run. Every case runs in-process through inferecon.cli.main.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import pytest

from inferecon import cli

HERE = Path(__file__).parent
FIX = HERE / "fixtures"
PROFILE_FIX = FIX / "speed" / "opdb-h100-vllm" / "profile.json"  # a real op-DB hardware profile
ENGINE_FIX = FIX / "speed" / "opdb-h100-vllm" / "engine.json"  # and its engine profile


def _write_inputs(tmp: Path) -> None:
    """The files the cases name: {t}/NAME."""
    (tmp / "empty.json").write_text("")
    (tmp / "trunc.json").write_text('{"name": "h100-sxm", "memory": {"bandwidth_gbps": 33')
    (tmp / "list.json").write_text("[1, 2, 3]\n")
    (tmp / "notjson.txt").write_text("this is not a result file\n")
    (tmp / "profile.json").write_text(PROFILE_FIX.read_text())
    (tmp / "engine.json").write_text(ENGINE_FIX.read_text())
    (tmp / "cpu_profile.json").write_text((FIX / "validate" / "cpu_profile.json").read_text())  # a CPU calibration
    cpu1 = json.loads((FIX / "validate" / "cpu_profile.json").read_text())
    cpu1["provenance"]["versions"]["cpu_threads"] = "1"  # calibrated with one thread: --threads 2 warns
    (tmp / "cpu_profile_1thread.json").write_text(json.dumps(cpu1))
    nan = json.loads(PROFILE_FIX.read_text())
    nan["memory"]["bandwidth_gbps"] = float("nan")
    (tmp / "nan_profile.json").write_text(json.dumps(nan))  # json writes the NaN literal Python reads back
    inf = json.loads(ENGINE_FIX.read_text())
    inf["step_overhead_us"] = float("inf")
    (tmp / "inf_engine.json").write_text(json.dumps(inf))
    # Engine files with one field of the wrong kind each: (file name, field, value).
    for name, key, value in ENGINE_EDITS:
        doc = json.loads(ENGINE_FIX.read_text())
        doc[key] = value
        (tmp / name).write_text(json.dumps(doc))
    (tmp / "nover.json").write_text('{"name": "x"}\n')  # JSON of no known kind, without a schema_version
    (tmp / "calibration.json").write_text('{"profile": "profile.json", "run_id": "r", "fits": []}\n')  # calibrate's summary
    (tmp / "afile").write_text("x\n")
    (tmp / "adir").mkdir()
    (tmp / "emptydir").mkdir()
    # A run folder whose manifest is cut short: a run a command must refuse, not half-read.
    (tmp / "badrun").mkdir()
    (tmp / "badrun" / "manifest.json").write_text('{"run_id": "x", "device": ')
    (tmp / "loop.json").symlink_to(tmp / "loop.json")  # a symlink to itself: ELOOP on open
    (tmp / "listrun").mkdir()
    (tmp / "listrun" / "manifest.json").write_text("[1, 2]\n")  # JSON, but not a manifest's shape
    # Folders with one broken file a report shows: a fit without its fields, a binary regress.md,
    # a CSV cut mid-quote.
    for name, file, data in (("badfit", "calibration.json", b'{"fits": [{"term": "memory"}]}'),
                             ("binreport", "regress.md", bytes(range(128, 256))),
                             ("badcsv", "validation.csv", b'a,b\n1,2,3,4\n"x')):
        (tmp / name).mkdir()
        (tmp / name / file).write_bytes(data)
    # A config.json with its context window: Llama 3 8B's published 8,192 tokens (its config).
    cfg = json.loads((FIX / "hf" / "llama-3-8b.json").read_text())
    cfg["max_position_embeddings"] = 8192
    (tmp / "llama8k").mkdir()
    (tmp / "llama8k" / "config.json").write_text(json.dumps(cfg))


ENGINE_EDITS = [
    ("engine_huge_launch.json", "host_launch_us", 1e300),  # overflowed the step to a ZeroDivisionError
    ("engine_huge_eff.json", "weight_read_efficiency", {"16": 1e300}),
    ("engine_bool.json", "step_overhead_us", True),
    ("engine_no_name.json", "name", None),
    ("engine_hw_number.json", "hardware", 5),  # was an AttributeError traceback
    ("engine_sources_text.json", "sources", "vllm"),
    ("engine_fit_quality_text.json", "fit_quality", "good"),  # was an AttributeError traceback
    ("engine_fit_quality_list.json", "fit_quality", {"parameters": {"step_overhead_us": [1.0]}}),
    ("engine_fit_quality_key.json", "fit_quality", {"parameters": {"bogus": {"fitted": True, "value": 1.0,
                                                                             "stderr": 0.1}}}),
]

LONG = "n" * 300  # a file name over NAME_MAX (255 bytes): ENAMETOOLONG wherever it is first touched

# (id, argv with {t} for the case's folder, words the one stderr line must hold)
CASES = [
    # -- paths the system refuses to look at ------------------------------------------------------
    ("path-too-long-out", f"frontier --model llama-3-8b --draws 0 --out {{t}}/{LONG}", "File name too long"),
    ("path-too-long-hardware", f"predict --model llama-3-8b --hardware {{t}}/{LONG}.json", "File name too long"),
    ("path-too-long-model", f"predict --model {{t}}/{LONG}.json", "File name too long"),
    ("path-too-long-run", f"regress --candidate {{t}}/{LONG}", "File name too long"),
    ("path-too-long-report", f"report {{t}}/adir --out {{t}}/{LONG}.html", "File name too long"),
    ("path-loop-hardware", "predict --model llama-3-8b --hardware {t}/loop.json", "loop.json"),
    ("path-loop-engine", "predict --model llama-3-8b --engine {t}/loop.json", "loop.json"),
    ("path-loop-results", "validate --engine-results {t}/loop.json --out {t}/v", "loop.json"),
    # -- the command line itself -----------------------------------------------------------
    ("cli-unknown-command", "preditc --model llama-3-8b", "invalid choice: 'preditc'"),
    ("cli-no-command", "", "no command given: one of specs, predict"),
    ("specs-extra-argument", "specs h100", "unrecognized arguments: h100"),
    ("specs-unknown-flag", "specs --gpu h100", "unrecognized arguments: --gpu"),
    # -- predict: names ----------------------------------------------------------------------
    ("predict-unknown-model", "predict --model llama-9-8b", "unknown model 'llama-9-8b'"),
    ("predict-unknown-gpu", "predict --model llama-3-8b --gpu h900", "unknown GPU 'h900'"),
    ("predict-unknown-engine", "predict --model llama-3-8b --engine vlm", "unknown engine 'vlm'"),
    # A serving engine's bare name: its profile comes from its tables, and the line says how.
    ("predict-engine-by-name", "predict --model llama-3-8b --engine vllm",
     "write its profile from its per-op tables first: inferecon calibrate --op-db --gpu GPU --engine vllm"),
    ("predict-draft-other-vocabulary", "predict --model llama-3-70b --tp 8 --spec-decode mixtral-8x7b",
     "a speculative draft must share the target's tokenizer"),  # frontier refused it; predict priced it
    ("frontier-draft-other-vocabulary", "frontier --model llama-3-70b --spec-decode mixtral-8x7b --out {t}/f",
     "a speculative draft must share the target's tokenizer"),
    ("predict-unknown-draft", "predict --model llama-3-70b --spec-decode llama-9-1b", "unknown model 'llama-9-1b'"),
    # -- predict: numbers --------------------------------------------------------------------
    ("predict-batch-zero", "predict --model llama-3-8b --batch 0", "--batch"),
    ("predict-batch-negative", "predict --model llama-3-8b --batch -4", "--batch"),
    ("predict-batch-nan", "predict --model llama-3-8b --batch nan", "--batch"),
    ("predict-batch-inf", "predict --model llama-3-8b --batch inf", "--batch"),
    ("predict-context-nan", "predict --model llama-3-8b --context nan", "--context"),
    ("predict-context-negative", "predict --model llama-3-8b --context -1", "--context"),
    ("predict-price-zero", "predict --model llama-3-8b --price 0", "--price"),
    ("predict-price-negative", "predict --model llama-3-8b --price -2", "--price"),
    ("predict-price-nan", "predict --model llama-3-8b --price nan", "--price"),
    ("predict-price-inf", "predict --model llama-3-8b --price inf", "--price"),
    ("predict-acceptance-above-one", "predict --model llama-3-70b --spec-decode llama-3-8b --acceptance 1.5",
     "--acceptance"),
    ("predict-acceptance-nan", "predict --model llama-3-70b --spec-decode llama-3-8b --acceptance nan",
     "--acceptance"),
    ("predict-gamma-zero", "predict --model llama-3-70b --spec-decode llama-3-8b --gamma 0", "--gamma"),
    ("predict-draws-negative", "predict --model llama-3-8b --draws -1", "--draws"),
    ("predict-tp-zero", "predict --model llama-3-8b --tp 0", "--tp"),
    ("predict-tp-uneven", "predict --model llama-3-8b --tp 3", "--tp 3"),
    ("predict-input-len-zero", "predict --model llama-3-8b --input-len 0 --output-len 10", "--input-len"),
    ("predict-output-len-nan", "predict --model llama-3-8b --input-len 100 --output-len nan", "--output-len"),
    ("predict-request-rate-zero", "predict --model llama-3-8b --input-len 100 --output-len 10 --request-rate 0",
     "--request-rate"),
    ("predict-request-rate-inf", "predict --model llama-3-8b --input-len 100 --output-len 10 --request-rate inf",
     "--request-rate"),
    ("predict-concurrency-zero", "predict --model llama-3-8b --input-len 100 --output-len 10 --concurrency 0",
     "--concurrency"),
    # -- predict: files ----------------------------------------------------------------------
    ("predict-hardware-missing", "predict --model llama-3-8b --hardware {t}/nope.json", "nope.json"),
    ("predict-hardware-empty", "predict --model llama-3-8b --hardware {t}/empty.json", "empty.json"),
    ("predict-hardware-truncated", "predict --model llama-3-8b --hardware {t}/trunc.json", "trunc.json"),
    ("predict-hardware-list", "predict --model llama-3-8b --hardware {t}/list.json", "list.json"),
    ("predict-hardware-folder", "predict --model llama-3-8b --hardware {t}/adir", "adir"),
    ("predict-hardware-is-engine", "predict --model llama-3-8b --hardware {t}/engine.json",
     "an engine profile, not a hardware profile"),
    ("predict-hardware-nan", "predict --model llama-3-8b --hardware {t}/nan_profile.json", "bandwidth_gbps"),
    ("predict-engine-missing", "predict --model llama-3-8b --engine {t}/nope.json", "no such engine profile"),
    ("predict-engine-empty", "predict --model llama-3-8b --engine {t}/empty.json", "empty.json"),
    ("predict-engine-truncated", "predict --model llama-3-8b --engine {t}/trunc.json", "trunc.json"),
    ("predict-engine-folder", "predict --model llama-3-8b --engine {t}/adir", "adir"),
    ("predict-engine-is-profile", "predict --model llama-3-8b --engine {t}/profile.json",
     "a hardware profile, not an engine profile"),
    ("predict-engine-inf", "predict --model llama-3-8b --engine {t}/inf_engine.json", "step_overhead_us"),
    ("predict-engine-huge-launch", "predict --model llama-3-8b --engine {t}/engine_huge_launch.json",
     "host_launch_us 1e+300 is above 1e+07"),
    ("predict-engine-huge-efficiency", "predict --model llama-3-8b --engine {t}/engine_huge_eff.json",
     "weight_read_efficiency[16] 1e+300 is above 100"),
    ("predict-engine-bool", "predict --model llama-3-8b --engine {t}/engine_bool.json",
     "step_overhead_us must be a number, got True"),
    ("predict-engine-no-name", "predict --model llama-3-8b --engine {t}/engine_no_name.json",
     "name must be a non-empty string"),
    ("predict-engine-hardware-number", "predict --model llama-3-8b --engine {t}/engine_hw_number.json",
     "hardware must be a string"),
    ("predict-engine-sources-text", "predict --model llama-3-8b --engine {t}/engine_sources_text.json",
     "sources must be a list of strings"),
    ("predict-engine-fit-quality-text", "predict --model llama-3-8b --engine {t}/engine_fit_quality_text.json",
     "fit_quality must be an object"),
    ("frontier-engine-fit-quality-list", "frontier --model llama-3-8b --engine {t}/engine_fit_quality_list.json "
     "--out {t}/f", "fit_quality must be an object whose parameters are objects"),
    ("validate-engine-fit-quality-key", "validate --engine-results "
     f"{FIX}/engines/vllm_bench_serve_llama-3.1-8b_c8.json --engine {{t}}/engine_fit_quality_key.json --out {{t}}/v",
     "fit_quality: engine parameter 'bogus'"),
    ("predict-model-empty-config", "predict --model {t}/empty.json", "empty.json"),
    ("predict-model-truncated-config", "predict --model {t}/trunc.json", "trunc.json"),
    ("predict-model-is-profile", "predict --model {t}/profile.json", "profile.json"),
    ("predict-model-folder-without-config", "predict --model {t}/emptydir", "emptydir"),
    # -- predict: conflicts, lengths beyond the context, HBM ---------------------------------
    ("predict-acceptance-without-draft", "predict --model llama-3-8b --acceptance 0.7", "--spec-decode"),
    ("predict-gamma-without-draft", "predict --model llama-3-8b --gamma 4", "--spec-decode"),
    ("predict-concurrency-and-rate", "predict --model llama-3-8b --input-len 100 --output-len 10 --concurrency 4 "
     "--request-rate 2", "not allowed with argument"),
    ("predict-draft-under-load", "predict --model llama-3-70b --tp 8 --spec-decode llama-3-8b --input-len 1000 "
     "--output-len 100 --concurrency 4", "--spec-decode with --concurrency"),  # was priced without the draft
    ("predict-output-without-input", "predict --model llama-3-8b --output-len 10", "--input-len"),
    ("predict-concurrency-without-request", "predict --model llama-3-8b --concurrency 4", "--input-len"),
    ("predict-disaggregated-without-rate", "predict --model llama-3-8b --input-len 100 --output-len 10 "
     "--disaggregated 1,1", "--request-rate"),
    ("predict-disaggregated-three", "predict --model llama-3-8b --input-len 100 --output-len 10 --request-rate 1 "
     "--disaggregated 1,1,1", "--disaggregated"),
    # A note (a context beyond the window, an engine fitted elsewhere) waits for an answer: the
    # refusal after it is the one line.
    ("predict-note-then-refusal", "predict --model {t}/llama8k/config.json --context 100000 --tp 3",
     "--tp 3: tensor parallelism over 3 GPUs"),
    ("predict-engine-note-then-refusal", "predict --model llama-3-8b --gpu a100-sxm-80gb --engine {t}/engine.json "
     "--tp 3", "--tp 3: tensor parallelism over 3 GPUs"),
    ("predict-prefill-tp-uneven", "predict --model llama-3-8b --input-len 100 --output-len 10 --request-rate 1 "
     "--disaggregated 1,1 --prefill-tp 3", "--prefill-tp 3: tensor parallelism over 3 GPUs"),
    ("predict-input-beyond-context", "predict --model {t}/llama8k/config.json --input-len 8000 --output-len 500",
     "8,500 tokens is beyond llama8k's 8,192-token context"),
    ("predict-input-beyond-context-json", "predict --model {t}/llama8k/config.json --input-len 9000 "
     "--output-len 1 --json", "9,001 tokens is beyond"),
    # Catalog models carry their configs' windows too (they had none, so any length was priced):
    # Llama 3.1 8B's config.json says 131,072, Qwen3-32B's 40,960.
    ("predict-catalog-input-beyond-context", "predict --model llama-3-8b --input-len 200000 --output-len 10",
     "200,010 tokens is beyond llama-3-8b's 131,072-token context"),
    ("predict-catalog-one-past-context", "predict --model qwen3-32b --input-len 40000 --output-len 961",
     "40,961 tokens is beyond qwen3-32b's 40,960-token context"),
    # -- frontier ----------------------------------------------------------------------------
    ("frontier-catalog-input-beyond-context", "frontier --model llama-3-8b --input-len 1000000 --output-len 10 "
     "--chunk-size 2 --out {t}/f", "1,000,010 tokens is beyond llama-3-8b's 131,072-token context"),  # ran for minutes
    ("frontier-unknown-model", "frontier --model llama-9-8b --out {t}/f", "unknown model 'llama-9-8b'"),
    ("frontier-unknown-gpu", "frontier --model llama-3-8b --gpu h900 --out {t}/f", "unknown GPU 'h900'"),
    ("frontier-unknown-engine", "frontier --model llama-3-8b --engine vlm --out {t}/f", "unknown engine 'vlm'"),
    ("frontier-model-names-nothing", "frontier --model , --out {t}/f", "--model names nothing"),
    ("frontier-rows-zero", "frontier --model llama-3-8b --rows 0 --out {t}/f", "--rows"),
    ("frontier-draws-nan", "frontier --model llama-3-8b --draws nan --out {t}/f", "--draws"),
    ("frontier-max-gpus-zero", "frontier --model llama-3-8b --max-gpus 0 --out {t}/f", "--max-gpus"),
    ("frontier-price-inf", "frontier --model llama-3-8b --price inf --out {t}/f", "--price"),
    ("frontier-context-inf", "frontier --model llama-3-8b --context inf --out {t}/f", "--context"),
    ("frontier-ttft-zero", "frontier --model llama-3-8b --input-len 100 --output-len 10 --ttft-ms 0 --out {t}/f",
     "--ttft-ms"),
    ("frontier-tpot-negative", "frontier --model llama-3-8b --input-len 100 --output-len 10 --tpot-ms -5 "
     "--out {t}/f", "--tpot-ms"),
    ("frontier-hardware-is-engine", "frontier --model llama-3-8b --hardware {t}/engine.json --out {t}/f",
     "an engine profile, not a hardware profile"),
    ("frontier-engine-is-profile", "frontier --model llama-3-8b --engine {t}/profile.json --out {t}/f",
     "a hardware profile, not an engine profile"),
    ("frontier-hardware-truncated", "frontier --model llama-3-8b --hardware {t}/trunc.json --out {t}/f",
     "trunc.json"),
    ("frontier-hardware-folder", "frontier --model llama-3-8b --hardware {t}/adir --out {t}/f", "adir"),
    ("frontier-out-empty", "frontier --model llama-3-8b --out ''", "--out is empty"),
    ("frontier-out-is-file", "frontier --model llama-3-8b --out {t}/afile", "afile"),
    ("frontier-out-under-file", "frontier --model llama-3-8b --out {t}/afile/sub", "afile"),
    ("frontier-gpu-twice", "frontier --model llama-3-8b --gpu h200,h200 --out {t}/f", "given twice"),
    ("frontier-model-twice", "frontier --model llama-3-8b,llama-3-8b --out {t}/f", "llama-3-8b"),
    ("frontier-names-too-many", "frontier --model llama-3-8b --name a,b --out {t}/f", "--name"),
    ("frontier-compare-without-calibrated", "frontier --model llama-3-8b --compare --out {t}/f", "--compare"),
    ("frontier-acceptance-without-draft", "frontier --model llama-3-8b --acceptance 0.7 --out {t}/f",
     "--spec-decode"),
    ("frontier-ttft-without-request", "frontier --model llama-3-8b --ttft-ms 100 --out {t}/f", "--input-len"),
    ("frontier-input-without-output", "frontier --model llama-3-8b --input-len 100 --out {t}/f", "--output-len"),
    ("frontier-input-beyond-context", "frontier --model {t}/llama8k/config.json --input-len 8000 --output-len 500 "
     "--draws 0 --out {t}/f", "8,500 tokens is beyond llama8k's 8,192-token context"),
    ("frontier-sla-nothing-meets", "frontier --model llama-3-8b --input-len 1000 --output-len 100 --ttft-ms 1 "
     "--draws 0 --max-gpus 2 --out {t}/f", "no configuration meets TTFT <= 1 ms"),
    # -- validate ------------------------------------------------------------------------------
    ("validate-no-hardware", "validate --model tiny-llama --out {t}/v", "--hardware"),
    ("validate-hardware-missing", "validate --hardware {t}/nope.json --model tiny-llama --out {t}/v", "nope.json"),
    ("validate-hardware-is-engine", "validate --hardware {t}/engine.json --model tiny-llama --out {t}/v",
     "an engine profile, not a hardware profile"),
    ("validate-hardware-folder", "validate --hardware {t}/adir --model tiny-llama --out {t}/v", "adir"),
    ("validate-unknown-model", "validate --hardware {t}/cpu_profile.json --model tiny-lama --out {t}/v",
     "unknown model 'tiny-lama'"),
    ("validate-batch-zero", "validate --hardware {t}/cpu_profile.json --model tiny-llama --batch 0 --out {t}/v",
     "--batch"),
    ("validate-context-nan", "validate --hardware {t}/cpu_profile.json --model tiny-llama --context nan --out {t}/v",
     "--context"),
    ("validate-layers-zero", "validate --hardware {t}/cpu_profile.json --model tiny-llama --layers 0 --out {t}/v",
     "--layers"),
    ("validate-layers-beyond-model", "validate --hardware {t}/cpu_profile.json --model tiny-llama --layers 100 "
     "--out {t}/v", "--layers 100 is more than the model's 4 layers"),  # was measured as 4 without a word
    ("validate-threads-zero", "validate --hardware {t}/cpu_profile.json --model tiny-llama --threads 0 --out {t}/v",
     "--threads"),
    ("validate-out-under-file", "validate --hardware {t}/cpu_profile.json --model tiny-llama --out {t}/afile/sub",
     "afile"),
    ("validate-warning-then-refusal", "validate --hardware {t}/cpu_profile_1thread.json --model tiny-llama "
     "--threads 2 --tp 3 --out {t}/v", "--tp 3 does not divide the 8 attention heads"),
    ("validate-warning-then-bad-out", "validate --hardware {t}/cpu_profile_1thread.json --model tiny-llama "
     "--threads 2 --out {t}/afile/sub", "afile is a file, not a directory"),
    ("validate-gpu-profile-on-cpu", "validate --hardware {t}/profile.json --model tiny-llama --device cpu --out {t}/v",
     "is not a CPU calibration, and this decode runs on the CPU"),
    ("validate-results-missing", "validate --engine-results {t}/nope.json --out {t}/v", "nope.json"),
    ("validate-results-empty", "validate --engine-results {t}/empty.json --out {t}/v", "empty.json"),
    ("validate-results-truncated", "validate --engine-results {t}/trunc.json --out {t}/v", "trunc.json"),
    ("validate-results-folder", "validate --engine-results {t}/emptydir --out {t}/v", "emptydir"),
    ("validate-results-not-a-result", "validate --engine-results {t}/notjson.txt --out {t}/v", "notjson.txt"),
    ("validate-results-is-profile", "validate --engine-results {t}/profile.json --out {t}/v", "profile.json"),
    ("validate-results-engine-is-profile", "validate --engine-results "
     f"{FIX}/engines/vllm_bench_serve_llama-3.1-8b_c8.json --engine {{t}}/profile.json --out {{t}}/v",
     "a hardware profile, not an engine profile"),
    ("validate-results-unknown-gpu", "validate --engine-results "
     f"{FIX}/engines/vllm_bench_serve_llama-3.1-8b_c8.json --gpu h900 --out {{t}}/v", "unknown GPU 'h900'"),
    ("validate-engine-without-results", "validate --hardware {t}/cpu_profile.json --model tiny-llama "
     "--engine {t}/engine.json --out {t}/v", "--engine-results"),
    # -- bench ----------------------------------------------------------------------------------
    ("bench-unknown-benchmark", "bench matmull --device cpu", "invalid choice: 'matmull'"),
    ("bench-threads-zero", "bench launch --device cpu --threads 0 --out {t}/b", "--threads"),
    ("bench-threads-nan", "bench launch --device cpu --threads nan --out {t}/b", "--threads"),
    ("bench-timeout-negative", "bench collectives --device cpu --timeout-s -1 --out {t}/b", "--timeout-s"),
    ("bench-timeout-nan", "bench collectives --device cpu --timeout-s nan --out {t}/b", "--timeout-s"),
    ("bench-nproc-zero", "bench collectives --device cpu --nproc-per-node 0 --out {t}/b", "--nproc-per-node"),
    ("bench-out-is-file", "bench launch --device cpu --out {t}/afile", "afile"),
    ("bench-out-under-file", "bench launch --device cpu --out {t}/afile/sub", "afile"),
    ("bench-resume-without-out", "bench launch --device cpu --resume", "--out"),
    ("bench-resume-missing", "bench launch --device cpu --resume --out {t}/nope", "nope"),
    ("bench-resume-truncated-manifest", "bench launch --device cpu --resume --out {t}/badrun", "manifest.json"),
    ("bench-resume-list-manifest", "bench launch --device cpu --resume --out {t}/listrun", "not a run manifest"),
    # -- regress --------------------------------------------------------------------------------
    ("regress-no-candidate", "regress --baseline {t}/adir", "--candidate"),
    ("regress-candidate-missing", "regress --baseline {t}/adir --candidate {t}/nope", "nope"),
    ("regress-candidate-file", "regress --baseline {t}/adir --candidate {t}/afile",
     "--candidate {t}/afile: a file, not a run directory"),
    ("regress-runs-empty-folders", "regress --baseline {t}/adir --candidate {t}/emptydir",
     "adir is not a run directory (no manifest.json)"),
    ("regress-baseline-list-manifest", "regress --baseline {t}/listrun --candidate {t}/badrun",
     "not a run manifest"),
    ("regress-candidate-truncated-manifest", "regress --baseline {t}/emptydir --candidate {t}/badrun",
     "manifest.json"),
    ("regress-tolerance-negative", "regress --baseline {t}/adir --candidate {t}/emptydir --tolerance -3%",
     "--tolerance"),
    ("regress-tolerance-nan", "regress --baseline {t}/adir --candidate {t}/emptydir --tolerance nan",
     "--tolerance"),
    ("regress-tolerance-words", "regress --baseline {t}/adir --candidate {t}/emptydir --tolerance three",
     "--tolerance"),
    ("regress-confidence-one", "regress --baseline {t}/adir --candidate {t}/emptydir --confidence 1",
     "--confidence"),
    ("regress-confidence-inf", "regress --baseline {t}/adir --candidate {t}/emptydir --confidence inf",
     "--confidence"),
    ("regress-drift-negative", "regress --baseline {t}/adir --candidate {t}/emptydir --drift -1%", "--drift"),
    ("regress-resamples-zero", "regress --baseline {t}/adir --candidate {t}/emptydir --resamples 0",
     "--resamples"),
    ("regress-baseline-runs-zero", "regress --candidate {t}/emptydir --baseline-runs 0", "--baseline-runs"),
    ("regress-unknown-model", "regress --baseline {t}/adir --candidate {t}/emptydir --model llama-9-8b",
     "unknown model 'llama-9-8b'"),
    ("regress-context-nan", "regress --baseline {t}/adir --candidate {t}/emptydir --context nan", "--context"),
    ("regress-max-gpus-zero", "regress --baseline {t}/adir --candidate {t}/emptydir --max-gpus 0", "--max-gpus"),
    ("regress-out-under-file", "regress --baseline {t}/adir --candidate {t}/emptydir --out {t}/afile/sub",
     "afile"),
    ("regress-save-missing", "regress --save-baseline {t}/nope --baselines-dir {t}/bl", "nope"),
    ("regress-save-file", "regress --save-baseline {t}/afile --baselines-dir {t}/bl", "afile"),
    ("regress-baselines-dir-file", "regress --candidate {t}/emptydir --baselines-dir {t}/afile",
     "--baselines-dir {t}/afile: a file, not a directory"),
    # -- calibrate (its numbers, files and fields in depth: tests/hardening_cases.tsv) --------------
    ("calibrate-from-missing", "calibrate --from {t}/nope", "--from {t}/nope: no such run directory"),
    ("calibrate-from-truncated-manifest", "calibrate --from {t}/badrun", "manifest.json"),
    ("calibrate-from-list-manifest", "calibrate --from {t}/listrun", "not a run manifest"),
    ("calibrate-from-and-device", "calibrate --from {t}/emptydir --device cpu", "--from refits an existing run"),
    ("calibrate-threads-zero", "calibrate --device cpu --threads 0 --out {t}/c", "--threads"),
    ("calibrate-timeout-nan", "calibrate --device cpu --timeout-s nan --out {t}/c", "--timeout-s"),
    ("calibrate-resume-without-out", "calibrate --device cpu --resume", "--resume needs --out"),
    ("calibrate-out-is-file", "calibrate --device cpu --quick --out {t}/afile", "afile: a file, not a directory"),
    ("calibrate-nccl-missing", "calibrate --nccl-tests {t}/nope.txt --gpu h100-sxm --out {t}/c", "nope.txt"),
    ("calibrate-nccl-empty", "calibrate --nccl-tests {t}/empty.json --gpu h100-sxm --out {t}/c",
     "no nccl-tests result rows found"),
    ("calibrate-nvbandwidth-truncated", "calibrate --nvbandwidth {t}/trunc.json --gpu h100-sxm --out {t}/c",
     "not valid nvbandwidth JSON"),
    ("calibrate-nccl-unknown-gpu", f"calibrate --nccl-tests {FIX}/ingest/synthetic_all_reduce_perf_8xh100.txt "
     "--gpu h900 --out {t}/c", "unknown GPU 'h900'"),
    ("calibrate-nccl-world-zero", f"calibrate --nccl-tests {FIX}/ingest/synthetic_all_reduce_perf_8xh100.txt"
     ":all_reduce:0 --gpu h100-sxm --out {t}/c", "world size must be a positive integer"),
    ("calibrate-results-empty", "calibrate --engine-results {t}/empty.json --out {t}/c", "empty.json: empty file"),
    ("calibrate-results-is-profile", "calibrate --engine-results {t}/profile.json --out {t}/c",
     "not a vLLM/SGLang result"),
    ("calibrate-results-hardware-is-engine", "calibrate --engine-results "
     f"{FIX}/engines/vllm_bench_serve_llama-3.1-8b_c8.json --hardware {{t}}/engine.json --out {{t}}/c",
     "an engine profile, not a hardware profile"),
    ("calibrate-results-unknown-model", "calibrate --engine-results "
     f"{FIX}/engines/vllm_bench_serve_llama-3.1-8b_c8.json --model llama-9 --out {{t}}/c", "unknown model 'llama-9'"),
    ("calibrate-opdb-missing", "calibrate --op-db {t}/nope --gpu h100-sxm --engine vllm --out {t}/c",
     "per-op database"),
    ("calibrate-opdb-empty", "calibrate --op-db {t}/emptydir --gpu h100-sxm --engine vllm --out {t}/c",
     "no <system>/<op>/<backend>/<version>/ folders"),
    ("calibrate-opdb-without-engine", f"calibrate --op-db {FIX}/opdb/db --gpu h100-sxm --out {{t}}/c",
     "--op-db needs --gpu GPU and --engine"),
    ("calibrate-opdb-unknown-version", f"calibrate --op-db {FIX}/opdb/db --gpu h100-sxm --engine vllm "
     "--engine-version 9.9 --out {t}/c", "--engine-version 9.9"),
    # A file given to --from is --from's mistake (it was blamed on --out, which defaults to it).
    ("calibrate-from-file", "calibrate --from {t}/afile", "--from {t}/afile: a file, not a run directory"),
    ("calibrate-from-file-with-out", "calibrate --from {t}/afile --out {t}/c",
     "--from {t}/afile: a file, not a run directory"),
    # --gpu without files to read measured this CPU and labelled nothing (the flag was dropped):
    # a published GPU's name over this node's measurements would be wrong either way.
    ("calibrate-gpu-without-files", "calibrate --gpu h100-sxm --out {t}/c",
     "--gpu h100-sxm names a published GPU whose files are missing"),
    ("calibrate-gpu-with-from-alone", "calibrate --from {t}/emptydir --gpu h100-sxm", "--gpu h100-sxm"),
    ("calibrate-model-without-results", "calibrate --device cpu --model llama-3-8b --out {t}/c",
     "--model: only with --engine-results"),
    # The path exists but is not a file / not a folder: say so (it was "no such file/folder").
    ("calibrate-nccl-is-folder", "calibrate --nccl-tests {t}/adir --gpu h100-sxm --out {t}/c",
     "adir: a folder, not a file"),
    ("calibrate-nccl-is-device", "calibrate --nccl-tests /dev/null --gpu h100-sxm --out {t}/c",
     "/dev/null: a device, pipe or socket, not a file"),
    ("calibrate-opdb-is-file", "calibrate --op-db {t}/afile --gpu h100-sxm --engine vllm --out {t}/c",
     "per-op database {t}/afile: a file, not a folder"),
    # -- report --------------------------------------------------------------------------------
    ("report-missing", "report {t}/nope", "nope"),
    ("report-file", "report {t}/afile", "afile: a file, not a run directory"),
    ("report-empty-folder", "report {t}/emptydir", "emptydir"),
    ("report-truncated-manifest", "report {t}/badrun", "manifest.json: not valid JSON"),
    ("report-list-manifest", "report {t}/listrun", "manifest.json: not a run manifest"),
    ("report-no-run-dir", "report", "RUN_DIR"),
    ("report-fit-without-fields", "report {t}/badfit", "fits[0] is not a fit as `inferecon calibrate` writes it"),
    ("report-binary-regress-md", "report {t}/binreport", "regress.md: not a text file"),  # was a traceback
    ("report-broken-csv", "report {t}/badcsv", "validation.csv: not a readable CSV"),  # was a traceback
    ("report-out-empty", "report {t}/adir --out ''", "--out is empty"),
    ("report-out-is-folder", "report {t}/adir --out {t}/emptydir", "a directory, not a file"),
    # -- an empty or blank name or path (`--gpu "$GPU"` with the variable unset) ----------------
    # It was read as absent: predict priced the default H100 (--gpu '', --hardware ''), dropped
    # the draft or the engine, calibrate --from '' measured the node instead of refitting, and
    # paths became the current folder ("config.json: no such config.json", ". is not a run").
    ("predict-model-empty", "predict --model ''", "argument --model: names nothing"),
    ("predict-gpu-empty", "predict --model llama-3-8b --gpu ''", "argument --gpu: names nothing"),
    ("predict-hardware-blank", "predict --model llama-3-8b --hardware ' '", "argument --hardware: names nothing"),
    ("predict-engine-name-empty", "predict --model llama-3-8b --engine ''", "argument --engine: names nothing"),
    ("predict-draft-empty", "predict --model llama-3-70b --spec-decode ''", "argument --spec-decode: names nothing"),
    ("frontier-draft-empty", "frontier --model llama-3-70b --spec-decode '' --out {t}/f",
     "argument --spec-decode: names nothing"),
    ("frontier-engine-empty", "frontier --model llama-3-70b --engine '' --out {t}/f", "argument --engine: names nothing"),
    ("calibrate-from-empty", "calibrate --from '' --out {t}/c", "argument --from: names nothing"),
    ("calibrate-nccl-name-empty", "calibrate --nccl-tests '' --gpu h100-sxm --out {t}/c", "argument --nccl-tests: names nothing"),
    ("validate-published-empty", "validate --hardware {t}/cpu_profile.json --model tiny-llama --published ''",
     "argument --published: names nothing"),
    ("validate-model-empty", "validate --hardware {t}/cpu_profile.json --model ''", "argument --model: names nothing"),
    ("regress-baseline-empty", "regress --baseline '' --candidate {t}/adir", "argument --baseline: names nothing"),
    # --out '' wrote to the default folder (frontier and report refused it already).
    ("calibrate-out-empty", "calibrate --from {t}/emptydir --out ''", "argument --out: names nothing"),
    ("validate-out-empty", "validate --hardware {t}/cpu_profile.json --model tiny-llama --out ''",
     "argument --out: names nothing"),
    ("bench-out-empty", "bench launch --device cpu --out ''", "argument --out: names nothing"),
    ("regress-out-empty", "regress --baseline {t}/adir --candidate {t}/emptydir --out ''", "argument --out: names nothing"),
    ("validate-batch-empty", "validate --hardware {t}/cpu_profile.json --model tiny-llama --batch ''",
     "argument --batch: no batch sizes given"),  # was the default sizes, measured
    ("validate-engine-results-with-empty-context", "validate --engine-results {t}/notjson.txt --context ''",
     "--context apply to a decode run only"),
    ("report-run-dir-empty", "report ''", "names nothing: give a run directory"),
    # predict prices one deployment: a comma list is frontier's way of naming several.
    ("predict-two-models", "predict --model llama-3-70b,llama-3-8b",
     "--model llama-3-70b,llama-3-8b: predict prices one model; `inferecon frontier"),
    ("predict-two-gpus", "predict --model llama-3-8b --gpu h100,h200", "--gpu h100,h200: predict prices one GPU"),
    # A load on weights that leave no KV cache: Llama 3 70B at 16 bits is 70.55e9 x 2 B = 141.1 GB on
    # one 80 GB H100. It said "needs more KV cache than the 141 GB usable per GPU holds" (the
    # weights' size as the usable memory).
    ("predict-load-weights-beyond-hbm", "predict --model llama-3-70b --tp 1 --input-len 1000 --output-len 100 "
     "--concurrency 3", "--concurrency 3: llama-3-70b's weights, 141.1 GB per GPU at tp 1, pp 1, ep 1, leave no KV "
     "cache in 80 GB of HBM"),
    ("predict-rate-weights-beyond-hbm", "predict --model llama-3-70b --tp 1 --input-len 1000 --output-len 100 "
     "--request-rate 1 --disaggregated 1,1", "--request-rate 1: llama-3-70b's weights, 141.1 GB per GPU"),
    # A negative fraction is said as typed (it was "--tolerance -300%").
    ("regress-tolerance-negative-fraction", "regress --baseline {t}/adir --candidate {t}/emptydir --tolerance -3",
     "--tolerance '-3': must be 0 or more"),
    # A file given to the wrong flag says what it is and where it goes (a config.json as --hardware
    # said "schema_version None, this inferecon reads version 1"; a profile as --model "missing hidden_size").
    ("predict-hardware-is-config", "predict --model llama-3-8b --hardware {t}/llama8k/config.json",
     "looks like a model config.json, not a hardware profile: pass it as --model"),
    ("frontier-hardware-is-config", "frontier --model llama-3-8b --hardware {t}/llama8k/config.json --out {t}/f",
     "looks like a model config.json, not a hardware profile: pass it as --model"),
    ("predict-engine-is-config", "predict --model llama-3-8b --engine {t}/llama8k/config.json",
     "looks like a model config.json, not an engine profile: pass it as --model"),
    ("predict-model-is-hardware-profile", "predict --model {t}/profile.json",
     "looks like a hardware profile, not a model config.json: pass it as --hardware"),
    ("predict-model-is-engine-profile", "predict --model {t}/engine.json",
     "looks like an engine profile, not a model config.json: pass it as --engine"),
    ("predict-hardware-is-calibration-summary", "predict --model llama-3-8b --hardware {t}/calibration.json",
     "the hardware profile is the profile.json beside it"),
    ("predict-hardware-no-version", "predict --model llama-3-8b --hardware {t}/nover.json",
     "not a hardware profile (no schema_version field"),
    ("predict-engine-no-version", "predict --model llama-3-8b --engine {t}/nover.json",
     "not an engine profile (no schema_version field"),
    # frontier's "does not fit" names what does not fit. Llama 3 70B on 2 H100s at 131,072 tokens:
    # 141.1 GB of weights / 2 = 70.6 GB fit in 72 GB usable, the KV cache does not: 80 layers x 8 KV
    # heads x 128 x 2 (K, V) x 2 bytes x 131,072 tokens / 2 GPUs = 21.5 GB (it said "weights alone 141 GB").
    ("frontier-kv-beyond-hbm", "frontier --model llama-3-70b --max-gpus 2 --context 131072 --draws 0 --out {t}/f",
     "(tp 2, pp 1, ep 1, batch 1) needs weights 70.6 GB + KV cache 21.5 GB at context 131,072 per GPU, above the "
     "72.0 GB usable of 80 GB"),
    ("frontier-weights-beyond-hbm", "frontier --model llama-3-70b --max-gpus 1 --draws 0 --out {t}/f",
     "needs 141.1 GB of weights per GPU, above the 72.0 GB usable of 80 GB HBM per GPU"),
    # A vendor's spelling of a published GPU gets its did-you-mean (it got none: "nvidia-h100" is
    # too far from "h100-sxm" for difflib and no substring of it); as --hardware it is a name, not a file.
    ("predict-gpu-vendor-spelling", "predict --model llama-3-8b --gpu nvidia-h100",
     "unknown GPU 'nvidia-h100' (did you mean h100-sxm, h100-sxm-efa"),
    ("predict-gpu-torch-device-name", "predict --model llama-3-8b --gpu 'NVIDIA H100 80GB HBM3'",
     "(did you mean h100-sxm, h100-sxm-efa, h100-sxm-paper?)"),
    ("predict-hardware-gpu-name", "predict --model llama-3-8b --hardware nvidia-h100",
     "nvidia-h100: no such profile file (a published GPU is named with --gpu: --gpu nvidia-h100;"),
    ("frontier-hardware-published-name", "frontier --model llama-3-8b --hardware h100 --out {t}/f",
     "h100: no such profile file (a published GPU is named with --gpu: --gpu h100;"),
]

# The parser's own refusals carry the prefix every other error has (they said "inferecon predict:
# error: ..."), with the command named after it.
PREFIX_CASES = [
    ("predict", ["predict"], "inferecon: error: predict: the following arguments are required: --model"),
    ("frontier", ["frontier", "--model", "llama-3-8b", "--rows", "0"], "inferecon: error: frontier: argument --rows"),
    ("top-level", ["--bogus"], "inferecon: error: unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("argv, start", [c[1:] for c in PREFIX_CASES], ids=[c[0] for c in PREFIX_CASES])
def test_parser_errors_share_the_prefix(argv, start, capsys):
    rc, out, err = _call(argv, capsys)
    assert rc == 2 and out == "" and err.startswith(start) and len(err.splitlines()) == 1, err


def _needs_torch(request) -> bool:
    """Cases of the commands that pin torch's threads in-process before refusing."""
    argv = request.node.callspec.params.get("argv", "") if hasattr(request.node, "callspec") else "bench"
    return argv.split(" ", 1)[0] in ("validate", "bench", "calibrate")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The input files, written once; each case gets its own copy (a case may leave files)."""
    folder = tmp_path_factory.mktemp("inputs")
    _write_inputs(folder)
    return folder


@pytest.fixture
def inputs(tmp_path, monkeypatch, request, template):
    monkeypatch.chdir(tmp_path)  # default output folders land here, never in the repository
    # validate and bench pin the CPU threads in-process (harness/device.apply_cpu_threads): put
    # them back, so that no later test runs with another count.
    if "OMP_NUM_THREADS" in os.environ:  # monkeypatch puts the variable back as it was
        monkeypatch.setenv("OMP_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
    else:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch = pytest.importorskip("torch") if _needs_torch(request) else None
    threads = torch.get_num_threads() if torch is not None else None
    shutil.copytree(template, tmp_path, symlinks=True, dirs_exist_ok=True)
    yield tmp_path
    if torch is not None:
        torch.set_num_threads(threads)


def _call(argv, capsys):
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # a parser that exits by itself would be a finding too
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def _refused(rc, out, err, fragment):
    assert "Traceback" not in err, err
    assert rc == 2, f"exit {rc}; stdout: {out[-1500:]!r}; stderr: {err[-1500:]!r}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("inferecon"), lines[0]
    assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert out == "", f"stdout before the refusal: {out[-1500:]!r}"


def test_every_subcommand_is_swept():
    swept = {shlex.split(argv)[0] for _, argv, _ in CASES if argv}
    assert set(cli.COMMANDS) <= swept
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("argv, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_in_one_line(argv, fragment, inputs, capsys):
    words = [w.replace("{t}", str(inputs)) for w in shlex.split(argv)]
    _refused(*_call(words, capsys), fragment.replace("{t}", str(inputs)))


def test_out_on_a_read_only_file_system(inputs, capsys):
    from hardening_fs import read_only_dir

    with read_only_dir(inputs / "ro") as ro:
        if ro is None:
            pytest.skip("no read-only directory can be made here (root without mount)")
        for argv in (["frontier", "--model", "llama-3-8b", "--draws", "0", "--out", str(ro / "f")],
                     ["regress", "--baseline", str(inputs / "adir"), "--candidate", str(inputs / "emptydir"),
                      "--out", str(ro / "r")],
                     ["bench", "launch", "--device", "cpu", "--out", str(ro / "b")]):
            _refused(*_call(argv, capsys), str(ro))


def test_batch_beyond_hbm_is_said_not_hidden(capsys):
    """A decode batch beyond HBM is an answer with its reason (exit 0, the README's rule), never
    a figure that pretends: the row says NO, one line says what does not fit, and the request
    priced at that batch says so too. Llama 3 70B at 16 bits is 141 GB of weights: one 80 GB
    H100 cannot hold it (hand check: 70.55e9 x 2 bytes > 72 GB usable)."""
    rc, out, err = _call(["predict", "--model", "llama-3-70b", "--gpu", "h100-sxm", "--tp", "1", "--batch", "1",
                          "--draws", "0", "--input-len", "1000", "--output-len", "100"], capsys)
    assert rc == 0 and "Traceback" not in err
    assert "| NO" in out and "batch 1 does not fit:" in out
    assert "batch 1 does not fit in HBM (above): this request's TPOT and prices are of a deployment" in out


def test_compare_without_latency_answers(inputs, capsys):
    """--compare with --no-latency: both frontiers are searched under their -no-latency labels,
    and the comparison reads them under those (it looked them up under the old labels: a
    KeyError traceback)."""
    rc, out, err = _call(["frontier", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--hardware",
                          str(inputs / "cpu_profile.json"), "--compare", "--no-latency", "--draws", "0",
                          "--max-gpus", "8", "--rows", "2", "--out", str(inputs / "f")], capsys)
    assert rc == 0 and "Traceback" not in err, err
    assert "h100-sxm-no-latency (published) vs amd-epyc-calibrated [cal-cpu2]-no-latency (calibrated)" in out


def test_catalog_request_at_its_window_is_priced(capsys):
    """The bound is inclusive: Qwen3-32B's 40,960 tokens (config.json) in all is an answer."""
    rc, out, err = _call(["predict", "--model", "qwen3-32b", "--input-len", "40000", "--output-len", "960"], capsys)
    assert rc == 0, err
    assert "TTFT" in out


def test_every_catalog_model_has_its_window():
    """A catalog model without a window is priced at any length (check_window has no bound)."""
    from inferecon.model.catalog import MODELS

    assert all(m.max_context_tokens and m.max_context_tokens >= 2048 for m in MODELS.values())


@pytest.mark.slow  # about 1.5 s: a whole frontier search
def test_tiny_chunks_of_a_long_legal_prompt_answer_in_seconds(tmp_path, capsys):
    """frontier --chunk-size 2 on a 100k prompt (inside llama-3-8b's 131,072) priced 50,000
    chunks per layout for minutes; the plan is now priced in closed form (prefill.prefill_plan)."""
    import time

    started = time.monotonic()
    rc, out, err = _call(["frontier", "--model", "llama-3-8b", "--input-len", "100000", "--output-len", "10",
                          "--chunk-size", "2", "--out", str(tmp_path / "f")], capsys)
    assert rc == 0, err
    assert time.monotonic() - started < 30  # about 2 s here; it was minutes
    assert "request_frontier.csv" in out
