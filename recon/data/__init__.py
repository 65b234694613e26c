"""Bundled assets: the sample raw file and the Colin 27 T1 volume it was simulated from.

* ``sample_brain.h5``: fastMRI-layout multi-coil k-space simulated from Colin 27 axial slices
  (``examples/make_sample.py``; see ``README.md`` in this folder).
* ``colin27_t1.npz``: the Colin 27 T1 volume as uint8 axial slices (``recon.simulate.load_colin27``).
  Licence: ``LICENSE-colin27`` (BSD-3-Clause, Chris Rorden / MRIcron, via Debian ``mricron-data``).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from recon.errors import InputError

__all__ = ["asset_path", "sample_path", "colin27_path"]


def asset_path(name: str) -> Path:
    """Filesystem path of a bundled asset; :class:`InputError` if the installation lacks it."""
    path = Path(str(resources.files(__name__).joinpath(name)))
    if not path.is_file():
        raise InputError("bundled asset is missing from this installation (reinstall recon-mri)", path)
    return path


def sample_path() -> Path:
    """The bundled sample raw file ``sample_brain.h5`` (fastMRI layout, 8 coils, 4 slices, 224 x 192)."""
    return asset_path("sample_brain.h5")


def colin27_path() -> Path:
    """The bundled Colin 27 T1 volume ``colin27_t1.npz`` (uint8, axial slices, 1 mm)."""
    return asset_path("colin27_t1.npz")
