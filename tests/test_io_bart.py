"""BART .cfl/.hdr: exact round trips, atomic pair writing, and agreement with the real `bart` binary."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from recon.errors import CorruptFileError, DataError, InputError, OutputError
from recon.io import detect_format, open_raw, read_raw
from recon.io.bart import (
    bart_pair, bart_to_raw, open_bart, raw_to_bart, read_cfl, write_bart_kspace, write_cfl,
)
from recon.arrays import rss
from recon.io.fourier import ifft2c
from recon.io.types import Header, RawData

BART = shutil.which("bart")
needs_bart = pytest.mark.skipif(BART is None, reason="the `bart` binary is not installed (apt-get install bart)")


def _bart(*args: str | Path, cwd: Path) -> str:
    out = subprocess.run([BART, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _random(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.mark.parametrize("shape", [(7,), (5, 3), (4, 6, 1, 3), (3, 4, 1, 2, 1, 2), (2,) * 16])
def test_cfl_round_trip_exact(tmp_path: Path, shape: tuple[int, ...]) -> None:
    a = _random(shape)
    cfl, hdr = write_cfl(tmp_path / "a", a)
    assert (cfl.name, hdr.name) == ("a.cfl", "a.hdr")
    assert cfl.stat().st_size == a.size * 8
    b = read_cfl(tmp_path / "a.hdr")
    assert b.dtype == np.complex64
    assert b.shape == shape
    np.testing.assert_array_equal(a, b)
    # column-major on disk: the first dimension varies fastest
    flat = np.fromfile(cfl, dtype=np.complex64)
    np.testing.assert_array_equal(flat[: shape[0]], a.reshape(shape[0], -1)[:, 0] if a.ndim > 1 else a)
    assert hdr.read_text().splitlines()[1].split() == [str(d) for d in shape] + ["1"] * (16 - len(shape))
    assert not list(tmp_path.glob(".*part"))


def test_raw_bart_mapping_round_trip() -> None:
    k = _random((3, 2, 8, 6))
    b = raw_to_bart(k)
    assert b.shape == (8, 6, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 1)
    assert b[5, 4, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0] == k[2, 1, 5, 4]
    np.testing.assert_array_equal(bart_to_raw(b), k)


def test_bart_to_raw_flattens_extra_dims_lowest_fastest() -> None:
    a = _random((4, 5, 1, 2, 1, 3, 1, 1, 1, 1, 2))  # TE = 3, TIME = 2
    k = bart_to_raw(a)
    assert k.shape == (6, 2, 4, 5)
    # slice index = te + 3 * time
    np.testing.assert_array_equal(k[1 + 3 * 1, 1], a[:, :, 0, 1, 0, 1, 0, 0, 0, 0, 1])


def test_3d_and_maps_refused(tmp_path: Path) -> None:
    write_cfl(tmp_path / "k3d", _random((4, 4, 3, 2)))
    with pytest.raises(DataError, match=r"3D k-space \(PHS2 = 3\)") as err:
        open_bart(tmp_path / "k3d.cfl")
    assert err.value.path == tmp_path / "k3d.cfl"
    write_cfl(tmp_path / "maps", _random((4, 4, 1, 2, 2)))
    with pytest.raises(DataError, match="MAPS = 2"):
        open_bart(tmp_path / "maps")


def test_write_refuses_overwrite_and_replaces_with_flag(tmp_path: Path) -> None:
    a, b = _random((4, 4), 1), _random((2, 3), 2)
    write_cfl(tmp_path / "x.cfl", a)
    with pytest.raises(OutputError, match="exists"):
        write_cfl(tmp_path / "x", b)
    np.testing.assert_array_equal(read_cfl(tmp_path / "x"), a)
    # only the header left over from an earlier run also blocks the write
    (tmp_path / "y.hdr").write_text("# Dimensions\n1 1\n")
    with pytest.raises(OutputError, match="y.hdr"):
        write_cfl(tmp_path / "y", a)
    assert not (tmp_path / "y.cfl").exists()
    write_cfl(tmp_path / "x", b, overwrite=True)
    np.testing.assert_array_equal(read_cfl(tmp_path / "x"), b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.cfl", "x.hdr", "y.hdr"]


def test_failed_write_leaves_old_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _random((4, 4), 3)
    write_cfl(tmp_path / "x", a)
    import recon.io.bart as bart_mod

    calls = []
    real_replace = bart_mod.os.replace

    def failing_replace(src, dst):  # crash on the second rename (the .hdr)
        calls.append(Path(dst).name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(bart_mod.os, "replace", failing_replace)
    with pytest.raises(OutputError, match="No space left"):
        write_cfl(tmp_path / "x", _random((8, 2), 4), overwrite=True)
    assert calls == ["x.cfl", "x.hdr"]
    # the new .cfl is in place but the old .hdr is gone: an incomplete pair, refused, never mismatched
    with pytest.raises(InputError, match=r"x.hdr is missing"):
        read_cfl(tmp_path / "x")
    assert not list(tmp_path.glob(".*part"))


def test_pair_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        bart_pair(tmp_path / "nothing.cfl")
    write_cfl(tmp_path / "p", _random((2, 2)))
    (tmp_path / "p.hdr").unlink()
    with pytest.raises(InputError, match=r"p.hdr is missing \(found only p.cfl\)") as err:
        detect_format(tmp_path / "p.cfl")
    assert err.value.path == tmp_path / "p.hdr"
    write_cfl(tmp_path / "q", _random((2, 2)))
    (tmp_path / "q.cfl").unlink()
    with pytest.raises(InputError, match=r"q.cfl is missing"):
        open_raw(tmp_path / "q.hdr")


def test_corrupt_pairs(tmp_path: Path) -> None:
    write_cfl(tmp_path / "t", _random((4, 4)))
    with open(tmp_path / "t.cfl", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(CorruptFileError, match="data size 100 bytes does not match") as err:
        read_cfl(tmp_path / "t")
    assert err.value.path == tmp_path / "t.cfl"
    (tmp_path / "g.cfl").write_bytes(b"\0" * 8)
    (tmp_path / "g.hdr").write_bytes(bytes(range(256)))
    with pytest.raises(CorruptFileError, match="not a BART header") as err:
        read_cfl(tmp_path / "g")
    assert err.value.path == tmp_path / "g.hdr"
    (tmp_path / "g.hdr").write_text("# Dimensions\n4 x 1\n")
    with pytest.raises(CorruptFileError, match="bad '# Dimensions' line"):
        read_cfl(tmp_path / "g")


def test_write_bart_kspace_round_trip_with_mask(tmp_path: Path) -> None:
    k = _random((2, 3, 8, 10))
    mask = np.zeros(10, dtype=bool)
    mask[[0, 3, 4, 5, 9]] = True
    data = RawData(k, Header(encoded_matrix=(8, 10, 1), recon_matrix=(8, 10, 1), num_coils=3), mask=mask)
    write_bart_kspace(tmp_path / "k.cfl", data)
    back = read_raw(tmp_path / "k.cfl")
    assert back.kspace.shape == (2, 3, 8, 10)
    np.testing.assert_array_equal(back.kspace, k * mask)
    np.testing.assert_array_equal(back.mask, mask)
    assert back.header.format == "bart" and back.header.num_coils == 3
    with open_raw(tmp_path / "k.hdr") as f:
        info = f.info()
    assert info["sampling"].startswith("column mask, 50.0% sampled")
    assert info["bart_dims"] == {"READ": 8, "PHS1": 10, "COIL": 3, "SLICE": 2}


@needs_bart
def test_reads_bart_phantom_and_matches_bart_fft(tmp_path: Path) -> None:
    _bart("phantom", "-s", "4", "-k", "-x", "64", "ph", cwd=tmp_path)
    _bart("fft", "-u", "-i", "3", "ph", "img", cwd=tmp_path)
    _bart("rss", "8", "img", "rss", cwd=tmp_path)
    data = read_raw(tmp_path / "ph.cfl")
    assert data.kspace.shape == (1, 4, 64, 64)
    assert data.mask is None
    img = ifft2c(data.kspace)
    ours = rss(img, axis=1)[0]
    # complex coil images equal BART's centred unitary FFT (measured equal for even and odd sizes)
    theirs_img = bart_to_raw(read_cfl(tmp_path / "img"))
    scale = np.abs(theirs_img).max()
    assert np.abs(img - theirs_img).max() / scale < 1e-5
    theirs = read_cfl(tmp_path / "rss")
    assert theirs.shape == (64, 64)
    np.testing.assert_allclose(ours, np.abs(theirs), rtol=0, atol=1e-5 * float(ours.max()))
    # it looks like the Shepp-Logan phantom: bright ellipse in the middle, empty corners
    assert ours[24:40, 24:40].mean() > 20 * ours[:6, :6].mean()
    assert np.isclose(ours[:, :32].sum(), ours[:, 32:].sum(), rtol=0.05)  # left-right symmetric


@needs_bart
def test_bart_reads_what_we_write(tmp_path: Path) -> None:
    _bart("phantom", "-s", "3", "-k", "-x", "32", "ph", cwd=tmp_path)
    data = read_raw(tmp_path / "ph.hdr")
    write_bart_kspace(tmp_path / "ours", data)
    shown = _bart("show", "-m", "ours", cwd=tmp_path)
    assert "32\t32\t1\t3\t1\t1\t1\t1\t1\t1\t1\t1\t1\t1\t1\t1" in shown
    nrmse = float(_bart("nrmse", "ph", "ours", cwd=tmp_path).strip())
    assert nrmse == 0.0
    k = _random((2, 2, 6, 5))
    write_cfl(tmp_path / "r", raw_to_bart(k))
    _bart("scale", "2", "r", "r2", cwd=tmp_path)  # BART computes on our file
    np.testing.assert_allclose(bart_to_raw(read_cfl(tmp_path / "r2")), 2 * k, rtol=1e-6)
