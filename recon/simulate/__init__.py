"""Simulated multi-coil raw data from real images (Colin 27 T1, or any magnitude images).

* :func:`coil_sensitivities`: smooth birdcage coil maps, ``sum_c |S_c|^2 = 1``.
* :func:`simulate_multicoil`: coils x smooth background phase x readout oversampling + complex noise.
* :func:`load_colin27`: axial slices of the bundled Colin 27 T1 volume (upright, radiological).
* :func:`write_dataset`: a fastMRI-layout folder of simulated files (``recon simulate``).
"""
from recon.simulate.coils import coil_noise, coil_sensitivities, noise_covariance, smooth_phase
from recon.simulate.colin27 import SAMPLE_SLICES, load_colin27
from recon.simulate.dataset import write_dataset
from recon.simulate.multicoil import SimulatedData, mean_signal, simulate_multicoil

__all__ = [
    "SAMPLE_SLICES", "SimulatedData", "coil_noise", "coil_sensitivities", "load_colin27", "mean_signal",
    "noise_covariance", "simulate_multicoil", "smooth_phase", "write_dataset",
]
