"""Text helpers for the command line: help text and names for paths."""

import re


def first_paragraph(doc: str | None) -> str:
    """A module docstring's first paragraph on one line: the subcommand's --help description."""
    return " ".join((doc or "").split("\n\n")[0].split())


def slug(text: str) -> str:
    """A device or model name as a path component: "NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3"."""
    return re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-") or "device"


def fixed_or_dash(value: float | None, width: int, decimals: int = 1) -> str:
    """A table cell: `value` in fixed point, right-aligned in `width`, or "-" where there is none."""
    return f"{value:{width}.{decimals}f}" if value is not None else f"{'-':>{width}}"
