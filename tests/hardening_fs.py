"""Real file-system faults for the hardening tests: a read-only directory and a full disk.

Root passes every permission check, so a chmod'ed directory is not read-only to root; a
read-only tmpfs mount is (EROFS), and a small tmpfs is a real full disk (ENOSPC). Mounting
needs root (or CAP_SYS_ADMIN): elsewhere the read-only directory is a chmod 555 folder (a
non-root user cannot write it) and the full-disk tests fall back to a write that raises ENOSPC.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path


def _mount(path: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def read_only_dir(path: Path):
    """A directory nobody running this test can write to, or None where none can be made."""
    path.mkdir(parents=True, exist_ok=True)
    if _mount(path, "ro,size=64k"):
        try:
            yield path
        finally:
            _umount(path)
    elif os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
    else:
        yield None


@contextlib.contextmanager
def small_disk(path: Path, size: str = "1m"):
    """A real small file system mounted at `path`, or None where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    if _mount(path, f"size={size}"):
        try:
            yield path
        finally:
            _umount(path)
    else:
        yield None


def fill(disk: Path) -> None:
    """Write a filler file until the disk is full (ENOSPC)."""
    with open(disk / "filler", "wb", buffering=0) as f:  # unbuffered: close() has nothing left to flush
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    # Small tails still fit after the last 4 KiB failed: take them too.
    with open(disk / "filler2", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def enospc(*args, **kwargs):
    """Stand-in for a write on a full disk (where no tmpfs can be mounted)."""
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
