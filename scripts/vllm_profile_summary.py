"""Where one vLLM CPU decode step goes, from the worker's torch-profiler trace
(scripts/vllm_profile.sh): per-step time by op kind, every event's self time attributed once.

    vllm_profile_summary.py TRACE_DIR OUT_DIR

TRACE_DIR holds the worker's `*.pt.trace.json[.gz]` (vLLM's --profiler-config, shapes recorded,
VLLM_CUSTOM_SCOPES_FOR_PROFILING=1). A step is one `execute_context_<P>(..)_generation_<D>(..)`
annotation (P prefill and D decode requests); only pure decode steps (P = 0) are summarised,
grouped by D. Each event's self time (its duration less its direct children's) goes to one row:

- gemm <N>x<K>: vLLM's `_C::onednn_mm` (output [M, N], input [M, K]), by weight shape;
- attention, kv-cache write, rotary, sampler kernel: vLLM's own CPU kernels
  (`_C::cpu_attention_with_kv_cache`, `_C::cpu_attn_reshape_and_cache`, `_C::rotary_embedding`,
  `_C::fused_gumbel_argmax`);
- torch <op>: other aten ops (the native RMSNorm's pow / mean / rsqrt / mul, SiLU and mul,
  residual adds, copies, views), by name, with the vLLM scope they ran in;
- custom-op wrapper: the self time of `vllm::*` ops (the Python of unified attention and the
  KV-cache update around the kernels);
- python <scope>: a scope's own time, outside every op in it (the model's Python between ops in
  `forward`, input preparation in `preprocess`, ...);
- between steps: from one step's end to the next one's start (the worker waiting for the
  scheduler's next step: the engine core's work and the message to the worker).

The profiler adds its own cost to every op it records (about 1-3 us here), so the rows are an
upper bound of each op's time unprofiled, and the python rows hold part of that cost.
Writes OUT_DIR/summary.json and OUT_DIR/summary.md; runs with any Python 3 (json, gzip only).
"""

from __future__ import annotations

import gzip
import json
import re
import statistics
import sys
from pathlib import Path

KERNELS = {"_C::cpu_attention_with_kv_cache": "attention kernel", "_C::cpu_attn_reshape_and_cache": "kv-cache write",
           "_C::rotary_embedding": "rotary", "_C::fused_gumbel_argmax": "sampler kernel"}
STEP = re.compile(r"execute_context_(\d+)\(\d+\)_generation_(\d+)\(\d+\)")


def _load(trace_dir: Path) -> list[dict]:
    files = sorted(trace_dir.glob("*.pt.trace.json*"))
    if not files:
        raise SystemExit(f"{trace_dir}: no *.pt.trace.json[.gz]")
    opener = gzip.open if files[-1].suffix == ".gz" else open
    with opener(files[-1], "rt") as f:
        return [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X" and "dur" in e]


def _row(e: dict, scope: str) -> str:
    name = e["name"]
    if name == "_C::onednn_mm":
        dims = e.get("args", {}).get("Input Dims") or [[0, 0], [0, 0]]
        return f"gemm {dims[0][-1]}x{dims[1][-1]}"
    if name in KERNELS:
        return KERNELS[name]
    if name.startswith("vllm::"):
        return "custom-op wrapper"
    if e.get("cat") == "user_annotation":
        return f"python {name.replace('gpu_model_runner: ', '')}"
    return f"torch {name.replace('aten::', '')} ({scope.replace('gpu_model_runner: ', '')})"


def step_rows(events: list[dict]) -> list[dict]:
    """One dict per step: {name, prefill, decode, wall_us, gap_us, rows: {row: self us}}."""
    events = sorted(events, key=lambda e: (str(e.get("tid")), e["ts"], -e["dur"]))
    steps, stack, current = [], [], None
    for e in events:
        while stack and e["ts"] >= stack[-1]["ts"] + stack[-1]["dur"] - 1e-3:
            stack.pop()
        m = STEP.fullmatch(e["name"])
        if m:
            current = {"ts": e["ts"], "wall_us": e["dur"], "prefill": int(m[1]), "decode": int(m[2]), "rows": {},
                       "tid": e.get("tid")}
            steps.append(current)
            stack = [e]
            e["_self"], e["_scope"] = e["dur"], "step"
            continue
        if current is None or not stack or e.get("tid") != current["tid"]:
            continue
        parent = stack[-1]
        parent["_self"] -= e["dur"]
        scope = e["name"] if e.get("cat") == "user_annotation" else parent["_scope"]
        e["_self"], e["_scope"] = e["dur"], scope
        e["_step"] = current
        stack.append(e)
    for e in events:
        if "_step" in e:
            rows = e["_step"]["rows"]
            key = _row(e, e["_scope"])
            rows[key] = rows.get(key, 0.0) + max(e["_self"], 0.0)
    for s, nxt in zip(steps, steps[1:] + [None]):
        s["rows"]["python step (outside the scopes)"] = max(0.0, s["wall_us"] - sum(s["rows"].values()))
        s["gap_us"] = (nxt["ts"] - s["ts"] - s["wall_us"]) if nxt is not None else None
    return steps


def summarise(steps: list[dict]) -> dict:
    out = {}
    for d in sorted({s["decode"] for s in steps if s["prefill"] == 0}):
        group = [s for s in steps if s["prefill"] == 0 and s["decode"] == d]
        keys = sorted({k for s in group for k in s["rows"]})
        rows = {k: statistics.median([s["rows"].get(k, 0.0) for s in group]) for k in keys}
        gaps = [s["gap_us"] for s in group if s["gap_us"] is not None]
        out[str(d)] = {"steps": len(group), "wall_us_median": statistics.median(s["wall_us"] for s in group),
                       "gap_to_next_step_us_median": statistics.median(gaps) if gaps else None,
                       "rows_us_median": dict(sorted(rows.items(), key=lambda kv: -kv[1]))}
    return out


def _group(row: str) -> str:
    if row.startswith("gemm"):
        return "GEMMs (onednn_mm)"
    if row.startswith("torch"):
        return "torch ops"
    if row.startswith("python"):
        return "python"
    return row


def markdown(summary: dict, title: str) -> str:
    lines = [f"# {title}", ""]
    for d, s in summary.items():
        wall = s["wall_us_median"]
        gap = s["gap_to_next_step_us_median"]
        lines += [f"## decode steps with {d} sequence(s): {s['steps']} steps, median step {wall / 1e3:.2f} ms"
                  + (f", median gap to the next step {gap / 1e3:.2f} ms" if gap is not None else ""), ""]
        groups: dict[str, float] = {}
        for k, v in s["rows_us_median"].items():
            groups[_group(k)] = groups.get(_group(k), 0.0) + v
        lines += ["| kind | µs per step (median over steps) | share |", "|---|---|---|"]
        lines += [f"| {k} | {v:.0f} | {100 * v / wall:.1f}% |" for k, v in sorted(groups.items(), key=lambda kv: -kv[1])]
        lines += ["", "| row | µs per step | share |", "|---|---|---|"]
        lines += [f"| {k} | {v:.1f} | {100 * v / wall:.1f}% |" for k, v in s["rows_us_median"].items() if v >= 5]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    trace_dir, out = Path(argv[0]), Path(argv[1])
    steps = step_rows(_load(trace_dir))
    if not steps:
        raise SystemExit(f"{trace_dir}: no execute_context step annotations (VLLM_CUSTOM_SCOPES_FOR_PROFILING=1?)")
    summary = summarise(steps)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"trace_dir": str(trace_dir), "decode_steps": summary,
                                                  "all_steps": [{k: s[k] for k in ("prefill", "decode", "wall_us", "gap_us")}
                                                                for s in steps]}, indent=1) + "\n")
    (out / "summary.md").write_text(markdown(summary, f"vLLM CPU worker, one decode step: {out.name}") + "\n")
    print((out / "summary.md").read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
