"""Count the kernels one decoder layer of a Hugging Face Llama launches in an eager decode step.

    PYTHONPATH=<dir with transformers> .venv/bin/python scripts/count_layer_kernels.py [--attn sdpa|eager] [--time]

Why: an engine that runs without CUDA graphs (Hugging Face `generate`, AutoAWQ, vLLM
--enforce-eager) issues every kernel of every layer from the host, one launch each, so the
launches per layer times the host's cost of one launch is time the step pays
(inferecon/model/engine.py, EAGER_*). This script is where the per-layer count comes from.

How: a tiny LlamaForCausalLM (random weights, bf16, CPU) prefills a few tokens, then one decode
step (one new token, KV cache in use) runs under torch's TorchDispatchMode, which sees every
aten op the layer dispatches. Ops that only make a view (view, transpose, slice, expand ...)
launch no kernel on a GPU and are counted apart; so are ops that create no data. Per layer =
(count at 4 layers - count at 2 layers) / 2, which removes the embedding, the final norm, the
lm head and the rotary tables computed once per step. CPU and GPU dispatch the same aten ops
for this model except inside attention (one fused SDPA op on either), so the count holds for a
GPU run of the same transformers version. transformers is not a dependency of inferecon: run
it with transformers on the path (the count printed is recorded in the engine figures).
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# No kernel on a GPU: metadata-only ops (views, aliases, shape queries; _unsafe_view is the
# reshape a 3-D linear's output gets, a view torch does not tag as one), and ops that make an
# empty tensor (the allocator, not a kernel).
NO_KERNEL = {"aten._unsafe_view.default", "aten.empty.memory_format", "aten.empty_strided.default", "aten.lift_fresh.default",
             "aten._local_scalar_dense.default", "aten.sym_size.int", "aten.sym_stride.int", "aten.detach.default"}


class Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.kernels: Counter = Counter()
        self.views: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if func.is_view or name in NO_KERNEL or "alias" in name:
            self.views[name] += 1
        else:
            self.kernels[name] += 1
        return func(*args, **(kwargs or {}))


def _prefilled(n_layers: int, attn: str, dtype):
    """A tiny Llama, its KV cache after an 8-token prompt, and the next token."""
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=n_layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      attn_implementation=attn)
    model = LlamaForCausalLM(cfg).to(dtype).eval()
    with torch.no_grad():
        out = model(torch.randint(0, 256, (1, 8)), past_key_values=DynamicCache(), use_cache=True)
    return model, out.past_key_values, out.logits[:, -1:].argmax(-1)


def decode_step_counts(n_layers: int, attn: str, dtype=torch.bfloat16) -> Count:
    model, cache, nxt = _prefilled(n_layers, attn, dtype)
    counter = Count()
    with torch.no_grad(), counter:
        model(nxt, past_key_values=cache, use_cache=True)
    return counter


def per_layer_counts(attn: str, dtype=torch.bfloat16) -> tuple[Counter, float]:
    """(kernels of one decoder layer by op, its view/metadata ops): (4 layers - 2 layers) / 2."""
    two, four = decode_step_counts(2, attn, dtype), decode_step_counts(4, attn, dtype)
    return Counter({k: v / 2 for k, v in (four.kernels - two.kernels).items()}), sum((four.views - two.views).values()) / 2


def decode_step_us(n_layers: int, attn: str, dtype, reps: int = 300) -> float:
    """Median host time of one decode step (the cache cropped back each time, so every step
    attends over the same 9 positions)."""
    import statistics
    import time

    model, cache, nxt = _prefilled(n_layers, attn, dtype)
    times = []
    with torch.no_grad():
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            model(nxt, past_key_values=cache, use_cache=True)
            times.append(time.perf_counter_ns() - t0)
            cache.crop(8)
    return statistics.median(times[reps // 5:]) / 1e3


def main() -> int:
    import transformers

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"))
    ap.add_argument("--time", action="store_true",
                    help="also time a decode step's host cost per layer (fp32, one thread: the CPU work of "
                         "64-wide ops is below a CUDA launch's cost, so this is a floor of a GPU host's)")
    args = ap.parse_args()
    per_layer, views = per_layer_counts(args.attn)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, attn_implementation={args.attn}")
    print(f"kernels per decoder layer: {sum(per_layer.values()):g} (plus {views:g} view/metadata ops)")
    gemms = sum(v for k, v in per_layer.items() if k.split(".")[1] in ("mm", "addmm", "bmm", "matmul", "linear"))
    print(f"of which GEMMs: {gemms:g}")
    for k, v in sorted(per_layer.items(), key=lambda kv: -kv[1]):
        print(f"  {v:4g}  {k}")
    if args.time:
        torch.set_num_threads(1)
        k32 = sum(per_layer_counts(args.attn, torch.float32)[0].values())
        per_layer_us = (decode_step_us(8, args.attn, torch.float32) - decode_step_us(2, args.attn, torch.float32)) / 6
        print(f"host time per layer (fp32, CPU, 1 thread): {per_layer_us:.1f} us over {k32:g} kernels = "
              f"{per_layer_us / k32:.2f} us per kernel")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
