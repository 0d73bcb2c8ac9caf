"""The `inferecon` command. Each subcommand lives in inferecon/commands/<name>.py and exposes
`register(subparsers)`; this module only wires them together and turns errors into one line."""

from __future__ import annotations

import argparse
import importlib
import sys

from inferecon import __version__
from inferecon.core.errors import exit_status

# Subcommand modules, in the order `inferecon --help` lists them. A module that fails to
# import (e.g. torch missing for `bench`) must not take the whole CLI down with it.
COMMANDS = ["specs", "predict", "frontier", "bench", "calibrate", "validate", "regress", "report"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 — never a usage dump
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or with `only` just that subcommand: importing every command module
    (measurement code included) would cost `inferecon predict` a good part of its start-up."""
    parser = _Parser(prog="inferecon", description="measure GPUs, calibrate an inference cost model, predict the speed/cost frontier")
    parser.add_argument("--version", action="version", version=f"inferecon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in [only] if only in COMMANDS else COMMANDS:
        try:
            module = importlib.import_module(f"inferecon.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("inferecon.commands"):
                continue  # not written yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return exit_status(lambda: args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
