"""Helpers of scripts/vllm_cpu_loop.sh, run with the vLLM venv's Python (not inferecon's).

    vllm_cpu_loop.py build-model DIR      a tiny Llama (random weights) and a byte-level BPE
                                          tokenizer trained here, saved to DIR; nothing downloaded
    vllm_cpu_loop.py vllm ARGS...         vLLM's own command line (`vllm serve`, `vllm bench serve`)
    vllm_cpu_loop.py build-null-model DIR MODEL_DIR
                                          the "null" model: MODEL_DIR's tokenizer, vocabulary, max
                                          length and dtype, one layer of hidden 64 (negligible compute)
    vllm_cpu_loop.py versions             the versions the manifest records, as JSON
    vllm_cpu_loop.py null-engine FIT_DIR OUT_DIR      (run with inferecon's Python)
                                          the engine's per-step cost, measured on the null model:
                                          engine.json with a predictive uncertainty, per-run table

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


def build_null_model(out: Path, served: Path) -> None:
    import shutil

    n = _save_llama(out, NULL_CONFIG, NULL_EXPECTED_PARAMS)
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
def null_engine(fit_dir: Path, out: Path) -> None:
    """FIT_DIR is `inferecon calibrate --engine-results` over the null model's runs (its engine.json
    and engine_fit.csv). Each run's own engine cost is its measured ms per token minus the step the
    CPU profile predicts for the null model (an engine's step overhead adds to every step: one output
    token per sequence per step). The writer's engine.json carries the fit's value and the standard
    error of that mean; a 155M run is one new run, so the profile written here keeps the value and
    gives it the spread a single run has about it: the runs' standard deviation x sqrt(1 + 1/n),
    the prediction interval of one more draw from the same runs."""
    import csv
    import math
    import statistics

    from inferecon.model.engine import EngineProfile

    with open(fit_dir / "engine_fit.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["feasible"] == "True"]
    if len(rows) < 2:
        raise SystemExit(f"{fit_dir}: {len(rows)} null-model run(s); the spread needs 2 or more")
    engine = EngineProfile.load(fit_dir / "engine.json")
    quality = json.loads(json.dumps(engine.fit_quality))
    step = quality.get("parameters", {}).get("step_overhead_us", {})
    if not step.get("fitted"):
        raise SystemExit(f"{fit_dir}/engine.json: the step overhead was not fitted ({step.get('note', '')})")
    table = []
    for r in rows:
        measured, predicted = float(r["measured_ms"]), float(r["predicted_ms"])
        table.append({"source": Path(r["source"]).name, "concurrency": int(float(r["concurrency"])),
                      "measured_ms": measured, "predicted_null_step_ms": predicted,
                      "engine_step_us": 1e3 * (measured - predicted)})
    per_run = [t["engine_step_us"] for t in table]
    n = len(per_run)
    sd = statistics.stdev(per_run)
    spread = sd * math.sqrt(1.0 + 1.0 / n)
    step.update(stderr_of_mean=step.get("stderr"), stderr=spread, note=(
        f"measured on the null model (1 layer, hidden 64, the same vocabulary and tokenizer): {n} runs, "
        f"engine step per run {min(per_run):.0f}-{max(per_run):.0f} us, sd {sd:.0f} us; stderr here is the "
        f"spread of one new run, sd x sqrt(1 + 1/n) = {spread:.0f} us (the fit's standard error of the "
        f"mean: stderr_of_mean)"))
    quality["uncertainty"] = "step_overhead_us stderr: the null-model runs' spread about their fit (one new run)"
    by_c: dict[int, list[float]] = {}
    for t in table:
        by_c.setdefault(t["concurrency"], []).append(t["engine_step_us"])
    quality["engine_step_us_by_concurrency"] = {str(c): {"mean": statistics.fmean(v), "runs": len(v),
                                                         "min": min(v), "max": max(v)} for c, v in sorted(by_c.items())}
    import dataclasses

    notes = list(engine.notes) + [
        "step_overhead_us measured on a null model served and benched like the model (scripts/vllm_cpu_loop.sh): "
        "vLLM's own per-step host work; what a larger model adds per layer is not in it"]
    out.mkdir(parents=True, exist_ok=True)
    dataclasses.replace(engine, name=f"{engine.name}-null", fit_quality=quality, notes=notes).save(out / "engine.json")
    with open(out / "null_engine.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(sorted(table, key=lambda t: (t["concurrency"], t["source"])))
    print(f"engine step {engine.step_overhead_us:.0f} us (fit), one run's spread {spread:.0f} us over {n} runs; "
          "per concurrency (mean us): " + ", ".join(f"c {c} {statistics.fmean(v):.0f}" for c, v in sorted(by_c.items())))
    print(f"wrote {out / 'engine.json'} and {out / 'null_engine.csv'}")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "build-model" and len(sys.argv) == 3:
        build_model(Path(sys.argv[2]))
    elif what == "build-null-model" and len(sys.argv) == 4:
        build_null_model(Path(sys.argv[2]), Path(sys.argv[3]))
    elif what == "null-engine" and len(sys.argv) == 4:
        null_engine(Path(sys.argv[2]), Path(sys.argv[3]))
    elif what == "versions":
        print(json.dumps(versions()))
    elif what == "vllm":
        _patch_vllm_version()
        from vllm.entrypoints.cli.main import main

        sys.argv = ["vllm"] + sys.argv[2:]
        sys.exit(main())
    else:
        raise SystemExit(__doc__)
