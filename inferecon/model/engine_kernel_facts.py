"""Published facts about the kernels an engine version ran, where they differ from the kernels a
per-op database measured (its tables time today's kernels of each backend).

One fact so far: TensorRT-LLM's decode attention before its XQA kernel.
- At v0.6.1 (the commit the v0.5/v0.6 performance tables are read from), docs/source/
  gpt_attention.md names one generation-phase kernel, the masked multi-head attention, whose
  plain form "uses a single CUDA thread-block per head", and no other. A grouped-query model's
  query heads that share a KV head each read it, so a step reads the KV cache n_heads /
  n_kv_heads times (8 for Llama 2 70B) where a grouped kernel reads it once.
- NVIDIA's XQA post ("New XQA-kernel provides 2.4x more Llama-70B throughput within the same
  latency budget") introduced the grouped kernel, "reducing data loading", to be "included in
  the v0.8 releases", and measured Llama-70B on one H200 at 128/2048: 1,227 out tok/s/GPU
  without XQA, 2,941 with it (2.4x). The Falcon-180B H200 post's v0.7a figure for the same
  deployment is 2,941: that pre-release had XQA.
So the fact holds for the releases before 0.7 (0.5.x, 0.6.x), where the sources show the
per-head kernel only; 0.7.x releases are not covered (neither source says which kernel they
ran). The full re-read is an upper bound: the re-reads of one KV head may hit in L2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from inferecon.model.engine import EngineProfile
from inferecon.model.engine_overheads import EngineVersion, SourceQuote


@dataclass(frozen=True)
class KernelFact:
    """What an engine's kernels did over a release range [release_from, release_before): the
    EngineProfile fields it sets, and the statements it comes from."""

    engine: str
    release_from: tuple[int, int, int]
    release_before: tuple[int, int, int]
    sets: tuple[tuple[str, object], ...]  # (EngineProfile field, value)
    label: str  # a few words for tables ("pre-XQA attention")
    derivation: str
    sources: tuple[SourceQuote, ...]

    def holds_for(self, engine: str, version: EngineVersion | None) -> bool:
        return (engine.strip().lower() == self.engine and version is not None and version.release is not None
                and self.release_from <= version.release < self.release_before)

    @property
    def source_line(self) -> str:
        fields = ", ".join(f"{k} {v}" for k, v in self.sets)
        return (f"{fields} ({self.engine} releases {'.'.join(map(str, self.release_from))} to before "
                f"{'.'.join(map(str, self.release_before))}): {self.derivation}; "
                + "; ".join(f"{s.url}: \"{s.quote}\"" for s in self.sources))


TRTLLM_V061_ATTENTION_DOC = SourceQuote(
    url="https://github.com/NVIDIA/TensorRT-LLM/blob/138f96d45f90b9667426f7c47297d8c06bafac73/docs/source/"
        "gpt_attention.md",
    quote="The generation phase is implemented using a single kernel, called the masked multihead attention in "
          "TensorRT-LLM. [...] the \"vanilla\" implementation that uses a single CUDA thread-block per head.")
TRTLLM_XQA_POST = SourceQuote(
    url="https://github.com/NVIDIA/TensorRT-LLM/blob/585c756579dc4d01f21fc13c2f604cdb461ac4f0/docs/source/blogs/"
        "XQA-kernel.md",
    quote="Using tensor cores for acceleration, reducing data loading and conversion, it delivers increased "
          "throughput within the same latency budget. [...] Llama-70B | 1 | 128 | 2048 | 1,227 | 2,941 | 2.4x "
          "[...] These improvements will be published in the `main` branch soon, and will be included in the v0.8 "
          "releases.")

TRTLLM_BEFORE_XQA = KernelFact(
    engine="trtllm",
    release_from=(0, 0, 0), release_before=(0, 7, 0),
    sets=(("kv_reread_per_query_head", True),),
    label="pre-XQA attention",
    derivation="decode attention ran one thread block per query head, so a grouped-query model's KV cache is read "
               "once per query head (n_heads / n_kv_heads times); XQA, which reads each KV head once, came after "
               "(2.4x Llama-70B throughput on one H200 by NVIDIA's post: 1,227 -> 2,941 tok/s/GPU)",
    sources=(TRTLLM_V061_ATTENTION_DOC, TRTLLM_XQA_POST),
)

KERNEL_FACTS: tuple[KernelFact, ...] = (TRTLLM_BEFORE_XQA,)


def kernel_facts(engine: str, version_text: str | None) -> tuple[KernelFact, ...]:
    """The published kernel facts of `engine` at the version `version_text` names; () where none."""
    version = EngineVersion.parse(version_text)
    return tuple(f for f in KERNEL_FACTS if f.holds_for(engine, version))


def with_kernel_facts(engine: EngineProfile, facts: tuple[KernelFact, ...]) -> EngineProfile:
    """`engine` with each fact's fields set and the fact named among its sources; unchanged where
    there is none or its sources name them already."""
    new = [f for f in facts if f.source_line not in engine.sources]
    if not new:
        return engine
    values = {k: v for f in new for k, v in f.sets}
    return dataclasses.replace(engine, **values, sources=list(engine.sources) + [f.source_line for f in new],
                               notes=list(engine.notes) + [f"kernel fact: {f.label} ({f.derivation})" for f in new])
