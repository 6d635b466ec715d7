"""The package's import structure, parsed from the source (every import, top-level or not).

Strata, lowest first: ``kernels <- nn <- models <- train <- experiments``; ``data`` and
``biology`` stand beside them (``data`` is read by ``train`` and ``experiments`` only, and
neither imports anything of the strata). An import may only point to the same or a lower
stratum, and no set of modules may import each other in a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STRATA = {"kernels": 1, "nn": 2, "models": 3, "train": 4, "experiments": 5}
#: Who may import the packages that stand beside the strata.
BESIDE = {"data": ("data", "train", "experiments"), "biology": ("biology", "experiments")}


def _modules() -> dict[str, Path]:
    """``dotted name -> file`` for astroflax and experiments (``pkg/__init__.py`` -> ``pkg``)."""
    out = {}
    for root in ("astroflax", "experiments"):
        for path in (REPO / root).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``path`` (module ``name``) imports, anywhere in it."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # ``from pkg import sub`` imports the submodule when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:   # ``import a.b.c`` of a name inside a module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "experiments" else (parts[1] if len(parts) > 1 else "")


def test_no_import_runs_up_a_stratum_or_into_a_package_beside_them():
    bad = []
    for a, targets in _graph().items():
        for b in targets:
            src, dst = _area(a), _area(b)
            if dst in BESIDE:
                if src not in BESIDE[dst]:
                    bad.append(f"{a} -> {b}")
            elif dst in STRATA and (src in BESIDE or STRATA.get(src, 99) < STRATA[dst]):
                bad.append(f"{a} -> {b}")
    assert not bad, "imports against the strata:\n" + "\n".join(sorted(bad))


def test_no_import_circles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:   # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


@pytest.mark.parametrize(("source", "expected"), [
    ("from astroflax.nn import spec\n", {"astroflax.nn.spec"}),
    ("import astroflax.kernels.astro.api as api\n", {"astroflax.kernels.astro.api"}),
    ("def f():\n    from astroflax.train.config import ConfigError\n",
     {"astroflax.train.config"}),
])
def test_the_parser_sees_every_form_of_import(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert _imports(path, "astroflax.data.m", _modules()) == expected


def test_the_trainer_reaches_layers_and_kernels_only_through_the_models():
    # A model setting is declared and checked in nn/models; the trainer asks astroflax.models
    # (check_model, SETTINGS) instead of restating them, so it imports neither nn nor kernels.
    bad = sorted(f"{a} -> {b}" for a, targets in _graph().items() if _area(a) == "train"
                 for b in targets if _area(b) in ("nn", "kernels"))
    assert not bad, "train imports below the models:\n" + "\n".join(bad)
