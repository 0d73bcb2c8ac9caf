"""The `inferecon` command. Each subcommand lives in inferecon/commands/<name>.py and exposes
`register(subparsers)`; this module only wires them together and turns errors into one line."""

from __future__ import annotations

import argparse
import importlib
import sys

from inferecon import __version__
from inferecon.core.errors import ERROR_PREFIX, exit_status
from inferecon.core.output import run_guarded

# Subcommand modules, in the order `inferecon --help` lists them. A module that fails to
# import (e.g. torch missing for `bench`) must not take the whole CLI down with it.
COMMANDS = ["specs", "predict", "frontier", "bench", "calibrate", "validate", "regress", "report"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 — never a usage dump; the prefix every error has
        command = self.prog.removeprefix("inferecon").strip()  # "predict" for `inferecon predict`'s parser
        sys.stderr.write(f"{ERROR_PREFIX}{command + ': ' if command else ''}{message}\n")
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


def _run(argv: list[str]) -> int:
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, a usage error: their status, through the guard
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if not getattr(args, "func", None):  # `inferecon` alone: bad input like any other, in one line
        sys.stderr.write(f"{ERROR_PREFIX}no command given: one of {', '.join(COMMANDS)} "
                         "(`inferecon --help` says what each does)\n")
        return 2
    return exit_status(lambda: args.func(args))


def main(argv: list[str] | None = None) -> int:
    """Every subcommand behind one output layer (core/output.py): a stdout that fails part-way
    (full disk, closed descriptor, a reader gone) lets the command finish its files, then says
    so in one line; a stdout that cannot encode the tables' symbols gets ASCII stand-ins."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_guarded(lambda: _run(argv), ERROR_PREFIX)


if __name__ == "__main__":
    raise SystemExit(main())
