"""Stage 3: linear operators on torch tensors (FFT, sampling, SENSE, NUFFT, wavelets, finite differences).

Every operator is a :class:`LinearOperator` with an exact adjoint (``A.H``), composition (``A @ B``), sums,
scalar multiples, stacking (:class:`Vstack`, :class:`Hstack`, block-diagonal :class:`Diag`) and a normal
operator ``A.N`` (fast forms for masked SENSE and NUFFT); calls check the input and output shapes; see
:mod:`recon.operators.base` and :mod:`recon.operators.stack`. Tensors are complex64 (or complex128) with any leading batch dims, on CPU or GPU,
and autograd flows through every operator.
"""
from recon.operators.base import (
    ANY_SHAPE,
    Adjoint,
    Composition,
    Identity,
    LinearOperator,
    Scaled,
    Shapes,
    Sum,
    inner,
    power_norm,
)
from recon.operators.coils import SensitivityExpand, coil_reduce
from recon.operators.fft import FFT, centred_phases, fft2c, ifft2c
from recon.operators.finite_diff import FiniteDifference
from recon.operators.nufft import NUFFT, ToeplitzNormal
from recon.operators.sampling import Mask
from recon.operators.sense import Sense, SenseNormal
from recon.operators.stack import Diag, Hstack, Vstack
from recon.operators.wavelet import Wavelet2D

__all__ = [
    "LinearOperator", "Identity", "Adjoint", "Composition", "Sum", "Scaled", "inner", "power_norm",
    "FFT", "fft2c", "ifft2c", "centred_phases", "Mask", "SensitivityExpand", "coil_reduce", "Sense",
    "SenseNormal", "NUFFT", "ToeplitzNormal", "Wavelet2D", "FiniteDifference",
    "ANY_SHAPE", "Shapes", "Vstack", "Hstack", "Diag",
]
