"""Running the CLI in-process on bad input: the contract is exit status 2 and exactly one line
on stderr, never a traceback."""

from inferecon import cli


def one_line_error(capsys, argv) -> str:
    """The single stderr line of `inferecon ARGV`, after checking exit 2 and no traceback."""
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
