"""Shared fixtures: figures a plotting function saved, so a test checks what a plot shows
(its points, legend, scales) rather than the size of a PNG."""

import pytest


@pytest.fixture
def saved_figures(monkeypatch):
    """Every matplotlib Figure saved during the test, in order (saved as usual)."""
    from matplotlib.figure import Figure

    figures = []
    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures
