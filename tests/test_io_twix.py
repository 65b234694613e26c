"""Siemens twix reader on real files (VD/VE GRE and EPI from twixtools, VB GRE from Pulseq) and on
twix files written with twixtools from the real GRE (extra counters, noise scans, missing lines)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from recon.errors import CorruptFileError, MissingDependencyError, UsageError
from recon.io import open_raw, read_raw
from recon.arrays import rss
from recon.io.fourier import ifft2c
from recon.io.twix import open_twix, twix_version

twixtools = pytest.importorskip("twixtools", reason="the 'twix' extra (twixtools) is not installed")

DATA = Path(__file__).parent / "data" / "twix"
GRE, EPI, VB_GRE = DATA / "gre.dat", DATA / "epi.dat", DATA / "pulseq_vb_gre.dat"


def _twixtools_kspace(path: Path, remove_os: bool) -> np.ndarray:
    """The reference: twixtools' own array, (Lin, Cha, Col) -> (Cha, Col, Lin)."""
    scan = twixtools.map_twix(str(path), verbose=False)[-1]["image"]
    scan.flags["remove_os"] = remove_os
    k = np.asarray(scan[:]).reshape(scan.size["Lin"], scan.size["Cha"], scan.size["Col"])
    return k.transpose(1, 2, 0)


def _image_stats(kspace: np.ndarray) -> tuple[float, float, float]:
    """(row centroid / H, column centroid / W, object mean / corner mean) of the RSS image of slice 0."""
    im = rss(ifft2c(kspace), axis=1)[0]
    h, w = im.shape
    yy, xx = np.mgrid[:h, :w]
    c = max(h, w) // 10
    corners = np.concatenate([im[:c, :c].ravel(), im[:c, -c:].ravel(), im[-c:, :c].ravel(), im[-c:, -c:].ravel()])
    centre = im[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    return (float((im * yy).sum() / im.sum() / h), float((im * xx).sum() / im.sum() / w),
            float(centre.mean() / corners.mean()))


def test_gre_shape_header_and_agreement_with_twixtools() -> None:
    with open_raw(GRE) as f:
        assert f.format == "twix"
        info = f.info()
        data = f.read()
    # 160 lines x 2 channels x 320 columns, 2x readout oversampling removed -> 160
    assert data.kspace.shape == (1, 2, 160, 160)
    assert data.kspace.dtype == np.complex64
    np.testing.assert_array_equal(data.kspace[0], _twixtools_kspace(GRE, remove_os=True))
    hd = data.header
    assert hd.format == "twix" and hd.num_coils == 2 and hd.acquisition == "gre"
    assert hd.encoded_matrix == (160, 160, 1) and hd.recon_matrix == (160, 160, 1)
    assert hd.recon_fov_mm == (200.0, 200.0, 4.0)
    assert hd.pe_center == 80 and hd.acquired_pe == (0, 160)
    assert data.mask is None and hd.noise_samples is None
    assert hd.attrs["TR_ms"] == 10.0 and hd.attrs["TE_ms"] == 3.0 and hd.attrs["flip_angle_deg"] == 15.0
    assert hd.attrs["system"] == "Skyra" and abs(hd.attrs["field_strength_T"] - 2.89362) < 1e-5
    assert hd.attrs["twix_version"] == "VD/VE" and twix_version(GRE) == "VD/VE"
    assert info["scans"] == {"image": 160} and info["sampling"] == "fully sampled"


def test_gre_image_looks_like_the_phantom() -> None:
    cy, cx, ratio = _image_stats(read_raw(GRE).kspace)
    # measured: centroid (0.504, 0.522) of (H, W); centre / corner mean 5.76
    assert abs(cy - 0.5) < 0.15 and abs(cx - 0.5) < 0.15
    assert ratio > 4.0


def test_gre_keeping_oversampling_doubles_readout() -> None:
    f = open_twix(GRE, remove_oversampling=False)
    assert f.shape == (1, 2, 320, 160)
    np.testing.assert_array_equal(f.read().kspace[0], _twixtools_kspace(GRE, remove_os=False))
    assert f.header.encoded_matrix == (320, 160, 1) and f.header.recon_matrix == (160, 160, 1)
    assert f.header.readout_oversampling == 2.0
    # the central half of the full-FOV image is twixtools' oversampling-removed image, scaled by sqrt(2):
    # twixtools crops the readout with unnormalised FFTs, so our orthonormal image of the halved
    # readout is 1/sqrt(2) of the full one (the noise per k-space sample halves its variance).
    full = ifft2c(f.read().kspace)[:, :, 80:240]
    np.testing.assert_allclose(np.abs(full), np.sqrt(2) * np.abs(ifft2c(read_raw(GRE).kspace)),
                               rtol=1e-4, atol=1e-4 * np.abs(full).max())


def test_epi_phase_correction_lines_not_in_image() -> None:
    # the uncorrected read (EPI correction is on by default since issue 15: tests/test_epi.py)
    f = open_twix(EPI, epi_correction=False)
    info = f.info()
    data = f.read()
    # 80 image lines (2 segments: odd/even, half of them reflected) x 2 channels x 160 -> 80 columns
    assert data.kspace.shape == (1, 2, 80, 80)
    assert info["scans"] == {"image": 80, "phasecorr": 3, "rt_feedback": 3}
    np.testing.assert_array_equal(data.kspace[0], _twixtools_kspace(EPI, remove_os=True))
    # the navigators' samples are nowhere in the image k-space
    nav = twixtools.map_twix(str(EPI), verbose=False)[-1]["phasecorr"]
    nav.flags["remove_os"] = True
    nav_lines = np.asarray(nav[:]).reshape(-1, 2, 80)
    image_lines = data.kspace[0].transpose(2, 0, 1)  # (W, coils, H)
    for line in nav_lines:
        assert not any(np.allclose(line, il) or np.allclose(line[:, ::-1], il) for il in image_lines)
    notes = " | ".join(info["notes"])
    assert "3 EPI phase-correction lines not in the image" in notes
    assert "ghost correction not performed" in notes and "not regridded" in notes
    assert "reflected (EPI) lines reversed by twixtools" in notes and "2 segments combined" in notes
    assert data.header.acquisition == "ep2d_bold" and data.header.attrs["TE_ms"] == 27.0
    cy, cx, _ = _image_stats(data.kspace)
    assert abs(cy - 0.5) < 0.15 and abs(cx - 0.5) < 0.15


def test_vb_file_reads() -> None:
    assert twix_version(VB_GRE) == "VB"
    f = open_twix(VB_GRE)
    data = f.read()
    # Pulseq GRE on a TrioTim (VB19): 256 lines x 1 channel x 256 columns, no readout oversampling
    assert data.kspace.shape == (1, 1, 256, 256)
    np.testing.assert_array_equal(data.kspace[0], _twixtools_kspace(VB_GRE, remove_os=False))
    assert data.header.attrs["system"] == "TrioTim" and data.header.attrs["twix_version"] == "VB"
    assert data.header.acquisition == "pulseq_v1_4"
    assert data.header.recon_matrix == (256, 256, 1)  # the protocol's 64 does not describe the data
    assert any("Pulseq" in n for n in f.info()["notes"])
    _, _, ratio = _image_stats(data.kspace)
    assert ratio > 20  # measured 62.7: a phantom on an empty background


def _write_variant(tmp_path: Path, name: str, make: Callable[[list], list]) -> Path:
    """Write gre.dat with its image mdbs replaced by ``make(local_image_mdbs)``, using twixtools."""
    scans = twixtools.read_twix(str(GRE), verbose=False, keep_acqend=True)
    meas = scans[-1]
    image = [m for m in meas["mdb"] if not m.is_flag_set("ACQEND")]
    meas["mdb"] = make(image) + [meas["mdb"][-1]]
    out = tmp_path / name
    twixtools.write_twix(scans, str(out), version_is_ve=True)
    return out


def _copy(mdb, scale: complex = 1.0, **counters: int):
    new = mdb.convert_to_local()
    new.data = mdb.data * np.complex64(scale)
    for k, v in counters.items():
        setattr(new.mdh.Counter, k, v)
    return new


def test_echoes_and_slices_on_slice_axis_averages_averaged(tmp_path: Path) -> None:
    def make(mdbs: list) -> list:
        out = []
        for m in mdbs:
            for sli in (0, 1):
                out.append(_copy(m, 1.0 + sli, Sli=sli, Eco=0, Ave=0))
                out.append(_copy(m, 3.0 * (1.0 + sli), Sli=sli, Eco=0, Ave=1))  # mean with Ave 0: 2x
                out.append(_copy(m, 1j, Sli=sli, Eco=1, Ave=0))
        return out

    path = _write_variant(tmp_path, "multi.dat", make)
    f = open_twix(path)
    k = f.read().kspace
    ref = read_raw(GRE).kspace[0]
    assert k.shape == (4, 2, 160, 160)
    assert f.info()["slice_axis"] == {"Eco": 2, "Sli": 2}
    # slice index = eco * 2 + sli (Sli fastest); Ave averaged
    np.testing.assert_allclose(k[0], 2 * ref, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(k[1], 4 * ref, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(k[2], 1j * ref, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(k[3], 1j * ref, rtol=1e-5, atol=1e-9)
    assert "2 averages averaged" in f.info()["notes"]


def test_noise_scans_become_noise_samples(tmp_path: Path) -> None:
    def make(mdbs: list) -> list:
        noise = []
        for i in range(3):
            n = _copy(mdbs[i], 0.01)
            n.clear_all_flags()
            n.add_flag("NOISEADJSCAN")
            noise.append(n)
        return noise + mdbs

    path = _write_variant(tmp_path, "noise.dat", make)
    data = read_raw(path)
    scan = twixtools.read_twix(str(GRE), verbose=False)[-1]["mdb"]
    expected = np.concatenate([0.01 * scan[i].data for i in range(3)], axis=1)
    assert data.header.noise_samples.shape == (2, 3 * 320)
    np.testing.assert_allclose(data.header.noise_samples, expected, rtol=1e-6)
    assert data.kspace.shape == (1, 2, 160, 160)


def test_partial_fourier_lines_give_mask_and_zero_fill(tmp_path: Path) -> None:
    # leading lines missing (Siemens partial Fourier): W stays 160, mask marks the acquired lines
    path = _write_variant(tmp_path, "pf.dat", lambda ms: [m for m in ms if m.mdh.Counter.Lin >= 40])
    data = read_raw(path)
    assert data.kspace.shape == (1, 2, 160, 160)
    np.testing.assert_array_equal(data.mask, np.arange(160) >= 40)
    assert not data.kspace[..., :40].any()
    # trailing lines missing: zero-filled to the protocol's 160 lines, centre line 80 stays at W // 2
    path = _write_variant(tmp_path, "pf2.dat", lambda ms: [m for m in ms if m.mdh.Counter.Lin < 120])
    data = read_raw(path)
    assert data.kspace.shape == (1, 2, 160, 160)
    assert data.header.pe_center == 80 and data.header.acquired_pe == (0, 160)
    np.testing.assert_array_equal(data.mask, np.arange(160) < 120)
    np.testing.assert_array_equal(data.kspace[..., :120], read_raw(GRE).kspace[..., :120])


def test_truncated_files(tmp_path: Path) -> None:
    cut = tmp_path / "cut.dat"
    cut.write_bytes(GRE.read_bytes()[:800_000])
    with pytest.raises(CorruptFileError, match=r"truncated: measurement 0 ends at byte 1656864") as err:
        open_raw(cut)
    assert err.value.path == cut
    cut_vb = tmp_path / "cut_vb.dat"
    cut_vb.write_bytes(VB_GRE.read_bytes()[:600_000])
    with pytest.raises(CorruptFileError, match="no end-of-acquisition") as err:
        open_twix(cut_vb)
    assert err.value.path == cut_vb
    tiny = tmp_path / "tiny.dat"
    tiny.write_bytes(b"\0\0\0\0")
    with pytest.raises(CorruptFileError, match=r"not a Siemens twix file \(4 bytes\)"):
        open_twix(tiny)


@pytest.mark.parametrize("payload", [
    np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes(),
    b"this is a text file, not raw data\n" * 1000,
    b"\0\0\0\0\1\0\0\0" + bytes(20_000),  # a VD/VE multi-raid header over zeros
    (20_000).to_bytes(4, "little") + np.random.default_rng(1).integers(0, 256, 60_000, dtype=np.uint8).tobytes(),
])
def test_garbage_files(tmp_path: Path, payload: bytes) -> None:
    bad = tmp_path / "bad.dat"
    bad.write_bytes(payload)
    with pytest.raises(CorruptFileError, match="not a (readable )?Siemens twix file|truncated") as err:
        open_raw(bad)
    assert err.value.path == bad


def test_missing_twixtools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "twixtools", None)  # makes `import twixtools` fail
    # twixtools is an ordinary dependency (issue 15): a broken install names the package, not an extra
    with pytest.raises(MissingDependencyError, match=r"dependency of recon-mri.*make install") as err:
        open_twix(GRE)
    assert err.value.path == GRE
    assert "reading Siemens twix files needs the 'twixtools' package" in str(err.value)
    assert "recon-mri[" not in str(err.value)


def test_bad_measurement_index() -> None:
    with pytest.raises(UsageError, match="measurement 3 does not exist: the file has 1"):
        open_twix(GRE, measurement=3)
