"""How a public point is priced, the same in both scorecards (benchmarks/accuracy.py, decode;
benchmarks/ttft_accuracy.py, TTFT and serving TPOT): the per-op database backend whose tables
price its engine, its model (a config.json written for the scorecard, else the catalog), its
weight format on the op-DB profile, the published host overhead of its engine version, and the
engine a point run without CUDA graphs is priced with; the modules its deployment keeps in 16
bit (kept_model: the decode scorecard so far). The op-DB profiles themselves are
`calibrate --op-db`'s, built and cached by inferecon.calibration.opdb_profiles."""

from __future__ import annotations

import re
from pathlib import Path

from inferecon.model.catalog import get_model
from inferecon.model.engine import EngineProfile, get_engine
from inferecon.model.spec import ModelSpec

CONFIG_DIR = Path(__file__).resolve().parent / "data" / "configs"

# Engine -> the per-op database backend whose tables price it, and why where it is not the engine
# itself. The same substitutions as the aiconfigurator column (benchmarks/aiconfigurator_estimates.py),
# so the two are scored on equal footing: NIM 1.8 runs TensorRT-LLM; lmdeploy, gpt-fast and AutoAWQ
# have no tables of their own and are priced with TensorRT-LLM's, the one A100 database with
# weight-only INT8/INT4 GEMMs measured.
OPDB_BACKEND = {
    "vllm": ("vllm", ""), "sglang": ("sglang", ""), "trtllm": ("trtllm", ""),
    "nim": ("trtllm", "NIM's TensorRT-LLM backend"),
    "lmdeploy": ("trtllm", "lmdeploy (TurboMind) has no tables: priced with TensorRT-LLM's"),
    "gpt-fast": ("trtllm", "gpt-fast has no tables: priced with TensorRT-LLM's"),
    "autoawq": ("trtllm", "AutoAWQ has no tables: priced with TensorRT-LLM's"),
}

# What a point's notes say when its engine ran without CUDA graphs (vLLM --enforce-eager,
# eager PyTorch under Hugging Face generate / AutoAWQ): every kernel is launched from the host.
EAGER_NOTE = r"enforce-eager|eager pytorch|no cuda graphs"


def resolve_model(name: str) -> ModelSpec:
    """A config.json written for the scorecard (benchmarks/data/configs/<name>.json), else the
    catalog."""
    path = CONFIG_DIR / f"{name}.json"
    if path.is_file():
        return ModelSpec.from_hf_config(path, name=name)
    return get_model(name)


def opdb_model(model: ModelSpec, label: str) -> ModelSpec:
    """The point's weights in the format its precision label names (int8 weight-only, AWQ ...),
    where the model has no named format of those bits already (DeepSeek-V3's block-scaled FP8)."""
    from inferecon.model.quant import parse_format_label

    fmt = parse_format_label(label)
    if model.weight_format or fmt is None or fmt.weight_bits != model.weight_bits:
        return model
    return model.with_format(fmt.name)


def kept_model(model: ModelSpec, engine_name: str, notes, engine_version: str = "") -> ModelSpec:
    """The point's quantised model with the modules its deployment keeps in 16 bit: the rule
    predict and frontier apply (quant.deployed_model), with the checkpoint its notes name."""
    from inferecon.model.quant import deployed_model

    return deployed_model(model, engine_name, engine_version, notes)


def with_host_overhead(engine: EngineProfile, engine_name: str, engine_version: str):
    """(engine profile, the fact added or None): the op-DB tables time kernels only, so a published
    host overhead of the point's own engine version (model/engine_overheads.py) is added to the step;
    none where no source gives one, or where the fit added that fact already."""
    from inferecon.model.engine_overheads import overhead_fact, with_overhead

    fact = overhead_fact(engine_name, engine_version)
    priced = with_overhead(engine, fact)
    return priced, (fact if priced is not engine else None)


def with_engine_facts(engine: EngineProfile, engine_name: str, engine_version: str):
    """(engine profile, a label of the facts added, '' if none): the point's engine version's
    published host overhead (with_host_overhead) and kernel facts (model/engine_kernel_facts.py:
    the kernels that version ran where the tables time newer ones)."""
    from inferecon.model.engine_kernel_facts import kernel_facts, with_kernel_facts

    priced, fact = with_host_overhead(engine, engine_name, engine_version)
    kernels = kernel_facts(engine_name, engine_version)
    with_kernels = with_kernel_facts(priced, kernels)
    parts = ([f"host {fact.step_overhead_us / 1000:g} ms/step"] if fact else []) + \
        ([k.label for k in kernels] if with_kernels is not priced else [])
    return with_kernels, ", ".join(parts)


def runs_eagerly(notes) -> bool:
    """Whether a point's notes say its engine ran without CUDA graphs."""
    return bool(re.search(EAGER_NOTE, str(notes or "").lower()))


def scheduler_steps(engine_version) -> int:
    """Decode steps per scheduling round a point's engine ran: vLLM V0's `--num-scheduler-steps N`
    where its engine_version names the flag (the flag the source ran with), else 1."""
    m = re.search(r"--num-scheduler-steps[ =](\d+)", str(engine_version or ""))
    return int(m.group(1)) if m else 1


def overlap_schedule(engine_name, engine_version) -> bool | None:
    """Whether a point's engine version ran an overlap scheduler, where its version says
    otherwise than the engine profile's default (serving.engine_overlaps): SGLang before v0.4,
    which introduced it on by default (lmsys.org/blog/2024-12-04-sglang-v0-4), did not. None:
    the profile's default."""
    from inferecon.model.engine_overheads import EngineVersion

    v = EngineVersion.parse(engine_version)
    if str(engine_name).lower() == "sglang" and v is not None and v.release is not None and v.release < (0, 4, 0):
        return False
    return None


def eager_engine(engine: EngineProfile | None) -> EngineProfile:
    """The engine a point without CUDA graphs is priced with: the built-in 'eager' engine (the
    host's launch time per kernel x the kernels of a layer, model/engine.py), or a fitted engine
    run eagerly (EngineProfile.run_eagerly) -- its own figures plus that host floor."""
    return get_engine("eager") if engine is None else engine.run_eagerly()
