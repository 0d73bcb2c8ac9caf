"""Helpers of scripts/vllm_cpu_loop.sh, run with the vLLM venv's Python (not inferecon's).

    vllm_cpu_loop.py build-model DIR      a tiny Llama (random weights) and a byte-level BPE
                                          tokenizer trained here, saved to DIR; nothing downloaded
    vllm_cpu_loop.py vllm ARGS...         vLLM's own command line (`vllm serve`, `vllm bench serve`)
    vllm_cpu_loop.py build-null-model DIR MODEL_DIR [LAYERS]
                                          the "null" model: MODEL_DIR's tokenizer, vocabulary, max
                                          length and dtype, LAYERS (1 or 8) of hidden 64 (negligible
                                          compute); LAYERS "w": 8 layers with the served model's
                                          weight bytes a layer (NULLW_CONFIG)
    vllm_cpu_loop.py weights-engine FIT_DIR OUT_DIR   (inferecon's Python) the same from the
                                          weight-heavy null model alone (8 layers: its mean cost is the step)
    vllm_cpu_loop.py nullw-profile OUT_DIR PROFILE CPU_OPS...   (inferecon's Python) PROFILE with its
                                          GEMM fits refitted on the weight-heavy null model's own shapes
    vllm_cpu_loop.py versions             the versions the manifest records, as JSON
    vllm_cpu_loop.py merge-cores OUT_DIR PROFILE...   (inferecon's Python)
                                          one CPU profile from calibrations on each core: op fits
                                          averaged, their core-to-core spread as uncertainty
    vllm_cpu_loop.py null-runs CSV KEPT   (inferecon's Python) the null-model runs whose TPOT is a
                                          step time (not below the predicted kernel step), to KEPT
    vllm_cpu_loop.py null-engine FIT_DIR OUT_DIR [DEEP_FIT_DIR] [--cold-host JSON DTYPE]
                                          (inferecon's Python) the engine's per-step cost, measured on
                                          the null model: engine.json and engine-c<C>.json with one run's
                                          spread as uncertainty, and the per-run table; --cold-host: x the
                                          host ops' slowdown inside the served model's step (DTYPE bf16|fp32)

Why a wrapper for `vllm`: the `vllm-cpu` distribution installs the `vllm` package, but vLLM
looks up the version of a distribution named "vllm" and fails without it. The patch answers
that lookup with vllm-cpu's version plus "+cpu". It sits under `if __name__ == "__main__"` because vLLM
starts its workers with multiprocessing's spawn, which imports this file again as __mp_main__.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The tiny Llama: hidden 1024, 8 layers, 8 heads of 128, 2 KV heads; SwiGLU 4096;
# an untied 16,384-token vocabulary. 155.2 M parameters (norms included: hand count below).
#   per layer: q 1024x1024 + k,v 2x(256x1024) + o 1024x1024 = 2,621,440; MLP 3x1024x4096 =
#   12,582,912; norms 2x1024 -> 15,206,400; x 8 = 121,651,200
#   embeddings 16384x1024 = 16,777,216, lm head the same, final norm 1024 -> 155,206,656
CONFIG = dict(hidden_size=1024, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
              head_dim=128, intermediate_size=4096, vocab_size=16384, max_position_embeddings=2048,
              tie_word_embeddings=False, rms_norm_eps=1e-5, rope_theta=500000.0)
EXPECTED_PARAMS = 155_206_656

# The "null" model: vLLM's whole serving path with next to no model compute, so that its time per
# output token is vLLM's own per-step host work (scheduling, input preparation, sampling over the
# same 16,384-token vocabulary, detokenising, the API server's streaming) plus a step the
# calibrated CPU profile prices at 0.3 ms. Kept: the vocabulary and tokenizer (copied from the
# served model), the embedding and the untied lm head over that vocabulary, max length, dtype,
# and one decoder layer with every op kind (rotary, attention with a KV cache, SwiGLU, norms).
# Changed: hidden 64, 1 layer, 1 head of 64 (vLLM's CPU attention takes head size 64), SwiGLU 256.
NULL_CONFIG = dict(CONFIG, hidden_size=64, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
                   head_dim=64, intermediate_size=256)
#   layer: q, k, v, o 4 x 64x64 = 16,384; MLP 3 x 64x256 = 49,152; norms 2 x 64 -> 65,664
#   embeddings 16384x64 = 1,048,576, lm head the same, final norm 64 -> 2,162,880
NULL_EXPECTED_PARAMS = 2_162_880
# The same with the served model's 8 layers: what each eager layer adds (its Python, its op
# dispatch) is the difference of the two null models. 2,097,152 + 8 x 65,664 + 64 = 2,622,528.
NULL8_CONFIG = dict(NULL_CONFIG, num_hidden_layers=CONFIG["num_hidden_layers"])
NULL8_EXPECTED_PARAMS = 2_622_528
# The weight-heavy null model (issue 21, run 7: results/vllm-cpu-20261202-5/; the loop's NULLW=1): the 8-layer null model with a SwiGLU of 79,104, so
# that each layer's weights are as many bytes as the served model's (15.2 M parameters a layer
# against 15.2 M) while everything else stays hidden 64: one head of 64, the same op kinds and
# count. vLLM's profiled worker (results/vllm-cpu-20261202-4/profile/) spent ~2x the 8-layer null
# model's host time (Python, op dispatch, the wait for the next step) when it served the model:
# after a GEMM streams a weight larger than the caches, the host work after it runs cold (9
# small torch ops took 31-42 us after a 16 MB GEMM, 17-19 us after themselves). This model's
# engine cost is vLLM's own work with caches polluted as the served model pollutes them, measured
# on a model whose weights are not the validated one's (its GEMMs are 158,208 x 64 and 64 x
# 79,104: the calibration times these shapes too, kernels/cpu_ops.py NULLW_GEMMS).
#   layer: q, k, v, o 4 x 64x64 = 16,384; MLP 3 x 64 x 79,104 = 15,187,968; norms 128 -> 15,204,480
#   x 8 = 121,635,840; embeddings + lm head 2 x 16384 x 64 = 2,097,152; final norm 64 -> 123,733,056
NULLW_CONFIG = dict(NULL8_CONFIG, intermediate_size=79_104)
NULLW_EXPECTED_PARAMS = 123_733_056
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _training_text() -> list[str]:
    """Text for the tokenizer: the Python sources this venv holds (plenty, and local)."""
    import sysconfig

    lib = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(lib.glob("*.py"))[:400]:
        try:
            texts.append(path.read_text(encoding="utf-8", errors="ignore"))
        except OSError:
            pass
    return texts


def _save_llama(out: Path, config: dict, expected: int) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)  # the same random weights every time: two runs serve the same model
    model = LlamaForCausalLM(LlamaConfig(**config, bos_token_id=1, eos_token_id=2, pad_token_id=0))
    n = sum(p.numel() for p in model.parameters())
    if n != expected:
        raise SystemExit(f"tiny Llama has {n:,} parameters, the hand count says {expected:,}")
    model.to(torch.bfloat16).save_pretrained(out)  # bf16 on disk; vLLM casts to --dtype
    return n


def build_null_model(out: Path, served: Path, layers: int | str = 1) -> None:
    import shutil

    config, expected = {1: (NULL_CONFIG, NULL_EXPECTED_PARAMS), 8: (NULL8_CONFIG, NULL8_EXPECTED_PARAMS),
                        "w": (NULLW_CONFIG, NULLW_EXPECTED_PARAMS)}[layers]
    n = _save_llama(out, config, expected)
    for name in _TOKENIZER_FILES:  # the served model's own tokenizer: the same tokens, the same text
        if (served / name).exists():
            shutil.copy(served / name, out / name)
    if not (out / "tokenizer.json").exists():
        raise SystemExit(f"{served}: no tokenizer.json to copy (build the served model first)")
    print(f"built {out}: {n:,} parameters, the tokenizer of {served}")


def build_model(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    n = _save_llama(out, CONFIG, EXPECTED_PARAMS)

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=CONFIG["vocab_size"], special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   model_max_length=CONFIG["max_position_embeddings"])
    fast.save_pretrained(out)
    print(f"built {out}: {n:,} parameters, tokenizer of {tok.get_vocab_size():,} tokens")


def versions() -> dict:
    from importlib import metadata

    out = {}
    for dist in ("vllm-cpu", "torch", "transformers", "tokenizers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _patch_vllm_version() -> None:
    from importlib import metadata

    real = metadata.version
    # "+cpu" as vLLM's own fallback spells it: its platform detection looks for "cpu" in the
    # version, and without it picks the generic platform, which loads the AVX-512 kernels
    # (an illegal instruction on an AVX2-only CPU). The loop also sets VLLM_TARGET_DEVICE=cpu.
    cpu = real("vllm-cpu") + "+cpu"

    def version(name):
        return cpu if name == "vllm" else real(name)

    metadata.version = version


# -- the engine's per-step cost from the null model's runs (inferecon's Python) -------------------
def _read_rows(csv_path: Path) -> list[dict]:
    import csv

    try:
        with open(csv_path, newline="") as f:
            return [r for r in csv.DictReader(f) if r["feasible"] == "True"]
    except OSError as exc:
        raise SystemExit(f"{csv_path}: cannot read ({exc.strerror}): not an inferecon validate or calibrate "
                         "--engine-results output") from None
    except KeyError:
        raise SystemExit(f"{csv_path}: no 'feasible' column: not an inferecon engine table") from None


def null_runs(csv_path: Path, kept: Path) -> None:
    """The null-model runs whose TPOT can be a step time, from `validate --engine-results` over
    them (CSV_PATH, the hardware profile alone): written to KEPT, one path a line. A run whose
    median TPOT is below the step the CPU profile predicts for the null model's kernels alone
    measured no step: the API server, on the core vLLM's worker does not hold, delivered the
    first token late and the rest in one burst after it (run 4's fp32 c 1 seed 1: TTFT 107 ms
    against 35, TPOT 0.005 ms), so (e2e - TTFT) / (tokens - 1) is the burst, not the engine."""
    rows = _read_rows(csv_path)
    keep = []
    for r in rows:
        measured, kernels = float(r["measured_ms"]), float(r["predicted_ms"])
        if measured < kernels:
            print(f"left out {Path(r['source']).name}: median TPOT {measured:.3f} ms is below the null model's "
                  f"predicted kernel step {kernels:.3f} ms (tokens delivered in one burst)")
        else:
            keep.append(r["source"])
    kept.write_text("".join(f"{k}\n" for k in keep))
    print(f"kept {len(keep)} of {len(rows)} null-model runs: {kept}")


def _engine_costs(fit_dir: Path, minimum: int = 2) -> list[dict]:
    """Each kept null-model run: measured ms per token, the null model's predicted step (the
    calibrated CPU profile alone) and their difference, the engine's cost per step (an engine's
    step overhead adds to every step: one output token per sequence per step). MINIMUM: the runs
    the caller's estimate needs (2 for a spread of this set alone; 1 where the spread comes from a
    least squares over every set)."""
    out = []
    for r in _read_rows(fit_dir / "engine_fit.csv"):
        measured, predicted = float(r["measured_ms"]), float(r["predicted_ms"])
        out.append({"source": Path(r["source"]).name, "concurrency": int(float(r["concurrency"])),
                    "measured_ms": measured, "predicted_null_step_ms": predicted,
                    "engine_step_us": 1e3 * (measured - predicted)})
    if len(out) < minimum:
        raise SystemExit(f"{fit_dir}: {len(out)} null-model run(s); {'a spread needs' if minimum > 1 else 'the fit needs'} "
                         f"{minimum} or more")
    return out


def _sd(xs: list[float]) -> float:
    import statistics

    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def _pooled_sd(groups: list[list[float]]) -> tuple[float, int]:
    """The standard deviation of the runs about their own group's mean (repeats at one
    concurrency), and its degrees of freedom."""
    import statistics

    resid = [x - statistics.fmean(g) for g in groups for x in g]
    dof = len(resid) - len(groups)
    return ((sum(x * x for x in resid) / dof) ** 0.5 if dof > 0 else 0.0), dof


def cold_host_factor(path: Path, dtype: str) -> tuple[float, str]:
    """(cold / warm, where) from scripts/vllm_cold_host.py --step's JSON: how much slower vLLM's small
    host ops run among the served model's weight streams than with warm caches, in `dtype`."""
    try:
        doc = json.loads(Path(path).read_text())
        r = doc[dtype]
        f = float(r["ratio"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"null-engine --cold-host {path} {dtype}: no ratio for {dtype} there ({type(exc).__name__})")
    if not 0.5 <= f <= 5.0:
        raise SystemExit(f"null-engine --cold-host {path} {dtype}: ratio {f} outside 0.5-5: not a cache effect")
    return f, (f"{path} ({dtype}: 9 host ops {r['cold_us']:.1f} us inside the served model's step, "
               f"{r['warm_us']:.1f} us warm, {r['pairs']} pairs)")


def fit_costs(rows: list[tuple[int, int, float]]) -> tuple[dict[str, tuple[float, float] | None], float, int]:
    """Least squares of the engine's cost per step over null-model runs (layers, concurrency,
    cost us): cost = step + per_layer x layers + per_sequence x concurrency, each slope only
    where the runs vary in it, and left out (None) where it comes out negative (an engine
    profile holds no negative time; the rest refitted). Returns ({key: (value, stderr)}, the
    residual sd, its degrees of freedom); the step's stderr is one new run's spread about the
    fit, s x sqrt(1 + 1/n), the slopes' their estimates' (the fit's covariance diagonal)."""
    import numpy as np

    layers = np.array([r[0] for r in rows], float)
    conc = np.array([r[1] for r in rows], float)
    cost = np.array([r[2] for r in rows], float)
    cols = {"per_layer_us": layers, "per_sequence_us": conc}
    keep = [k for k, v in cols.items() if len(set(v.tolist())) > 1]
    while True:
        X = np.column_stack([np.ones(len(cost))] + [cols[k] for k in keep])
        if len(cost) <= X.shape[1]:
            raise SystemExit(f"null-engine: {len(cost)} null-model run(s) cannot fit {X.shape[1]} parameter(s) "
                             "with a spread left")
        sol = np.linalg.lstsq(X, cost, rcond=None)[0]
        negative = [k for k, v in zip(keep, sol[1:]) if v < 0]
        if not negative:
            break
        keep.remove(negative[0])
    resid = cost - X @ sol
    dof = len(cost) - X.shape[1]
    s = float(np.sqrt(resid @ resid / dof))
    se = np.sqrt(np.diag(s * s * np.linalg.inv(X.T @ X)))
    out: dict[str, tuple[float, float] | None] = {"step_overhead_us": (float(sol[0]), s * (1 + 1 / len(cost)) ** 0.5),
                                                  "per_layer_us": None, "per_sequence_us": None}
    for k, v, e in zip(keep, sol[1:], se[1:]):
        out[k] = (float(v), float(e))
    return out, s, dof


def null_engine(fit_dir: Path, out: Path, deep_dir: Path | None = None, alone_layers: int | None = None,
                cold: tuple[float, str] | None = None, per_sequence: bool = True) -> None:
    """The engine profile of vLLM's own work, measured on the null models (not on the runs it
    will predict). FIT_DIR is `inferecon calibrate --engine-results` over the 1-layer null
    model's kept runs, DEEP_DIR the same over the 8-layer one: their engine.json (the writer
    every engine fit uses: format, sources, hardware) is the base of the profiles written here.

    ALONE_LAYERS (the weight-heavy null model, of the served model's layer count): FIT_DIR alone,
    its mean cost the step, no per-layer term.

    With both: per_layer_us = (mean engine cost of the 8-layer runs - of the 1-layer runs) / 7,
    the host work each eager decoder layer adds (its Python and op dispatch beyond what the
    calibrated kernels price); step_overhead_us = the 8-layer mean - 8 x per_layer_us, so that a
    model of the served model's 8 layers gets the 8-layer null model's measured cost. stderr of
    per_layer_us: its estimate's, sqrt(s1^2/n1 + s8^2/n8) / 7; of step_overhead_us: the spread
    one new 8-layer run has about the mean, s8 x sqrt(1 + 1/n8) (draws of the two add, a little
    wider than the 8-layer runs alone). With FIT_DIR alone: the 1-layer mean and its spread.

    - OUT/engine.json: over every concurrency. With PER_SEQUENCE (the default) the least squares
      of `fit_costs`: a step, a per-layer time and a per-sequence time (vLLM's host work per
      request in the step: its inputs, sampling, detokenising, streaming), so the profile's cost
      grows with the batch as the null models' does; s: the fit's residual sd. Without it (the
      rule runs 1-10 were written by): the means above, s the deeper model's runs' sd;
    - OUT/engine-c<C>.json: the runs at concurrency C alone (the engine's cost grows with the
      sequences a step samples and streams); s: the pooled standard deviation of the runs about
      their concurrency's mean (the repeat of two prompt sets), m runs at C in place of n;
    - OUT/null_engine.csv: every run's measured TPOT, predicted null step and engine cost.

    COLD (factor, source; `--cold-host`, scripts/vllm_cold_host.py --step): the null models' caches
    stay warm (their weights fit), the served model's GEMMs stream its weights through them between
    every host op. Both costs and their stderrs are multiplied by the measured slowdown of vLLM's small
    ops inside the served model's step (x1.25-1.80 on this EPYC). All of the cost is scaled, though a
    part of it (the engine core's scheduling on the other core) does not run among those streams: an
    upper bound in that respect. null_engine.csv keeps the unscaled costs."""
    import csv
    import dataclasses
    import math
    import statistics

    from inferecon.model.engine import EngineProfile

    layers = (NULL_CONFIG["num_hidden_layers"], NULL8_CONFIG["num_hidden_layers"])
    if alone_layers is not None:  # one null model of the served model's layer count: its mean cost is the step
        layers = (alone_layers, None)
    sets = {layers[0]: _engine_costs(fit_dir)}
    if deep_dir is not None:
        # The least squares over every run takes its spread from all of them, so one kept 8-layer
        # run still places the per-layer slope (with a stderr to match); the means rule needs two.
        # Run 11's bf16 8-layer null model kept 1 of 16 (the rest delivered in one burst).
        sets[layers[1]] = _engine_costs(deep_dir, minimum=1 if per_sequence else 2)
    base = EngineProfile.load((deep_dir or fit_dir) / "engine.json")
    fit_step = (base.fit_quality.get("parameters") or {}).get("step_overhead_us", {})

    def by_c(rows):
        g: dict[int, list[float]] = {}
        for t in rows:
            g.setdefault(t["concurrency"], []).append(t["engine_step_us"])
        return g

    def params(groups: dict[int, list[float]], s: float) -> tuple[dict, str]:
        """{param key: (value, stderr)} from {layers: engine costs} and the runs' sd s."""
        one = groups[layers[0]]
        if layers[1] not in groups:
            return {"step_overhead_us": (statistics.fmean(one), s * math.sqrt(1 + 1 / len(one))),
                    "per_layer_us": None, "per_sequence_us": None}, f"{layers[0]}-layer null, {len(one)} runs"
        deep = groups[layers[1]]
        pl = (statistics.fmean(deep) - statistics.fmean(one)) / (layers[1] - layers[0])
        pl_se = s * math.sqrt(1 / len(one) + 1 / len(deep)) / (layers[1] - layers[0])
        clamped = ""
        if pl < 0:  # an engine profile holds no negative time; the 8-layer mean still anchors the step
            pl, clamped = 0.0, " (the difference was negative: 0 kept)"
        step = statistics.fmean(deep) - layers[1] * pl
        return {"step_overhead_us": (step, s * math.sqrt(1 + 1 / len(deep))), "per_layer_us": (pl, pl_se),
                "per_sequence_us": None}, \
            f"1-layer null {len(one)} runs, 8-layer null {len(deep)} runs{clamped}"

    def profile(name, ps, what):
        quality = json.loads(json.dumps(base.fit_quality))
        quality["uncertainty"] = ("step_overhead_us stderr: one new run's spread about the null-model runs; "
                                  "per_layer_us stderr: its estimate's (scripts/vllm_cpu_loop.py null_engine)")
        prm = quality.setdefault("parameters", {})
        prm["step_overhead_us"] = {"value": ps["step_overhead_us"][0], "stderr": ps["step_overhead_us"][1],
                                   "fitted": True, "value_of_fit": fit_step.get("value"),
                                   "stderr_of_fit": fit_step.get("stderr"), "note": what}
        if ps["per_layer_us"] is not None:
            prm["per_layer_us"] = {"value": ps["per_layer_us"][0], "stderr": ps["per_layer_us"][1], "fitted": True,
                                   "note": "(8-layer null - 1-layer null) / 7" if ps["per_sequence_us"] is None
                                   else "the slope over the null models' layer counts"}
        if ps["per_sequence_us"] is not None:
            prm["per_sequence_us"] = {"value": ps["per_sequence_us"][0], "stderr": ps["per_sequence_us"][1],
                                      "fitted": True, "note": "the slope over the null runs' concurrencies"}
        notes = list(base.notes) + [
            "measured on null models served and benched like the model (scripts/vllm_cpu_loop.sh): vLLM's own "
            "work per step and per eager layer, beyond the kernels the CPU profile prices"]
        if cold is not None:
            notes.append(f"host work with the served model's caches: both costs x{cold[0]:.3f}, the slowdown of vLLM's "
                         f"small ops inside its step, measured by scripts/vllm_cold_host.py --step: {cold[1]}")
        return dataclasses.replace(base, name=name, step_overhead_us=max(0.0, ps["step_overhead_us"][0]),
                                   per_layer_us=ps["per_layer_us"][0] if ps["per_layer_us"] else 0.0,
                                   per_sequence_us=ps["per_sequence_us"][0] if ps["per_sequence_us"] else 0.0,
                                   fit_quality=quality, notes=notes)

    out.mkdir(parents=True, exist_ok=True)
    costs = {k: [t["engine_step_us"] for t in v] for k, v in sets.items()}
    s_all = _sd(costs[max(costs)])

    def scaled(ps: dict) -> dict:  # COLD: value and stderr alike
        if cold is None:
            return ps
        return {k: (None if v is None else (v[0] * cold[0], v[1] * cold[0])) for k, v in ps.items()}

    concurrencies = {t["concurrency"] for v in sets.values() for t in v}
    if per_sequence and len(concurrencies) > 1:
        ps, s_fit, dof_fit = fit_costs([(k, t["concurrency"], t["engine_step_us"]) for k, v in sets.items() for t in v])
        what = (f"least squares over {sum(len(v) for v in sets.values())} null-model runs of "
                f"{', '.join(map(str, sets))} layer(s) at concurrency {', '.join(map(str, sorted(concurrencies)))}; "
                f"s = its residual sd {s_fit:.0f} us ({dof_fit} degrees of freedom)")
    else:
        ps, what = params(costs, s_all)
        what = f"{what}; s = sd of the {max(costs)}-layer runs {s_all:.0f} us"
    ps = scaled(ps)
    profile(f"{base.name}-null", ps, f"null models over every concurrency: {what}").save(out / "engine.json")
    groups = {k: by_c(v) for k, v in sets.items()}
    pooled, dof = _pooled_sd([g for gs in groups.values() for g in gs.values()])
    lines = [f"all concurrencies: step {ps['step_overhead_us'][0]:.0f} ± {ps['step_overhead_us'][1]:.0f} us"
             + (f", per layer {ps['per_layer_us'][0]:.0f} ± {ps['per_layer_us'][1]:.0f} us" if ps["per_layer_us"] else "")
             + (f", per sequence {ps['per_sequence_us'][0]:.0f} ± {ps['per_sequence_us'][1]:.0f} us"
                if ps["per_sequence_us"] else "")]
    for c in sorted(groups[layers[0]]):
        at_c = {k: g[c] for k, g in groups.items() if c in g}
        pc, what_c = params(at_c, pooled)
        pc = scaled(pc)
        profile(f"{base.name}-null-c{c}", pc, f"null models at concurrency {c}: {what_c}; s = pooled within-"
                f"concurrency sd {pooled:.0f} us ({dof} degrees of freedom)").save(out / f"engine-c{c}.json")
        lines.append(f"c {c}: " + ", ".join(f"{k}-layer null {statistics.fmean(v):.0f} us" for k, v in at_c.items())
                     + f" -> step {pc['step_overhead_us'][0]:.0f} ± {pc['step_overhead_us'][1]:.0f} us"
                     + (f", per layer {pc['per_layer_us'][0]:.0f} ± {pc['per_layer_us'][1]:.0f} us"
                        if pc["per_layer_us"] else ""))
    with open(out / "null_engine.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["layers"] + list(sets[layers[0]][0]))
        w.writeheader()
        for k, rows in sets.items():
            w.writerows({"layers": k, **t} for t in sorted(rows, key=lambda t: (t["concurrency"], t["source"])))
    if cold is not None:
        lines.append(f"(costs x{cold[0]:.3f}: host work among the served model's weight streams, {cold[1]})")
    print("\n".join(lines))
    print(f"pooled within-concurrency sd {pooled:.0f} us ({dof} degrees of freedom)")
    print(f"wrote {out}/engine.json, engine-c*.json and null_engine.csv")


# -- one profile from a calibration on each core (inferecon's Python) -----------------------------
# The op-fit fields a core's speed moves: a GEMM fit's intercept and rates, an attention fit's
# floor, rates and per-sequence time; "1/" marks a rate (a slower core divides it).
_OP_FIELDS = {"gemm": ("t0_us", "1/tflops", "1/gbps"),
              "attention": ("floor_us", "1/tflops", "1/gbps", "per_sequence_head_us")}


def _served_us(family: str, fit: dict) -> float:
    """A fit's time summed over the served model's decode shapes (kernels/cpu_ops.py SERVED): its
    weight GEMMs at M = 1, 2, 4, 8, or its decode attention at batch 1, 4, 8 x 64, 256, 1024
    positions, priced by the model's own roofline (model/opfits.py time_us) from the fields
    merge-cores averages (_OP_FIELDS). One number per fit and core, the one the spread is taken of."""
    from inferecon.kernels.cpu_ops import SERVED, decode_gemms
    from inferecon.model.opfits import AttentionFit, GemmFit

    s = SERVED
    if family == "gemm":
        g = GemmFit(dtype=fit["dtype"], t0_us=fit["t0_us"], tflops=fit["tflops"], gbps=fit["gbps"],
                    compute_efficiency=None, hbm_efficiency=None)
        return sum(g.time_us(m, n, k) for _, n, k in decode_gemms(s) for m in (1, 2, 4, 8))
    a = AttentionFit(kv_dtype=fit["kv_dtype"], floor_us=fit["floor_us"], gbps=fit["gbps"], tflops=fit["tflops"],
                     per_sequence_head_us=fit["per_sequence_head_us"])
    return sum(a.time_us(b, L, s.n_heads, s.n_kv_heads, s.d_head) for b in (1, 4, 8) for L in (64, 256, 1024))


def merge_cores(out: Path, profiles: list[Path]) -> None:
    """PROFILES are `calibrate --device cpu` runs of the same command, each pinned to one core
    (the first: vLLM's worker's core). The merged profile is the first with its op fits replaced
    by the geometric mean over the cores of each fitted field (GEMM and attention fits that every
    core has; elementwise per layer too), and one uncertainty entry per fit for the speed the
    cores measured apart: a lognormal multiplier whose sigma is the sd of ln(served-shape time)
    over the cores, x sqrt(1 + 1/n) (the worker runs on one core: one new draw about the mean of
    n). It moves the same fields as the fit's k-fold entry; the two multiply."""
    import csv
    import math
    import statistics

    if len(profiles) < 2:
        raise SystemExit("merge-cores: two or more profiles (one per core)")
    docs = [json.loads(Path(p).read_text()) for p in profiles]
    merged = json.loads(json.dumps(docs[0]))
    rows, entries = [], []
    for family, key in (("gemm", "dtype"), ("attention", "kv_dtype")):
        for i, fit in enumerate(merged["op_fits"][family]):
            same = [next((f for f in d["op_fits"][family] if f[key] == fit[key]), None) for d in docs]
            if any(f is None for f in same):
                print(f"{family} {fit[key]}: not fitted on every core, kept from {profiles[0]}")
                continue
            for field in _OP_FIELDS[family]:
                name = field.removeprefix("1/")
                vals = [float(f[name]) for f in same]
                # geometric mean; a term some core fitted at 0 (no per-sequence time): the plain mean
                fit[name] = math.exp(statistics.fmean(math.log(v) for v in vals)) if min(vals) > 0 else statistics.fmean(vals)
            times = [_served_us(family, f) for f in same]
            logs = [math.log(t) for t in times]
            sigma = statistics.stdev(logs) * math.sqrt(1 + 1 / len(logs))
            rows += [{"family": family, "dtype": fit[key], "profile": str(p), "served_shapes_us": round(t, 1)}
                     for p, t in zip(profiles, times)]
            rows.append({"family": family, "dtype": fit[key], "profile": "merged",
                         "served_shapes_us": round(_served_us(family, fit), 1)})
            entries.append({
                "dist": "lognormal", "median": 1.0, "relative": True, "sigma": sigma,
                "name": f"op-level {family} ({fit[key]}), core to core",
                "paths": [f"{'1/' if f.startswith('1/') else ''}op_fits.{family}.{i}.{f.removeprefix('1/')}"
                          for f in _OP_FIELDS[family]],
                "source": f"calibrations on {len(profiles)} cores (scripts/vllm_cpu_loop.py merge-cores): the "
                          f"served shapes take {', '.join(f'{t:.0f}' for t in times)} us; sd of ln x sqrt(1 + 1/n)"})
    ew = [d["op_fits"].get("elementwise_per_layer_us") for d in docs]
    if all(isinstance(v, (int, float)) and v > 0 for v in ew):
        merged["op_fits"]["elementwise_per_layer_us"] = math.exp(statistics.fmean(math.log(v) for v in ew))
    merged["uncertainty"] = list(merged.get("uncertainty") or []) + entries
    merged["op_fits"]["notes"] = list(merged["op_fits"].get("notes") or []) + [
        f"op fits: geometric mean of calibrations on {len(profiles)} cores ({', '.join(str(p) for p in profiles)}), "
        "their spread an uncertainty entry per fit"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(merged, indent=2) + "\n")
    with open(out / "cores.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["family", "dtype", "profile", "served_shapes_us"])
        w.writeheader()
        w.writerows(rows)
    for e in entries:
        print(f"{e['name']}: sigma {e['sigma']:.3f} ({e['source']})")
    print(f"wrote {out}/profile.json and cores.csv")


# -- the weight-heavy null model priced by its own kernels' timings (inferecon's Python) ----------
def nullw_profile(out: Path, profile: Path, cpu_ops: list[Path]) -> None:
    """PROFILE (the loop's calibrated CPU profile) with each dtype's GEMM fit refitted on the
    weight-heavy null model's own GEMM shapes alone (kernels/cpu_ops.py NULLW_GEMMS, the rows
    labelled nullw_* of the CPU_OPS parquets: one calibration per core, pooled), into
    OUT/profile.json. The shared fit, pulled by the served shapes, priced those skinny GEMMs 32%
    low (run 7: nullw_gate_up 852 against 1254 us), which put ~3.4 ms of mispriced kernels into
    the engine cost measured on that model; fitted on its own shapes, the engine cost is what
    vLLM spends beyond the kernels this CPU times for that model. Only for pricing that model."""
    import dataclasses

    import pandas as pd

    from inferecon.calibration.fit_ops import fit_cpu_gemms

    df = pd.concat([pd.read_parquet(p) for p in cpu_ops], ignore_index=True)
    floor = df[df["op"] == "floor"]["time_us"]
    rows = df[(df["op"] == "gemm") & df["label"].astype(str).str.startswith("nullw_")]
    if rows.empty:
        raise SystemExit(f"nullw-profile: no nullw_* GEMM rows in {', '.join(map(str, cpu_ops))} "
                         "(calibrate with INFERECON_CPU_NULLW_GEMMS=1)")
    fits, _ = fit_cpu_gemms(rows, float(floor.min()) if len(floor) else None)
    doc = json.loads(Path(profile).read_text())
    done = []
    for fit in fits:
        for entry in doc["op_fits"]["gemm"]:
            if entry["dtype"] == fit.dtype:
                new = dataclasses.asdict(fit)
                entry.update({k: new[k] for k in ("t0_us", "tflops", "gbps", "kernels", "m_range", "quality")})
                done.append(f"{fit.dtype} ({fit.quality.n_points} rows)")
    doc["op_fits"]["notes"] = list(doc["op_fits"].get("notes") or []) + [
        f"GEMM fits {', '.join(done)} refitted on the nullw_* shapes alone ({', '.join(map(str, cpu_ops))}): "
        "this profile prices the weight-heavy null model only"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(doc, indent=2) + "\n")
    from inferecon.kernels.cpu_ops import NULLW_GEMMS
    from inferecon.model.opfits import GemmFit

    for fit in fits:
        g = GemmFit(dtype=fit.dtype, t0_us=fit.t0_us, tflops=fit.tflops, gbps=fit.gbps, compute_efficiency=None,
                    hbm_efficiency=None)
        for label, n, k in NULLW_GEMMS:
            got = rows[(rows["dtype"] == fit.dtype) & (rows["label"] == label) & (rows["m"] == 1)]["time_us"]
            print(f"{fit.dtype} {label} M=1: fit {g.time_us(1, n, k):.0f} us, timed {', '.join(f'{t:.0f}' for t in got)}")
    print(f"wrote {out}/profile.json")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "build-model" and len(sys.argv) == 3:
        build_model(Path(sys.argv[2]))
    elif what == "build-null-model" and len(sys.argv) in (4, 5):
        kind = sys.argv[4] if len(sys.argv) == 5 else "1"
        build_null_model(Path(sys.argv[2]), Path(sys.argv[3]), kind if kind == "w" else int(kind))
    elif what == "null-runs" and len(sys.argv) == 4:
        null_runs(Path(sys.argv[2]), Path(sys.argv[3]))
    elif what == "null-engine" and len(sys.argv) in (4, 5, 7, 8) and (len(sys.argv) < 7 or sys.argv[-3] == "--cold-host"):
        args, cold_args = (sys.argv[2:-3], sys.argv[-2:]) if len(sys.argv) >= 7 else (sys.argv[2:], None)
        null_engine(Path(args[0]), Path(args[1]), Path(args[2]) if len(args) == 3 else None,
                    cold=cold_host_factor(Path(cold_args[0]), cold_args[1]) if cold_args else None)
    elif what == "weights-engine" and len(sys.argv) == 4:
        null_engine(Path(sys.argv[2]), Path(sys.argv[3]), alone_layers=NULLW_CONFIG["num_hidden_layers"])
    elif what == "nullw-profile" and len(sys.argv) >= 5:
        nullw_profile(Path(sys.argv[2]), Path(sys.argv[3]), [Path(a) for a in sys.argv[4:]])
    elif what == "merge-cores" and len(sys.argv) >= 5:
        merge_cores(Path(sys.argv[2]), [Path(a) for a in sys.argv[3:]])
    elif what == "versions":
        print(json.dumps(versions()))
    elif what == "vllm":
        _patch_vllm_version()
        from vllm.entrypoints.cli.main import main

        sys.argv = ["vllm"] + sys.argv[2:]
        sys.exit(main())
    else:
        raise SystemExit(__doc__)
