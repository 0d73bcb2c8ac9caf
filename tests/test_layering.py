"""The package's layering, read from the import statements of every module (imports inside
functions included): data flows one way — core below everything; model never imports torch,
harness, kernels, calibration, ingest, validation or regress; harness never imports kernels
(how to time and store vs what to time); kernels never import the model; a command never
imports another command — and there is no cycle anywhere in the module graph."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "inferecon"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


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


def _all_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _graph() -> dict[str, set[str]]:
    """module -> the inferecon modules it imports (a `from pkg import sub` names the module sub)."""
    mods = _all_modules()
    return {m: {n for n in _imports(p) if n in mods and n != m} for m, p in mods.items()}


def _modules(sub: str):
    return sorted((PKG / sub).rglob("*.py"))


FORBIDDEN = [
    ("core", ("inferecon.model", "inferecon.harness", "inferecon.kernels", "inferecon.calibration",
              "inferecon.ingest", "inferecon.validation", "inferecon.regress", "inferecon.report",
              "inferecon.commands", "inferecon.sweeps", "torch", "pandas", "matplotlib")),
    ("model", ("torch", "inferecon.harness", "inferecon.kernels", "inferecon.calibration", "inferecon.ingest",
               "inferecon.validation", "inferecon.regress", "inferecon.report", "inferecon.commands",
               "inferecon.sweeps")),
    ("harness", ("inferecon.kernels", "inferecon.model", "inferecon.calibration", "inferecon.commands",
                 "inferecon.sweeps")),
    ("kernels", ("inferecon.model", "inferecon.calibration", "inferecon.ingest", "inferecon.validation",
                 "inferecon.commands", "inferecon.report")),
    ("ingest", ("torch", "inferecon.harness", "inferecon.kernels", "inferecon.calibration", "inferecon.commands",
                "inferecon.validation", "inferecon.report")),
    ("calibration", ("inferecon.kernels", "inferecon.commands", "inferecon.validation", "inferecon.report",
                     "inferecon.regress", "inferecon.sweeps")),
    ("regress", ("inferecon.kernels", "inferecon.commands", "inferecon.calibration", "inferecon.validation")),
    ("validation", ("inferecon.commands",)),
    ("report", ("inferecon.commands", "inferecon.kernels")),
]


@pytest.mark.parametrize("sub, forbidden", FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_package_never_imports(sub, forbidden):
    bad = {p.name: sorted(n for n in _imports(p) for f in forbidden if n == f or n.startswith(f + "."))
           for p in _modules(sub)}
    assert not {k: v for k, v in bad.items() if v}


def test_no_command_imports_another():
    for p in _modules("commands"):
        others = {n for n in _imports(p) if n.startswith("inferecon.commands.") and n != f"inferecon.commands.{p.stem}"}
        assert not others, (p.name, others)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), and self-loops."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_anywhere():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_ring():
    # The ring the layout issue found in model/ (hardware -> uncertainty -> terms -> hardware).
    ring = {"a.hardware": {"a.uncertainty"}, "a.uncertainty": {"a.terms"}, "a.terms": {"a.hardware"}, "a.x": set()}
    assert _cycles(ring) == [["a.hardware", "a.terms", "a.uncertainty"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_nothing_of_ingest_regress_or_validation_left_in_calibration():
    names = {p.stem for p in _modules("calibration")}
    assert not {n for n in names if n.startswith("ingest") or n in {"regress", "baselines", "validate",
                                                                    "published", "engine_results"}}


def test_the_checks_see_imports_inside_functions(tmp_path):
    # The rule is enforced on lazy imports too (most heavy imports here are inside functions).
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from inferecon.kernels import matmul\n    import torch\n")
    assert {"inferecon.kernels", "inferecon.kernels.matmul", "torch"} <= _imports(f)
