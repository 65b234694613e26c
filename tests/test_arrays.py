"""recon.arrays: the one centre crop (strict and padding variants) and the one root sum of squares, for numpy
and torch alike, and the deprecated old names that still import for one release."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from recon.arrays import center_crop, center_crop_or_pad, rss
from recon.errors import UsageError


@pytest.fixture
def x() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((2, 3, 9, 8)) + 1j * rng.standard_normal((2, 3, 9, 8))).astype(np.complex64)


def test_center_crop_is_fastmris_start_and_refuses_to_pad(x):
    np.testing.assert_array_equal(center_crop(x, (4, 5)), x[..., 2:6, 1:6])  # start (H - h) // 2
    t = torch.from_numpy(x)
    assert torch.equal(center_crop(t, (4, 5)), t[..., 2:6, 1:6])
    for size in ((10, 8), (9, 9), (0, 4)):
        with pytest.raises(UsageError, match="cannot crop target"):
            center_crop(x, size, "target")


def test_center_crop_or_pad_pads_symmetrically_like_np_pad(x):
    np.testing.assert_array_equal(center_crop_or_pad(x, (4, 5)), center_crop(x, (4, 5)))
    out = center_crop_or_pad(x, (12, 6))  # H padded by 1 before, 2 after; W cropped from 1
    assert out.shape == (2, 3, 12, 6)
    np.testing.assert_array_equal(out[..., 1:10, :], x[..., :, 1:7])
    assert not out[..., 0, :].any() and not out[..., 10:, :].any()
    t = center_crop_or_pad(torch.from_numpy(x), (12, 6))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), out)


def test_rss_keeps_the_input_kind_and_each_formula(x):
    np.testing.assert_array_equal(rss(x, axis=1), np.sqrt(np.sum(np.abs(x) ** 2, axis=1)))
    t = torch.from_numpy(x)
    got = rss(t)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert torch.equal(got, torch.sqrt(torch.sum(t.real ** 2 + t.imag ** 2, dim=-3)))
    real = torch.from_numpy(np.abs(x))
    assert torch.equal(rss(real, axis=1), torch.sqrt(torch.sum(real ** 2, dim=1)))


def test_old_names_warn_and_behave_as_before(x):
    with pytest.warns(DeprecationWarning, match="center_crop_or_pad"):
        from recon.io.fourier import center_crop as old_crop
    with pytest.warns(DeprecationWarning, match="recon.arrays.rss"):
        from recon.io.fourier import rss as old_rss
    np.testing.assert_array_equal(old_crop(x, (12, 6)), center_crop_or_pad(x, (12, 6)))
    np.testing.assert_array_equal(old_rss(x), rss(x, axis=1))
    np.testing.assert_array_equal(old_rss(x, coil_axis=0), rss(x, axis=0))
    with pytest.warns(DeprecationWarning):
        from recon.metrics._common import center_crop as old_metric_crop
    assert old_metric_crop is center_crop
    with pytest.warns(DeprecationWarning, match="normalize_scale"):
        from recon.solvers.diffusion import normalise_scale
    with pytest.warns(DeprecationWarning, match="normalize_scale"):
        from recon.solvers.diffusion.prior import normalise_scale as prior_old
    from recon.solvers.diffusion import normalize_scale
    assert normalise_scale is normalize_scale and prior_old is normalize_scale
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from recon.io.fourier import fft2c, ifft2c  # noqa: F401 (the names that stayed do not warn)


def test_coils_rss_is_the_array_rss_on_a_complex64_tensor(x):
    from recon.coils import rss as coil_rss

    assert torch.equal(coil_rss(x), rss(torch.from_numpy(x)))
    assert torch.equal(coil_rss(x[0]), rss(torch.from_numpy(x[0])))
