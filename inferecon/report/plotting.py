"""matplotlib, imported once the way every plot needs it: off-screen (Agg), with a cache folder
that can be written, and refused in one line where it is missing.

A read-only HOME makes matplotlib print cache warnings on stderr at import; MPLCONFIGDIR then
points at a fresh temporary folder (matplotlib's own fallback, without its notes). A missing
matplotlib (a broken install: it is a declared dependency) costs the plot, never the tables and
CSVs a command writes: `optional_plot` draws a plot or says in one line why it could not.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from inferecon.core.errors import UserError

INSTALL_HINT = "pip install 'matplotlib>=3.7' (a dependency of inferecon: a full install has it)"


class PlotUnavailable(UserError):
    """matplotlib cannot be imported: the plot is not drawn."""


def _config_dir_writable() -> bool:
    base = os.environ.get("MPLCONFIGDIR") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config"), "matplotlib")
    probe = Path(base)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # matplotlib creates the missing folders under the first one that exists
    return os.access(probe, os.W_OK | os.X_OK)


def pyplot():
    """matplotlib.pyplot on the Agg backend, or PlotUnavailable."""
    if "matplotlib" not in sys.modules and not _config_dir_writable():
        os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="inferecon-mpl-")
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never needs a display
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable(f"the plot needs matplotlib, which cannot be imported ({exc}): {INSTALL_HINT}") from None
    return plt


def optional_plot(make, *args, **kwargs):
    """make(*args, **kwargs) (a plot function returning its path or paths), or None with a
    one-line note on stderr where matplotlib is missing: the command's tables still stand."""
    try:
        return make(*args, **kwargs)
    except PlotUnavailable as exc:
        sys.stderr.write(f"note: plot not drawn: {exc}\n")
        return None


def save_png(plt, fig, path, dpi: int = 130) -> Path:
    """Lay the figure out, write it to `path` as PNG and close it: written whole or not at all
    (a full disk leaves the previous plot, never half a PNG)."""
    from inferecon.core.outpath import atomic_path

    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path
