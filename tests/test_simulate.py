"""Simulation from real images: coil maps, phase, noise, oversampling, Colin 27, datasets, bundled sample."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.errors import OutputError, UsageError
from recon.arrays import center_crop_or_pad
from recon.io.fourier import fft2c, ifft2c
from recon.simulate import (
    SAMPLE_SLICES, coil_sensitivities, load_colin27, mean_signal, noise_covariance, simulate_multicoil,
    write_dataset,
)

ROOT = Path(__file__).resolve().parent.parent
COLIN_NIFTI = Path("/work/shared/data/colin27/ch2.nii.gz")


@pytest.fixture(scope="module")
def brain() -> np.ndarray:
    """Two Colin 27 slices, cropped small to keep the tests fast: (2, 96, 80) float32."""
    return load_colin27([84, 92], shape=(160, 144))[:, 32:128, 32:112].copy()


def test_coil_maps_normalised_smooth_deterministic() -> None:
    maps = coil_sensitivities(8, (64, 48))
    assert maps.shape == (8, 64, 48) and maps.dtype == np.complex64
    np.testing.assert_allclose(np.sum(np.abs(maps) ** 2, axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(maps, coil_sensitivities(8, (64, 48)))
    # smooth: over 95 % of the maps' energy lies in the central 9 x 9 k-space samples
    energy = np.abs(fft2c(maps)) ** 2
    assert energy[:, 28:37, 20:29].sum() / energy.sum() > 0.95
    # the coils see different parts of the object
    mags = np.abs(maps)
    assert np.corrcoef(mags[0].ravel(), mags[4].ravel())[0, 1] < 0.0  # opposite coils: opposite profiles
    with pytest.raises(UsageError, match="num_coils"):
        coil_sensitivities(0, (8, 8))


def test_noiseless_forward_model_exact(brain: np.ndarray) -> None:
    sim = simulate_multicoil(brain, num_coils=8, snr=None, phase=False)
    maps = coil_sensitivities(8, brain.shape[1:])
    expected = fft2c(maps[None] * brain[:, None].astype(np.complex64))
    np.testing.assert_allclose(sim.raw.kspace, expected, atol=1e-6)
    assert sim.noise_std == 0.0 and not np.any(sim.noise_covariance)
    # RSS of noiseless coil images = the input, since sum |S|^2 = 1
    np.testing.assert_allclose(sim.raw.reference, brain, atol=2e-6)
    assert sim.raw.reference_name == "reconstruction_rss"


def test_given_maps_replace_the_birdcage(brain: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    maps = (rng.standard_normal((3, *brain.shape[1:])) + 1j * rng.standard_normal((3, *brain.shape[1:])))
    sim = simulate_multicoil(brain, num_coils=8, snr=None, phase=False, maps=maps)
    expected = fft2c(maps.astype(np.complex64)[None] * brain[:, None].astype(np.complex64))
    np.testing.assert_allclose(sim.raw.kspace, expected, rtol=1e-5, atol=1e-5)
    assert sim.raw.kspace.shape[1] == 3 and sim.raw.header.num_coils == 3 and sim.noise_covariance.shape == (3, 3)
    with pytest.raises(UsageError, match="maps must be"):
        simulate_multicoil(brain, maps=maps[:, :10])


def test_phase_is_smooth_seeded_and_keeps_magnitude(brain: np.ndarray) -> None:
    a = simulate_multicoil(brain, snr=None, seed=3)
    b = simulate_multicoil(brain, snr=None, seed=3)
    c = simulate_multicoil(brain, snr=None, seed=4)
    np.testing.assert_array_equal(a.raw.kspace, b.raw.kspace)
    assert not np.allclose(a.images, c.images)
    np.testing.assert_allclose(np.abs(a.images), brain, atol=1e-6)
    phase = np.angle(a.images[0] * np.exp(-1j * np.angle(a.images[0, 48, 40])))
    obj = brain[0] > 0.2
    step = np.abs(np.angle(np.exp(1j * np.diff(np.angle(a.images[0]), axis=-1))))[obj[:, 1:] & obj[:, :-1]]
    assert step.max() < 0.2  # radians per pixel: smooth
    assert np.ptp(phase[obj]) > 0.5  # but really there


def test_noise_level_and_covariance(brain: np.ndarray) -> None:
    snr = 20.0
    clean = simulate_multicoil(brain, snr=None, seed=1)
    noisy = simulate_multicoil(brain, snr=snr, seed=1, noise_correlation=0.5)
    sigma = mean_signal(brain) / snr
    assert noisy.noise_std == pytest.approx(sigma)
    # mean signal is over the object: pixels above 10 % of the maximum
    assert mean_signal(brain) == pytest.approx(float(brain[brain > 0.1 * brain.max()].mean()))
    noise = (noisy.raw.kspace - clean.raw.kspace).transpose(1, 0, 2, 3).reshape(8, -1)
    emp = noise @ noise.conj().T / noise.shape[1]
    np.testing.assert_allclose(np.diag(emp).real, sigma ** 2, rtol=0.03)
    expected = noise_covariance(8, sigma, 0.5)
    assert np.abs(emp - expected).max() < 0.03 * sigma ** 2
    assert emp[0, 1].real == pytest.approx(0.5 * sigma ** 2, rel=0.06)
    np.testing.assert_allclose(noisy.noise_covariance, expected)
    np.testing.assert_allclose(noisy.raw.header.noise_covariance, expected)


def test_readout_oversampling_header_and_crop(brain: np.ndarray) -> None:
    sim = simulate_multicoil(brain, snr=None, phase=False, readout_oversampling=2)
    s, h, w = brain.shape
    assert sim.raw.kspace.shape == (s, 8, 2 * h, w)
    hd = sim.raw.header
    assert hd.encoded_matrix == (2 * h, w, 1) and hd.recon_matrix == (h, w, 1)
    assert hd.recon_size == (h, w) and hd.readout_oversampling == 2.0
    coil_images = ifft2c(sim.raw.kspace)
    np.testing.assert_allclose(center_crop_or_pad(coil_images, (h, w)), sim.maps[None] * brain[:, None], atol=2e-6)
    outside = np.concatenate([coil_images[..., : h // 2, :], coil_images[..., h // 2 + h:, :]], axis=-2)
    assert np.abs(outside).max() < 1e-5  # the padded readout field of view is empty
    np.testing.assert_allclose(sim.raw.reference, brain, atol=2e-6)


def test_bad_arguments(brain: np.ndarray) -> None:
    with pytest.raises(UsageError, match="real magnitude"):
        simulate_multicoil(brain.astype(np.complex64))
    with pytest.raises(UsageError, match="positive integer"):
        simulate_multicoil(brain, readout_oversampling=1.5)
    with pytest.raises(UsageError, match="snr"):
        simulate_multicoil(brain, snr=0)
    with pytest.raises(UsageError, match="shape"):
        simulate_multicoil(np.zeros((2, 2, 3, 4)))
    with pytest.raises(UsageError, match="correlation"):
        simulate_multicoil(brain, noise_correlation=1.0)


def test_colin27_orientation_matches_nifti() -> None:
    vol = load_colin27()
    assert vol.shape == (181, 217, 181) and vol.dtype == np.float32
    assert 0.0 <= vol.min() and vol.max() <= 1.0
    if not COLIN_NIFTI.exists():
        pytest.skip("source NIfTI not available")
    nib = pytest.importorskip("nibabel")
    img = nib.load(COLIN_NIFTI)
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    src = np.asarray(img.dataobj)
    z = 90
    # volume[z, h, w] = nifti[180 - w, 216 - h, z]: h anterior->posterior (upright), w right->left
    np.testing.assert_array_equal(np.rint(vol[z] * 255).astype(np.uint8), src[::-1, ::-1, z].T)
    padded = load_colin27([z], shape=(224, 192))
    assert padded.shape == (1, 224, 192)
    np.testing.assert_array_equal(padded[0, 3:220, 5:186], vol[z])
    with pytest.raises(UsageError, match="slice indices"):
        load_colin27([181])


def test_write_dataset_round_trip(tmp_path: Path, brain: np.ndarray) -> None:
    from recon.io import read_raw

    volume = np.concatenate([brain, brain[:1]])  # 3 slices -> files of 2 and 1
    out = tmp_path / "sim"
    paths = write_dataset(out, volume, slices_per_file=2, num_coils=8, snr=25.0, seed=7, readout_oversampling=2)
    assert [p.name for p in paths] == ["sim_000.h5", "sim_001.h5"]
    for i, (path, part) in enumerate(zip(paths, (volume[:2], volume[2:]))):
        raw = read_raw(path)
        expected = simulate_multicoil(part, num_coils=8, snr=25.0, seed=7 + i, readout_oversampling=2)
        np.testing.assert_array_equal(raw.kspace, expected.raw.kspace)
        np.testing.assert_array_equal(raw.reference, expected.raw.reference)
        assert raw.header.recon_size == part.shape[1:] and raw.header.encoded_matrix[0] == 2 * part.shape[1]
        with h5py.File(path) as f:
            assert f.attrs["acquisition"] == "AXT1_SIM"
    before = paths[0].read_bytes()
    with pytest.raises(OutputError, match="exists"):
        write_dataset(out, volume, slices_per_file=2)
    assert paths[0].read_bytes() == before
    with pytest.raises(OutputError, match="does not exist"):
        write_dataset(tmp_path / "missing" / "sim", volume)


def test_bundled_sample_is_reproducible(tmp_path: Path) -> None:
    from recon.data import sample_path

    sample = sample_path()
    assert sample.stat().st_size < 10e6
    spec = importlib.util.spec_from_file_location("make_sample", ROOT / "examples" / "make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    fresh = module.make_sample(tmp_path / "sample.h5")
    with h5py.File(sample) as a, h5py.File(fresh) as b:
        assert a["kspace"].shape == (len(SAMPLE_SLICES), 8, 224, 192)
        assert a.attrs["acquisition"] == "AXT1_SIM"
        np.testing.assert_array_equal(a["kspace"][()], b["kspace"][()])
        np.testing.assert_array_equal(a["reconstruction_rss"][()], b["reconstruction_rss"][()])
        ref = a["reconstruction_rss"][()]
    images = load_colin27(SAMPLE_SLICES, shape=(224, 192))
    sigma = mean_signal(images) / 30.0
    background = ref[:, :8, :8]  # corners hold no object
    # RSS of 8 noise-only channels: E[rss^2] = 8 sigma^2
    assert np.sqrt(np.mean(background ** 2)) == pytest.approx(np.sqrt(8) * sigma, rel=0.1)
