"""``recon run --mask-type/--accel/--center-fraction/--seed``: retrospective undersampling, recorded in the output."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.data import sample_path

SAMPLE = sample_path()


def _recon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recon", *args], capture_output=True, text=True)


def _fastmri_subsample():
    import fastmri

    spec = importlib.util.spec_from_file_location("_fm_subsample", Path(fastmri.__path__[0]) / "data" / "subsample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _zero_filled_rss(kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
    k = np.where(mask, kspace, 0).astype(np.complex128)
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    return np.sqrt((np.abs(img) ** 2).sum(axis=1))


@pytest.mark.parametrize("mask_type,accel,cf", [("random", 4, 0.08), ("equispaced_fraction", 8, 0.04)])
def test_file_name_seed_gives_fastmri_mask(tmp_path: Path, mask_type: str, accel: int, cf: float) -> None:
    out = tmp_path / "rec.h5"
    r = _recon("run", str(SAMPLE), str(out), "--mask-type", mask_type, "--accel", str(accel),
               "--center-fraction", str(cf))
    assert r.returncode == 0, r.stderr
    with h5py.File(SAMPLE) as f:
        kspace = f["kspace"][()]
    with h5py.File(out) as f:
        mask = f["mask"][()]
        rec = f["reconstruction"][()]
        attrs = dict(f.attrs)
    # fastMRI seeds each volume with tuple(map(ord, file name)): the oracle must give the same columns
    oracle = _fastmri_subsample().create_mask_for_mask_type(mask_type, [cf], [accel])
    expected, _ = oracle((1, kspace.shape[-2], kspace.shape[-1], 2), seed=tuple(map(ord, SAMPLE.name)))
    np.testing.assert_array_equal(mask, expected.numpy().reshape(-1).astype(bool))
    assert attrs["mask_type"] == mask_type and attrs["mask_seed"] == SAMPLE.name
    assert float(attrs["mask_acceleration"]) == accel and float(attrs["mask_center_fraction"]) == cf
    # the reconstruction is the zero-filled RSS of exactly these columns
    np.testing.assert_allclose(rec, _zero_filled_rss(kspace, mask), rtol=0, atol=1e-5 * rec.max())
    assert 1 / mask.mean() == pytest.approx(accel, rel=0.1)


def test_integer_seed_and_poisson(tmp_path: Path) -> None:
    from recon.sampling import mask_from_options

    out = tmp_path / "rec.h5"
    r = _recon("run", str(SAMPLE), str(out), "--mask-type", "poisson", "--accel", "6", "--seed", "7")
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        mask = f["mask"][()]
    expected, _ = mask_from_options("poisson", (224, 192), [6], [0.32 / 6], 7)
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("args,needle", [
    (["--center-fraction", "0.08"], "need --accel"),
    (["--accel", "4", "--center-fraction", "0.5"], "center"),
    (["--accel", "4", "--seed", "abc"], "--seed must be an integer"),
])
def test_bad_undersampling_options(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "rec.h5"
    r = _recon("run", str(SAMPLE), str(out), *args)
    assert r.returncode == 2
    assert r.stderr.startswith("recon:") and needle in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_already_undersampled_input_is_refused(tmp_path: Path) -> None:
    undersampled = tmp_path / "under.h5"
    assert _recon("run", str(SAMPLE), str(tmp_path / "a.h5"), "--accel", "4").returncode == 0
    from recon.io import read_raw
    from recon.io.fastmri import write_fastmri_kspace
    from recon.sampling import apply_mask, mask_from_options

    raw = read_raw(SAMPLE)
    mask, _ = mask_from_options("random", raw.shape, [4], [0.08], 1)
    raw.kspace, raw.mask = apply_mask(raw.kspace, mask)
    write_fastmri_kspace(undersampled, raw)
    r = _recon("run", str(undersampled), str(tmp_path / "b.h5"), "--accel", "4")
    assert r.returncode == 2 and "already undersampled" in r.stderr
    assert not (tmp_path / "b.h5").exists()
