"""The one output layer for the command line: standard output that fails, and text it cannot encode.

A command prints its tables to stdout and writes its files (CSV, PNG, profiles) with atomic
renames. When stdout fails part-way — a full disk (`> /dev/full`, ENOSPC), a closed descriptor
(`>&-`, EBADF), an I/O error, or a reader that went away (`| head -1`, EPIPE) — the command must
not die in the middle with a traceback: that would leave its files unwritten depending on where
the pipe happened to close. So stdout is wrapped: the first failing write is remembered, every
later write is dropped, the command runs to its end (its files complete), and only then is the
failure reported: one line on stderr and a non-zero exit (a closed pipe: quietly, 141, as `cat`).

A terminal or pipe whose encoding cannot carry the tables' `×`, `µ`, `α`, `≤` (LC_ALL=C without
UTF-8 mode: ASCII) gets ASCII stand-ins ("x", "u", "alpha"), never a UnicodeEncodeError.
"""

from __future__ import annotations

import codecs
import errno
import os
import sys

# What each non-ASCII character the tables and notes print becomes on an ASCII stream; anything
# else becomes "?". Readable stand-ins, not escapes: "8×H100" reads as "8xH100".
_ASCII = {"×": "x", "µ": "u", "μ": "u", "α": "alpha", "β": "beta", "γ": "gamma", "σ": "sigma", "≤": "<=",
          "≥": ">=", "±": "+/-", "≈": "~", "→": "->", "←": "<-", "—": "--", "–": "-", "…": "...", "−": "-",
          "·": "*", "°": "deg", "’": "'", "‘": "'", "“": '"', "”": '"', "²": "^2", "³": "^3", "½": "1/2",
          "Δ": "delta", "∞": "inf", "✓": "ok", "✗": "x", "\u00a0": " "}
ERROR_HANDLER = "inferecon-ascii"


def _ascii_fallback(exc: UnicodeError):
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    bad = exc.object[exc.start:exc.end]
    return "".join(_ASCII.get(ch, "?") for ch in bad), exc.end


codecs.register_error(ERROR_HANDLER, _ascii_fallback)


def _cannot_encode(stream) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "×µα≤".encode(encoding)
        return False
    except (UnicodeEncodeError, LookupError):
        return True


def ascii_safe(stream) -> None:
    """Give `stream` the ASCII stand-ins where its encoding cannot carry the tables' symbols."""
    if stream is not None and _cannot_encode(stream) and hasattr(stream, "reconfigure"):
        try:
            stream.reconfigure(errors=ERROR_HANDLER)
        except (ValueError, OSError):  # a detached or closed stream: nothing to print to anyway
            pass


class GuardedStdout:
    """stdout as the commands see it: writes go through until one fails, then are dropped."""

    def __init__(self, real):
        self._real = real
        # sys.stdout is None when fd 1 was closed before Python started (`inferecon specs >&-`).
        self.error: OSError | None = None if real is not None else OSError(errno.EBADF, "standard output is closed")
        self.dropped = False

    def _fail(self, exc: OSError) -> None:
        if self.error is None:
            self.error = exc
        self.dropped = True
        # The interpreter flushes sys.__stdout__ once more at exit; with fd 1 on /dev/null that
        # flush cannot fail a second time ("Exception ignored ... BrokenPipeError").
        try:
            if self._real is not None and self._real.fileno() == 1:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.close(devnull)
        except (OSError, ValueError, AttributeError, NotImplementedError):
            pass  # a captured stream (tests) has no descriptor: dropping the writes is enough

    def write(self, text: str) -> int:
        if self.error is not None:
            if text:
                self.dropped = True
            return len(text)
        try:
            return self._real.write(text)
        except OSError as exc:
            self._fail(exc)
            return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.error is not None or self._real is None:
            return
        try:
            self._real.flush()
        except OSError as exc:
            self._fail(exc)

    def isatty(self) -> bool:
        try:
            return self._real is not None and self._real.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name):  # encoding, fileno, buffer ...: the real stream's
        if self._real is None:
            raise AttributeError(name)
        return getattr(self._real, name)


def stdout_failure_line(exc: OSError) -> str:
    """The one line said about a failed stdout, in the user's words."""
    reason = {errno.ENOSPC: "the disk is full", errno.EBADF: "it is closed", errno.EIO: "an I/O error",
              errno.EDQUOT if hasattr(errno, "EDQUOT") else -1: "the disk quota is exceeded"}.get(
        exc.errno, exc.strerror or str(exc))
    return f"could not write to standard output ({reason}): the printed output is incomplete (any files the command wrote are complete)"


def run_guarded(fn, error_prefix: str) -> int:
    """Run fn() (which returns an exit status) with stdout guarded; report a failed stdout after it."""
    real = sys.stdout
    guard = GuardedStdout(real)
    ascii_safe(real)
    ascii_safe(sys.stderr)
    sys.stdout = guard
    try:
        status = fn()
        guard.flush()
    finally:
        sys.stdout = real
    if guard.error is None:
        return status
    if guard.error.errno == errno.EPIPE:
        return 141  # the reader went away (`| head`): quiet, as cat does (128 + SIGPIPE)
    if guard.error.errno == errno.EBADF and not guard.dropped:
        return status  # stdout closed but nothing was printed to it: nothing lost
    try:
        sys.stderr.write(error_prefix + stdout_failure_line(guard.error) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
    return status if status else 2
