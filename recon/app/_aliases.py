"""Old import paths of the application layer (``recon.pipeline``, ``recon.batch.runner``, ...), kept for one
release: importing one warns (:class:`DeprecationWarning`) and gives the very module object of its new home
under :mod:`recon.app`, so attributes set on either name (monkeypatching, registries) are the same.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: old top-level names under ``recon.`` that moved to ``recon.app.``
MOVED = ("pipeline", "batch", "demo", "report", "viz", "cli", "runtime", "memory")


def new_name(fullname: str) -> str | None:
    """``recon.app.X...`` for an old ``recon.X...`` name of a moved module, else None."""
    parts = fullname.split(".")
    if len(parts) >= 2 and parts[0] == "recon" and parts[1] in MOVED:
        return "recon.app." + ".".join(parts[1:])
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system stamped the alias spec on it: give back its own


class AliasFinder(importlib.abc.MetaPathFinder):
    """Resolves the old names to the new modules (installed by ``recon/__init__.py``)."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102 - importlib protocol
        new = new_name(fullname)
        if new is None:
            return None
        warnings.warn(f"{fullname} moved to {new}; the old name goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new), is_package=True)


def install() -> None:
    """Put :class:`AliasFinder` on ``sys.meta_path`` once."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())  # before PathFinder: recon.batch.runner must not load twice
