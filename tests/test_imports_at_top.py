"""Imports sit at the top of their module (issue 13) unless deferring is the point.

An import inside a function is allowed only when it says why, with a ``# deferred: REASON`` comment on the
import's first line or the line just above it: an optional extra (twixtools, dask, nibabel, pydicom, ...), or a
heavy stack kept off a light entry point (torch off ``recon --help``/``recon info``, the learned and diffusion
stacks off ``recon run --method zero-filled``). A start-up test pins those light entry points, so a deferral
that stops being needed (or a hoist that breaks one) shows up.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "recon"
SAMPLE = ROOT / "data" / "sample_brain.h5"


def function_imports(source: str) -> list[tuple[int, str, str | None]]:
    """``(line, text, reason)`` of each import inside a function of ``source``; ``reason`` is the text after
    ``# deferred:`` on the import's first line or the line above it, ``None`` when there is none."""
    lines = source.splitlines()
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                here = lines[node.lineno - 1]
                above = lines[node.lineno - 2] if node.lineno > 1 else ""
                reason = None
                for text in (here, above.strip() if above.strip().startswith("#") else ""):
                    if "# deferred:" in text:
                        reason = text.split("# deferred:", 1)[1].strip() or None
                        break
                found.append((node.lineno, here.strip(), reason))
    return sorted(set(found))


def test_every_import_inside_a_function_says_why_it_is_deferred():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        for line, text, reason in function_imports(path.read_text()):
            if reason is None:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {text}")
    assert not bad, (f"{len(bad)} imports inside functions without a '# deferred: reason' comment "
                     "(hoist them to the module top):\n" + "\n".join(bad))


@pytest.mark.parametrize("source, expect", [
    ("import os\ndef f():\n    import sys\n", [(3, "import sys", None)]),
    ("def f():\n    import twixtools  # deferred: optional extra\n", [(2, "import twixtools  # deferred: optional extra",
                                                                         "optional extra")]),
    ("def f():\n    # deferred: heavy (torch)\n    import torch\n", [(3, "import torch", "heavy (torch)")]),
    ("def f():\n    import torch  # deferred:\n", [(2, "import torch  # deferred:", None)]),  # a reason is required
    ("def f():\n    x = 1  # deferred: no\n    import torch\n", [(3, "import torch", None)]),  # a code line above
])
def test_the_check_reads_the_reason(source, expect):
    assert function_imports(source) == expect


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_command_line_parser_does_not_import_torch():
    loaded = _modules_after("from recon.app.cli import build_parser; build_parser()")
    assert "torch" not in loaded


def test_a_zero_filled_run_imports_no_solver_stack(tmp_path):
    out = tmp_path / "zf.h5"
    loaded = _modules_after(f"from recon.app.cli import main; assert main(['run', {str(SAMPLE)!r}, {str(out)!r}, "
                            "'--method', 'zero-filled']) == 0")
    assert out.exists()
    heavy = ("matplotlib", "scipy", "sigpy", "skimage", "pywt", "recon.solvers.diffusion", "recon.solvers.learned",
             "recon.training", "recon.solvers.uncertainty", "twixtools", "nibabel", "pydicom", "ismrmrd")
    assert not {m for m in loaded if m.split(".")[0] in heavy or any(m.startswith(h) for h in heavy)}
