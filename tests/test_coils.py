"""Coil tools: ESPIRiT against the true simulated sensitivities, SigPy and BART; Walsh; SENSE vs RSS;
noise prewhitening; SVD and geometric coil compression; bad input.

Data: a real T1 brain slice (bundled Colin 27, decimated to 112 x 96) with SigPy birdcage coils
(``recon.simulate``), so the true sensitivities are known. Per-pixel agreement of two map sets is the
phase-invariant correlation ``|<a, b>| / (|a| |b|)`` over coils, reported inside the object
(pixels above 10 % of the maximum).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from recon.coils import (
    apply_coil_matrix,
    compress,
    detect_calibration_size,
    espirit,
    espirit_maps,
    gcc_compress,
    noise_covariance,
    prewhiten,
    prewhiten_raw,
    rss,
    sense_combine,
    svd_compress,
    walsh_maps,
    whitening_matrix,
)
from recon.errors import DataError, UsageError
from recon.io.fourier import ifft2c
from recon.simulate import load_colin27, simulate_multicoil
from recon.simulate.coils import coil_noise
from recon.simulate.coils import noise_covariance as kms_covariance


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel |<a, b>| / (|a| |b|) over the coil axis 0 of ``(C, H, W)`` arrays."""
    num = np.abs(np.sum(np.conj(a) * b, axis=0))
    den = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    return num / np.maximum(den, 1e-30)


@pytest.fixture(scope="module")
def brain() -> np.ndarray:
    return load_colin27([96], shape=(224, 192))[:, ::2, ::2]  # (1, 112, 96)


@pytest.fixture(scope="module")
def noisy(brain):
    return simulate_multicoil(brain, num_coils=8, snr=30, seed=0)


@pytest.fixture(scope="module")
def clean(brain):
    return simulate_multicoil(brain, num_coils=8, snr=None, seed=0)


def object_mask(sim) -> np.ndarray:
    mag = np.abs(sim.images[0])
    return mag > 0.1 * mag.max()


# ----------------------------------------------------------------------------------------------- ESPIRiT

def test_espirit_reproduces_true_sensitivities(noisy):
    res = espirit(noisy.raw.kspace)
    obj = object_mask(noisy)
    maps = res.maps[0, 0].numpy()
    c = correlation(noisy.maps, maps)[obj]
    # measured: mean 0.99993, min 0.9971 (SNR 30); BART's defaults keep 52 of 288 kernels here
    assert c.mean() > 0.9995
    assert c.min() > 0.99
    assert res.calib_shape == (24, 24)
    assert not np.any(np.abs(maps).sum(0)[obj] == 0), "no object pixel may be cropped"
    assert np.allclose(np.linalg.norm(maps, axis=0)[obj], 1.0, atol=1e-5)
    ev = res.eigenvalues[0, 0].numpy()
    assert ev[obj].min() > 0.8 and ev.max() < 1.0 + 1e-4


def test_espirit_coarse_eigen_grid_matches_every_pixel(noisy):
    coarse = espirit(noisy.raw.kspace)  # 64 x 64 eigen grid, cubic resampling to 112 x 96
    exact = espirit(noisy.raw.kspace, eig_grid=None)
    obj = object_mask(noisy)
    c = correlation(exact.maps[0, 0].numpy(), coarse.maps[0, 0].numpy())[obj]
    assert c.min() > 0.99999  # measured 0.9999998
    ev_err = (exact.eigenvalues - coarse.eigenvalues).abs()[0, 0].numpy()[obj]
    assert ev_err.max() < 1e-3


def test_espirit_undersampled_mask_detects_calibration(noisy):
    w = noisy.raw.kspace.shape[-1]
    mask = np.zeros(w, dtype=bool)
    mask[::3] = True
    mask[w // 2 - 10: w // 2 + 10] = True  # 20 calibration lines
    k = noisy.raw.kspace * mask
    res = espirit(k, mask=mask)
    assert res.calib_shape == (24, 20)
    inferred = espirit(k)  # sampling inferred from the nonzero samples
    assert inferred.calib_shape == (24, 20)
    assert torch.allclose(res.maps, inferred.maps)
    obj = object_mask(noisy)
    c = correlation(noisy.maps, res.maps[0, 0].numpy())[obj]
    assert c.mean() > 0.999  # measured 0.9999


def test_espirit_batches_slices_and_two_maps(noisy):
    k = noisy.raw.kspace
    two = np.concatenate([k, 0.5 * k[:, ::-1]], axis=0)  # (2, C, H, W), the second slice different
    batch = espirit(two)
    single = espirit(two[1:])
    assert batch.maps.shape == (2, 1, 8, 112, 96)
    assert torch.allclose(batch.maps[1], single.maps[0], atol=1e-4)
    m2 = espirit(k, num_maps=2)
    assert m2.maps.shape == (1, 2, 8, 112, 96)
    assert torch.allclose(m2.maps[:, 0], espirit(k).maps[:, 0], atol=1e-5)
    assert bool((m2.eigenvalues[:, 1] <= m2.eigenvalues[:, 0] + 1e-6).all())
    assert espirit_maps(k[0]).shape == (8, 112, 96)
    first = espirit(k, phase="first").maps[0, 0, 0]
    nz = first.abs() > 0
    assert torch.allclose(first[nz].imag, torch.zeros(()), atol=1e-5) and bool((first[nz].real > 0).all())


def test_espirit_agrees_with_sigpy(noisy):
    sigpy_app = pytest.importorskip("sigpy.mri.app")
    k = noisy.raw.kspace[0]
    # SigPy thresholds singular values at thresh * max: sqrt(0.001) is BART's -t 0.001
    ref = sigpy_app.EspiritCalib(k, calib_width=24, thresh=np.sqrt(0.001), kernel_width=6, crop=0.8,
                                 show_pbar=False).run()
    ours = espirit_maps(k).numpy()
    obj = object_mask(noisy)
    c = correlation(ref, ours)[obj]
    assert c.mean() > 0.99999 and c.min() > 0.9999  # measured mean 1.0, min 0.9999998


def write_cfl(base: Path, array: np.ndarray) -> None:
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(str(d) for d in array.shape) + "\n")
    np.asfortranarray(array.astype(np.complex64)).ravel(order="F").tofile(base.with_suffix(".cfl"))


def read_cfl(base: Path) -> np.ndarray:
    dims = [int(d) for d in base.with_suffix(".hdr").read_text().splitlines()[1].split()]
    return np.fromfile(base.with_suffix(".cfl"), dtype=np.complex64).reshape(dims, order="F")


@pytest.mark.skipif(shutil.which("bart") is None, reason="BART is not installed")
def test_espirit_agrees_with_bart_ecalib(noisy, tmp_path):
    k = noisy.raw.kspace[0]  # (C, H, W); BART: (x = readout = H, y = W, z, coils)
    write_cfl(tmp_path / "k", k.transpose(1, 2, 0)[:, :, None, :])
    subprocess.run(["bart", "ecalib", "-m1", "-r24", str(tmp_path / "k"), str(tmp_path / "s")],
                   check=True, capture_output=True)
    bart = read_cfl(tmp_path / "s")
    bart = bart.reshape(bart.shape[:4])[:, :, 0, :].transpose(2, 0, 1)
    ours = espirit_maps(k).numpy()
    obj = object_mask(noisy)
    c = correlation(bart, ours)[obj]
    assert c.mean() > 0.9999 and c.min() > 0.999
    # the same pixels are cropped (eigenvalue <= 0.8) almost everywhere
    same_support = (np.abs(bart).sum(0) > 0) == (np.abs(ours).sum(0) > 0)
    assert same_support.mean() > 0.98


def test_sense_combination_matches_rss(clean):
    coil = ifft2c(clean.raw.kspace[0])
    maps = espirit_maps(clean.raw.kspace[0])
    comb = sense_combine(coil, maps).abs().numpy()
    ref = rss(coil).numpy()
    obj = object_mask(clean)
    rel = np.abs(comb - ref)[obj] / ref[obj]
    assert rel.max() < 0.01 and np.median(rel) < 1e-4  # measured max 0.0026, median 1e-5


def test_walsh_maps_reproduce_true_sensitivities(noisy):
    coil = ifft2c(noisy.raw.kspace[0])
    maps = walsh_maps(coil).numpy()
    obj = object_mask(noisy)
    c = correlation(noisy.maps, maps)[obj]
    assert c.mean() > 0.999 and c.min() > 0.99  # measured mean 0.99978, min 0.9979
    assert np.allclose(np.linalg.norm(maps, axis=0), 1.0, atol=1e-5)


def test_calibration_detection_and_errors(noisy):
    pattern = torch.zeros(40, 30, dtype=torch.bool)
    pattern[:, 10:19] = True  # 9 centred columns around 15, every row
    pattern[:, ::4] = True
    # sampled columns 10..18 (+ 8 and 20); a centred region of n columns starts at 15 - n // 2, so n = 8
    assert detect_calibration_size(pattern) == (40, 8)
    k = noisy.raw.kspace
    with pytest.raises(UsageError, match="calib_size 200x24 is larger"):
        espirit(k, calib_size=(200, 24))
    mask = np.zeros(k.shape[-1], dtype=bool)
    mask[::2] = True
    with pytest.raises(DataError, match="no fully sampled k-space centre in mask"):
        espirit(k * mask, mask=mask)
    with pytest.raises(DataError, match="calib_size 24x24 is not fully sampled in mask"):
        espirit(k * mask, mask=mask, calib_size=24)
    with pytest.raises(UsageError, match="mask of shape"):
        espirit(k, mask=np.ones(7, dtype=bool))
    with pytest.raises(UsageError, match="kspace must have 3 or 4 axes"):
        espirit(k[0, 0])
    with pytest.raises(UsageError, match="num_maps"):
        espirit(k, num_maps=9)
    with pytest.raises(DataError, match="no signal"):
        espirit(np.zeros_like(k), mask=np.ones(k.shape[-1], dtype=bool))
    with pytest.raises(UsageError, match="do not fit"):
        sense_combine(np.ones((8, 10, 10), np.complex64), np.ones((4, 10, 10), np.complex64))


# ----------------------------------------------------------------------------------------------- noise

def test_prewhitening_gives_identity_covariance():
    rng = np.random.default_rng(1)
    cov = kms_covariance(8, std=2.0, correlation=0.7)  # sigma^2 rho^|i-j|
    n = 20000
    samples = coil_noise((1, 8, n, 1), cov, rng)[0, :, :, 0]
    w = whitening_matrix(covariance=cov).numpy()
    assert np.allclose(w @ cov @ w.conj().T, np.eye(8), atol=1e-5)
    before = noise_covariance(samples).numpy()
    assert np.abs(before - cov).max() < 0.1 * 4  # sample covariance of the correlated noise
    white = prewhiten(samples[None, :, :, None], noise_samples=samples)[0, :, :, 0].numpy()
    after = white @ white.conj().T / n
    # sampling error of a unit-variance covariance entry ~ 1/sqrt(n) = 0.007
    assert np.abs(after - np.eye(8)).max() < 0.05
    with pytest.raises(DataError, match="not positive definite"):
        whitening_matrix(covariance=np.ones((8, 8), np.complex64))
    with pytest.raises(UsageError, match="square"):
        whitening_matrix(covariance=np.ones((8, 7), np.complex64))
    with pytest.raises(UsageError, match="exactly one"):
        whitening_matrix()
    with pytest.raises(DataError, match="at least as many samples"):
        noise_covariance(samples[:, :3])


def test_prewhiten_raw_whitens_simulated_coil_noise(brain):
    noisy = simulate_multicoil(brain, num_coils=8, snr=5, seed=3, noise_correlation=0.6)
    clean = simulate_multicoil(brain, num_coils=8, snr=None, seed=3)
    white = prewhiten_raw(noisy.raw)
    w = whitening_matrix(covariance=noisy.noise_covariance)
    noise = white.kspace - apply_coil_matrix(clean.raw.kspace, w).numpy()
    flat = noise[0].reshape(8, -1)
    emp = flat @ flat.conj().T / flat.shape[1]
    assert np.abs(emp - np.eye(8)).max() < 0.05  # 10752 samples: sampling error ~0.01
    assert np.allclose(white.header.noise_covariance, np.eye(8))
    with pytest.raises(DataError, match="no noise covariance"):
        prewhiten_raw(clean.raw.__class__(clean.raw.kspace, clean.raw.header.copy(noise_covariance=None)))


# ----------------------------------------------------------------------------------------------- compression

def test_svd_compression_energy_and_rss(noisy):
    k = noisy.raw.kspace
    total = np.sum(np.abs(k) ** 2)
    out, cc = svd_compress(k, energy=0.95)
    assert cc.num_virtual == 2 and out.shape == (1, 2, 112, 96)
    kept = float(torch.sum(out.abs() ** 2)) / total
    assert kept == pytest.approx(cc.energy, rel=1e-5) and kept >= 0.95
    _, fewer = svd_compress(k, num_coils=1)
    assert fewer.energy < 0.95
    six, _ = svd_compress(k, num_coils=6)
    obj = object_mask(noisy)
    r0 = rss(ifft2c(k)).numpy()[0]
    r6 = rss(ifft2c(six.numpy())).numpy()[0]
    err = np.linalg.norm((r6 - r0)[obj]) / np.linalg.norm(r0[obj])
    assert err < 0.005  # measured 0.0020
    all8, _ = svd_compress(k, num_coils=8)
    assert np.allclose(rss(ifft2c(all8.numpy())).numpy(), rss(ifft2c(k)).numpy(), rtol=1e-4, atol=1e-6)


def test_gcc_keeps_more_than_svd(noisy):
    k = noisy.raw.kspace
    obj = object_mask(noisy)
    r0 = rss(ifft2c(k)).numpy()[0]
    for n, min_gain in ((1, 0.05), (2, 0.02), (3, 0.005)):
        ks, svd = svd_compress(k, num_coils=n)
        kg, gcc = gcc_compress(k, num_coils=n, window=1)
        # per readout position the best n-dimensional projection can only keep more energy
        assert gcc.energy >= svd.energy + min_gain  # measured n=1: 0.905 vs 0.831; 2: 0.984 vs 0.955
        eg = np.linalg.norm((rss(ifft2c(kg.numpy())).numpy()[0] - r0)[obj])
        es = np.linalg.norm((rss(ifft2c(ks.numpy())).numpy()[0] - r0)[obj])
        assert eg < es  # measured RSS error n=2: 0.0095 vs 0.029
        assert torch.allclose(compress(k, gcc), kg)
    _, windowed = gcc_compress(k, num_coils=2, window=5)
    assert windowed.matrix.shape == (112, 2, 8)
    _, unaligned = gcc_compress(k, num_coils=2, window=5, align=False)
    # aligned matrices vary smoothly along the readout where there is signal (rows 3..104 hold the head):
    # measured max step 0.14 aligned vs 2.0 unaligned over rows 5..100 (Frobenius norm of A(x+1) - A(x))
    def steps(cc):
        return torch.linalg.matrix_norm(cc.matrix[1:] - cc.matrix[:-1])[5:100]
    assert float(steps(windowed).max()) < 0.2
    assert float(steps(unaligned).max()) > 1.0
    with pytest.raises(UsageError, match="exactly one"):
        svd_compress(k)
    with pytest.raises(UsageError, match="num_coils must be between 1 and 8"):
        gcc_compress(k, num_coils=9)
    with pytest.raises(UsageError, match="does not fit 8 coils"):
        apply_coil_matrix(k, np.eye(4, dtype=np.complex64))
    with pytest.raises(UsageError, match="readout length 112 applied to readout 56"):
        compress(k[..., ::2, :], windowed)
