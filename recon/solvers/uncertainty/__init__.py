"""Uncertainty shared by every method that gives samples or an ensemble (diffusion, the VarNet/MoDL k-space split
ensembles): :mod:`recon.solvers.uncertainty.calibration`, the calibration files of ``recon calibrate`` and
their use by ``recon run|batch --calibration`` (issue 14; moved here from ``recon.solvers.diffusion``, where
``recon.solvers.diffusion.calibration`` stays an alias of it)."""
