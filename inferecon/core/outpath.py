"""Where commands write: one check of an output path before any work, and one atomic write.

`check_out_dir` runs first, so a command that cannot write its results fails in one line
before it spends minutes measuring or searching. Every file inferecon writes goes through
`atomic_write` (temp file beside the target, fsync, rename): a reader, a crash or a full disk
never leaves half a file, and a failed write names the file and says the previous one is
intact.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from inferecon.core.errors import UserError


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any thread exists.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp makes 0600 files (private temp files); results are meant to be read by others, so
# they get the mode open() would give: 0666 less the umask (0644 by default).
FILE_MODE = 0o666 & ~_read_umask()


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _first_existing(path: Path) -> Path:
    """The nearest ancestor of `path` (itself included) that exists."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_out_dir(path, flag: str = "--out") -> Path:
    """`path` as a directory that exists or can be created, and that can be written to.

    Probes for real (creates what is missing, writes and removes a temp file, removes the
    directories it created) rather than asking os.access: root passes every permission check
    and still cannot write under /proc or on a read-only mount."""
    if not str(path).strip():  # Path("") is ".": an empty --out would write where the command runs
        raise UserError(f"{flag} is empty: give a folder (e.g. {flag} results/run1)")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: a file, not a directory")
    base = _first_existing(path.absolute())
    if not base.is_dir():
        raise UserError(f"{flag} {path}: {base} is a file, not a directory")
    created = []
    try:
        for p in reversed([path.absolute(), *path.absolute().parents]):
            if not p.exists():
                p.mkdir()
                created.append(p)
        fd, probe = tempfile.mkstemp(prefix=".inferecon-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write there ({_reason(exc)})") from None
    finally:
        for p in reversed(created):
            try:
                p.rmdir()
            except OSError:
                pass
    return path


def check_out_file(path, flag: str = "--out") -> Path:
    """`path` as a file to (over)write: not a directory, and its folder writable."""
    if not str(path).strip():
        raise UserError(f"{flag} is empty: give a file name (e.g. {flag} page.html)")
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: a directory, not a file")
    check_out_dir(path.parent if str(path.parent) else Path("."), flag=f"{flag} {path}: folder")
    return path


def _fail(path: Path, exc: OSError):
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    what = "disk full" if full else _reason(exc)
    kept = "the previous file is intact" if path.exists() else "nothing was written"
    raise UserError(f"cannot write {path}: {what}; {kept}") from None


@contextmanager
def atomic_path(path):
    """Yield a temp path beside `path` (".NAME.XXXX.tmp": a resumed run sweeps these up); on
    success it is fsynced and renamed over `path`, on any failure removed. Writers that pick a
    format from the file name (matplotlib) must be told the format."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, FILE_MODE)
        os.close(fd)
    except OSError as exc:
        _fail(path, exc)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        _fail(path, exc)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path, write) -> None:
    """Call write(binary file object) on a temp file beside `path`, then rename it over `path`."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()


def write_bytes(path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())
