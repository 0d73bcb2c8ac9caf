"""argparse types for numbers: finite, in range, integral where they must be.

A bad number is refused while the command line is parsed, so the user sees one line
("argument --price: must be ...", exit 2) before any work, never an overflow, a hang over a
billion GPU counts, or a 300-digit cost. The bounds are generous sanity limits, not policy:
each says why it is where it is.
"""

from __future__ import annotations

import argparse
import math


def _fmt(x) -> str:
    return f"{x:g}" if isinstance(x, float) else f"{x:,}"


def int_in(lo: int, hi: int):
    """An integer in [lo, hi]; "4.0", "1e3" and "inf" are refused (argparse's int() does too,
    with a less helpful message)."""

    def parse(text: str) -> int:
        s = str(text).strip().replace("_", "")
        try:
            value = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number from {_fmt(lo)} to {_fmt(hi)}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be from {_fmt(lo)} to {_fmt(hi)}, got {text}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its own messages
    return parse


def float_in(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
    """A finite float in [lo, hi] (open at either end on request)."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"

    def parse(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in {left}{_fmt(lo)}, {_fmt(hi)}{right}, got {text!r}") from None
        ok = math.isfinite(value) and (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a finite number in {left}{_fmt(lo)}, {_fmt(hi)}{right}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


# Shared limits. Context: 10 M tokens is beyond any released model's window. GPUs: 65,536 is
# beyond the largest training cluster, and the frontier search grows with it. Price: $1,000 per
# GPU-hour is 100x today's on-demand rate; above it costs print as meaningless digits.
CONTEXT_TOKENS = int_in(0, 10_000_000)  # 0: a prompt-free decode (the paper's default)
MAX_GPUS = int_in(1, 65_536)
# Below $0.001 per GPU-hour (1/2000 of an H100's on-demand rate) every cost prints as $0.00: a
# typo or a unit slip, not a price.
MIN_PRICE_USD_PER_HOUR = 0.001
PRICE_USD_PER_HOUR = float_in(MIN_PRICE_USD_PER_HOUR, 1000.0)
ROWS = int_in(1, 100_000)
# Speculative decoding: a per-token acceptance probability (1 is the limit gamma + 1 tokens per round).
ACCEPTANCE = float_in(0.0, 1.0)
# Ranks on one node: beyond any node's GPU count (a typo would start that many processes).
NPROC_PER_NODE = int_in(1, 1024)
# A hung collective is given up after this; a day is beyond any sane bound, NaN is no bound.
TIMEOUT_S = float_in(0.0, 86_400.0, lo_open=True)


def given(what: str):
    """A name or path that names something. An empty or blank value (`--gpu "$GPU"` with the
    variable unset) is refused: read as absent, it would price the default GPU, measure instead
    of refitting (`calibrate --from ""`) or read the current folder as the file."""

    def parse(text: str) -> str:
        if not str(text).strip():
            raise argparse.ArgumentTypeError(f"names nothing: give {what}")
        return str(text)

    parse.__name__ = "name"
    return parse


def int_list_in(lo: int, hi: int, what: str = "values"):
    """Comma-separated whole numbers, each in [lo, hi] ("1,8,64"); empty items are skipped, an
    empty list is refused. Returns the list in the order given (callers sort where they must)."""
    one = int_in(lo, hi)

    def parse(text) -> list[int]:
        if isinstance(text, list):  # already parsed (a default given as a list)
            return text
        items = [v for v in str(text).split(",") if v.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"no {what} given")
        return [one(v) for v in items]

    parse.__name__ = "list"
    return parse


def parsed(parse, flag: str, text):
    """parse(text) outside argparse (a value read from a default or a file), its refusal a
    UserError naming the flag: the same bounds, the same words."""
    from inferecon.core.errors import UserError

    try:
        return parse(text)
    except argparse.ArgumentTypeError as exc:
        raise UserError(f"argument {flag}: {exc}") from None


# Sequences decoded together: 1,048,576 (2^20) is 4,000x vLLM's default max_num_seqs (256) and
# beyond any engine's batch; a larger one is a typo (1e12 sequences would need petabytes of KV).
BATCH = int_in(1, 1_048_576)
BATCHES = int_list_in(1, 1_048_576, "batch sizes")
CONTEXTS = int_list_in(1, 10_000_000, "context lengths")
# Draft tokens per speculative round: at acceptance a the expected accepted tokens
# (1 - a^(gamma+1)) / (1 - a) stop growing long before 64 while the draft's cost keeps growing;
# published speculative decoding uses 1-10.
GAMMA = int_in(1, 64)
# Tensor-, pipeline-, expert-parallel degree: no more than the GPUs an instance can have.
PARALLEL = int_in(1, 65_536)
# CPU threads for a measurement: beyond any one host's cores (the largest have a few hundred).
THREADS = int_in(1, 4096)
# Model layers run by the decode check: the deepest released models have ~126.
LAYERS = int_in(1, 10_000)
# Saved baselines counted as one set: a handful in practice.
BASELINE_RUNS = int_in(1, 1000)


def flag_error(exc) -> Exception:
    """A model's RequestError (model/layout.py), which names the request parameter at fault in
    the domain's words, said in terms of the command's flag: parameter max_gpus is --max-gpus."""
    return exc.for_flag("--" + exc.param.replace("_", "-"))
