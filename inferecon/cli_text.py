"""Text helpers for the command line."""


def first_paragraph(doc: str | None) -> str:
    """A module docstring's first paragraph on one line: the subcommand's --help description."""
    return " ".join((doc or "").split("\n\n")[0].split())
