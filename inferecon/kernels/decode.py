"""A real transformer decode step: a Llama-style decoder in torch with random weights.

What one step does (one new token for each of `batch` sequences whose KV cache already holds
`context` positions): embedding lookup; per layer RMSNorm -> fused QKV -> rotary -> GQA
attention over the context + 1 cached positions -> O projection -> all-reduce -> RMSNorm ->
SwiGLU MLP (or a top-k routed MoE layer) -> all-reduce; final RMSNorm; vocab-parallel lm head;
greedy sampling. Nothing is downloaded: the weights are seeded random numbers, which decode
exactly as fast as trained ones.

Tensor parallelism (Megatron-style) over the ranks of a torch.distributed world: QKV and
gate/up are column-parallel (each rank owns n_heads/tp query heads, its KV heads — split
across ranks, replicated when tp > n_kv_heads — and d_ff/tp of the MLP), O and down are
row-parallel, followed by one all-reduce each: two all-reduces per layer, as the cost model
charges. The lm head is split over the vocabulary; ranks agree on the argmax with one small
all-gather. Every rank draws the *full* weight from the same seed and keeps its slice, so a
TP run computes the same function as a one-rank run (tested).

Timing: on GPU the whole step is captured in one CUDA graph and replayed (static token,
position and cache tensors), as production servers decode; on CPU each step is timed with
perf_counter. An MoE step picks its experts from the data (host-side grouping by expert, so
only the experts routed to are read), which cannot be captured: MoE steps run eagerly and
the row says so (`cuda_graph` False).

The same position (`context`) is rewritten on every timed step, so the cache never grows and
every repetition attends over exactly context + 1 positions.

This module never imports the cost model: `DecoderShape` carries the few shapes it needs.
It only measures: `measure_case(...)` on this process's share of the tensor-parallel group.
Running the cases on a torchrun world of `tp` ranks is inferecon.sweeps.decode's (`python -m
inferecon.sweeps.decode` is what torchrun starts on every rank).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from inferecon.core.errors import UserError
from inferecon.harness.timing import Measurement, TimingConfig, measure

BENCHMARK = "decode"
# Bump whenever what a row means changes (step contents, timing method, layer scaling).
BENCHMARK_VERSION = 1
DTYPES = ("bf16", "fp32")


@dataclass(frozen=True)
class DecoderShape:
    """The shapes of the decoder to build (a copy of the ModelSpec fields a decode step uses)."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_ff: int
    vocab: int
    n_experts: int = 0
    n_active_experts: int = 0
    n_shared_experts: int = 0
    d_ff_expert: int = 0
    n_dense_layers: int = 0  # leading dense layers of an MoE model
    dtype: str = "bf16"
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5

    def __post_init__(self):
        for f in ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_head", "d_ff", "vocab"):
            if getattr(self, f) <= 0:
                raise UserError(f"decoder: {f} must be positive, got {getattr(self, f)}")
        if self.n_heads % self.n_kv_heads:
            raise UserError(f"decoder: {self.n_heads} heads not divisible by {self.n_kv_heads} KV heads")
        if self.d_head % 2:
            raise UserError("decoder: rotary embeddings need an even head dimension")
        if self.dtype not in DTYPES:
            raise UserError(f"decoder: dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.n_experts and not (0 < self.n_active_experts <= self.n_experts and self.d_ff_expert > 0):
            raise UserError("decoder: MoE needs 0 < active experts <= experts and d_ff_expert > 0")

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    def is_moe_layer(self, layer: int) -> bool:
        return self.is_moe and layer >= self.n_dense_layers

    def with_layers(self, n_layers: int) -> "DecoderShape":
        return dataclasses.replace(self, n_layers=n_layers, n_dense_layers=min(self.n_dense_layers, n_layers))

    def check_tp(self, tp: int) -> None:
        """Raise UserError when the heads cannot be split over `tp` ranks."""
        if tp < 1:
            raise UserError(f"--tp must be at least 1, got {tp}")
        if self.n_heads % tp:
            raise UserError(f"--tp {tp} does not divide the {self.n_heads} attention heads")
        if self.n_kv_heads % tp and tp % self.n_kv_heads:
            raise UserError(f"--tp {tp} neither divides nor is a multiple of the {self.n_kv_heads} KV heads")
        if self.d_ff % tp or (self.is_moe and self.d_ff_expert % tp):
            raise UserError(f"--tp {tp} does not divide the MLP hidden size")

    def weight_bytes(self) -> int:
        """Bytes of all weights (one rank of tp = 1), for the fits-in-memory check."""
        attn = 2 * self.d_model * self.n_heads * self.d_head + 2 * self.d_model * self.n_kv_heads * self.d_head
        dense = 3 * self.d_model * self.d_ff
        moe = (self.n_experts + self.n_shared_experts) * 3 * self.d_model * self.d_ff_expert + self.d_model * self.n_experts
        n_moe = self.n_layers - self.n_dense_layers if self.is_moe else 0
        params = self.n_layers * attn + (self.n_layers - n_moe) * dense + n_moe * moe + 2 * self.vocab * self.d_model
        return params * self.elem_bytes

    def kv_bytes(self, batch: int, context: int) -> int:
        return 2 * self.n_layers * batch * (context + 1) * self.n_kv_heads * self.d_head * self.elem_bytes

    @property
    def elem_bytes(self) -> int:
        return 2 if self.dtype == "bf16" else 4


@dataclass(frozen=True)
class TPGroup:
    """This rank's place in the tensor-parallel group (rank 0 of 1 without torch.distributed)."""

    rank: int = 0
    size: int = 1

    def all_reduce(self, t):
        if self.size > 1:
            import torch.distributed as dist

            dist.all_reduce(t)
        return t


def _kv_heads_of_rank(shape: DecoderShape, tp: int, rank: int) -> tuple[int, int]:
    """[lo, hi) of the KV heads rank `rank` needs: its own share when tp divides the KV heads,
    else the one head its query heads attend with (replicated on several ranks)."""
    hq = shape.n_heads // tp
    group = shape.n_heads // shape.n_kv_heads  # query heads per KV head
    lo = (rank * hq) // group
    hi = ((rank + 1) * hq - 1) // group + 1
    return lo, hi


class Decoder:
    """One rank's share of the decoder, its KV cache and the static tensors of one step."""

    def __init__(self, shape: DecoderShape, batch: int, context: int, device: str,
                 group: TPGroup = TPGroup(), seed: int = 0):
        import torch

        shape.check_tp(group.size)
        if batch < 1 or context < 0:
            raise UserError("decoder: batch must be >= 1 and context >= 0")
        self.torch = torch
        self.shape, self.batch, self.context, self.group = shape, batch, context, group
        self.device = torch.device(device)
        self.dtype = torch.bfloat16 if shape.dtype == "bf16" else torch.float32
        tp, r = group.size, group.rank
        self.hq = shape.n_heads // tp
        self.kv_lo, self.kv_hi = _kv_heads_of_rank(shape, tp, r)
        self.n_kv = self.kv_hi - self.kv_lo
        self.q_per_kv = self.hq // self.n_kv
        self.ff = shape.d_ff // tp
        self.ffe = shape.d_ff_expert // tp if shape.is_moe else 0
        self.vocab_chunk = math.ceil(shape.vocab / tp)
        self.vocab_lo = min(shape.vocab, r * self.vocab_chunk)
        self.vocab_hi = min(shape.vocab, (r + 1) * self.vocab_chunk)
        self._seed = seed
        self._counter = 0
        d, dh = shape.d_model, shape.d_head

        with torch.no_grad():
            # Input embedding: replicated (a step reads only `batch` rows of it).
            self.embed = self._full((shape.vocab, d), 1.0)
            self.layers = []
            for layer in range(shape.n_layers):
                L = {}
                wq = self._full((shape.n_heads * dh, d), d ** -0.5)
                wk = self._full((shape.n_kv_heads * dh, d), d ** -0.5)
                wv = self._full((shape.n_kv_heads * dh, d), d ** -0.5)
                # Column-parallel QKV: this rank's query heads and KV heads, fused in one GEMM.
                L["wqkv"] = torch.cat([
                    wq[r * self.hq * dh:(r + 1) * self.hq * dh],
                    wk[self.kv_lo * dh:self.kv_hi * dh],
                    wv[self.kv_lo * dh:self.kv_hi * dh],
                ]).contiguous()
                del wq, wk, wv
                wo = self._full((d, shape.n_heads * dh), (shape.n_heads * dh) ** -0.5)
                L["wo"] = wo[:, r * self.hq * dh:(r + 1) * self.hq * dh].contiguous()  # row-parallel
                del wo
                L["norm1"] = torch.ones(d, device=self.device, dtype=self.dtype)
                L["norm2"] = torch.ones(d, device=self.device, dtype=self.dtype)
                if shape.is_moe_layer(layer):
                    L["router"] = self._full((shape.n_experts, d), d ** -0.5)
                    experts = [self._mlp(d, shape.d_ff_expert, self.ffe) for _ in range(shape.n_experts)]
                    L["e_gate_up"] = torch.stack([e[0] for e in experts])
                    L["e_down"] = torch.stack([e[1] for e in experts])
                    del experts
                    L["shared"] = [self._mlp(d, shape.d_ff_expert, self.ffe) for _ in range(shape.n_shared_experts)]
                else:
                    L["gate_up"], L["down"] = self._mlp(d, shape.d_ff, self.ff)
                # KV cache pre-filled with random data up to `context`; slot `context` is the
                # one each step writes.
                # Drawn for all KV heads from the seed, then sliced: a TP rank's cache is the
                # one-rank cache's heads, so TP and one-rank runs compute the same step.
                cache = (batch, shape.n_kv_heads, context + 1, dh)
                L["k_cache"] = self._full(cache, 1.0)[:, self.kv_lo:self.kv_hi].contiguous()
                L["v_cache"] = self._full(cache, 1.0)[:, self.kv_lo:self.kv_hi].contiguous()
                self.layers.append(L)
            self.final_norm = torch.ones(d, device=self.device, dtype=self.dtype)
            lm = self._full((shape.vocab, d), d ** -0.5)
            self.lm_head = lm[self.vocab_lo:self.vocab_hi].contiguous()  # vocab-parallel
            del lm

            # Static inputs/outputs of a step (CUDA graphs replay on fixed addresses).
            gen = torch.Generator(device="cpu").manual_seed(seed + 7)
            tokens = torch.randint(0, shape.vocab, (batch,), generator=gen)
            self.tokens = tokens.to(self.device)
            self.pos = torch.full((1,), context, dtype=torch.long, device=self.device)
            self.next_tokens = torch.zeros(batch, dtype=torch.long, device=self.device)
            self.hidden = torch.zeros(batch, d, dtype=self.dtype, device=self.device)
            half = dh // 2
            self.inv_freq = 1.0 / (shape.rope_theta ** (torch.arange(0, half, device=self.device,
                                                                      dtype=torch.float32) / half))
            self.scale = dh ** -0.5
            if tp > 1:
                self._gathered = torch.zeros(tp * batch, 2, dtype=torch.float32, device=self.device)

    # -- weights ---------------------------------------------------------------------------
    def _full(self, size, std):
        """A full (unsplit) weight drawn from this decoder's seed sequence: every rank draws
        the same numbers and keeps its own slice."""
        torch = self.torch
        self._counter += 1
        gen = torch.Generator(device=self.device).manual_seed(self._seed * 1000003 + self._counter)
        w = torch.empty(size, device=self.device, dtype=torch.float32)
        w.normal_(0.0, std, generator=gen)
        return w.to(self.dtype)

    def _mlp(self, d, ff_full, ff_local):
        """(gate_up [2·ff_local, d] column-parallel, down [d, ff_local] row-parallel)."""
        torch = self.torch
        r = self.group.rank
        gate = self._full((ff_full, d), d ** -0.5)[r * ff_local:(r + 1) * ff_local]
        up = self._full((ff_full, d), d ** -0.5)[r * ff_local:(r + 1) * ff_local]
        down = self._full((d, ff_full), ff_full ** -0.5)[:, r * ff_local:(r + 1) * ff_local]
        return torch.cat([gate, up]).contiguous(), down.contiguous()

    # -- the step ----------------------------------------------------------------------------
    def _rms(self, x, w):
        torch = self.torch
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.shape.norm_eps)
        return xf.to(self.dtype) * w

    def _rope(self, x):
        """Rotary embedding at position `pos` (rotate-half convention), x: [b, heads, d_head]."""
        torch = self.torch
        ang = self.pos.float()[:, None] * self.inv_freq[None, :]  # [1, half]
        cos = torch.cos(ang).to(x.dtype)
        sin = torch.sin(ang).to(x.dtype)
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def _attention(self, L, x):
        torch = self.torch
        b, dh = self.batch, self.shape.d_head
        qkv = x @ L["wqkv"].t()
        nq, nk = self.hq * dh, self.n_kv * dh
        q = qkv[:, :nq].view(b, self.hq, dh)
        k = qkv[:, nq:nq + nk].view(b, self.n_kv, dh)
        v = qkv[:, nq + nk:].view(b, self.n_kv, dh)
        q, k = self._rope(q), self._rope(k)
        # Write this step's K/V at slot `context` (index_copy_ with a device tensor: capturable).
        L["k_cache"].index_copy_(2, self.pos, k.unsqueeze(2))
        L["v_cache"].index_copy_(2, self.pos, v.unsqueeze(2))
        # GQA as a batched GEMM over the whole cache: each KV head's query group is the M
        # dimension, so the cache is read once per step, never repeated per query head.
        qg = q.view(b, self.n_kv, self.q_per_kv, dh)
        scores = (qg @ L["k_cache"].transpose(-1, -2)) * self.scale  # [b, kv, g, ctx+1]
        probs = torch.softmax(scores.float(), dim=-1).to(self.dtype)
        out = (probs @ L["v_cache"]).reshape(b, self.hq * dh)
        return self.group.all_reduce(out @ L["wo"].t())

    def _swiglu(self, x, gate_up, down):
        torch = self.torch
        h = x @ gate_up.t()
        g, u = h.chunk(2, dim=-1)
        return (torch.nn.functional.silu(g) * u) @ down.t()

    def _moe(self, L, x):
        """Top-k routing with tokens grouped per expert: gather the tokens routed to each
        expert, run only those experts, scatter-add the weighted outputs back."""
        torch = self.torch
        k = self.shape.n_active_experts
        probs = torch.softmax((x @ L["router"].t()).float(), dim=-1)
        weights, experts = torch.topk(probs, k, dim=-1)  # [b, k]
        weights = (weights / weights.sum(-1, keepdim=True)).to(self.dtype).flatten()
        flat = experts.flatten()
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=self.shape.n_experts).tolist()  # host sync: not capturable
        out = torch.zeros_like(x)
        start = 0
        for e, c in enumerate(counts):
            if c == 0:
                continue  # an expert no token picked is never read
            sel = order[start:start + c]
            start += c
            tok = sel // k
            y = self._swiglu(x.index_select(0, tok), L["e_gate_up"][e], L["e_down"][e])
            out.index_add_(0, tok, y * weights[sel, None])
        for gate_up, down in L["shared"]:
            out = out + self._swiglu(x, gate_up, down)
        return out

    def _sample(self, h):
        """Greedy next token from the vocab-parallel lm head."""
        torch = self.torch
        logits = h @ self.lm_head.t()
        val, idx = logits.float().max(dim=-1)
        if self.group.size == 1:
            self.next_tokens.copy_(idx)
            return
        import torch.distributed as dist

        # fp32 holds token ids exactly up to 2^24 (every vocabulary in the catalog is smaller).
        mine = torch.stack([val, (idx + self.vocab_lo).float()], dim=-1)
        dist.all_gather_into_tensor(self._gathered, mine)
        both = self._gathered.view(self.group.size, self.batch, 2)
        best = both[..., 0].argmax(dim=0)  # [b]
        chosen = both[..., 1].gather(0, best[None, :])[0]
        self.next_tokens.copy_(chosen.long())

    def step(self):
        torch = self.torch
        with torch.no_grad():
            x = self.embed.index_select(0, self.tokens)
            for i, L in enumerate(self.layers):
                x = x + self._attention(L, self._rms(x, L["norm1"]))
                h = self._rms(x, L["norm2"])
                mlp = self._moe(L, h) if "router" in L else self._swiglu(h, L["gate_up"], L["down"])
                x = x + self.group.all_reduce(mlp)  # row-parallel down projection: partial sums
            h = self._rms(x, self.final_norm)
            self.hidden.copy_(h)
            self._sample(h)
        return self.next_tokens

    @property
    def graph_capturable(self) -> bool:
        return not self.shape.is_moe


# --------------------------------------------------------------------------------------------
# Measuring cases


@dataclass(frozen=True)
class DecodeCase:
    layers: int
    batch: int
    context: int

    def case_id(self, tp: int, dtype: str) -> str:
        return f"L{self.layers}/b{self.batch}/ctx{self.context}/tp{tp}/{dtype}"


def timing_config(device: str, quick: bool, fixed_reps: Optional[int] = None) -> TimingConfig:
    """Budget-driven on one rank. Under TP every rank must make the same number of calls (each
    step holds collectives), so the repetition count is fixed and the warm-up is done by the
    caller: `measure` then has nothing left to choose per rank."""
    if fixed_reps is not None:
        return TimingConfig(warmup_ms=0.0, budget_ms=1.0, min_reps=fixed_reps, max_reps=fixed_reps,
                            cuda_graph=(device == "cuda"))
    if device == "cuda":
        base = dict(warmup_ms=20, budget_ms=100 if quick else 300, min_reps=10, max_reps=2000)
    else:
        base = dict(warmup_ms=10, budget_ms=200 if quick else 1000, min_reps=5, max_reps=500)
    return TimingConfig(cuda_graph=(device == "cuda"), **base)


def _time_step(dec: Decoder, device: str, quick: bool, fixed_reps: Optional[int]) -> Measurement:
    cfg = timing_config(device, quick, fixed_reps)
    if not dec.graph_capturable:
        cfg = dataclasses.replace(cfg, cuda_graph=False)
    if fixed_reps is not None:
        for _ in range(3):  # the same warm-up calls on every rank
            dec.step()
    m = measure(dec.step, device=device, config=cfg)
    if dec.group.size > 1:
        # A step is done when its slowest rank is: the sample of a repetition is the max.
        import torch
        import torch.distributed as dist

        t = torch.tensor(m.samples_s, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        extra = m.extra
        m = Measurement.from_samples(t.tolist(), noisy_iqr_ratio=cfg.noisy_iqr_ratio, timer_name=m.timer_name)
        m.extra = extra
    return m


def measure_case(shape: DecoderShape, case: DecodeCase, device: str, group: TPGroup = TPGroup(),
                 quick: bool = False, fixed_reps: Optional[int] = None, seed: int = 0) -> dict:
    """Build the decoder for `case`, time one decode step, return the record fields."""
    dec = Decoder(shape.with_layers(case.layers), case.batch, case.context, device, group, seed)
    m = _time_step(dec, device, quick, fixed_reps)
    del dec
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()
    t = m.median_s
    tp = group.size
    return {
        "case_id": case.case_id(tp, shape.dtype),
        "layers_measured": case.layers,
        "batch": case.batch,
        "context": case.context,
        "tp": tp,
        "dtype": shape.dtype,
        **m.record_fields(),
        "cuda_graph": bool(m.extra.get("cuda_graph", False)),
        "timer": m.timer_name,
        "tokens_per_s_per_seq": 1.0 / t if t > 0 else float("nan"),
        "tokens_per_s_per_gpu": case.batch / t / tp if t > 0 else float("nan"),
    }


def fit_layers(layer_times: dict[int, float]) -> tuple[float, float]:
    """(a, b) of t(layers) = a + b·layers by least squares over the measured layer counts:
    a is the per-step part (embedding, final norm, lm head, sampling, graph launch), b one
    layer. Needs at least two distinct layer counts."""
    import numpy as np

    xs = np.array(sorted(layer_times), dtype=float)
    if xs.size < 2:
        raise ValueError("layer scaling needs two layer counts")
    ys = np.array([layer_times[int(x)] for x in xs])
    b, a = np.polyfit(xs, ys, 1)
    return float(a), float(b)


def extrapolate(layer_times: dict[int, float], n_layers: int) -> float:
    a, b = fit_layers(layer_times)
    return a + b * n_layers
