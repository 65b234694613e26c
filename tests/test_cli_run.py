"""Zero-filled reconstruction, ``reconstruct_file`` and the ``recon run`` command (``recon demo``: tests/test_demo.py)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from recon.data import sample_path
from recon.errors import InputError, OutputError, UsageError
from recon.app.pipeline import METHODS, reconstruct_file, register_method
from recon.solvers.zero_filled import rss_reconstruction, zero_filled

SAMPLE = sample_path()


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(SAMPLE) as f:
        return f["kspace"][()], f["reconstruction_rss"][()]


def _numpy_rss(kspace: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """Independent float64 numpy computation: centred orthonormal inverse FFT, RSS, centre crop."""
    k = kspace.astype(np.complex128)
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    out = np.sqrt((np.abs(img) ** 2).sum(axis=1))
    h, w = out.shape[-2:]
    top, left = (h - crop[0]) // 2, (w - crop[1]) // 2
    return out[..., top:top + crop[0], left:left + crop[1]]


def _load(name: str, filename: str):
    import fastmri

    spec = importlib.util.spec_from_file_location(name, Path(fastmri.__path__[0]) / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_rss_equals_reference_and_numpy(sample) -> None:
    kspace, reference = sample
    rec = rss_reconstruction(kspace, crop=reference.shape[-2:])
    assert isinstance(rec, np.ndarray) and rec.dtype == np.float32 and rec.shape == reference.shape
    scale = float(reference.max())
    assert np.abs(rec - reference).max() < 1e-6 * scale
    assert np.abs(rec - _numpy_rss(kspace, reference.shape[-2:])).max() < 1e-6 * scale


def test_rss_matches_fastmri_and_crops(sample) -> None:
    kspace, _ = sample
    k = kspace[:1, :, :, :]
    fftc = _load("fastmri_fftc", "fftc.py")
    t = torch.view_as_real(torch.from_numpy(k))
    theirs = torch.sqrt((fftc.ifft2c_new(t) ** 2).sum(dim=-1).sum(dim=1)).numpy()
    ours = rss_reconstruction(torch.from_numpy(k))
    assert isinstance(ours, torch.Tensor)  # torch in, torch out
    assert np.abs(ours.numpy() - theirs).max() < 1e-6 * theirs.max()
    cropped = rss_reconstruction(k, crop=(200, 100))
    np.testing.assert_array_equal(cropped, ours.numpy()[:, 12:212, 46:146])
    padded = rss_reconstruction(k, crop=(230, 192))  # larger than the grid: zero padded, as center_crop
    assert padded.shape == (1, 230, 192) and not padded[:, :3].any() and not padded[:, -3:].any()


def test_zero_filled_applies_mask(sample) -> None:
    kspace, _ = sample
    k = kspace[:1]
    mask = np.zeros(k.shape[-1], dtype=bool)
    mask[::4] = True
    mask[86:106] = True
    images = zero_filled(k, mask)
    assert images.shape == k.shape and images.dtype == torch.complex64
    masked = np.where(mask, k, 0)
    expected = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(masked, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    assert np.abs(images.numpy() - expected).max() < 1e-6 * np.abs(expected).max()
    with pytest.raises(UsageError, match="does not fit"):
        zero_filled(k, np.ones(5, dtype=bool))


def test_reconstruct_file_summary_and_attrs(tmp_path: Path, sample) -> None:
    from recon.io.fastmri import read_reconstruction

    _, reference = sample
    out = tmp_path / "rec.h5"
    summary = reconstruct_file(SAMPLE, out)
    assert summary["shape"] == list(reference.shape) and summary["method"] == "zero-filled"
    assert summary["format"] == "fastmri" and summary["seconds"] > 0
    json.dumps(summary)
    rec, attrs = read_reconstruction(out)
    assert np.abs(rec - reference).max() < 1e-6 * reference.max()
    assert attrs["method"] == "zero-filled" and attrs["input_file"] == "sample_brain.h5"
    assert attrs["parameters"] == {"method": "zero-filled"} and attrs["format"] == "fastmri"
    assert attrs["acquisition"] == "AXT1_SIM" and "recon_version" in attrs


def test_reconstruct_file_checks_before_work(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="unknown output extension"):
        reconstruct_file(SAMPLE, tmp_path / "x.jpg")
    with pytest.raises(UsageError, match="unknown method 'nope'"):
        reconstruct_file(SAMPLE, tmp_path / "x.h5", method="nope")
    with pytest.raises(UsageError, match="does not take option"):
        reconstruct_file(SAMPLE, tmp_path / "x.h5", lam=0.1)
    with pytest.raises(InputError, match="not found"):
        reconstruct_file(tmp_path / "missing.h5", tmp_path / "x.h5")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def oversampled(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A small simulated fastMRI file with 2x readout oversampling: k-space (2, 4, 64, 40), recon 32 x 40."""
    from recon.io.fastmri import write_fastmri_kspace
    from recon.simulate import load_colin27, simulate_multicoil

    images = load_colin27([85, 95], shape=(160, 144))[:, ::5, 12:132:3]  # (2, 32, 40)
    sim = simulate_multicoil(images, num_coils=4, snr=20.0, seed=5, readout_oversampling=2)
    path = write_fastmri_kspace(tmp_path_factory.mktemp("os") / "os.h5", sim.raw)
    return path, sim.raw.reference


def test_oversampled_input_is_cropped_to_reference(tmp_path: Path, oversampled) -> None:
    path, reference = oversampled
    out = tmp_path / "rec.h5"
    summary = reconstruct_file(path, out)
    assert summary["shape"] == [2, 32, 40]
    with h5py.File(out) as f:
        rec = f["reconstruction"][()]
    assert np.abs(rec - reference).max() < 1e-6 * reference.max()


def test_registered_method_plugs_in(tmp_path: Path, oversampled) -> None:
    path, reference = oversampled
    calls = []

    def doubled(raw, *, factor: float = 2.0):
        calls.append(raw.kspace.shape)
        rec = rss_reconstruction(raw.kspace) * factor
        return {"reconstruction": rec, "uncertainty": rec / factor, "mask": np.ones((1, 40), dtype=bool)}

    register_method("test-doubled", doubled)
    try:
        out = tmp_path / "d.h5"
        summary = reconstruct_file(path, out, method="test-doubled", factor=3.0)
        assert calls == [(1, 4, 64, 40)] * 2  # slice by slice, on the full grid
        assert summary["parameters"] == {"method": "test-doubled", "factor": 3.0}
        with h5py.File(out) as f:
            np.testing.assert_allclose(f["reconstruction"][()], 3 * reference, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(f["uncertainty"][()], reference, rtol=1e-5, atol=1e-6)  # cropped too
            assert f["mask"].shape == (2, 40)
        with pytest.raises(UsageError, match="already registered"):
            register_method("test-doubled", doubled)
        # by name, imported on first use
        register_method("test-lazy", "recon.solvers.zero_filled:zero_filled_method")
        reconstruct_file(path, tmp_path / "lazy.h5", method="test-lazy")
        with h5py.File(tmp_path / "lazy.h5") as f:
            assert np.abs(f["reconstruction"][()] - reference).max() < 1e-6 * reference.max()
    finally:
        METHODS.pop("test-doubled", None)
        METHODS.pop("test-lazy", None)


# ---- the command line, as a user runs it --------------------------------------------------------------

def recon(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recon", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recon:"), proc.stderr
    return lines[0]


def test_cli_run_equals_reference_then_refuses_overwrite(tmp_path: Path, sample) -> None:
    _, reference = sample
    out = tmp_path / "rec.h5"
    proc = recon("run", SAMPLE, out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and "3 x 224 x 192" in proc.stdout and "zero-filled" in proc.stdout
    with h5py.File(out) as f:
        rec = f["reconstruction"][()]
    assert rec.dtype == np.float32 and np.abs(rec - reference).max() < 1e-6 * reference.max()

    before = out.read_bytes()
    mtime = out.stat().st_mtime_ns
    line = _one_line_error(recon("run", SAMPLE, out))
    assert "exists" in line and str(out) in line
    assert out.read_bytes() == before and out.stat().st_mtime_ns == mtime

    proc = recon("run", SAMPLE, out, "--overwrite", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["shape"] == [3, 224, 192] and summary["output"] == str(out)


def test_cli_run_bad_paths(tmp_path: Path) -> None:
    line = _one_line_error(recon("run", tmp_path / "nope.h5", tmp_path / "out.h5"))
    assert "nope.h5" in line and "not found" in line
    missing = tmp_path / "no_such_dir" / "out.h5"
    line = _one_line_error(recon("run", SAMPLE, missing))
    assert "does not exist" in line
    assert not missing.parent.exists() and list(tmp_path.iterdir()) == []


def test_cli_run_image_output_and_info(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    proc = recon("run", SAMPLE, tmp_path / "rec.png")
    assert proc.returncode == 0, proc.stderr
    assert plt.imread(tmp_path / "rec.png").shape[:2] == (448, 384)  # 3 slices -> 2 x 2 montage
    info = recon("info", SAMPLE)
    assert info.returncode == 0, info.stderr
    assert "3 x 8 x 224 x 192" in info.stdout and "AXT1_SIM" in info.stdout
