"""Defaults of ``recon run --method diffusion`` (steps per sampler, start noise), in a module of their own so that
the calibration files (:mod:`recon.solvers.uncertainty.calibration`, used by every calibratable method) can fill
them in without importing the sampler (that would close an import circle through the learned methods)."""
from __future__ import annotations

#: defaults of ``recon run --method diffusion`` (per sampler). Measured on the bundled sample at 8x with the
#: bundled prior: DDS from the CG-SENSE image at noise 1.0 gives the PSNR of 30 steps from pure noise in
#: 12 steps (provisional prior, 3 slices: 20.51 vs 20.53 dB). With the 64 x 64 patch prior, benchmarks/diffusion.py
#: (3 files, 8 samples), 24 steps instead of 12: PSNR 20.32 vs 20.27 dB, SSIM 0.5236 vs 0.5385, coverage
#: 0.670 vs 0.657, twice the time; with the whole-slice fine-tuned prior at start noise 2.0: 20.86 vs 20.66 dB,
#: SSIM 0.5551 vs 0.5569, Spearman 0.128 vs 0.150, coverage 0.703 vs 0.685, twice the time: 12 it is
DEFAULT_STEPS = {"dds": 12, "dps": 50}
#: noise level (normalised units) added to the CG-SENSE image to start the chain; None = pure noise. With the
#: whole-slice fine-tuned prior (benchmarks/diffusion.py's 3 files, 8 samples, 12 DDS steps; PSNR dB /
#: Spearman(std, |err|) / coverage +-2 std): 1.0 -> 20.59 / 0.124 / 0.643 (epoch 31 of the final 34),
#: 2.0 -> 20.66 / 0.150 / 0.685, 3.0 -> 20.63 / 0.158 / 0.698 (patch prior at 1.0: 20.27 / 0.060 / 0.657)
DEFAULT_START_SIGMA = 2.0
