"""Former home of the calibration files (issue 14): an alias of :mod:`recon.solvers.uncertainty.calibration`,
which serves diffusion and the VarNet/MoDL ensembles alike. ``import recon.solvers.diffusion.calibration`` gives
that very module (same object: its names, and patches to them, are shared)."""
import sys

from recon.solvers.uncertainty import calibration as _calibration

sys.modules[__name__] = _calibration
