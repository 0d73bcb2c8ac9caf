"""Checked reads of fields in a JSON file someone else wrote (nccl-tests -J, TensorRT-LLM and
genai-perf exports, vLLM benchmark results): the file is untrusted data.

Every read names the file, the field's path in it and what was expected, in one line: a string
where a number belongs, a list where an object belongs, a boolean where a count belongs
(`"completed": true` is not 1 request), a float where a whole number belongs (TP 2.5), NaN,
infinity, or a figure out of its physical range (a TPOT of 1e308 ms) — never an AttributeError,
KeyError or TypeError from deep inside a reader, never a silently converted figure.
"""

from __future__ import annotations

import math
from numbers import Real

from inferecon.core.errors import UserError


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return repr(value)[:40]


class JsonFields:
    """Reads of one file's fields; `what` names the format in the messages ("genai-perf export")."""

    def __init__(self, path, what: str):
        self.path = path
        self.what = what

    def fail(self, where: str, expected: str, value) -> UserError:
        return UserError(f"{self.path}: {where} must be {expected} in a {self.what}, got {_kind(value)}")

    def obj(self, value, where: str, required: bool = True) -> dict | None:
        if value is None and not required:
            return None
        if not isinstance(value, dict):
            raise self.fail(where, "an object", value)
        return value

    def items(self, value, where: str, required: bool = True) -> list:
        if value is None and not required:
            return []
        if not isinstance(value, list):
            raise self.fail(where, "a list", value)
        return value

    def text(self, value, where: str, required: bool = False) -> str | None:
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise self.fail(where, "a string", value)
        return value

    def number(self, value, where: str, lo: float | None = None, hi: float | None = None, *,
               required: bool = True, lo_open: bool = False, unit: str = "") -> float | None:
        """A finite number in [lo, hi] (open at lo on request); None where absent and optional.
        Numbers written as strings ("12.5") are refused: a file that quotes its figures is
        not the format this reader knows, and "1e308" would pass any string check."""
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, Real):
            raise self.fail(where, f"a number{f' ({unit})' if unit else ''}", value)
        try:
            value = float(value)
        except OverflowError:  # a 400-digit integer
            raise self.fail(where, "a finite number", "a number too large for a float") from None
        if not math.isfinite(value):
            raise self.fail(where, "a finite number", value)
        below = lo is not None and (value <= lo if lo_open else value < lo)
        if below or (hi is not None and value > hi):
            left = "(" if lo_open else "["
            raise UserError(f"{self.path}: {where} = {value:g}{f' {unit}' if unit else ''} is outside "
                            f"{left}{lo:g}, {hi:g}] in a {self.what}")
        return value

    def whole(self, value, where: str, lo: int = 0, hi: int = 2**53, *, required: bool = True) -> int | None:
        """A whole number in [lo, hi]: 2.0 is 2, 2.5 and true are refused."""
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, Real):
            raise self.fail(where, "a whole number", value)
        try:
            ok = math.isfinite(value) and float(value) == int(value)
        except (OverflowError, ValueError):
            ok = False
        if not ok:
            raise self.fail(where, "a whole number", value)
        value = int(value)
        if not lo <= value <= hi:
            raise UserError(f"{self.path}: {where} = {value} is outside [{lo}, {hi:,}] in a {self.what}")
        return value
