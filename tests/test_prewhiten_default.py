"""Noise prewhitening by default (issue 15, item 4): ``recon run``/``recon batch`` whiten every input that has
noise scans, with the noise/data bandwidth ratio (Gadgetron's noise adjust); ``--no-prewhiten`` does not;
outputs record whether it ran and the ratio; a resumed batch treats the setting as part of its fingerprint.

Files: the ISMRMRD generator's noise scan (``-C``), MRD files written with the ismrmrd API (noise scans with
another ``sample_time_us`` than the data), and gre.dat (real twix) with noise lines added by twixtools.
The independent reference is numpy: ``W = inv(cholesky(n n^H / N))``, zero-filled RSS of ``W k``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.coils.noise import noise_bandwidth_ratio, prewhiten_raw
from recon.io import read_raw
from recon.arrays import center_crop_or_pad, rss
from recon.io.fourier import ifft2c

ismrmrd = pytest.importorskip("ismrmrd")

GENERATOR = "ismrmrd_generate_cartesian_shepp_logan"
GRE = Path(__file__).parent / "data" / "twix" / "gre.dat"


def _recon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recon", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def _whitener(noise: np.ndarray) -> np.ndarray:
    cov = noise.astype(np.complex128) @ noise.conj().T.astype(np.complex128) / noise.shape[1]
    return np.linalg.inv(np.linalg.cholesky(cov))


def _rss_of(kspace: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    return center_crop_or_pad(rss(ifft2c(kspace), axis=1), crop)


def _attrs(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def _reconstruction(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["reconstruction"][()]


# --------------------------------------------------------------------------- MRD generator (-C)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    if shutil.which(GENERATOR) is None:
        pytest.skip(f"{GENERATOR} not installed (apt-get install ismrmrd-tools)")
    folder = tmp_path_factory.mktemp("pw_gen")
    out = folder / "noisy.h5"
    subprocess.run([GENERATOR, "-m", "64", "-c", "4", "-C", "-o", str(out)], check=True, capture_output=True,
                   cwd=folder)
    return out


def test_generator_noise_scan_is_whitened_by_default_and_recorded(generated, tmp_path):
    raw = read_raw(generated)
    noise = raw.header.noise_samples
    assert noise.shape == (4, 128)
    w = _whitener(noise)
    crop = raw.header.recon_size

    out = tmp_path / "white.h5"
    r = _recon("run", str(generated), str(out), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["prewhitening"] == {"prewhitened": True, "bandwidth_ratio": 1.0,
                                       "dwell_time_us": 5.0, "noise_dwell_time_us": 5.0}
    assert summary["parameters"] == {"method": "zero-filled"}  # the default is not a parameter
    attrs = _attrs(out)
    assert attrs["prewhitened"] == 1 and attrs["noise_bandwidth_ratio"] == 1.0
    assert json.loads(attrs["prewhitening"])["bandwidth_ratio"] == 1.0
    expected = _rss_of(np.einsum("dc,schw->sdhw", w, raw.kspace), crop)
    np.testing.assert_allclose(_reconstruction(out), expected, rtol=2e-4, atol=2e-5 * expected.max())

    plain = tmp_path / "plain.h5"
    r = _recon("run", str(generated), str(plain), "--no-prewhiten", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["prewhitening"] == {"prewhitened": False, "reason": "--no-prewhiten"}
    assert summary["parameters"] == {"method": "zero-filled", "prewhiten": False}
    attrs = _attrs(plain)
    assert attrs["prewhitened"] == 0 and "noise_bandwidth_ratio" not in attrs
    unwhitened = _rss_of(raw.kspace, crop)
    np.testing.assert_allclose(_reconstruction(plain), unwhitened, rtol=2e-4, atol=2e-5 * unwhitened.max())
    # the two differ by far more than float error: noise std 0.05 -> whitening scales by about 1 / 0.07
    assert np.median(_reconstruction(out)) / np.median(_reconstruction(plain)) > 5


def test_prewhitened_noise_has_identity_covariance(generated):
    white = prewhiten_raw(read_raw(generated))
    n = white.header.noise_samples.astype(np.complex128)
    cov = n @ n.conj().T / n.shape[1]
    np.testing.assert_allclose(cov, np.eye(4), atol=2e-6)  # float32 precision
    np.testing.assert_array_equal(white.header.noise_covariance, np.eye(4, dtype=np.complex64))
    assert white.header.attrs["prewhitened"] is True and white.header.attrs["noise_bandwidth_ratio"] == 1.0


def test_text_summary_says_prewhitened(generated, tmp_path):
    r = _recon("run", str(generated), str(tmp_path / "o.h5"))
    assert r.returncode == 0, r.stderr
    assert "prewhitened (bandwidth ratio 1)" in r.stdout


def test_input_without_noise_records_not_prewhitened(tmp_path):
    r = _recon("run", str(GRE), str(tmp_path / "gre.h5"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["prewhitening"] == {"prewhitened": False, "reason": "no noise scans in the input"}
    assert _attrs(tmp_path / "gre.h5")["prewhitened"] == 0


# ------------------------------------------------------------- MRD via the API: bandwidth ratio


def _xml(h: int, w: int, coils: int) -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <acquisitionSystemInformation><receiverChannels>{coils}</receiverChannels></acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{h}</x><y>{w}</y><z>5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{h}</x><y>{w}</y><z>5</z></fieldOfView_mm></reconSpace>
    <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{w - 1}</maximum><center>{w // 2}</center>
    </kspace_encoding_step_1></encodingLimits>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>"""


def _write_noise_only_mrd(path: Path, *, data_dwell: float, noise_dwell: float, seed: int = 0,
                          h: int = 128, w: int = 96, coils: int = 4, noise_lines: int = 40) -> np.ndarray:
    """k-space that is pure correlated noise, and noise scans of the same coils at another dwell time: white
    noise variance scales with the bandwidth 1/dwell, so the noise scans have ``Psi * data_dwell/noise_dwell``
    where the data have ``Psi``. Returns ``Psi``."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((coils, coils)) + 1j * rng.standard_normal((coils, coils))
    mix = np.eye(coils) + 0.4 * mix
    psi = mix @ mix.conj().T  # the data's noise covariance (white: E[z z^H] = I for z below)

    def noise(n: int, var_scale: float) -> np.ndarray:
        z = (rng.standard_normal((coils, n)) + 1j * rng.standard_normal((coils, n))) / np.sqrt(2)
        return (np.sqrt(var_scale) * mix @ z).astype(np.complex64)

    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as ds:
        ds.write_xml_header(_xml(h, w, coils).encode())
        for _ in range(noise_lines):
            acq = ismrmrd.Acquisition.from_array(noise(h, data_dwell / noise_dwell if noise_dwell > 0 else 1.0))
            acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
            acq.sample_time_us = noise_dwell
            ds.append_acquisition(acq)
        for y in range(w):
            acq = ismrmrd.Acquisition.from_array(noise(h, 1.0))
            acq.center_sample = h // 2
            acq.idx.kspace_encode_step_1 = y
            acq.sample_time_us = data_dwell
            ds.append_acquisition(acq)
    return psi


def test_bandwidth_ratio_from_mrd_sample_times_whitens_the_data(tmp_path):
    path = tmp_path / "bw.mrd"
    _write_noise_only_mrd(path, data_dwell=10.0, noise_dwell=2.5)  # noise bandwidth 4x the data's
    raw = read_raw(path)
    assert raw.header.attrs["dwell_time_us"] == 10.0 and raw.header.attrs["noise_dwell_time_us"] == 2.5
    assert noise_bandwidth_ratio(raw.header) == (4.0, None)

    corrected = prewhiten_raw(raw)
    uncorrected = prewhiten_raw(raw, bandwidth_correction=False)
    np.testing.assert_allclose(corrected.kspace, 2.0 * uncorrected.kspace, rtol=1e-5, atol=1e-6)
    k = corrected.kspace[0].reshape(raw.num_coils, -1).astype(np.complex128)
    cov = k @ k.conj().T / k.shape[1]
    # the data's own noise, whitened: identity up to sampling error (12288 samples, 5120 noise-scan samples)
    np.testing.assert_allclose(cov, np.eye(raw.num_coils), atol=0.08)
    k_off = uncorrected.kspace[0].reshape(raw.num_coils, -1).astype(np.complex128)
    assert np.mean(np.diag(k_off @ k_off.conj().T / k_off.shape[1]).real) == pytest.approx(0.25, rel=0.1)

    out = tmp_path / "bw.h5"
    r = _recon("run", str(path), str(out), "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)["prewhitening"]
    assert rec["bandwidth_ratio"] == 4.0 and rec["dwell_time_us"] == 10.0 and rec["noise_dwell_time_us"] == 2.5
    assert _attrs(out)["noise_bandwidth_ratio"] == 4.0
    crop = raw.header.recon_size
    np.testing.assert_allclose(_reconstruction(out), _rss_of(corrected.kspace, crop), rtol=2e-4, atol=1e-5)


def test_unknown_dwell_falls_back_to_ratio_one_with_a_note(tmp_path):
    path = tmp_path / "nodwell.mrd"
    _write_noise_only_mrd(path, data_dwell=0.0, noise_dwell=0.0, h=32, w=16, noise_lines=8)
    raw = read_raw(path)
    ratio, note = noise_bandwidth_ratio(raw.header)
    assert ratio == 1.0 and "bandwidth ratio 1 assumed" in note
    r = _recon("run", str(path), str(tmp_path / "o.h5"), "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)["prewhitening"]
    assert rec["prewhitened"] is True and rec["bandwidth_ratio"] == 1.0 and "assumed" in rec["note"]


# --------------------------------------------------------------- twix: gre.dat with noise lines


def _gre_with_noise(tmp_path: Path) -> tuple[Path, np.ndarray]:
    twixtools = pytest.importorskip("twixtools")
    rng = np.random.default_rng(3)
    mix = np.array([[1.0, 0.0], [0.6 + 0.3j, 0.8]])
    scans = twixtools.read_twix(str(GRE), verbose=False, keep_acqend=True)
    meas = scans[-1]
    image = [m for m in meas["mdb"] if not m.is_flag_set("ACQEND")]
    noise_mdbs, blocks = [], []
    for i in range(8):
        n = image[i].convert_to_local()
        z = (rng.standard_normal(image[i].data.shape) + 1j * rng.standard_normal(image[i].data.shape))
        n.data = (0.01 * mix @ z).astype(np.complex64)
        n.clear_all_flags()
        n.add_flag("NOISEADJSCAN")
        noise_mdbs.append(n)
        blocks.append(n.data)
    meas["mdb"] = noise_mdbs + image + [meas["mdb"][-1]]
    out = tmp_path / "gre_noise.dat"
    twixtools.write_twix(scans, str(out), version_is_ve=True)
    return out, np.concatenate(blocks, axis=1)


def test_twix_noise_lines_dwell_times_and_identity_covariance(tmp_path):
    path, noise = _gre_with_noise(tmp_path)
    raw = read_raw(path)
    hd = raw.header
    assert hd.noise_samples.shape == (2, 8 * 320)
    # protocol alDwellTime 11600 ns per oversampled sample, oversampling removed: 23.2 us per sample;
    # 320-sample noise lines: floor(76800 / 320) / 10 = 24.0 us (siemens_to_ismrmrd's convention)
    assert hd.attrs["dwell_time_us"] == pytest.approx(23.2)
    assert hd.attrs["noise_dwell_time_us"] == 24.0
    ratio, note = noise_bandwidth_ratio(hd)
    assert ratio == pytest.approx(23.2 / 24.0) and note is None

    white = prewhiten_raw(raw)
    n = white.header.noise_samples.astype(np.complex128)
    np.testing.assert_allclose(n @ n.conj().T / n.shape[1], np.eye(2), atol=2e-6)
    w = _whitener(noise)
    np.testing.assert_allclose(white.kspace, np.sqrt(ratio) * np.einsum("dc,schw->sdhw", w, raw.kspace),
                               rtol=1e-4, atol=1e-4 * np.abs(white.kspace).max())

    out = tmp_path / "o.h5"
    r = _recon("run", str(path), str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["prewhitening"]["bandwidth_ratio"] == pytest.approx(23.2 / 24.0)
    assert _attrs(out)["noise_bandwidth_ratio"] == pytest.approx(23.2 / 24.0)
    r = _recon("info", str(path))
    assert "dwell_time_us" in r.stdout and "'noise': 24.0" in r.stdout


# ------------------------------------------------------------------------------ recon batch


def test_batch_prewhitens_by_default_and_resume_fingerprint(generated, tmp_path):
    from recon.app.batch import InlineBackend, run_batch

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(generated, src / "a.h5")
    devnull = open(os.devnull, "w")
    out = tmp_path / "out"
    res = run_batch(src, out, backend=InlineBackend(), live=False, stream=devnull)
    assert res.exit_code == 0
    assert _attrs(out / "a.h5")["prewhitened"] == 1
    assert res.manifest["parameters"]["prewhiten"] is True
    again = run_batch(src, out, backend=InlineBackend(), live=False, stream=devnull)
    assert again.summary["skipped"] == 1
    # --no-prewhiten is another setting: the whitened output is not taken as finished
    other = run_batch(src, out, backend=InlineBackend(), live=False, stream=devnull, prewhiten=False)
    assert other.exit_code == 1 and "prewhiten" in other.manifest["files"]["a.h5"]["error"]["message"]
    out2 = tmp_path / "out2"
    plain = run_batch(src, out2, backend=InlineBackend(), live=False, stream=devnull, prewhiten=False)
    assert plain.exit_code == 0 and _attrs(out2 / "a.h5")["prewhitened"] == 0
    assert run_batch(src, out2, backend=InlineBackend(), live=False, stream=devnull,
                     prewhiten=False).summary["skipped"] == 1
    devnull.close()


def test_batch_cli_accepts_no_prewhiten(generated, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(generated, src / "a.h5")
    r = _recon("batch", str(src), str(tmp_path / "out"), "--no-prewhiten", "--workers", "1", "--progress", "lines")
    assert r.returncode == 0, r.stderr
    attrs = _attrs(tmp_path / "out" / "a.h5")
    assert attrs["prewhitened"] == 0 and json.loads(attrs["parameters"])["prewhiten"] is False
