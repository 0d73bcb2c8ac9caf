"""What a serving engine adds to the hardware's decode step (DESIGN.md, "engine overhead").

An engine (vLLM, SGLang, TensorRT-LLM …) pays per decode step for scheduling, sampling and
launches outside a CUDA graph, and its quantised kernels read weights below the HBM
bandwidth a plain copy reaches. `EngineProfile` holds those three things; the cost model
(model/terms.py, `evaluate(..., engine=...)`) adds them to every configuration. Fitting one
from an engine's own benchmark results lives in calibration/; this module is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EngineProfile:
    name: str  # e.g. "vllm", "sglang", "trtllm"
    step_overhead_us: float = 0.0  # per decode step, not overlapped with GPU work
    per_layer_us: float = 0.0  # per transformer layer per step (launches not in a graph)
    # Achieved weight-read bandwidth of the engine's kernels as a share of what the hardware
    # profile's memory term assumes, by weight bits ("16", "8", "4"); 1.0 = no loss.
    weight_read_efficiency: dict[str, float] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def weight_efficiency(self, weight_bits: int) -> float:
        return float(self.weight_read_efficiency.get(str(int(weight_bits)), 1.0))
