"""Helpers of scripts/vllm_cpu_loop.sh, run with the vLLM venv's Python (not inferecon's).

    vllm_cpu_loop.py build-model DIR      a tiny Llama (random weights) and a byte-level BPE
                                          tokenizer trained here, saved to DIR; nothing downloaded
    vllm_cpu_loop.py vllm ARGS...         vLLM's own command line (`vllm serve`, `vllm bench serve`)
    vllm_cpu_loop.py versions             the versions the manifest records, as JSON

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


def build_model(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)  # the same random weights every time: two runs serve the same model
    config = LlamaConfig(**CONFIG, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(config)
    n = sum(p.numel() for p in model.parameters())
    if n != EXPECTED_PARAMS:
        raise SystemExit(f"tiny Llama has {n:,} parameters, the hand count says {EXPECTED_PARAMS:,}")
    model.to(torch.bfloat16).save_pretrained(out)  # bf16 on disk; vLLM casts to --dtype

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


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "build-model" and len(sys.argv) == 3:
        build_model(Path(sys.argv[2]))
    elif what == "versions":
        print(json.dumps(versions()))
    elif what == "vllm":
        _patch_vllm_version()
        from vllm.entrypoints.cli.main import main

        sys.argv = ["vllm"] + sys.argv[2:]
        sys.exit(main())
    else:
        raise SystemExit(__doc__)
