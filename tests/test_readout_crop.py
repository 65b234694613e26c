"""Issue 17 item 2: the iterative classical methods remove readout oversampling before they solve.

The cropped problem must give the full grid's image on the output grid: with column masks the rows decouple
and the maps and data scale are the full field of view's, so what differs is only that CG's step sizes are
global (early-stopped CG-SENSE differs by ~0.2 % of the maximum) and that wavelets and finite differences couple
neighbouring rows at the crop's edges: the PSNR stays within 0.05 dB (SENSE) and 0.1 dB (CS).
"""
from __future__ import annotations

import numpy as np
import pytest

from recon.arrays import center_crop_or_pad
from recon.io.fourier import ifft2c
from recon.io.types import RawData
from recon.metrics import volume_metrics
from recon.sampling import apply_mask, mask_from_options
from recon.simulate import load_colin27, simulate_multicoil
from recon.solvers.reconstruct import l1_wavelet_method, reconstruct, sense_method, tv_method
from recon.solvers.readout import crop_readout_oversampling

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def oversampled() -> tuple[RawData, np.ndarray]:
    """One Colin 27 slice, 160 x 144 image, 2x readout oversampling (k-space 320 x 144), 6 coils, 4x random."""
    images = load_colin27([90], shape=(160, 144))
    full = simulate_multicoil(images, num_coils=6, snr=30.0, seed=2, readout_oversampling=2).raw
    mask, _ = mask_from_options("random", full.kspace.shape, [4], [0.08], 3)
    kspace, used = apply_mask(full.kspace, mask, full.header)
    return RawData(kspace, full.header, used), full.reference


def test_crop_is_the_image_space_crop_and_keeps_the_sampled_columns(oversampled):
    raw, _ = oversampled
    cropped = crop_readout_oversampling(raw)
    assert cropped.kspace.shape == (1, 6, 160, 144)
    np.testing.assert_allclose(ifft2c(cropped.kspace), center_crop_or_pad(ifft2c(raw.kspace), (160, 144)), atol=1e-5)
    sampled = np.abs(cropped.kspace).sum(axis=(0, 1, 2)) > 0
    np.testing.assert_array_equal(sampled, np.asarray(raw.mask, dtype=bool).reshape(-1))


def test_nothing_is_cropped_without_oversampling_or_with_a_2d_mask(oversampled):
    raw, _ = oversampled
    poisson, _ = mask_from_options("poisson", raw.kspace.shape, [4], [0.08], 3)
    two_d = RawData(raw.kspace * poisson, raw.header, poisson)
    assert crop_readout_oversampling(two_d) is two_d
    images = load_colin27([90], shape=(160, 144))
    plain = simulate_multicoil(images, num_coils=4, snr=30.0, seed=2).raw
    assert crop_readout_oversampling(plain) is plain


def _psnr(reference: np.ndarray, image: np.ndarray) -> float:
    return volume_metrics(reference, center_crop_or_pad(image, reference.shape[-2:]))["psnr"]


@pytest.mark.parametrize("method, func, tolerance_db", [
    ("sense", sense_method, 0.05), ("l1-wavelet", l1_wavelet_method, 0.1), ("tv", tv_method, 0.1)])
def test_the_cropped_grid_gives_the_full_grids_quality(oversampled, method, func, tolerance_db):
    raw, reference = oversampled
    image = func(raw)
    assert image.shape == (1, 160, 144)
    full = _psnr(reference, reconstruct(raw, method).image)
    fast = _psnr(reference, image)
    assert abs(fast - full) < tolerance_db, (method, fast, full)
