"""Image outputs: NIfTI, PNG and DICOM by extension, atomic and never silently overwritten."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recon.errors import OutputError
from recon.io.images import PNG_PERCENTILE, image_format, montage, voxel_size_mm, write_image
from recon.io.types import Header

HEADER = Header(encoded_matrix=(40, 30, 1), recon_matrix=(20, 30, 1), num_coils=4,
                recon_fov_mm=(10.0, 22.5, 3.0), encoded_fov_mm=(20.0, 22.5, 3.0))


@pytest.fixture
def volume() -> np.ndarray:
    """(3, 20, 30) float32 with distinct slices and a gradient, values in [0, 2)."""
    rng = np.random.default_rng(0)
    return (rng.random((3, 20, 30)) + np.arange(3)[:, None, None] * 0.5).astype(np.float32)


def _no_temp_left(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("name", ["out.nii.gz", "out.nii"])
def test_nifti_round_trip(tmp_path: Path, volume: np.ndarray, name: str) -> None:
    nib = pytest.importorskip("nibabel")
    path = write_image(tmp_path / name, volume, header=HEADER)
    img = nib.load(path)
    data = np.asarray(img.dataobj)
    assert data.shape == (20, 30, 3) and data.dtype == np.float32
    np.testing.assert_array_equal(data, volume.transpose(1, 2, 0))
    np.testing.assert_allclose(img.header.get_zooms(), (0.5, 0.75, 3.0))
    assert nib.aff2axcodes(img.affine) == ("P", "L", "S")
    assert img.header.get_xyzt_units()[0] == "mm"
    # the volume is centred on the scanner origin
    centre = img.affine @ np.array([9.5, 14.5, 1.0, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    _no_temp_left(tmp_path)


def test_png_single_slice_size_and_window(tmp_path: Path, volume: np.ndarray) -> None:
    import matplotlib.pyplot as plt

    one = volume[:1].copy()
    one[0, 0, 0] = 100.0  # a hot pixel must not darken the image
    one[0, 0, 1] = 0.0
    path = write_image(tmp_path / "one.png", one)
    img = plt.imread(path)
    assert img.shape[:2] == (20, 30)
    grey = img[..., 0]
    np.testing.assert_array_equal(grey, img[..., 1])  # grayscale
    vmax = np.percentile(one, PNG_PERCENTILE)
    assert grey[0, 0] == 1.0 and grey[0, 1] == 0.0
    expected = np.clip(one[0] / vmax, 0, 1)
    assert np.abs(grey - expected).max() <= 0.5 / 255 + 1e-6  # linear window, rounded to 8 bits


def test_png_montage_grid(tmp_path: Path, volume: np.ndarray) -> None:
    import matplotlib.pyplot as plt

    path = write_image(tmp_path / "three.png", volume)
    img = plt.imread(path)
    assert img.shape[:2] == (40, 60)  # 3 slices -> 2 x 2 grid of 20 x 30
    assert np.all(img[20:, 30:, :3] == 0)  # unused cell is black
    grid = montage(volume)
    np.testing.assert_array_equal(grid[20:, :30], volume[2])


def test_dicom_readable(tmp_path: Path, volume: np.ndarray) -> None:
    pydicom = pytest.importorskip("pydicom")
    path = write_image(tmp_path / "out.dcm", volume, header=HEADER)
    ds = pydicom.dcmread(path)
    assert ds.Modality == "MR" and int(ds.NumberOfFrames) == 3
    pixels = ds.pixel_array
    assert pixels.shape == (3, 20, 30) and pixels.dtype == np.uint16
    values = pixels * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.abs(values - volume).max() <= float(ds.RescaleSlope)
    assert [float(v) for v in ds.PixelSpacing] == [0.5, 0.75] and float(ds.SliceThickness) == 3.0


def test_unknown_extension_and_missing_folder(tmp_path: Path, volume: np.ndarray) -> None:
    with pytest.raises(OutputError, match=r"unknown image extension '\.jpg'") as err:
        write_image(tmp_path / "out.jpg", volume)
    assert err.value.path == tmp_path / "out.jpg"
    with pytest.raises(OutputError, match="unknown image extension"):
        image_format(tmp_path / "noext")
    with pytest.raises(OutputError, match="does not exist"):
        write_image(tmp_path / "missing" / "out.png", volume)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["x.png", "x.nii.gz", "x.dcm"])
def test_existing_file_is_not_overwritten(tmp_path: Path, volume: np.ndarray, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists") as err:
        write_image(path, volume)
    assert err.value.path == path
    assert path.read_bytes() == b"precious"
    write_image(path, volume, overwrite=True)
    assert path.read_bytes() != b"precious" and path.stat().st_size > 100
    _no_temp_left(tmp_path)


def test_voxel_size_defaults() -> None:
    assert voxel_size_mm(None) == (1.0, 1.0, 1.0)
    assert voxel_size_mm(HEADER) == (0.5, 0.75, 3.0)
    assert voxel_size_mm(Header(encoded_matrix=(8, 8, 1), recon_matrix=(8, 8, 1), num_coils=1)) == (1.0, 1.0, 1.0)
