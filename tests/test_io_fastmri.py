"""fastMRI HDF5 reader and writers: exact round trips, lazy reading, header parsing checked by hand and
against fastMRI's own code (the installed ``fastmri`` 0.3.0 wheel, loaded file by file)."""
from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.errors import DataError
from recon.io import open_raw, read_raw
from recon.io.fastmri import (
    FastMRIFile, open_fastmri, read_reconstruction, write_fastmri_kspace, write_reconstruction,
)
from recon.io.fastmri_header import parse_encoding
from recon.io.types import Header, RawData

FASTMRI_DIR = Path(__file__).resolve().parents[1] / ".venv/lib/python3.11/site-packages/fastmri"
if not FASTMRI_DIR.exists():  # another venv layout: find the wheel through the import system
    _spec = importlib.util.find_spec("fastmri")
    FASTMRI_DIR = Path(_spec.origin).parent if _spec and _spec.origin else FASTMRI_DIR

HEADER_FIELDS = ("encoded_matrix", "recon_matrix", "num_coils", "encoded_fov_mm", "recon_fov_mm",
                 "pe_center", "acquired_pe", "acquisition")


def small_header(coils: int = 4, height: int = 16, width: int = 12, **kw) -> Header:
    args = dict(encoded_matrix=(height, width, 1), recon_matrix=(height // 2, 8, 1), num_coils=coils,
                encoded_fov_mm=(200.0, 100.0, 5.0), recon_fov_mm=(100.0, 100.0, 5.0),
                pe_center=width // 2, acquired_pe=(1, width - 1), acquisition="CORPD_FBK")
    args.update(kw)
    return Header(**args)


def assert_same_header(a: Header, b: Header) -> None:
    for name in HEADER_FIELDS:
        assert getattr(a, name) == getattr(b, name), name


# ------------------------------------------------------------------------------------------ round trips

def test_multicoil_with_reference_round_trip_is_exact(tmp_path, random_kspace, rng):
    kspace = random_kspace((3, 4, 16, 12))
    ref = rng.random((3, 8, 8)).astype(np.float32)
    header = small_header(attrs={"patient_id": "abc123"})
    out = write_fastmri_kspace(tmp_path / "mc.h5", RawData(kspace, header, reference=ref))
    assert out == tmp_path / "mc.h5"

    back = read_raw(out)
    assert back.kspace.dtype == np.complex64
    assert np.array_equal(back.kspace, kspace)
    assert np.array_equal(back.reference, ref) and back.reference.dtype == np.float32
    assert back.reference_name == "reconstruction_rss"
    assert back.mask is None
    assert_same_header(back.header, header)
    assert back.header.format == "fastmri"
    # fastMRI's attributes: max and norm of the reference volume, the patient id, the acquisition
    assert back.header.attrs["max"] == pytest.approx(float(ref.max()), rel=1e-7)
    assert back.header.attrs["norm"] == pytest.approx(float(np.linalg.norm(ref.astype(np.float64))), rel=1e-6)
    assert back.header.attrs["patient_id"] == "abc123"
    assert back.header.attrs["acquisition"] == "CORPD_FBK"
    with h5py.File(out) as f:
        assert f["kspace"].dtype == np.complex64 and f["kspace"].shape == (3, 4, 16, 12)
        assert f["kspace"].chunks == (1, 4, 16, 12)
        assert set(f.keys()) == {"kspace", "ismrmrd_header", "reconstruction_rss"}


def test_acquisition_argument_overrides_header(tmp_path, random_kspace):
    out = write_fastmri_kspace(tmp_path / "a.h5", RawData(random_kspace((1, 2, 16, 12)), small_header(2)),
                               acquisition="AXT2")
    with h5py.File(out) as f:
        assert f.attrs["acquisition"] == "AXT2"
    assert read_raw(out).header.acquisition == "AXT2"


def test_reference_none_leaves_it_out(tmp_path, random_kspace, rng):
    data = RawData(random_kspace((2, 2, 16, 12)), small_header(2), reference=rng.random((2, 8, 8), np.float32))
    out = write_fastmri_kspace(tmp_path / "noref.h5", data, reference=None)
    with h5py.File(out) as f:
        assert "reconstruction_rss" not in f and "reconstruction_esc" not in f
    assert read_raw(out).reference is None


def test_single_coil_file_reads_with_a_coil_axis_of_one(tmp_path, write_h5, fastmri_xml, random_kspace, rng):
    """A fastMRI single-coil file, (slices, H, W) + reconstruction_esc, written the way fastMRI's are."""
    k3 = random_kspace((2, 640, 368))
    esc = rng.random((2, 320, 320)).astype(np.float32)
    path = write_h5("file1000001.h5", {"kspace": k3, "reconstruction_esc": esc,
                                       "ismrmrd_header": fastmri_xml(channels=1)},
                    {"acquisition": "CORPD_FBK", "max": float(esc.max()), "norm": float(np.linalg.norm(esc)),
                     "patient_id": "7f0e"})
    with open_raw(path) as f:
        assert isinstance(f, FastMRIFile) and f.single_coil
        assert f.shape == (2, 1, 640, 368)
        info = f.info()
        data = f.read()
    assert np.array_equal(data.kspace[:, 0], k3)
    assert data.kspace.shape == (2, 1, 640, 368)
    assert np.array_equal(data.reference, esc) and data.reference_name == "reconstruction_esc"
    assert info["layout"] == "single-coil" and info["coils"] == 1 and info["reference"] == "reconstruction_esc"

    # and our writer round-trips single-coil data (stored in the multi-coil layout with one coil)
    out = write_fastmri_kspace(tmp_path / "sc.h5", data, reference="reconstruction_esc")
    back = read_raw(out)
    assert np.array_equal(back.kspace, data.kspace) and np.array_equal(back.reference, esc)
    assert back.reference_name == "reconstruction_esc"
    assert_same_header(back.header, data.header)
    assert back.header.xml == data.header.xml  # the original XML is kept byte for byte when it agrees


def test_test_layout_with_mask_round_trip(tmp_path, random_kspace):
    width = 12
    mask = np.zeros(width, dtype=bool)
    mask[[1, 4, 5, 6, 7, 9]] = True  # centre (6) and its neighbours 4..7: 4 low-frequency lines
    kspace = random_kspace((2, 3, 16, width)) * mask
    header = small_header(3, acquired_pe=(1, 11), pe_center=6)
    out = write_fastmri_kspace(tmp_path / "test.h5", RawData(kspace, header, mask=mask))
    with h5py.File(out) as f:
        assert f["mask"].dtype == bool and f["mask"].shape == (width,)
        # over the acquirable lines [1, 11): 10 lines, 6 sampled -> acceleration 10 / 6
        assert f.attrs["acceleration"] == pytest.approx(10 / 6)
        assert f.attrs["num_low_frequency"] == 4
    with open_fastmri(out) as f:
        data = f.read()
        info = f.info()
    assert np.array_equal(data.kspace, kspace)
    assert np.array_equal(data.mask, mask) and data.mask.dtype == bool
    assert data.is_undersampled
    assert_same_header(data.header, header)
    assert data.header.attrs["num_low_frequency"] == 4
    assert info["sampling"] == "column mask, 60.0% sampled (acceleration 1.67x)"
    assert info["attr_acceleration"] == pytest.approx(10 / 6) and info["attr_num_low_frequency"] == 4


def test_stored_acceleration_attrs_are_kept(tmp_path, random_kspace):
    mask = np.zeros(12, dtype=bool)
    mask[::4] = True
    mask[5:8] = True
    header = small_header(2, attrs={"acceleration": 4, "num_low_frequency": 3})
    out = write_fastmri_kspace(tmp_path / "t.h5", RawData(random_kspace((1, 2, 16, 12)) * mask, header, mask=mask))
    attrs = read_raw(out).header.attrs
    assert attrs["acceleration"] == 4 and attrs["num_low_frequency"] == 3


def test_per_slice_copies_of_a_column_mask_are_stored_as_one_column_mask(tmp_path, random_kspace):
    col = np.array([0, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1], dtype=bool)
    mask2d = np.broadcast_to(col, (16, 12))
    out = write_fastmri_kspace(tmp_path / "m.h5", RawData(random_kspace((1, 2, 16, 12)), small_header(2), mask=mask2d))
    assert np.array_equal(read_raw(out).mask, col)


# ------------------------------------------------------------------------------------------ lazy reading

def test_read_slices_equals_slices_of_read(tmp_path, random_kspace, rng):
    kspace = random_kspace((4, 2, 16, 12))
    ref = rng.random((4, 8, 8)).astype(np.float32)
    out = write_fastmri_kspace(tmp_path / "l.h5", RawData(kspace, small_header(2), reference=ref))
    with open_fastmri(out) as f:
        whole = f.read()
        one = f.read_slices(1)
        assert np.array_equal(one.kspace, whole.kspace[1:2]) and np.array_equal(one.reference, ref[1:2])
        last = f.read_slices(-1)
        assert np.array_equal(last.kspace, kspace[3:4])
        some = f.read_slices(slice(1, 3))
        assert np.array_equal(some.kspace, kspace[1:3]) and np.array_equal(some.reference, ref[1:3])


def test_open_reads_no_kspace_and_read_slices_reads_only_its_slices(tmp_path, random_kspace):
    """Slice 2 holds a NaN: opening and reading other slices must not touch it; reading it must fail."""
    kspace = random_kspace((4, 2, 16, 12))
    out = write_fastmri_kspace(tmp_path / "nan.h5", RawData(kspace, small_header(2)))
    with h5py.File(out, "r+") as f:
        f["kspace"][2, 1, 3, 4] = np.nan
    with open_fastmri(out) as f:  # opening checks metadata only
        assert isinstance(f._kspace, h5py.Dataset)
        assert f.shape == (4, 2, 16, 12)
        assert np.array_equal(f.read_slices(3).kspace, kspace[3:4])
        assert np.array_equal(f.read_slices(slice(0, 2)).kspace, kspace[0:2])
        with pytest.raises(DataError, match="NaN/Inf") as exc:
            f.read_slices(2)
        assert str(out) in str(exc.value)


def test_closed_file_refuses_to_read(tmp_path, random_kspace):
    out = write_fastmri_kspace(tmp_path / "c.h5", RawData(random_kspace((1, 2, 16, 12)), small_header(2)))
    f = open_fastmri(out)
    f.close()
    f.close()  # twice is harmless
    with pytest.raises(Exception, match="closed"):
        f.read_slices(0)


# ------------------------------------------------------------------------------------------ header parsing

def test_realistic_knee_header_by_hand(write_h5, fastmri_xml, random_kspace):
    """Knee: encoded 640 x 368, recon 320 x 320, limits centre 165 / maximum 331 (332 acquired lines).

    padding_left = 368 // 2 - 165 = 19; padding_right = 19 + 331 + 1 = 351; centre line 19 + 165 = 184.
    Readout oversampling: encoded FOV x 280 mm / recon FOV x 140 mm = 2.
    """
    path = write_h5("knee.h5", {"kspace": random_kspace((1, 2, 640, 368)),
                                "ismrmrd_header": fastmri_xml(center=165, maximum=331, channels=2)},
                    {"acquisition": "CORPDFS_FBK"})
    with open_raw(path) as f:
        h = f.header
        info = f.info()
    assert h.encoded_matrix == (640, 368, 1) and h.recon_matrix == (320, 320, 1)
    assert h.encoded_fov_mm == (280.0, 140.0, 4.5) and h.recon_fov_mm == (140.0, 140.0, 4.5)
    assert h.acquired_pe == (19, 351) and h.pe_center == 184
    assert h.readout_oversampling == 2.0 and h.recon_size == (320, 320)
    assert h.acquisition == "CORPDFS_FBK" and h.num_coils == 2
    assert "<systemModel>Skyra</systemModel>" in h.xml
    assert info["encoded_matrix"] == [640, 368, 1] and info["sampling"] == "fully sampled"
    assert info["noise"] is None and info["reference"] is None and info["shape"] == [1, 2, 640, 368]


def test_symmetric_limits_mean_no_padding(fastmri_xml):
    enc = parse_encoding(fastmri_xml(center=184, maximum=367))
    assert (enc.padding_left, enc.padding_right, enc.pe_center) == (0, 368, 184)


@pytest.fixture(autouse=True)
def _forget_fastmri_modules():
    """fastmri modules imported by a test may hold the stand-ins below: drop them after each test."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("fastmri", "_fastmri_mri_data_oracle", "_fastmri_evaluate_oracle"):
            del sys.modules[name]


def _type_hint_placeholder(attr: str) -> type:
    """Module ``__getattr__`` of a stand-in: a dummy class for public names (used in type hints only)."""
    if attr.startswith("_"):
        raise AttributeError(attr)
    return type(attr, (), {})


def _load_fastmri_file(relpath: str, name: str, monkeypatch) -> types.ModuleType:
    """Load one file of the fastmri wheel by path. Modules it imports but the function under test never
    uses (pandas, requests, yaml: not installed here) are given as empty stand-ins, only for
    this test (monkeypatch restores sys.modules)."""
    if not (FASTMRI_DIR / relpath).exists():
        pytest.skip("the fastmri wheel (test oracle) is not installed")
    for mod in ("pandas", "requests", "yaml"):
        if importlib.util.find_spec(mod) is None:
            stand_in = types.ModuleType(mod)
            stand_in.__getattr__ = _type_hint_placeholder
            monkeypatch.setitem(sys.modules, mod, stand_in)
    spec = importlib.util.spec_from_file_location(name, FASTMRI_DIR / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("center,maximum", [(165, 331), (184, 367), (170, 349)])
def test_fastmri_metadata_parser_agrees(write_h5, fastmri_xml, random_kspace, center, maximum, monkeypatch):
    mri_data = _load_fastmri_file("data/mri_data.py", "_fastmri_mri_data_oracle", monkeypatch)
    path = write_h5("k.h5", {"kspace": random_kspace((2, 640, 368)),
                             "ismrmrd_header": fastmri_xml(center=center, maximum=maximum)},
                    {"acquisition": "CORPD_FBK", "max": 0.5, "norm": 12.0, "patient_id": "p"})
    theirs, num_slices = mri_data.SliceDataset._retrieve_metadata(None, path)
    with open_fastmri(path) as f:
        h = f.header
        assert num_slices == f.num_slices == 2
    assert h.acquired_pe == (theirs["padding_left"], theirs["padding_right"])
    assert h.encoded_matrix == theirs["encoding_size"] and h.recon_matrix == theirs["recon_size"]
    for key in ("acquisition", "max", "norm", "patient_id"):
        assert h.attrs[key] == theirs[key]


def test_fastmri_metadata_parser_reads_our_written_header(tmp_path, random_kspace, monkeypatch):
    mri_data = _load_fastmri_file("data/mri_data.py", "_fastmri_mri_data_oracle", monkeypatch)
    header = small_header(2, height=16, width=14, acquired_pe=(2, 11), pe_center=7)
    out = write_fastmri_kspace(tmp_path / "ours.h5", RawData(random_kspace((1, 2, 16, 14)), header))
    theirs, _ = mri_data.SliceDataset._retrieve_metadata(None, out)
    assert (theirs["padding_left"], theirs["padding_right"]) == (2, 11)
    assert theirs["encoding_size"] == (16, 14, 1) and theirs["recon_size"] == (8, 8, 1)


# ------------------------------------------------------------------------------------------ reconstruction files

def test_reconstruction_round_trip(tmp_path, rng):
    rec = rng.random((3, 10, 8)).astype(np.float32)
    unc = rng.random((3, 10, 8)).astype(np.float32)
    mask = np.array([1, 0, 1, 1, 1, 0, 1, 0], dtype=bool)
    attrs = {"method": "zero-filled", "params": {"lambda": 0.01, "iterations": 30}, "accelerations": [4, 8],
             "version": "0.1.0", "seed": 7, "skipped": None}
    out = write_reconstruction(tmp_path / "r.h5", rec, attrs=attrs, datasets={"uncertainty": unc, "mask": mask})
    got, got_attrs = read_reconstruction(out)
    assert np.array_equal(got, rec) and got.dtype == np.float32
    assert got_attrs == {k: v for k, v in attrs.items() if v is not None}
    with h5py.File(out) as f:  # exactly what fastmri/evaluate.py reads
        assert np.array_equal(f["reconstruction"][()], rec) and f["reconstruction"].dtype == np.float32
        assert np.array_equal(f["uncertainty"][()], unc) and np.array_equal(f["mask"][()], mask)
        assert f.attrs["params"] == '{"lambda": 0.01, "iterations": 30}'


def test_float64_reconstruction_is_stored_as_float32(tmp_path, rng):
    rec = rng.random((1, 4, 4))
    got, _ = read_reconstruction(write_reconstruction(tmp_path / "r.h5", rec))
    assert np.array_equal(got, rec.astype(np.float32))


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # PSNR of a perfect prediction
def test_fastmri_evaluate_reads_our_files(tmp_path, random_kspace, rng, monkeypatch):
    """Run fastMRI's own evaluate() over a target folder (our k-space writer) and a predictions folder
    (our reconstruction writer); its NMSE and PSNR must be the ones computed here by hand."""
    if importlib.util.find_spec("runstats") is None:  # only aggregates; one volume -> mean = the value
        stats = types.ModuleType("runstats")

        class Statistics:
            def __init__(self):
                self.values = []

            def push(self, v):
                self.values.append(float(np.asarray(v).reshape(-1)[0]))  # SSIM comes as shape (1,)

            def mean(self):
                return sum(self.values) / len(self.values)

        stats.Statistics = Statistics
        monkeypatch.setitem(sys.modules, "runstats", stats)
    evaluate = _load_fastmri_file("evaluate.py", "_fastmri_evaluate_oracle", monkeypatch)

    target_dir, pred_dir = tmp_path / "target", tmp_path / "pred"
    target_dir.mkdir()
    pred_dir.mkdir()
    gt = (rng.random((3, 8, 8)) + 0.5).astype(np.float32)
    pred = (gt + 0.05 * rng.standard_normal(gt.shape)).astype(np.float32)
    write_fastmri_kspace(target_dir / "file1.h5", RawData(random_kspace((3, 2, 16, 12)), small_header(2), reference=gt))
    write_reconstruction(pred_dir / "file1.h5", pred, attrs={"method": "test"})

    args = argparse.Namespace(target_path=target_dir, predictions_path=pred_dir, acquisition="CORPD_FBK",
                              acceleration=None)
    means = evaluate.evaluate(args, "reconstruction_rss").means()
    g, p = gt.astype(np.float64), pred.astype(np.float64)
    nmse = np.sum((g - p) ** 2) / np.sum(g ** 2)
    psnr = 10 * np.log10(g.max() ** 2 / np.mean((g - p) ** 2))
    assert means["NMSE"] == pytest.approx(nmse, rel=1e-5)
    assert means["PSNR"] == pytest.approx(psnr, rel=1e-5)
    assert 0.0 < means["SSIM"] < 1.0

    # a perfect prediction: NMSE 0, SSIM 1
    write_reconstruction(pred_dir / "file1.h5", gt, overwrite=True)
    perfect = evaluate.evaluate(args, "reconstruction_rss").means()
    assert perfect["NMSE"] == 0.0 and perfect["SSIM"] == pytest.approx(1.0)
