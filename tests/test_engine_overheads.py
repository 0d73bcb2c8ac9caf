"""Published per-step host overheads (model/engine_overheads.py): each figure follows by hand from
the numbers in its quoted source, and a figure is chosen by engine and version range."""

import re

import pytest

from inferecon.model.engine import EngineProfile
from inferecon.model.engine_overheads import (VLLM_BEFORE_V060, VLLM_MULTI_STEP_RFC, VLLM_V060_PROFILE,
                                              EngineVersion, overhead_fact, with_overhead)


def test_vllm_figure_is_the_rfcs_bubble_per_decode():
    # The RFC: "about 4ms of GPU bubble", "incurred on every decode" -> 4 ms = 4000 us per step.
    ms = float(re.search(r"about (\d+(?:\.\d+)?)ms of GPU bubble", VLLM_MULTI_STEP_RFC.quote).group(1))
    assert "every decode" in VLLM_MULTI_STEP_RFC.quote
    assert VLLM_BEFORE_V060.step_overhead_us == pytest.approx(ms * 1000.0)


def test_vllm_figure_agrees_with_the_v060_profile():
    # v0.6.0's post, same engine and model: 29% scheduling of a 13 ms token = 3.77 ms, within 10% of 4 ms.
    share = float(re.search(r"(\d+)% of the total execution time is spent on scheduling", VLLM_V060_PROFILE.quote)
                  .group(1)) / 100.0
    step_ms = float(re.search(r"1 token every (\d+) ms", VLLM_V060_PROFILE.quote).group(1))
    assert share * step_ms == pytest.approx(3.77)
    assert share * step_ms * 1000.0 == pytest.approx(VLLM_BEFORE_V060.step_overhead_us, rel=0.10)


@pytest.mark.parametrize("text, release, month", [
    ("v0.5.3", (0, 5, 3), None),
    ("0.6.3.post1", (0, 6, 3), None),
    ("v0.9.1 (--enforce-eager)", (0, 9, 1), None),
    ("NIM llama-3.1-8b-instruct 1.8.0 (TensorRT-LLM backend)", (1, 8, 0), None),
    ("main Mar 2024 (benchmark_latency; the PR's main-branch rows)", None, (2024, 3)),
    ("main August 2025 (benchmark_serving)", None, (2025, 8)),
])
def test_version_parsing(text, release, month):
    assert EngineVersion.parse(text) == EngineVersion(release=release, main_month=month)


@pytest.mark.parametrize("text", ["not stated (tt-inference-server GPU reference run)",
                                  "main (performance-benchmark CI build 9513; benchmark_latency)", "", None])
def test_unstated_version_parses_to_none(text):
    assert EngineVersion.parse(text) is None


@pytest.mark.parametrize("engine, text, has_fact", [
    ("vllm", "v0.5.3", True),
    ("vLLM", "v0.4.0.post1", True),
    ("vllm", "v0.5.99", True),
    ("vllm", "v0.6.0", False),  # multi-step scheduling and async output processing shipped
    ("vllm", "v0.10.1", False),
    ("vllm", "main Mar 2024 (benchmark_latency)", True),
    ("vllm", "main Jul 2024", True),  # the RFC's month: the engine it profiled
    ("vllm", "main Aug 2024", False),
    ("vllm", "main Aug 2025 (benchmark_latency)", False),
    ("vllm", "not stated", False),  # no version, no figure
    ("sglang", "v0.3.0", False),  # no source gives SGLang a time per step
    ("trtllm", "0.11.0", False),
])
def test_version_range_selection(engine, text, has_fact):
    assert (overhead_fact(engine, text) is VLLM_BEFORE_V060) == has_fact


def test_with_overhead_adds_the_fact_and_names_its_source():
    base = EngineProfile(name="vllm", step_overhead_us=100.0, sources=["tables"])
    got = with_overhead(base, VLLM_BEFORE_V060)
    assert got.step_overhead_us == pytest.approx(4100.0)
    assert got.sources[0] == "tables" and "github.com/vllm-project/vllm/issues/6854" in got.sources[1]
    assert with_overhead(base, None) is base


def test_with_overhead_never_adds_a_fact_twice():
    # 100 us of the engine's own + 4 ms of the RFC's fact = 4100 us, once: an engine.json that
    # calibrate --op-db wrote with the fact already named must not be charged it a second time.
    base = EngineProfile(name="vllm", step_overhead_us=100.0, sources=["tables"])
    once = with_overhead(base, VLLM_BEFORE_V060)
    again = with_overhead(once, VLLM_BEFORE_V060)
    assert again is once and again.step_overhead_us == pytest.approx(4100.0)
