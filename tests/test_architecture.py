"""The import rules of ARCHITECTURE.md, checked on the source: library packages never import the application
layer, library packages import only their own rank or lower, and no two recon modules import each other
(directly or around a circle), deferred imports inside functions included.

Imports under ``if TYPE_CHECKING:`` are annotations only (never executed) and are ignored. The package root
``recon/__init__.py`` is the public facade (version, errors, a lazy ``recon.reconstruct``) and is left out
of the graph: every module may read ``recon.__version__``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "recon"

#: the library, lowest first: a module may import from its own rank or a lower one (ARCHITECTURE.md)
LIBRARY_RANK = {
    "errors": 0,
    "data": 1, "weights": 1, "arrays": 1,
    "io": 2,
    "sampling": 3,
    "operators": 4,
    "coils": 5, "simulate": 5,
    "solvers": 6,
    "metrics": 7,
    "training": 8,
}
#: the application layer: commands, files of results, figures, process and thread policy
APPLICATION = {"app", "__main__"}  # recon.app: pipeline, batch, demo, report, viz, cli, runtime, memory


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> set[str]:
    """Every ``recon.*`` module named by an import statement anywhere in ``tree``, except TYPE_CHECKING ones."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("recon."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("recon."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``module -> modules it imports`` over the recon package (the facade ``recon`` left out)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        name = _module_name(path, root)
        if name == "recon":
            continue
        graph[name] = {m for m in _imports(ast.parse(path.read_text(), str(path))) if m != name}
    return graph


def _top(module: str) -> str:
    return module.split(".")[1]


def test_every_top_level_package_has_a_layer():
    tops = {_top(m) for m in import_graph()}
    unplaced = tops - set(LIBRARY_RANK) - APPLICATION
    assert not unplaced, f"place {sorted(unplaced)} in ARCHITECTURE.md and in this test's layer tables"


def test_library_never_imports_the_application_layer():
    bad = sorted(f"{m} -> {t}" for m, ts in import_graph().items() if _top(m) in LIBRARY_RANK
                 for t in ts if _top(t) in APPLICATION)
    assert not bad, "library modules import the application layer:\n" + "\n".join(bad)


def test_library_imports_only_downwards():
    bad = sorted(f"{m} -> {t}" for m, ts in import_graph().items() if _top(m) in LIBRARY_RANK
                 for t in ts if _top(t) in LIBRARY_RANK and LIBRARY_RANK[_top(t)] > LIBRARY_RANK[_top(m)])
    assert not bad, "library modules import a higher layer:\n" + "\n".join(bad)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_no_import_circles():
    found = circles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("source, expect", [
    ({"a.py": "from recon.b import x\n", "b.py": "def f():\n    from recon.a import y\n"}, [["recon.a", "recon.b"]]),
    ({"a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from recon.b import x\n",
      "b.py": "from recon.a import y\n"}, []),
])
def test_the_circle_check_sees_deferred_imports_and_skips_annotations(tmp_path, source, expect):
    pkg = tmp_path / "recon"
    pkg.mkdir()
    for name, text in source.items():
        (pkg / name).write_text(text)
    assert circles(import_graph(pkg)) == expect


def test_the_layer_check_catches_an_upward_import(tmp_path):
    pkg = tmp_path / "recon" / "io"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("def f():\n    from recon.app.pipeline import reconstruct_file\n")
    graph = import_graph(tmp_path / "recon")
    assert graph == {"recon.io.x": {"recon.app.pipeline"}}
    assert _top("recon.app.pipeline") in APPLICATION and _top("recon.io.x") in LIBRARY_RANK


def test_the_application_layer_is_one_package():
    """Everything that is not library sits under recon/app/ (issue 13), apart from ``python -m recon``."""
    tops = {_top(m) for m in import_graph()}
    assert tops - set(LIBRARY_RANK) == {"app", "__main__"}


def test_old_application_paths_are_the_same_modules_with_a_warning():
    import importlib
    import sys
    import warnings

    from recon.app.batch import runner
    from recon.app import pipeline

    for old in ("recon.pipeline", "recon.batch.runner"):
        sys.modules.pop(old, None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(old)
        assert any(issubclass(w.category, DeprecationWarning) and "recon.app." in str(w.message) for w in caught)
        assert module is {"recon.pipeline": pipeline, "recon.batch.runner": runner}[old]
    assert pipeline.__spec__.name == "recon.app.pipeline"
