"""Patient geometry: from twix/MRD headers onto Header.geometry, sorted slices, and into NIfTI (RAS+), the
Enhanced MR DICOM (checked with Debian's dcm2niix) and ISMRMRD image outputs (recon.io.geometry)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from recon.io.geometry import LPS_TO_RAS, Geometry, quaternion_to_directions, sort_by_position

nib = pytest.importorskip("nibabel")
ismrmrd = pytest.importorskip("ismrmrd")

DATA = Path(__file__).parent / "data" / "twix"
GRE, EPI = DATA / "gre.dat", DATA / "epi.dat"


def _angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    c = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


def _protocol_slice(path: Path) -> dict:
    import twixtools

    hdr = twixtools.read_twix(str(path), verbose=False)[-1]["hdr"]
    return hdr["MeasYaps"]["sSliceArray"]["asSlice"][0]


def test_quaternion_identity_and_orthonormal():
    r, p, s = quaternion_to_directions((0.0, 0.0, 0.0, 1.0))
    np.testing.assert_allclose(np.stack([r, p, s]), np.eye(3), atol=1e-12)
    q = np.array([0.1, -0.3, 0.2, 0.9])
    m = np.stack(quaternion_to_directions(q / np.linalg.norm(q)), axis=1)
    np.testing.assert_allclose(m.T @ m, np.eye(3), atol=1e-12)
    assert np.linalg.det(m) == pytest.approx(1.0)


@pytest.mark.parametrize("path", [GRE, EPI])
def test_twix_mdh_geometry_matches_the_protocol(path):
    pytest.importorskip("twixtools")
    from recon.io.twix import open_twix

    f = open_twix(path)
    g = f.header.geometry
    assert isinstance(g, Geometry) and len(g) == 1 and f.info()["geometry"]["entries"] == 1
    prot = _protocol_slice(path)
    normal = np.array([prot["sNormal"].get(k, 0.0) for k in ("dSag", "dCor", "dTra")])
    pos = np.array([prot["sPosition"].get(k, 0.0) for k in ("dSag", "dCor", "dTra")])
    # the MDH quaternion (converted as siemens_to_ismrmrd does) gives the protocol's slice normal
    assert _angle_deg(g.slice_dir[0], normal) < 0.01
    np.testing.assert_allclose(g.position[0], pos, atol=0.01)
    m = np.stack([g.read_dir[0], g.phase_dir[0], g.slice_dir[0]], axis=1)
    np.testing.assert_allclose(m.T @ m, np.eye(3), atol=1e-5)


def test_gre_nifti_image_centre_is_the_protocol_slice_position(tmp_path):
    pytest.importorskip("twixtools")
    from recon.app.pipeline import reconstruct_file

    out = tmp_path / "gre.nii.gz"
    reconstruct_file(GRE, out)
    img = nib.load(out)
    assert img.shape == (160, 160, 1)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    prot = _protocol_slice(GRE)
    pos_lps = np.array([prot["sPosition"][k] for k in ("dSag", "dCor", "dTra")])
    centre = img.affine @ np.array([80, 80, 0, 1.0])
    np.testing.assert_allclose(centre[:3], LPS_TO_RAS @ pos_lps, atol=0.01)
    np.testing.assert_allclose(img.header.get_zooms(), (1.25, 1.25, 4.0), atol=1e-6)  # 200 mm / 160, 4 mm
    normal_ras = LPS_TO_RAS @ np.array([prot["sNormal"].get(k, 0.0) for k in ("dSag", "dCor", "dTra")])
    assert _angle_deg(img.affine[:3, 2], normal_ras) < 0.01


def _canonical(img):
    c = nib.as_closest_canonical(img)
    return c.affine, np.asarray(c.dataobj, dtype=np.float64)


def _dcm2niix(dcm: Path, folder: Path):
    folder.mkdir()
    subprocess.run(["dcm2niix", "-o", str(folder), "-f", "conv", "-z", "n", str(dcm)], check=True,
                   capture_output=True, timeout=60)
    return sorted(folder.glob("conv*.nii"))


def _same_geometry(a, b, voxels: bool = True):
    (aa, da), (ab, db) = _canonical(a), _canonical(b)
    assert da.shape[:3] == db.shape[:3]
    np.testing.assert_allclose(aa[:3, 3], ab[:3, 3], atol=0.01)  # origin, mm
    for i in range(3):
        assert abs(np.linalg.norm(aa[:3, i]) - np.linalg.norm(ab[:3, i])) < 0.01  # voxel size, mm
        assert _angle_deg(aa[:3, i], ab[:3, i]) < 0.01  # axis direction, degrees
    if not voxels:
        return
    # the same voxels (uint16 quantisation of our DICOM)
    np.testing.assert_allclose(db.reshape(da.shape) / db.max(), da / da.max(), atol=2e-5)


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="Debian's dcm2niix not installed (make system-tools)")
def test_dcm2niix_of_our_dicom_gives_our_nifti_geometry_gre(tmp_path):
    pytest.importorskip("twixtools")
    pydicom = pytest.importorskip("pydicom")
    from recon.app.pipeline import reconstruct_file

    reconstruct_file(GRE, tmp_path / "gre.nii.gz")
    reconstruct_file(GRE, tmp_path / "gre.dcm")
    ds = pydicom.dcmread(tmp_path / "gre.dcm")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.1" and "FrameOfReferenceUID" in ds
    frame = ds.PerFrameFunctionalGroupsSequence[0]
    assert len(frame.PlanePositionSequence[0].ImagePositionPatient) == 3
    (conv,) = _dcm2niix(tmp_path / "gre.dcm", tmp_path / "d")
    _same_geometry(nib.load(tmp_path / "gre.nii.gz"), nib.load(conv))


# ----------------------------------------------------------------------------- MRD, synthetic oblique


H, W, C = 16, 12, 2
Z_OF_SLICE = [4.0, -4.0, 0.0]  # interleaved: slice counter order is not spatial order


def _rotation() -> np.ndarray:
    a, b = np.radians(20.0), np.radians(-35.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rz @ rx


def _oblique_mrd(path: Path) -> Path:
    from tests.test_io_mrd import acquisition, write_mrd, xml_header

    r = _rotation()
    centre = np.array([12.5, -30.0, 41.0])
    acqs = []
    for e in range(2):
        for s, z in enumerate(Z_OF_SLICE):
            k = np.zeros((C, H, W), dtype=np.complex64)
            k[:, H // 2, W // 2] = (10 * e + s + 1) * np.sqrt(H * W)  # a constant image of that value
            for y in range(W):
                a = acquisition(k[:, :, y], y, slice=s, contrast=e)
                a.position[:] = centre + z * r[:, 2]
                a.read_dir[:], a.phase_dir[:], a.slice_dir[:] = r[:, 0], r[:, 1], r[:, 2]
                acqs.append(a)
    return write_mrd(path, xml_header(H, W, limits=(0, W - 1, W // 2), coils=C), acqs)


def test_mrd_geometry_sorted_and_round_trips_through_mrd_output(tmp_path):
    from recon.io.mrd import open_mrd
    from recon.io.mrd_images import read_mrd_images
    from recon.app.pipeline import reconstruct_file

    path = _oblique_mrd(tmp_path / "obl.h5")
    f = open_mrd(path)
    g = f.header.geometry
    assert len(g) == 6 and g.counters["contrast"] == [0, 0, 0, 1, 1, 1]
    assert g.counters["slice"] == [1, 2, 0, 1, 2, 0]  # sorted by position along the normal
    assert [fr["slice"] for fr in f.header.attrs["frames"]] == [1, 2, 0, 1, 2, 0]
    along = g.position @ g.slice_dir[0]
    assert np.all(np.diff(along[:3]) > 0)
    out = tmp_path / "obl.mrd.h5"
    reconstruct_file(path, out)
    vol, heads = read_mrd_images(out)
    assert vol.shape == (6, H, W) and len(heads) == 6
    # images in sorted order: constant images of value 10 e + s + 1 (RSS of 2 identical coils: x sqrt 2)
    np.testing.assert_allclose(vol.mean(axis=(1, 2)) / np.sqrt(2),
                               [10 * e + s + 1 for e, s in zip(g.counters["contrast"], g.counters["slice"])],
                               rtol=1e-4)
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as src:
        acq = {(a.idx.contrast, a.idx.slice): a for a in (src.read_acquisition(i)
                                                        for i in range(src.number_of_acquisitions()))}
    for hd in heads:
        a = acq[(hd.contrast, hd.slice)]
        for name in ("position", "read_dir", "phase_dir", "slice_dir"):
            np.testing.assert_allclose(np.array(getattr(hd, name)), np.array(getattr(a, name)), atol=1e-5)
        assert tuple(hd.matrix_size) == (H, W, 1)
        np.testing.assert_allclose(np.array(hd.field_of_view), (2.0 * H, 2.0 * W, 5.0), atol=1e-5)
        assert hd.image_series_index == hd.contrast + 1


def test_mrd_contrasts_become_nifti_volumes_and_dicom_stacks(tmp_path):
    from recon.app.pipeline import reconstruct_file

    path = _oblique_mrd(tmp_path / "obl.h5")
    reconstruct_file(path, tmp_path / "obl.nii.gz")
    img = nib.load(tmp_path / "obl.nii.gz")
    assert img.shape == (H, W, 3, 2)  # (H, W, slices, contrasts)
    data = np.asarray(img.dataobj)
    np.testing.assert_allclose(data.mean(axis=(0, 1)) / np.sqrt(2), [[2, 12], [3, 13], [1, 11]], rtol=1e-4)
    r = LPS_TO_RAS @ _rotation()
    assert _angle_deg(img.affine[:3, 0], r[:, 0]) < 0.01 and _angle_deg(img.affine[:3, 1], r[:, 1]) < 0.01
    np.testing.assert_allclose(img.affine[:3, 2], 4.0 * r[:, 2], atol=1e-4)  # slice spacing 4 mm along normal
    if shutil.which("dcm2niix") is None:
        pytest.skip("Debian's dcm2niix not installed")
    reconstruct_file(path, tmp_path / "obl.dcm")
    convs = _dcm2niix(tmp_path / "obl.dcm", tmp_path / "d")
    assert convs, "dcm2niix wrote nothing"
    conv = nib.load(convs[0])
    assert conv.shape == (W, H, 3, 2)  # dcm2niix: one 4D series, columns first
    # the geometry agrees; the frame-to-volume assignment of dcm2niix 1.0.20220720 for this two-stack
    # file does not (known open defect, see data_specs/geometry.md), so voxels are compared per contrast
    # only for single-contrast files (test_dcm2niix_of_our_dicom_gives_our_nifti_geometry_gre)
    _same_geometry(img, conv, voxels=False)


def test_sort_by_position_keeps_contrasts_outermost():
    pos = np.array([[0, 0, z] for z in (2.0, -2.0, 0.0, 2.0, -2.0, 0.0)])
    g = Geometry(pos, np.tile([1.0, 0, 0], (6, 1)), np.tile([0, 1.0, 0], (6, 1)), np.tile([0, 0, 1.0], (6, 1)),
                 {"contrast": [0, 0, 0, 1, 1, 1], "slice": [0, 1, 2, 0, 1, 2]})
    assert sort_by_position(g).tolist() == [1, 2, 0, 4, 5, 3]
