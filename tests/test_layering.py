"""The package's layering rules, read from the import statements of every module:
harness/ never imports kernels/ (how to time and store vs what to time), the model never
imports torch, kernels never import the model, a command never imports another command."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "inferecon"


def _imports(path: Path) -> set[str]:
    """Every module name an import statement in `path` names (inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _modules(sub: str):
    return sorted((PKG / sub).glob("*.py"))


@pytest.mark.parametrize("sub, forbidden", [
    ("harness", "inferecon.kernels"),
    ("model", "torch"),
    ("kernels", "inferecon.model"),
])
def test_package_never_imports(sub, forbidden):
    bad = {p.name: sorted(n for n in _imports(p) if n == forbidden or n.startswith(forbidden + "."))
           for p in _modules(sub)}
    assert not {k: v for k, v in bad.items() if v}


def test_no_command_imports_another():
    for p in _modules("commands"):
        others = {n for n in _imports(p) if n.startswith("inferecon.commands.") and n != f"inferecon.commands.{p.stem}"}
        assert not others, (p.name, others)


def test_the_checks_see_imports_inside_functions(tmp_path):
    # The rule is enforced on lazy imports too (most heavy imports here are inside functions).
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from inferecon.kernels import matmul\n    import torch\n")
    assert {"inferecon.kernels", "inferecon.kernels.matmul", "torch"} <= _imports(f)
