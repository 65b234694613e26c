"""No function or method in ``recon/`` is longer than 80 lines (issue 13, "God functions").

Length = ``end_lineno - lineno + 1`` of the ``def`` (decorators not counted, the docstring counted): a
function that long does several things, each of which deserves a name, a docstring and a test of its own.
"""
from __future__ import annotations

import ast
from pathlib import Path

MAX_LINES = 80
ROOT = Path(__file__).resolve().parents[1]

# Functions allowed over the limit (none: issue 13 split the last ones).
ALLOWED: set[tuple[str, str]] = set()


def long_functions(root: Path = ROOT) -> list[tuple[str, str, int]]:
    """``(file relative to the repository, qualified name, lines)`` of every function over ``MAX_LINES``."""
    found = []
    for path in sorted((root / "recon").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = prefix + child.name
                    n = child.end_lineno - child.lineno + 1
                    if n > MAX_LINES:
                        found.append((rel, name, n))
                    visit(child, name + ".")
                elif isinstance(child, ast.ClassDef):
                    visit(child, prefix + child.name + ".")
                else:
                    visit(child, prefix)

        visit(tree, "")
    return found


def test_no_function_over_80_lines():
    too_long = [(f, name, n) for f, name, n in long_functions() if (f, name) not in ALLOWED]
    assert not too_long, "functions over %d lines (split them into named steps):\n%s" % (
        MAX_LINES, "\n".join(f"  {f}::{name}: {n} lines" for f, name, n in too_long))


def test_allowlist_is_not_stale():
    """An allowed function that got shorter (or went away) leaves the list."""
    long = {(f, name) for f, name, _ in long_functions()}
    assert ALLOWED <= long, f"no longer over {MAX_LINES} lines, remove from ALLOWED: {sorted(ALLOWED - long)}"
