"""Issue 17 items 1 and 3: slices solved together, the column-mask normal operator, the polyphase wavelet.

Batched slices are independent problems (per-slice scale, step, restart and stopping), so a batched solve gives
each slice's image to float32 rounding of the slice-by-slice one; the 1D-FFT normal operator of a column mask
equals ``A^H A`` of the 2D transform to float32 precision; the polyphase wavelet synthesis is the exact adjoint.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

import recon.app.pipeline as pipeline
from recon.io.types import RawData, stack_slices
from recon.operators import Sense, Wavelet2D
from recon.app.pipeline import Undersampling, reconstruct_file, slice_batch_size
from recon.simulate import load_colin27, write_dataset
from recon.solvers.reconstruct import l1_wavelet_method, sense_method
from recon.solvers.zero_filled import zero_filled_method

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """A 4-slice fastMRI-layout file: Colin 27, 96 x 80 images, 6 coils, SNR 30."""
    folder = tmp_path_factory.mktemp("vol")
    images = load_colin27([86, 88, 90, 92], shape=(96, 80))
    return write_dataset(folder, images, slices_per_file=4, num_coils=6, snr=30.0, seed=1,
                         readout_oversampling=1, prefix="vol")[0]


def _run(path, out, method, **options):
    u = Undersampling(mask_type="random", accelerations=(4,), center_fractions=(0.08,), seed=0)
    summary = reconstruct_file(path, out, method=method, undersampling=u, overwrite=True, **options)
    with h5py.File(out) as f:
        return f["reconstruction"][()], summary


@pytest.mark.parametrize("method", ["l1-wavelet", "sense", "tv"])
def test_batched_slices_equal_the_slice_by_slice_images(volume, tmp_path, monkeypatch, method):
    batched, summary = _run(volume, tmp_path / "b.h5", method)
    monkeypatch.setattr(pipeline, "SLICE_BATCH_BYTES", 0)  # one slice per call
    single, summary1 = _run(volume, tmp_path / "s.h5", method)
    assert batched.shape == single.shape == (4, 96, 80)
    assert np.abs(batched - single).max() <= 1e-4 * np.abs(single).max()
    assert abs(summary["metrics"]["psnr"] - summary1["metrics"]["psnr"]) < 0.005
    assert not np.array_equal(batched[0], batched[1])  # each slice its own image


def test_progress_counts_every_slice_when_batched(volume, tmp_path):
    seen = []
    u = Undersampling(mask_type="random", accelerations=(4,), center_fractions=(0.08,), seed=0)
    reconstruct_file(volume, tmp_path / "p.h5", method="l1-wavelet", undersampling=u,
                     progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_which_methods_batch_and_how_many():
    shape = (16, 8, 256, 256)
    assert slice_batch_size(l1_wavelet_method, {}, shape) == 16  # 4 MB per slice x 10 fits 1 GiB 25 times
    assert slice_batch_size(sense_method, {}, shape) == 16
    assert slice_batch_size(l1_wavelet_method, {"lam": "auto"}, shape) == 1  # chooses per call
    assert slice_batch_size(zero_filled_method, {}, shape) == 1
    assert slice_batch_size(l1_wavelet_method, {}, (40, 15, 640, 368)) == 3  # 28 MB k-space per slice


def test_stack_slices_refuses_what_does_not_stack(rng):
    from recon.io.types import Header

    header = Header(encoded_matrix=(16, 12, 1), recon_matrix=(16, 12, 1), num_coils=2)
    k = (rng.standard_normal((1, 2, 16, 12)) + 1j).astype(np.complex64)
    m1 = np.zeros(12, bool)
    m1[::2] = True
    m2 = np.roll(m1, 1)
    a, b = RawData(k, header, m1), RawData(k * 2, header, m1)
    stacked = stack_slices([a, b])
    assert stacked.kspace.shape == (2, 2, 16, 12) and np.array_equal(stacked.kspace[1], 2 * k[0])
    assert stack_slices([a, RawData(k, header, m2)]) is None  # masks differ
    assert stack_slices([a, RawData(k, header, None)]) is None
    assert stack_slices([a, RawData(k, Header(encoded_matrix=(16, 12, 1), recon_matrix=(16, 12, 1), num_coils=2), m1)]) is None


def test_column_mask_normal_operator_is_the_2d_one():
    g = torch.Generator().manual_seed(0)
    C, H, W = 5, 48, 40
    maps = torch.randn(C, H, W, dtype=torch.complex64, generator=g)
    x = torch.randn(2, H, W, dtype=torch.complex64, generator=g)
    col = (torch.rand(W, generator=g) < 0.4).float()
    for mask in (col, col.expand(H, W).clone(), col.reshape(1, 1, W)):
        op = Sense(maps, mask)
        assert op._t.columns(torch.complex64, torch.device("cpu")) is not None  # the 1D-FFT path
        ref = op.adjoint(op.forward(x))
        assert ((op.normal()(x) - ref).norm() / ref.norm()).item() < 1e-6
    op2 = Sense(maps, (torch.rand(H, W, generator=g) < 0.4).float())
    assert op2._t.columns(torch.complex64, torch.device("cpu")) is None  # a 2D mask keeps fft2


@pytest.mark.parametrize("shape,wavelet,levels", [((64, 48), "db2", 3), ((256, 256), "db4", 4),
                                                  ((8, 8), "db4", 3), ((20, 36), "db3", 2)])
def test_polyphase_wavelet_is_orthonormal_with_exact_adjoint(shape, wavelet, levels):
    g = torch.Generator().manual_seed(1)
    op = Wavelet2D(shape, wavelet, levels)
    x = torch.randn((3,) + shape, dtype=torch.complex64, generator=g)
    c = torch.randn((3,) + op.oshape, dtype=torch.complex64, generator=g)
    lhs = torch.vdot(op.forward(x).flatten(), c.flatten())
    rhs = torch.vdot(x.flatten(), op.adjoint(c).flatten())
    assert abs(lhs - rhs) / abs(lhs) < 1e-5
    assert ((op.adjoint(op.forward(x)) - x).norm() / x.norm()).item() < 1e-6
