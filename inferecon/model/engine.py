"""What a serving engine adds to the hardware's decode step (DESIGN.md, "engine overhead").

An engine (vLLM, SGLang, TensorRT-LLM …) pays per decode step for scheduling, sampling and
launches outside a CUDA graph, per layer for launches outside a graph, per sequence of the
batch for the host work each request adds (its inputs, sampling, detokenising), and its
quantised kernels read weights below the HBM bandwidth a plain copy reaches.
`EngineProfile` holds those things; the cost model
(`evaluate(..., engine=...)`) adds them to every configuration. Fitting one from an engine's
own benchmark results lives in calibration/engine_fit.py; this module is plain data, saved as
schema-versioned JSON like the HardwareProfile.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inferecon.core.errors import UserError, load_json

ENGINE_SCHEMA_VERSION = 1
# Weight formats an efficiency can be given for, by bits per weight: 16-bit (bf16/fp16),
# 8-bit (FP8 or INT8) and 4-bit (AWQ, GPTQ, NVFP4 …).
WEIGHT_FORMATS = ("16", "8", "4")

# The kinds of parameter an engine profile has; a weight-read efficiency is one per format.
STEP_OVERHEAD_US = "step_overhead_us"
PER_LAYER_US = "per_layer_us"
PER_SEQUENCE_US = "per_sequence_us"
WEIGHT_READ_EFFICIENCY = "weight_read_efficiency"
PARAM_KINDS = (STEP_OVERHEAD_US, PER_LAYER_US, PER_SEQUENCE_US, WEIGHT_READ_EFFICIENCY)
# The overheads, in microseconds: each is checked and read the same way.
_OVERHEAD_FIELDS = ("step_overhead_us", "per_layer_us", "per_sequence_us", "host_launch_us",
                    "host_kernels_per_layer")
_KEY = re.compile(r"^weight_read_efficiency\[(\d+)\]$")
# Beyond these a saved figure is a unit slip or a typo, not an engine, and the cost model would
# print it as a speed (a 1e300 us launch overflows the step time to inf, then a ZeroDivisionError).
# 10 s per step, layer or launch: the bound every microsecond figure of a hardware profile has
# (model/profile_checks.py). Kernels per layer: a decoder layer launches tens (42 counted,
# HF_LLAMA_KERNELS_PER_LAYER below). Weight-read efficiency is relative to the hardware profile's
# memory term, so above 1 is possible (a CPU's bf16 kernels fitted 2.0 against its fp32 profile,
# issue 21); 100 x is beyond any kernel.
MAX_OVERHEAD_US = 1e7
MAX_KERNELS_PER_LAYER = 1e4
MAX_WEIGHT_READ_EFFICIENCY = 100.0


@dataclass(frozen=True)
class EngineParam:
    """One parameter of an engine profile: a kind, and for a weight-read efficiency the weight
    bits it is for. Fits and draws address parameters by this, never by a parsed string; the
    string `key` ("per_layer_us", "weight_read_efficiency[8]") is only how a fit's quality
    record names it in engine.json, read back by `from_key`."""

    kind: str
    bits: int | None = None

    def __post_init__(self):
        if self.kind not in PARAM_KINDS:
            raise UserError(f"engine parameter {self.kind!r} is not one of {', '.join(PARAM_KINDS)}")
        if (self.kind == WEIGHT_READ_EFFICIENCY) != (self.bits is not None):
            raise UserError(f"engine parameter {self.kind}: weight bits are given for (and only for) "
                            f"a weight-read efficiency")
        if self.bits is not None and str(self.bits) not in WEIGHT_FORMATS:
            raise UserError(f"engine parameter {self.kind}: {self.bits} is not one of {', '.join(WEIGHT_FORMATS)} "
                            f"(bits per weight)")

    @classmethod
    def efficiency(cls, bits: int | str) -> "EngineParam":
        return cls(WEIGHT_READ_EFFICIENCY, int(bits))

    @property
    def is_efficiency(self) -> bool:
        return self.kind == WEIGHT_READ_EFFICIENCY

    @property
    def key(self) -> str:
        return f"{self.kind}[{self.bits}]" if self.is_efficiency else self.kind

    @classmethod
    def from_key(cls, key: str) -> "EngineParam":
        m = _KEY.match(key)
        if m:
            return cls.efficiency(int(m.group(1)))
        return cls(key)

    def value_in(self, engine: "EngineProfile"):
        """This parameter's value in `engine` (an efficiency not given is 1: no loss)."""
        if self.is_efficiency:
            return engine.weight_efficiency(self.bits)
        return getattr(engine, self.kind)

    def set_in(self, engine: "EngineProfile", value) -> "EngineProfile":
        """A new profile with this parameter at `value` (a number, or an array with one value per
        configuration: a draw of the parameter, model/uncertainty.py)."""
        if self.is_efficiency:
            eff = dict(engine.weight_read_efficiency, **{str(self.bits): value})
            return dataclasses.replace(engine, weight_read_efficiency=eff)
        return dataclasses.replace(engine, **{self.kind: value})


def _valid(value, low: float, strict: bool, high: float = math.inf) -> bool:
    """A finite number (or an array of them, one per configuration) above `low`, at most `high`."""
    if isinstance(value, bool):
        return False
    if isinstance(value, np.ndarray):
        v = value.astype(float)
        return bool(np.all(np.isfinite(v)) and np.all(v > low if strict else v >= low) and np.all(v <= high))
    return (isinstance(value, (int, float)) and math.isfinite(value) and (value > low if strict else value >= low)
            and value <= high)


def _check_text_fields(data: dict, source: str) -> None:
    """The saved fields the cost model reads as text or as the fit's record: of the types written
    (a hardware name is split on commas; fit_quality's parameters are drawn from in bands)."""
    if not isinstance(data.get("hardware", ""), str):
        raise UserError(f"{source}: hardware must be a string (the hardware profile fitted against)")
    for key in ("sources", "notes"):
        value = data.get(key, [])
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise UserError(f"{source}: {key} must be a list of strings")
    quality = data.get("fit_quality", {})
    params = quality.get("parameters", {}) if isinstance(quality, dict) else None
    if not isinstance(params, dict) or not all(isinstance(p, dict) for p in params.values()):
        raise UserError(f"{source}: fit_quality must be an object whose parameters are objects "
                        "(as `inferecon calibrate --engine-results` writes it)")
    for key in params:
        try:
            EngineParam.from_key(key)
        except UserError as exc:
            raise UserError(f"{source}: fit_quality: {exc}") from None


@dataclass(frozen=True)
class EngineProfile:
    name: str  # e.g. "vllm", "sglang", "trtllm"
    # The three parameters are numbers in a saved profile; a draw of them (model/uncertainty.py)
    # is the same profile with arrays, one value per configuration the cost model prices.
    step_overhead_us: float | np.ndarray = 0.0  # per decode step, not overlapped with GPU work
    per_layer_us: float | np.ndarray = 0.0  # per transformer layer per step (launches not in a graph)
    # Per sequence a step decodes, per step: the host work that grows with the batch (building
    # each request's inputs, sampling it, detokenising and streaming its token). vLLM's CPU
    # build spends 0.16-0.60 ms a sequence on its null models (issue 21); 0 = none measured.
    per_sequence_us: float | np.ndarray = 0.0
    # Achieved weight-read bandwidth of the engine's kernels as a share of what the hardware
    # profile's memory term assumes, by weight bits ("16", "8", "4"); 1.0 = no loss.
    weight_read_efficiency: dict[str, float | np.ndarray] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The hardware profile the fit was made against: the overheads are relative to it.
    hardware: str = ""
    # Held-out error and per-parameter status of the fit that made this profile.
    fit_quality: dict[str, Any] = field(default_factory=dict)
    schema_version: int = ENGINE_SCHEMA_VERSION
    # What the engine adds around its kernels, fitted from a per-op measurement database
    # (model/opfits.py EngineOpFits); None on profiles fitted from benchmark results alone.
    op_fits: Any = None
    # An engine that runs without CUDA graphs (Hugging Face generate, AutoAWQ, vLLM
    # --enforce-eager) issues every kernel of every layer from the host: the host's time per
    # kernel launch, and the kernels one decoder layer launches. A step then takes at least
    # their product over every layer, however fast the GPU is (terms.evaluate). 0: the engine
    # replays its decode step as one captured graph and the host launches nothing per kernel.
    host_launch_us: float = 0.0
    host_kernels_per_layer: float = 0.0
    # A decode-attention kernel with one thread block per *query* head (TensorRT-LLM's masked
    # MHA before its XQA kernel, model/engine_kernel_facts.py) reads a grouped-query model's KV
    # head once for every query head that shares it: n_heads / n_kv_heads times the cache a step
    # reads. False: each KV head is read once (XQA, FlashInfer, FlashAttention, the op tables).
    kv_reread_per_query_head: bool = False

    @property
    def host_us_per_layer(self) -> float:
        return float(self.host_launch_us) * float(self.host_kernels_per_layer)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise UserError(f"engine profile: name must be a non-empty string, got {self.name!r}")
        for name in _OVERHEAD_FIELDS:
            value = getattr(self, name)
            high = MAX_KERNELS_PER_LAYER if name == "host_kernels_per_layer" else MAX_OVERHEAD_US
            if not _valid(value, 0.0, strict=False):
                raise UserError(f"engine profile {self.name!r}: {name} must be a finite number >= 0, got {value!r}")
            if not _valid(value, 0.0, strict=False, high=high):
                raise UserError(f"engine profile {self.name!r}: {name} {value!r} is above {high:g}: a unit slip or "
                                "a typo, not an engine")
        if not isinstance(self.kv_reread_per_query_head, (bool, np.bool_)):
            raise UserError(f"engine profile {self.name!r}: kv_reread_per_query_head must be true or false, got "
                            f"{self.kv_reread_per_query_head!r}")
        for bits, eff in self.weight_read_efficiency.items():
            if str(bits) not in WEIGHT_FORMATS:
                raise UserError(f"engine profile {self.name!r}: weight_read_efficiency key {bits!r} is not one of "
                                f"{', '.join(WEIGHT_FORMATS)} (bits per weight)")
            if not _valid(eff, 0.0, strict=True):
                raise UserError(f"engine profile {self.name!r}: weight_read_efficiency[{bits}] must be > 0, got {eff!r}")
            if not _valid(eff, 0.0, strict=True, high=MAX_WEIGHT_READ_EFFICIENCY):
                raise UserError(f"engine profile {self.name!r}: weight_read_efficiency[{bits}] {eff!r} is above "
                                f"{MAX_WEIGHT_READ_EFFICIENCY:g} times the hardware profile's bandwidth: a typo")

    def weight_efficiency(self, weight_bits: int) -> float | np.ndarray:
        value = self.weight_read_efficiency.get(str(int(weight_bits)), 1.0)
        return value if isinstance(value, np.ndarray) else float(value)

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        from inferecon.core.outpath import write_text

        path = Path(path)
        # atomic: a reader never sees half a profile, a full disk keeps the previous one
        write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: Any, source: str = "engine profile") -> "EngineProfile":
        if not isinstance(data, dict):
            raise UserError(f"{source}: not a JSON object")
        from inferecon.model.file_kinds import ENGINE, check_kind

        # A hardware profile shares schema_version and name with an engine profile: read as one,
        # it would be an engine of zero overheads, priced without a word.
        check_kind(data, ENGINE, source, hint=" (an engine profile comes from `inferecon calibrate "
                   "--engine-results` or --op-db)")
        version = data.get("schema_version")
        if version is None:  # no known kind of file, and no version: not an engine profile of any age
            raise UserError(f"{source}: not an engine profile (no schema_version field; an engine profile is the "
                            "engine.json that `inferecon calibrate --engine-results` or --op-db writes)")
        if version != ENGINE_SCHEMA_VERSION:
            raise UserError(f"{source}: engine profile schema_version {version!r}, "
                            f"this inferecon reads version {ENGINE_SCHEMA_VERSION}")
        if "name" not in data:
            raise UserError(f"{source}: missing field 'name'")
        _check_text_fields(data, source)
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            values = {k: v for k, v in data.items() if k in known}
            values["weight_read_efficiency"] = {str(k): float(v) for k, v in
                                                dict(values.get("weight_read_efficiency") or {}).items()}
            for k in _OVERHEAD_FIELDS:
                if isinstance(values.get(k), (bool, str)):  # float() would take true as 1 and "4" as 4
                    raise UserError(f"{source}: {k} must be a number, got {values[k]!r}")
                if k in values:
                    values[k] = float(values[k])
            if values.get("op_fits") is not None:
                from inferecon.model.opfits import engine_op_fits_from_dict

                values["op_fits"] = engine_op_fits_from_dict(values["op_fits"], f"{source}: op_fits")
            profile = cls(**values)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{source}: malformed engine profile ({exc})") from None
        except UserError as exc:  # __post_init__'s checks, said with the file they came from
            raise UserError(exc if str(exc).startswith(source) else f"{source}: {exc}") from None
        return profile

    @classmethod
    def load(cls, path: str | Path) -> "EngineProfile":
        """An engine.json, or the name of a built-in engine (BUILTIN_ENGINES: `--engine eager`)
        where no file of that name exists."""
        if not Path(path).exists():
            return get_engine(str(path))
        return cls.from_dict(load_json(path, "engine profile"), source=str(path))

    def run_eagerly(self) -> "EngineProfile":
        """This engine without CUDA graphs (vLLM --enforce-eager): its own figures, and the host
        launching every kernel of every layer at the eager engine's figures."""
        eager = BUILTIN_ENGINES["eager"]
        return dataclasses.replace(self, name=f"{self.name} (eager)", host_launch_us=eager.host_launch_us,
                                   host_kernels_per_layer=eager.host_kernels_per_layer,
                                   sources=list(self.sources) + list(eager.sources))


# -- engines without CUDA graphs ------------------------------------------------------------------
# The host's time per kernel launch in an eager decode step: a Hugging Face Llama decoder layer's
# host time divided by the kernels it launches, measured on this project's own CPU (a floor of a
# GPU host's: a GPU host calls cudaLaunchKernel where the CPU run executes a 64-wide op; the same
# CPU's `inferecon bench launch` kernel_eager, one torch add_, reads 2.1-3.2 us: the dispatch
# alone, without the layer's Python).
EAGER_HOST_LAUNCH_US = 4.0
EAGER_HOST_LAUNCH_SOURCE = (
    "host time per kernel launch 4.0 us: a Hugging Face Llama decoder layer's eager decode step on this "
    "project's 2-core AMD EPYC host, 150-154 us per layer over its 38 fp32 kernels (transformers 4.46.3, "
    "torch 2.13.0+cpu, one thread, scripts/count_layer_kernels.py --time, 2026-12-02); a floor of a GPU "
    "host's, whose launches call the CUDA driver (the same CPU's bench launch kernel_eager: 2.1-3.2 us)")
# Kernels one decoder layer launches in an eager decode step, counted with torch's dispatcher.
HF_LLAMA_KERNELS_PER_LAYER = 42.0
HF_LLAMA_KERNELS_SOURCE = (
    "42 kernels per decoder layer: transformers 4.46.3 LlamaDecoderLayer, one bf16 decode step with a KV "
    "cache, sdpa attention, counted with TorchDispatchMode (7 GEMMs, 9 mul, 6 add, 4 casts, 4 cat, 2 each "
    "of pow, mean, rsqrt, neg, clone, 1 SDPA, 1 SiLU; 41 view ops launch none; scripts/count_layer_kernels.py)")

BUILTIN_ENGINES: dict[str, EngineProfile] = {
    "eager": EngineProfile(
        name="eager", host_launch_us=EAGER_HOST_LAUNCH_US, host_kernels_per_layer=HF_LLAMA_KERNELS_PER_LAYER,
        sources=[EAGER_HOST_LAUNCH_SOURCE, HF_LLAMA_KERNELS_SOURCE],
        notes=["an engine without CUDA graphs (Hugging Face generate, AutoAWQ, vLLM --enforce-eager): the host "
               "launches every kernel, so a step takes at least layers x 42 kernels x 4.0 us (168 us per layer); "
               "a floor: a GPU host's launch costs more than this CPU's, and vLLM's own layer fuses some of the "
               "42 (add + RMSNorm, rotary, SiLU-and-mul) but adds its own Python"]),
}


def kv_reads_per_kv_head(engine: EngineProfile | None, model, heads_axis):
    """How many times a decode step reads each KV head one GPU holds: once (1.0), or, where the
    engine's attention runs one thread block per query head (kv_reread_per_query_head), once per
    query head of the GPU sharing it: (n_heads / axis) / max(n_kv_heads / axis, 1). MLA's latent
    is one head read by all, whatever the kernel. The one definition the roofline (terms.py) and
    the op level (ops.py) charge."""
    if engine is None or not engine.kv_reread_per_query_head or model.is_mla:
        return 1.0
    return (model.n_heads / heads_axis) / np.maximum(model.n_kv_heads / heads_axis, 1.0)


# The serving engines whose per-op tables `calibrate --op-db` reads (aiconfigurator-core's backends).
OPDB_ENGINES = ("vllm", "sglang", "trtllm")


def get_engine(name: str) -> EngineProfile:
    """A built-in engine by name (BUILTIN_ENGINES), the one lookup of them: EngineProfile.load
    comes here for a name that is not a file."""
    key = name.strip().lower()
    if key in BUILTIN_ENGINES:
        return BUILTIN_ENGINES[key]
    from inferecon.core.errors import suggest

    if key in OPDB_ENGINES:  # a serving engine's name: its profile is written from its tables, not built in
        raise UserError(f"--engine {name}: not a file, and {key} is not built in; write its profile from its per-op "
                        f"tables first: inferecon calibrate --op-db --gpu GPU --engine {key} --out DIR, then "
                        "--hardware DIR/profile.json --engine DIR/engine.json")
    raise UserError(f"unknown engine {name!r}{suggest(name, list(BUILTIN_ENGINES))}: no such engine profile "
                    f"file, nor a built-in engine: {', '.join(BUILTIN_ENGINES)}; give an engine.json "
                    "(inferecon calibrate --engine-results)")
