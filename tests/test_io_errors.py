"""Every bad input that reaches the fastMRI / HDF5 path: the exception type, and a message that names the
file and the problem. And the writers: nothing overwritten, nothing half-written, no temp file left."""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.errors import CorruptFileError, DataError, FormatError, InputError, OutputError, UsageError
from recon.io import detect_format, open_raw, read_raw
from recon.io.fastmri import open_fastmri, read_reconstruction, write_fastmri_kspace, write_reconstruction
from recon.io.types import Header, RawData


def raises(exc_type, fragment: str, path: Path, fn, *args, **kwargs):
    """Call ``fn``; assert it raises exactly ``exc_type`` whose message names ``path`` and contains ``fragment``."""
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    assert type(info.value) is exc_type, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert str(path) in message, message
    assert fragment in message, message
    assert "\n" not in message, message  # one line
    return info.value


def good_file(tmp_path: Path, random_kspace, name: str = "good.h5", slices: int = 4) -> Path:
    header = Header(encoded_matrix=(16, 12, 1), recon_matrix=(8, 8, 1), num_coils=2, acquired_pe=(0, 12),
                    pe_center=6)
    return write_fastmri_kspace(tmp_path / name, RawData(random_kspace((slices, 2, 16, 12)), header))


def knee_like(write_h5, fastmri_xml, kspace, name="bad.h5", xml=None, **extra):
    return write_h5(name, {"kspace": kspace, "ismrmrd_header": xml if xml is not None else fastmri_xml(), **extra})


# ------------------------------------------------------------------------------------------ files that cannot be read

def test_missing_file(tmp_path):
    path = tmp_path / "nope.h5"
    raises(InputError, "file not found", path, open_raw, path)
    raises(InputError, "file not found", path, open_fastmri, path)
    raises(InputError, "file not found", path, read_reconstruction, path)


def test_wrong_extension(tmp_path):
    path = tmp_path / "scan.txt"
    path.write_text("hello")
    raises(FormatError, "unsupported extension '.txt'", path, detect_format, path)
    raises(FormatError, "unsupported extension", path, open_raw, path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.h5"
    path.touch()
    raises(CorruptFileError, "file is empty", path, open_raw, path)


def test_garbage_bytes_with_h5_extension(tmp_path):
    path = tmp_path / "garbage.h5"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    raises(CorruptFileError, "not a readable HDF5 file", path, open_raw, path)
    raises(CorruptFileError, "not a readable HDF5 file", path, open_fastmri, path)


def test_truncated_hdf5(tmp_path, random_kspace):
    path = good_file(tmp_path, random_kspace)
    os.truncate(path, path.stat().st_size // 2)
    raises(CorruptFileError, "truncated", path, open_raw, path)


def test_damaged_dataset_bytes_raise_corrupt_file_when_read(tmp_path, random_kspace):
    """The file opens (metadata intact) but the compressed bytes of slice 2 are overwritten: reading slice 2
    must give CorruptFileError, not an h5py traceback; the other slices still read."""
    path = tmp_path / "damaged.h5"
    kspace = random_kspace((4, 2, 16, 12))
    header = Header(encoded_matrix=(16, 12, 1), recon_matrix=(8, 8, 1), num_coils=2)
    write_fastmri_kspace(path, RawData(kspace, header))
    with h5py.File(path, "r+") as f:  # rewrite kspace gzip-compressed, one chunk per slice
        del f["kspace"]
        f.create_dataset("kspace", data=kspace, chunks=(1, 2, 16, 12), compression="gzip")
    with h5py.File(path) as f:
        chunk = f["kspace"].id.get_chunk_info(2)
    raw = bytearray(path.read_bytes())
    raw[chunk.byte_offset + 8: chunk.byte_offset + chunk.size - 8] = bytes(chunk.size - 16)
    path.write_bytes(raw)
    with open_raw(path) as f:
        assert np.array_equal(f.read_slices(1).kspace, kspace[1:2])
        raises(CorruptFileError, "cannot read 'kspace' slices 2..2", path, f.read_slices, 2)
        raises(CorruptFileError, "truncated or corrupt", path, f.read)


def test_h5_that_is_neither_fastmri_nor_mrd(write_h5):
    path = write_h5("other.h5", {"images": np.zeros((2, 4, 4), np.float32)})
    raises(FormatError, "neither fastMRI", path, open_raw, path)


# ------------------------------------------------------------------------------------------ fastMRI layout errors

def test_missing_kspace(write_h5, fastmri_xml):
    path = write_h5("nok.h5", {"ismrmrd_header": fastmri_xml(), "reconstruction_rss": np.ones((2, 4, 4), np.float32)})
    raises(FormatError, "no 'kspace' dataset", path, open_raw, path)
    raises(FormatError, "reconstruction_rss", path, open_fastmri, path)  # lists what the file has


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_kspace_not_complex(write_h5, fastmri_xml, dtype):
    path = knee_like(write_h5, fastmri_xml, np.ones((1, 2, 640, 368), dtype))
    err = raises(DataError, "'kspace' must be complex", path, open_raw, path)
    assert np.dtype(dtype).name in str(err)


@pytest.mark.parametrize("shape", [(640, 368), (1, 1, 2, 640, 368)])
def test_kspace_wrong_rank(write_h5, fastmri_xml, shape):
    path = knee_like(write_h5, fastmri_xml, np.ones(shape, np.complex64))
    err = raises(DataError, "'kspace' must have 3 axes", path, open_raw, path)
    assert str(shape) in str(err)


def test_zero_coils(write_h5, fastmri_xml):
    path = knee_like(write_h5, fastmri_xml, np.ones((2, 0, 640, 368), np.complex64))
    raises(DataError, "'kspace' has an empty axis", path, open_raw, path)


def test_header_readout_size_disagrees_with_data(write_h5, fastmri_xml, random_kspace):
    path = knee_like(write_h5, fastmri_xml, random_kspace((1, 2, 320, 368)))  # header says encoded x = 640
    raises(DataError, "encoded matrix x (readout) is 640 but k-space H is 320", path, open_raw, path)


def test_phase_encode_width_may_differ_from_encoded_y(write_h5, fastmri_xml, random_kspace):
    """fastMRI brain files can have W != encoded y; fastMRI applies the padding to W as it is (clipped)."""
    path = knee_like(write_h5, fastmri_xml, random_kspace((1, 2, 640, 360)),
                     xml=fastmri_xml(encoded=(640, 396, 1), center=198, maximum=395))
    with open_raw(path) as f:
        assert f.header.acquired_pe == (0, 360) and f.header.encoded_matrix == (640, 396, 1)


def test_header_limits_outside_the_data_are_clipped(write_h5, fastmri_xml, random_kspace):
    # padding_left = 184 - 200 = -16, padding_right = -16 + 368 = 352 -> clipped to [0, 352)
    path = knee_like(write_h5, fastmri_xml, random_kspace((1, 2, 640, 368)), xml=fastmri_xml(center=200))
    with open_raw(path) as f:
        assert f.header.acquired_pe == (0, 352)


def test_header_limits_that_leave_no_line(write_h5, fastmri_xml, random_kspace):
    # padding_left = 184 - 400 = -216, padding_right = -216 + 11 = -205: nothing inside [0, 368)
    path = knee_like(write_h5, fastmri_xml, random_kspace((1, 2, 640, 368)), xml=fastmri_xml(center=400, maximum=10))
    raises(DataError, "leave no phase-encode line in [0, 368): [-216, -205)", path, open_raw, path)


def test_header_not_xml(write_h5, random_kspace):
    path = knee_like(write_h5, None, random_kspace((1, 2, 640, 368)), xml="<ismrmrdHeader><encoding>")
    raises(DataError, "ismrmrd_header is not valid XML", path, open_raw, path)


def test_header_without_limits(write_h5, fastmri_xml, random_kspace):
    xml = fastmri_xml().replace("<center>184</center>", "")
    path = knee_like(write_h5, None, random_kspace((1, 2, 640, 368)), xml=xml)
    raises(DataError, "no encodingLimits/kspace_encoding_step_1/center", path, open_raw, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_kspace(write_h5, fastmri_xml, random_kspace, bad):
    kspace = random_kspace((2, 2, 640, 368))
    kspace[1, 0, 5, 5] = bad
    path = knee_like(write_h5, fastmri_xml, kspace)
    with open_raw(path) as f:
        f.read_slices(0)
        raises(DataError, "k-space contains 1 NaN/Inf values", path, f.read_slices, 1)
    raises(DataError, "NaN/Inf", path, read_raw, path)


def test_mask_length_differs_from_width(write_h5, fastmri_xml, random_kspace):
    path = knee_like(write_h5, fastmri_xml, random_kspace((1, 2, 640, 368)), mask=np.ones(320, bool))
    raises(DataError, "'mask' has length 320 but k-space W (phase encode) is 368", path, open_raw, path)


def test_mask_not_zero_one(write_h5, fastmri_xml, random_kspace):
    path = knee_like(write_h5, fastmri_xml, random_kspace((1, 2, 640, 368)), mask=np.full(368, 0.5))
    raises(DataError, "'mask' must contain only 0/1", path, open_raw, path)


def test_reference_slices_differ(write_h5, fastmri_xml, random_kspace):
    path = knee_like(write_h5, fastmri_xml, random_kspace((2, 2, 640, 368)),
                     reconstruction_rss=np.ones((3, 320, 320), np.float32))
    raises(DataError, "'reconstruction_rss' has 3 slices but 'kspace' has 2", path, open_raw, path)


def test_bad_attribute_type(write_h5, fastmri_xml, random_kspace):
    path = write_h5("attr.h5", {"kspace": random_kspace((1, 2, 640, 368)), "ismrmrd_header": fastmri_xml()},
                    {"acceleration": -4})
    raises(DataError, "attribute 'acceleration' must be a positive number", path, open_raw, path)


def test_slice_out_of_range(tmp_path, random_kspace):
    path = good_file(tmp_path, random_kspace)
    with open_raw(path) as f:
        raises(UsageError, "slice 4 out of range: the file has 4 slices", path, f.read_slices, 4)


# ------------------------------------------------------------------------------------------ writers

def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_existing_output_is_not_overwritten(tmp_path, random_kspace, rng):
    path = good_file(tmp_path, random_kspace)
    before = path.read_bytes()
    data = read_raw(path)
    raises(OutputError, "output exists", path, write_fastmri_kspace, path, data)
    assert path.read_bytes() == before
    first = rng.random((1, 4, 4)).astype(np.float32)
    rec_path = write_reconstruction(tmp_path / "rec.h5", first)
    raises(OutputError, "output exists", rec_path, write_reconstruction, rec_path, np.zeros((1, 4, 4)))
    assert np.array_equal(read_reconstruction(rec_path)[0], first)
    # with overwrite=True the new content replaces the old
    write_reconstruction(rec_path, np.full((1, 4, 4), 3.0), overwrite=True)
    assert np.array_equal(read_reconstruction(rec_path)[0], np.full((1, 4, 4), 3.0, np.float32))
    assert _listing(tmp_path) == ["good.h5", "rec.h5"]


def test_missing_output_folder(tmp_path, random_kspace):
    data = read_raw(good_file(tmp_path, random_kspace))
    target = tmp_path / "no" / "such" / "out.h5"
    raises(OutputError, "does not exist", target, write_fastmri_kspace, target, data)
    raises(OutputError, "does not exist", target, write_reconstruction, target, np.zeros((1, 4, 4)))


def test_reconstruction_that_h5py_cannot_store_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "rec.h5"
    target.parent.mkdir()
    bad = np.array([{"a": 1}, None], dtype=object)
    raises(UsageError, "cannot store in HDF5", target, write_reconstruction, target,
           np.ones((1, 4, 4), np.float32), datasets={"uncertainty": bad})
    assert _listing(target.parent) == []


def test_write_failing_midway_leaves_no_file_and_no_temp(tmp_path, random_kspace, monkeypatch):
    data = read_raw(good_file(tmp_path, random_kspace))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    real_create = h5py.Group.create_dataset

    def create_then_fail(self, name, *args, **kwargs):
        if name == "ismrmrd_header":  # kspace is already written by now
            raise OSError(28, "No space left on device")
        return real_create(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", create_then_fail)
    target = out_dir / "k.h5"
    raises(OutputError, "could not write: No space left on device", target, write_fastmri_kspace, target, data)
    assert _listing(out_dir) == []


def test_reconstruction_argument_errors(tmp_path):
    target = tmp_path / "r.h5"
    raises(UsageError, "must be (slices, H, W)", target, write_reconstruction, target, np.zeros((4, 4)))
    raises(UsageError, "must be real magnitude", target, write_reconstruction, target, np.zeros((1, 4, 4), complex))
    nan = np.zeros((1, 4, 4))
    nan[0, 1, 1] = np.nan
    raises(UsageError, "1 NaN/Inf", target, write_reconstruction, target, nan)
    assert not target.exists() and _listing(tmp_path) == []


def test_kspace_writer_argument_errors(tmp_path, random_kspace):
    header = Header(encoded_matrix=(16, 12, 1), recon_matrix=(8, 8, 1), num_coils=2)
    kspace = random_kspace((1, 2, 16, 12))
    target = tmp_path / "k.h5"
    raises(UsageError, "reference dataset name must be one of", target, write_fastmri_kspace, target,
           RawData(kspace, header), reference="target")
    raises(UsageError, "encoded matrix x = 32 but k-space H = 16", target, write_fastmri_kspace, target,
           RawData(kspace, header.copy(encoded_matrix=(32, 12, 1))))
    varying = np.zeros((16, 12), bool)
    varying[::2, ::2] = True  # a 2D mask (Poisson-like): no fastMRI column mask for it
    raises(UsageError, "stores only column masks", target, write_fastmri_kspace, target,
           RawData(kspace, header, mask=varying))
    assert _listing(tmp_path) == []


def test_read_reconstruction_of_a_kspace_file(tmp_path, random_kspace):
    path = good_file(tmp_path, random_kspace)
    raises(FormatError, "no 'reconstruction' dataset", path, read_reconstruction, path)
