"""Published per-step host overheads of serving engines, by engine and version range.

A per-op database (aiconfigurator-core's tables) times kernels only, GEMMs as CUDA-graph
replays; it cannot see what an engine's host does between two decode steps (scheduling,
input preparation, moving the sampled tokens to the CPU, output processing, detokenising).
Where an engine's developers measured that time and published it, the figure is kept here
as a fact: the number, the version range it holds for, and the exact statement it comes
from. An engine or version no source gives a number for has no fact (never a guess, and
never a figure fitted to the scorecard's public points).

What each source says, and why a fact covers only what it does:
- vLLM before v0.6.0: its multi-step scheduling RFC measured the GPU idle ~4 ms per decode
  step waiting for the host; v0.6.0 (multi-step scheduling, asynchronous output processing,
  the API server in its own process) was built to remove that. The sources give no batch
  dependence in numbers (v0.6.0's post says only that output processing grows with batch),
  so the fact is one figure per step.
- vLLM v0.6.0 and later, V1, SGLang, TensorRT-LLM: their posts state the overhead was hidden
  or shares of throughput gained (SGLang v0.4's overlap scheduler: "1.1x increase in
  throughput"), never a time per step, so they have no fact.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from inferecon.model.engine import EngineProfile

_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                           "nov", "dec"))}
# A release number standing alone ("v0.5.7", "0.6.3.post1", "1.8.0 (...)"), not inside a
# model name ("llama-3.1-8b"): preceded by the start or a space, followed by an end, space, "(", "." + letters.
_RELEASE = re.compile(r"(?:^|\s)v?(\d+)\.(\d+)(?:\.(\d+))?(?=$|[\s(]|\.?[a-z])", re.IGNORECASE)
# A build of the main branch named by month: "main Mar 2024 (benchmark_latency)".
_MAIN = re.compile(r"\bmain\s+([a-z]{3})[a-z]*\.?\s+(\d{4})\b", re.IGNORECASE)


@dataclass(frozen=True)
class EngineVersion:
    """An engine version as a scorecard row or a command line names it: a release number, or
    a main-branch build by (year, month). Neither: the version is not stated (`parse` -> None)."""

    release: tuple[int, int, int] | None = None
    main_month: tuple[int, int] | None = None  # (year, month) of a main-branch build

    @classmethod
    def parse(cls, text: str | None) -> "EngineVersion | None":
        text = str(text or "").strip()
        m = _MAIN.search(text)
        if m and m.group(1).lower() in _MONTHS:
            return cls(main_month=(int(m.group(2)), _MONTHS[m.group(1).lower()]))
        m = _RELEASE.search(text)
        if m:
            return cls(release=(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)))
        return None


@dataclass(frozen=True)
class SourceQuote:
    url: str
    quote: str  # the statement, word for word ("[...]" marks a cut, "; " joins the items of a list)


@dataclass(frozen=True)
class EngineOverheadFact:
    """Host time per decode step not overlapped with the GPU, for one engine over a version
    range: releases in [release_from, release_before), main-branch builds in
    [main_from, main_through] (months, inclusive)."""

    engine: str
    release_from: tuple[int, int, int]
    release_before: tuple[int, int, int]
    main_from: tuple[int, int]
    main_through: tuple[int, int]
    step_overhead_us: float
    covers: str  # what host work the figure includes, and what it leaves out
    derivation: str  # how the figure follows from the quoted numbers
    sources: tuple[SourceQuote, ...]

    def holds_for(self, engine: str, version: EngineVersion | None) -> bool:
        if engine.strip().lower() != self.engine or version is None:
            return False
        if version.release is not None:
            return self.release_from <= version.release < self.release_before
        return self.main_from <= version.main_month <= self.main_through

    @property
    def source_line(self) -> str:
        return (f"step_overhead_us {self.step_overhead_us:g} ({self.engine} releases "
                f"{'.'.join(map(str, self.release_from))} to before {'.'.join(map(str, self.release_before))}, "
                f"main builds {self.main_from[0]}-{self.main_from[1]:02d} to {self.main_through[0]}-"
                f"{self.main_through[1]:02d}): {self.derivation}; "
                + "; ".join(f"{s.url}: \"{s.quote}\"" for s in self.sources))


VLLM_MULTI_STEP_RFC = SourceQuote(
    url="https://github.com/vllm-project/vllm/issues/6854",
    quote="Each highlighted redbox is about 4ms of GPU bubble for both images. For baseline, this overhead is "
          "incurred on every decode.")
VLLM_MULTI_STEP_RFC_WHAT = SourceQuote(
    url="https://github.com/vllm-project/vllm/issues/6854",
    quote="There is high CPU overhead associated with each decode batch due to the processing and generation of "
          "input/output. [...] Transfer of the sampled token from GPU to CPU for de-tokenization and response to "
          "client; Generation of output for user - Pythonization of tensors into python objects; CPU preparation "
          "and generation of next step's input metadata; vLLM scheduler")
# A check of the RFC's figure, not its source: v0.6.0's post profiled the engine before v0.6.0 on Llama 3 8B,
# one H100 (the RFC names no model in its text; its PR #7000 benchmarks Llama 3 8B on one H100).
VLLM_V060_PROFILE = SourceQuote(
    url="https://blog.vllm.ai/2024/09/05/perf-update.html",
    quote="29% of the total execution time is spent on scheduling, including gathering the LLM results from the "
          "last step, scheduling the requests to run for the next step, and preparing these requests as inputs for "
          "the LLMs. [...] Llama3 8B can generate 1 token every 13 ms under light load.")

VLLM_BEFORE_V060 = EngineOverheadFact(
    engine="vllm",
    # v0.6.0 (2024-09-05) shipped multi-step scheduling and asynchronous output processing; the
    # RFC (2024-07-26) profiled the engine before them. Older releases run the same synchronous
    # Python loop (the v0.6.0 post: components "execute in a synchronous manner that blocks GPU
    # execution", by the "original assumption that model execution would be much slower").
    release_from=(0, 0, 0), release_before=(0, 6, 0),
    main_from=(2023, 1), main_through=(2024, 7),
    step_overhead_us=4000.0,
    covers="the engine loop's host work per decode step (scheduler, input metadata, GPU->CPU copy of the sampled "
           "tokens, output pythonisation and detokenising); not the OpenAI API server, which the v0.6.0 post "
           "profiles separately (33% of the time in online serving)",
    derivation="the RFC's ~4 ms GPU bubble on every decode step, taken as is (4000 us); the v0.6.0 post's profile "
               "agrees: 29% scheduling of a 13 ms step is 3.8 ms",
    sources=(VLLM_MULTI_STEP_RFC, VLLM_MULTI_STEP_RFC_WHAT, VLLM_V060_PROFILE),
)

ENGINE_OVERHEAD_FACTS: tuple[EngineOverheadFact, ...] = (VLLM_BEFORE_V060,)


def overhead_fact(engine: str, version_text: str | None) -> EngineOverheadFact | None:
    """The published per-step host overhead of `engine` at the version `version_text` names
    ("v0.5.3", "main Mar 2024 (...)"), or None where no source gives one."""
    version = EngineVersion.parse(version_text)
    return next((f for f in ENGINE_OVERHEAD_FACTS if f.holds_for(engine, version)), None)


def with_overhead(engine: EngineProfile, fact: EngineOverheadFact | None) -> EngineProfile:
    """`engine` with the fact's host time added to its per-step overhead, the fact named among
    its sources; unchanged without a fact, or where its sources already name it (an op-DB
    engine.json that calibrate wrote with the fact: adding it again would count it twice)."""
    if fact is None or fact.source_line in engine.sources:
        return engine
    return dataclasses.replace(engine, step_overhead_us=engine.step_overhead_us + fact.step_overhead_us,
                               sources=list(engine.sources) + [fact.source_line],
                               notes=list(engine.notes) + [f"host overhead per step: {fact.covers}"])
