"""The one error type the CLI turns into a one-line message and exit status 2."""

import errno

# Every entry point (the CLI, and the modules torchrun starts on each rank) prints errors with
# this prefix; a parent reading its ranks' output looks for it.
ERROR_PREFIX = "inferecon: error: "


class UserError(Exception):
    """Bad input or an impossible request: the message is shown to the user as is."""


class RequestError(UserError):
    """An impossible request, said in the domain's words by library code. `param` names the
    request parameter at fault (tp, batch, max_gpus, tolerance ...) and `value` its value as the
    user would write it, so that the command layer can name its own flag (`for_flag`)."""

    def __init__(self, param: str, value, message: str):
        super().__init__(message)
        self.param = param
        self.value = value

    def for_flag(self, flag: str) -> UserError:
        """The same error, said in terms of the command's flag."""
        return UserError(f"{flag} {self.value}: {self}")


def exit_status(fn) -> int:
    """Run an entry point: a UserError is one line on stderr and exit status 2, Ctrl-C is 130,
    a closed output pipe ends quietly (141), anything else keeps its traceback (a bug, not bad
    input)."""
    import sys

    try:
        status = int(fn() or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except BrokenPipeError:
        # The reader went away (`inferecon specs | head`): stop quietly, as cat does. stdout is
        # pointed at /dev/null so the interpreter's own flush at exit does not fail again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by a closed pipe
    except UserError as exc:
        sys.stderr.write(ERROR_PREFIX + str(exc).replace("\n", " ") + "\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("inferecon: interrupted\n")
        return 130
    except OSError as exc:
        # A path the user named that the system refuses to look at (a name over NAME_MAX, a
        # symlink loop, no permission): bad input wherever it is first touched, not a bug.
        if exc.errno not in _PATH_ERRNOS or not exc.filename:
            raise
        sys.stderr.write(f"{ERROR_PREFIX}{exc.filename}: {exc.strerror}\n")
        return 2


_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP, errno.EACCES, errno.EPERM}


def suggest(name: str, choices, n: int = 3) -> str:
    """' (did you mean a, b?)' for the closest known names, or '' when none is close."""
    import difflib

    choices = list(dict.fromkeys(choices))  # a name offered twice (a database's and a profile's) is one suggestion
    close = difflib.get_close_matches(name.lower(), [c.lower() for c in choices], n=n, cutoff=0.5)
    # Keep the catalog's spelling, not the lower-cased one.
    by_lower = {c.lower(): c for c in choices}
    close = [by_lower[c] for c in close]
    if not close:
        # Substring matches catch "70b" -> "llama-3-70b" that difflib's ratio misses.
        close = [c for c in choices if name.lower() in c.lower()][:n]
    if not close:
        # The first part with a digit, shared, catches a vendor's spelling, "nvidia-h100" ->
        # "h100-sxm", that neither the ratio (the prefix dilutes it) nor a substring finds. The
        # first only: "NVIDIA H100 80GB HBM3" names an H100, not every 80 GB card.
        part = next((t for t in _parts(name) if any(ch.isdigit() for ch in t)), None)
        close = [c for c in choices if part in _parts(c)][:n] if part else []
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _parts(name: str) -> list[str]:
    """A name's parts, in order: "NVIDIA H100 80GB" -> nvidia, h100, 80gb."""
    import re

    return [t for t in re.split(r"[^a-z0-9.]+", name.lower()) if t]


def lookup(kind: str, name: str, table: dict, aliases: dict, hint: str):
    """table[name] by case-insensitive name or alias, else a UserError that suggests close
    names and says where else to look (`hint`)."""
    key = name.strip().lower()
    key = aliases.get(key, key)
    if key in table:
        return table[key]
    raise UserError(f"unknown {kind} {name!r}{suggest(name, list(table))}; `inferecon specs` lists them, {hint}")


def existing_dir(path, what: str = "run directory", flag: str = ""):
    """`path` as a folder that exists, or a UserError that says whether it is missing or a file
    (`flag` leads the message where the path came from an option: "--candidate")."""
    from pathlib import Path

    path = Path(path)
    lead = f"{flag} {path}" if flag else str(path)
    if path.is_dir():
        return path
    if path.exists():
        raise UserError(f"{lead}: a file, not a {what}")
    raise UserError(f"{lead}: no such {what}")


def load_json(path, what: str):
    """The JSON in `path`, or a UserError naming `what` was expected there."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: a directory, not a {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({getattr(exc, 'msg', exc)})") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to be a {what}") from None
    except ValueError as exc:  # a number of more than 4,300 digits (int_max_str_digits)
        raise UserError(f"{path}: not a {what} ({str(exc).split(':')[0]})") from None
