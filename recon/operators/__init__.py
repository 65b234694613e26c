"""Stage 3: linear operators on torch tensors (FFT, sampling, SENSE, NUFFT, wavelets, finite differences)."""
from recon.operators.fft import fft2c, ifft2c

__all__ = ["fft2c", "ifft2c"]
