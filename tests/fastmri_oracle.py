"""Load fastmri 0.3.0's models and data transforms (the test oracle, installed --no-deps) without its heavy
dependencies: ``fastmri.data``'s package __init__ imports pandas/h5py datasets, so the package is replaced by a
bare namespace and only ``transforms`` / ``subsample`` (numpy + torch) are imported from it."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

import pytest


def load_fastmri():
    """``(fastmri.models, fastmri.data.transforms)``, or skip the test when fastmri is not installed."""
    spec = importlib.util.find_spec("fastmri")
    if spec is None or spec.origin is None:
        pytest.skip("fastmri (test oracle) is not installed")
    import fastmri

    if "fastmri.data" not in sys.modules:
        pkg = types.ModuleType("fastmri.data")
        pkg.__path__ = [os.path.join(os.path.dirname(spec.origin), "data")]
        sys.modules["fastmri.data"] = pkg
        fastmri.data = pkg
    pkg = sys.modules["fastmri.data"]
    transforms = importlib.import_module("fastmri.data.transforms")
    pkg.transforms = transforms
    models = importlib.import_module("fastmri.models")
    return models, transforms
