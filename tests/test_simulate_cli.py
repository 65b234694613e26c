"""``recon simulate``: a fastMRI-layout multi-coil dataset from the real Colin 27 volume."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.app.cli import main
from recon.app.cli.simulate import BRAIN_SLICES, slab_starts
from recon.io import open_raw
from recon.simulate import load_colin27, mean_signal


def simulate(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["simulate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _numpy_rss(kspace: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace.astype(np.complex128), axes=(-2, -1)), norm="ortho"),
                          axes=(-2, -1))
    out = np.sqrt((np.abs(img) ** 2).sum(axis=1))
    top, left = (out.shape[-2] - crop[0]) // 2, (out.shape[-1] - crop[1]) // 2
    return out[..., top:top + crop[0], left:left + crop[1]]


def test_noiseless_dataset_is_colin27(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ds"
    code, stdout, _ = simulate(capsys, str(out), "--files", "2", "--slices", "3", "--coils", "4", "--size", "40", "32",
                               "--snr", "0", "--seed", "7")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["sim_000.h5", "sim_001.h5"]
    assert "wrote 2 file(s)" in stdout and "3 slices x 4 coils x 80 x 32" in stdout
    starts = slab_starts(2, 3)
    assert starts == [BRAIN_SLICES[0], BRAIN_SLICES[1] - 3]
    for name, start in zip(("sim_000.h5", "sim_001.h5"), starts):
        with open_raw(out / name) as f:
            assert f.format == "fastmri" and f.shape == (3, 4, 80, 32)
            assert f.header.recon_matrix[:2] == (40, 32) and f.header.encoded_matrix[:2] == (80, 32)
            assert f.header.readout_oversampling == 2.0
            raw = f.read()
        truth = load_colin27(range(start, start + 3), shape=(40, 32))
        # noiseless, sum_c |S_c|^2 = 1: the RSS of the coil images is the Colin 27 slice itself
        assert np.abs(_numpy_rss(raw.kspace, (40, 32)) - truth).max() < 1e-5
        assert np.abs(raw.reference - truth).max() < 1e-5


def test_noise_level_seed_and_errors(tmp_path: Path, capsys) -> None:
    args = ["--files", "1", "--slices", "2", "--coils", "4", "--size", "48", "40", "--oversampling", "1"]
    assert simulate(capsys, str(tmp_path / "clean"), *args, "--snr", "0", "--seed", "3")[0] == 0
    assert simulate(capsys, str(tmp_path / "noisy"), *args, "--snr", "10", "--seed", "3")[0] == 0
    assert simulate(capsys, str(tmp_path / "again"), *args, "--snr", "10", "--seed", "3")[0] == 0
    assert simulate(capsys, str(tmp_path / "other"), *args, "--snr", "10", "--seed", "4")[0] == 0

    def kspace(folder: str) -> np.ndarray:
        with h5py.File(tmp_path / folder / "sim_000.h5") as f:
            return f["kspace"][()]

    noise = kspace("noisy") - kspace("clean")  # same seed: same background phase, only the noise differs
    start = slab_starts(1, 2)[0]
    sigma = mean_signal(load_colin27(range(start, start + 2), shape=(48, 40))) / 10
    assert np.sqrt(np.mean(np.abs(noise) ** 2)) == pytest.approx(sigma, rel=0.05)
    assert np.array_equal(kspace("noisy"), kspace("again"))
    assert not np.allclose(kspace("noisy"), kspace("other"))

    code, _, err = simulate(capsys, str(tmp_path / "noisy"), *args)
    assert code == 2 and "sim_000.h5: output exists" in err and len(err.strip().splitlines()) == 1
    assert simulate(capsys, str(tmp_path / "noisy"), *args, "--overwrite")[0] == 0
    code, _, err = simulate(capsys, str(tmp_path / "x"), "--slices", "500")
    assert code == 2 and "--slices must be at most 120" in err
    code, _, err = simulate(capsys, str(tmp_path / "x"), "--files", "0")
    assert code == 2 and "must be >= 1" in err
    code, _, err = simulate(capsys, str(tmp_path / "no" / "parent"), "--files", "1")
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "x").exists()
