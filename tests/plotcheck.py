"""What a saved figure shows: every plotted point (scatter offsets and line vertices) of every
axes, so a test checks that the rows of a written table are the points on its plot."""

from __future__ import annotations

import numpy as np


def plotted_points(fig) -> np.ndarray:
    pts = []
    for ax in fig.axes:
        for c in ax.collections:
            off = np.asarray(c.get_offsets(), dtype=float)
            if off.ndim == 2 and off.shape[1] == 2:
                pts.extend(map(tuple, off))
        for line in ax.get_lines():
            pts.extend(zip(np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)))
    return np.array(pts, dtype=float).reshape(-1, 2)


def assert_points_plotted(fig, xs, ys, rel: float = 1e-6) -> None:
    """Each (x, y) is a point of the figure (to `rel`, for tables written rounded)."""
    pts = plotted_points(fig)
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    assert len(xs) > 0, "no rows to look for on the plot"
    for x, y in zip(xs, ys):
        hit = np.isclose(pts[:, 0], x, rtol=rel, atol=0) & np.isclose(pts[:, 1], y, rtol=rel, atol=0)
        assert hit.any(), f"({x:g}, {y:g}) is not on the plot"
