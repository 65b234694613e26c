"""Weights of the learned solvers, shipped inside the package (no download): see ``MODEL_CARD.md`` here.

* ``varnet_sim.pt``: E2E-VarNet, ``modl_sim.pt``: MoDL; trained by ``recon train`` on multi-coil k-space
  simulated from the Colin 27 T1 volume (``examples/train_make_data.py``, ``examples/train_bundled.py``).
* ``diffusion_sim.pt``: the diffusion prior (``recon.solvers.diffusion.DenoiserPrior``), trained by
  ``recon train --model diffusion`` on ESPIRiT-combined images of the same training slabs.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from recon.errors import InputError, UsageError

#: model name -> bundled file
BUNDLED = {"varnet": "varnet_sim.pt", "modl": "modl_sim.pt", "diffusion": "diffusion_sim.pt"}


def bundled_weights(name: str) -> Path:
    """Path of the bundled weights of model ``name``; :class:`InputError` if this installation lacks them."""
    if name not in BUNDLED:
        raise UsageError(f"no bundled weights for {name!r}; available: {', '.join(sorted(BUNDLED))}")
    path = Path(str(resources.files(__name__).joinpath(BUNDLED[name])))
    if not path.is_file():
        raise InputError("bundled weights are missing from this installation (reinstall recon-mri)", path)
    return path
