"""`inferecon specs`: the GPUs and models inferecon knows, with their sources."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("specs", help="list known GPUs and models with their sources")
    p.set_defaults(func=run)


def run(args) -> int:
    from inferecon.report.specs_table import specs_text

    print(specs_text())
    return 0
