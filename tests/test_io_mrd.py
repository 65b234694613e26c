"""ISMRMRD/MRD reader: files written by ismrmrd-tools' generator and by the ismrmrd Python API.

The generator (``ismrmrd_generate_cartesian_shepp_logan``, ismrmrd 1.8) builds coil images
``coil_images[c, y, x + (ros-1)*m/2] = phantom[y, x] * csm[c, y, x]`` on a (ros*m) x m grid, takes a
centred orthonormal 2D FFT (fftshift . fft . fftshift / sqrt(N)), adds complex Gaussian noise of std ``-n``
to real and imaginary parts (``-n 0``: none), and writes line ``i`` of repetition ``r*acc + a`` when
``i % acc == a`` or ``i`` lies in the calibration band ``[m/2 - w/2, m/2 + w/2 - 1]``; ``-C`` prepends one
noise scan of ``ros*m`` samples. It also stores ``phantom``, ``csm`` and ``coil_images`` arrays, which
the tests use as the independent reference.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ismrmrd = pytest.importorskip("ismrmrd")

from recon.errors import DataError, FormatError, UsageError  # noqa: E402
from recon.io import detect_format, open_raw, read_raw  # noqa: E402
from recon.arrays import center_crop_or_pad, rss  # noqa: E402
from recon.io.fourier import fft2c, ifft2c  # noqa: E402
from recon.io.mrd import open_mrd, read_mrd  # noqa: E402

GENERATOR = "ismrmrd_generate_cartesian_shepp_logan"
M, C = 64, 4  # matrix, coils of the generated files
H, W = 2 * M, M  # readout oversampling 2 (the generator's default)


# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    """Run the Debian generator into a module temp folder; returns make(name, *args) -> Path (cached)."""
    if shutil.which(GENERATOR) is None:
        pytest.skip(f"{GENERATOR} not installed (apt-get install ismrmrd-tools)")
    folder = tmp_path_factory.mktemp("mrd_gen")
    made: dict[tuple, Path] = {}

    def make(*args: str) -> Path:
        if args not in made:
            out = folder / f"f{len(made)}.h5"
            subprocess.run([GENERATOR, "-m", str(M), "-c", str(C), "-o", str(out), *args],
                           check=True, capture_output=True, cwd=folder)
            made[args] = out
        return made[args]

    return make


def stored_array(path: Path, name: str) -> np.ndarray:
    with ismrmrd.Dataset(str(path), "dataset", mode="r") as ds:
        return ds.read_array(name, 0)


def generator_reference_kspace(path: Path) -> np.ndarray:
    """Noiseless k-space (C, H, W) rebuilt from the file's own ``phantom`` and ``csm`` arrays."""
    phantom = stored_array(path, "phantom")  # (y, x) = (W, M)
    csm = stored_array(path, "csm")  # (c, y, x)
    images = np.zeros((C, W, H), dtype=np.complex64)
    images[:, :, (H - M) // 2:(H - M) // 2 + M] = phantom[None] * csm
    return fft2c(np.transpose(images, (0, 2, 1)))  # to (c, H = x, W = y)


def expected_lines(acc: int, a: int, width: int) -> np.ndarray:
    i = np.arange(M)
    return ((i - a) % acc == 0) | ((i >= M // 2 - width // 2) & (i <= M // 2 + width // 2 - 1))


def xml_header(h: int, w: int, *, limits: tuple[int, int, int] | None = None, trajectory: str = "cartesian",
               recon: tuple[int, int] | None = None, coils: int = 2, protocol: str | None = "proto_T2",
               z: int = 1) -> str:
    lim = "<encodingLimits/>"  # required by the schema; may be empty (then no limits are known)
    if limits is not None:
        lim = (f"<encodingLimits><kspace_encoding_step_1><minimum>{limits[0]}</minimum><maximum>{limits[1]}"
               f"</maximum><center>{limits[2]}</center></kspace_encoding_step_1></encodingLimits>")
    rx, ry = recon if recon is not None else (h, w)
    meas = (f"<measurementInformation><patientPosition>HFS</patientPosition><protocolName>{protocol}"
            "</protocolName></measurementInformation>") if protocol else ""
    return (
        '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        f"{meas}<acquisitionSystemInformation><receiverChannels>{coils}</receiverChannels>"
        "</acquisitionSystemInformation>"
        "<experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz>"
        "</experimentalConditions><encoding>"
        f"<encodedSpace><matrixSize><x>{h}</x><y>{w}</y><z>{z}</z></matrixSize>"
        f"<fieldOfView_mm><x>{2.0 * h}</x><y>{2.0 * w}</y><z>5</z></fieldOfView_mm></encodedSpace>"
        f"<reconSpace><matrixSize><x>{rx}</x><y>{ry}</y><z>1</z></matrixSize>"
        f"<fieldOfView_mm><x>{2.0 * rx}</x><y>{2.0 * ry}</y><z>5</z></fieldOfView_mm></reconSpace>"
        f"{lim}<trajectory>{trajectory}</trajectory></encoding></ismrmrdHeader>"
    )


def acquisition(data: np.ndarray, step: int, *, center: int | None = None, flags: tuple[int, ...] = (),
                traj: np.ndarray | None = None, **idx: int) -> "ismrmrd.Acquisition":
    """One readout: ``data`` (coils, samples) at phase-encode ``step`` with the given counters/flags."""
    acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, dtype=np.complex64), traj)
    acq.center_sample = data.shape[1] // 2 if center is None else center
    acq.idx.kspace_encode_step_1 = step
    for k, v in idx.items():
        setattr(acq.idx, k, v)
    for fl in flags:
        acq.set_flag(fl)
    return acq


def write_mrd(path: Path, xml: str | None, acqs: list) -> Path:
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as ds:
        if xml is not None:
            ds.write_xml_header(xml.encode())
        for a in acqs:
            ds.append_acquisition(a)
    return path


def random_kspace(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


# ------------------------------------------------------------------------------- generator files


def test_fully_sampled_equals_phantom_kspace(gen):
    path = gen("-n", "0")
    assert detect_format(path) == "mrd"
    with open_raw(path) as f:
        assert f.format == "mrd"
        data = f.read()
        info = f.info()
    assert data.kspace.shape == (1, C, H, W) and data.kspace.dtype == np.complex64
    assert data.mask is None and not data.is_undersampled
    hd = data.header
    assert hd.encoded_matrix == (H, W, 1) and hd.recon_matrix == (M, M, 1)
    assert hd.encoded_fov_mm == (600.0, 300.0, 6.0) and hd.readout_oversampling == 2.0
    assert hd.acquired_pe == (0, W) and hd.pe_center == W // 2 and hd.num_coils == C
    assert hd.noise_samples is None and hd.xml.lstrip().startswith("<?xml")
    assert info["acquisitions"] == M and info["noise_scans"] == 0 and info["sampling"] == "fully sampled"

    ref = generator_reference_kspace(path)
    scale = np.abs(ref).max()
    assert scale > 1.0
    np.testing.assert_allclose(data.kspace[0], ref, atol=2e-6 * scale, rtol=0)
    # the generator's own coil images (x fastest on disk -> (c, y, x) here) agree too
    ci = stored_array(path, "coil_images")
    np.testing.assert_allclose(ifft2c(data.kspace[0]), np.transpose(ci, (0, 2, 1)), atol=2e-6 * scale, rtol=0)
    # one line straight from ismrmrd.Dataset.read_acquisition: (coils, samples) -> column 10 of (C, H, W)
    with ismrmrd.Dataset(str(path), "dataset", mode="r") as ds:
        acq = ds.read_acquisition(10)
    assert acq.idx.kspace_encode_step_1 == 10
    np.testing.assert_array_equal(data.kspace[0, :, :, 10], acq.data)


def test_rss_image_is_the_centred_phantom(gen):
    path = gen("-n", "0")
    data = read_raw(path)
    image = center_crop_or_pad(rss(ifft2c(data.kspace), axis=1), data.header.recon_size)[0]  # (x, y) = (M, M)
    phantom = stored_array(path, "phantom")  # (y, x)
    csm = stored_array(path, "csm")
    expected = (np.abs(phantom) * np.sqrt((np.abs(csm) ** 2).sum(0))).T
    np.testing.assert_allclose(image, expected, atol=1e-5 * expected.max(), rtol=0)
    # the object (phantom outer ellipse) sits in the middle of the image
    ys, xs = np.nonzero(image > 0.05 * image.max())
    assert abs((xs.min() + xs.max()) / 2 - M / 2) <= 1.5 and abs((ys.min() + ys.max()) / 2 - M / 2) <= 1.5


def test_noiseless_undersampled_equals_full_on_sampled_lines(gen):
    full = read_mrd(gen("-n", "0")).kspace[0]
    f = open_mrd(gen("-n", "0", "-a", "4", "-w", "32"))
    data = f.read()
    # acc 4 -> 4 interleaved undersampled frames, stored as repetitions 0..3 along the slice axis
    assert data.kspace.shape == (4, C, H, W)
    assert data.mask.shape == (4, 1, W) and data.is_undersampled
    assert [fr["repetition"] for fr in data.header.attrs["frames"]] == [0, 1, 2, 3]
    for a in range(4):
        lines = expected_lines(4, a, 32)
        np.testing.assert_array_equal(data.mask[a, 0], lines)
        np.testing.assert_array_equal(data.kspace[a][..., lines], full[..., lines])  # bit-exact
        assert np.count_nonzero(data.kspace[a][..., ~lines]) == 0
    calib = np.zeros(W, dtype=int)
    calib[16:48] = 1
    assert data.header.attrs["calibration_mask"] == calib.tolist()
    assert data.header.attrs["acceleration"] == 4 and data.header.attrs["calibration_mode"] == "interleaved"
    info = f.info()
    assert info["calibration_lines"] == 32 and info["repetitions"] == [0, 1, 2, 3]
    assert info["selection"]["repetition"] == "all (along the slice axis)"
    # one frame selected by repetition=
    one = read_mrd(gen("-n", "0", "-a", "4", "-w", "32"), repetition=2)
    assert one.kspace.shape == (1, C, H, W)
    np.testing.assert_array_equal(one.mask, expected_lines(4, 2, 32))  # one frame -> a (W,) column mask
    np.testing.assert_array_equal(one.kspace[0], data.kspace[2])


def test_noisy_undersampled_and_noise_scan(gen):
    sigma = 0.05  # the generator's default -n: std of real and of imaginary parts
    full = read_mrd(gen("-n", "0")).kspace[0]
    noisy = read_mrd(gen("-a", "4", "-w", "32", "-C"))
    assert noisy.kspace.shape == (4, C, H, W)
    residual = []
    for a in range(4):
        lines = noisy.mask[a, 0]
        np.testing.assert_array_equal(lines, expected_lines(4, a, 32))
        residual.append((noisy.kspace[a][..., lines] - full[..., lines]).ravel())
        assert np.count_nonzero(noisy.kspace[a][..., ~lines]) == 0
    residual = np.concatenate(residual)
    # equal to the noiseless data up to the noise level: E|n|^2 = 2 sigma^2 (about 1e5 samples: +-2%)
    assert np.mean(np.abs(residual) ** 2) == pytest.approx(2 * sigma**2, rel=0.05)
    assert abs(residual.mean()) < 5 * sigma / np.sqrt(residual.size)

    noise = noisy.header.noise_samples
    assert noise.shape == (C, H) and noise.dtype == np.complex64  # one noise scan of ros*m samples
    cov = noise @ noise.conj().T / noise.shape[1]
    assert np.allclose(np.diag(cov).real, 2 * sigma**2, rtol=0.35)
    off = cov[~np.eye(C, dtype=bool)]
    assert np.abs(off).max() < 0.35 * 2 * sigma**2
    assert noisy.header.has_noise


def test_repetitions_along_slice_axis_and_selection(gen):
    path = gen("-n", "0", "-r", "3")
    f = open_mrd(path)
    data = f.read()
    assert data.kspace.shape == (3, C, H, W) and data.mask is None
    assert f.info()["repetitions"] == [0, 1, 2]
    np.testing.assert_array_equal(data.kspace[0], data.kspace[2])  # noiseless repetitions are identical
    sel = read_mrd(path, repetition=1)
    assert sel.kspace.shape == (1, C, H, W) and sel.header.attrs["selection"]["repetition"] == 1
    with pytest.raises(UsageError, match=r"repetition=5 is not in the file \(present: \[0, 1, 2\]\)"):
        open_mrd(path, repetition=5)


def test_stored_cartesian_coordinates_are_accepted(gen):
    with_k = read_mrd(gen("-n", "0", "-k"))
    np.testing.assert_array_equal(with_k.kspace, read_mrd(gen("-n", "0")).kspace)
    assert "ignored" in with_k.header.attrs["trajectory_coordinates"]


# --------------------------------------------------------------------- files written with the API


def test_averages_reverse_asymmetric_and_ignored_scans(tmp_path):
    rng = np.random.default_rng(0)
    h, w, c = 16, 8, 2
    ref = random_kspace(rng, c, h, w)
    e = random_kspace(rng, c, h)
    acqs = [acquisition(random_kspace(rng, c, 24), 0, flags=(ismrmrd.ACQ_IS_NOISE_MEASUREMENT,))]
    for y in range(w):
        if y == 2:  # two averages, mean = ref
            acqs += [acquisition(ref[:, :, y] + e, y, average=0), acquisition(ref[:, :, y] - e, y, average=1)]
        elif y == 3:  # reversed readout: acquired from the last k-space sample to the first
            acqs.append(acquisition(ref[:, ::-1, y], y, center=h - 1 - h // 2, flags=(ismrmrd.ACQ_IS_REVERSE,)))
        elif y == 4:  # asymmetric echo: the first 5 samples not acquired, centre sample h//2 - 5
            acqs.append(acquisition(ref[:, 5:, y], y, center=h // 2 - 5))
        else:
            acqs.append(acquisition(ref[:, :, y], y))
    acqs.append(acquisition(1e6 * random_kspace(rng, c, h), 1, flags=(ismrmrd.ACQ_IS_PHASECORR_DATA,)))
    acqs.append(acquisition(1e6 * random_kspace(rng, c, h), 5, flags=(ismrmrd.ACQ_IS_NAVIGATION_DATA,)))
    acqs.append(acquisition(1e6 * random_kspace(rng, c, h), 6, flags=(ismrmrd.ACQ_IS_DUMMYSCAN_DATA,)))
    path = write_mrd(tmp_path / "api.mrd", xml_header(h, w, limits=(0, w - 1, w // 2), coils=c), acqs)

    f = open_raw(path)
    data = f.read()
    expected = ref.copy()
    expected[:, :5, 4] = 0
    np.testing.assert_allclose(data.kspace[0], expected, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(data.kspace[0][:, :, [0, 1, 3, 5, 6, 7]], ref[:, :, [0, 1, 3, 5, 6, 7]])
    assert data.mask is None
    hd = data.header
    assert hd.acquisition == "proto_T2" and hd.num_coils == c and hd.attrs["receiver_channels"] == c
    assert hd.noise_samples.shape == (c, 24)
    info = f.info()
    assert info["ignored_acquisitions"] == {"navigation": 1, "phase_correction": 1, "dummy_scan": 1}
    assert info["noise_scans"] == 1 and info["averages_max"] == 2 and info["image_acquisitions"] == w + 1


def test_slices_contrasts_and_missing_line(tmp_path):
    rng = np.random.default_rng(1)
    h, w, c = 8, 6, 3
    ref = random_kspace(rng, 2, 2, c, h, w)  # (contrast, slice, coils, H, W)
    acqs = [acquisition(ref[e, s, :, :, y], y, slice=s, contrast=e)
            for s in range(2) for e in range(2) for y in range(w) if y != 1]
    path = write_mrd(tmp_path / "ms.h5", xml_header(h, w, limits=(0, w - 1, w // 2), coils=c), acqs)
    data = read_mrd(path)
    assert data.kspace.shape == (4, c, h, w)
    frames = [(fr["contrast"], fr["slice"]) for fr in data.header.attrs["frames"]]
    assert frames == [(0, 0), (0, 1), (1, 0), (1, 1)]
    expected = ref.copy()
    expected[..., 1] = 0
    np.testing.assert_array_equal(data.kspace, expected.reshape(4, c, h, w))
    np.testing.assert_array_equal(data.mask, np.arange(w) != 1)  # same lines everywhere -> (W,) mask
    one = read_mrd(path, contrast=1)
    np.testing.assert_array_equal(one.kspace, expected[1])
    with pytest.raises(UsageError, match="contrast=2 is not in the file"):
        open_mrd(path, contrast=2)


@pytest.mark.parametrize("limits,acquired,first_col", [((0, 11, 8), (0, 12), 0), ((0, 7, 4), (4, 12), 4)])
def test_partial_phase_encode_limits(tmp_path, limits, acquired, first_col):
    rng = np.random.default_rng(2)
    h, w, c = 8, 16, 1
    n_lines = limits[1] + 1
    lines = random_kspace(rng, n_lines, c, h)
    acqs = [acquisition(lines[s], s) for s in range(n_lines)]
    path = write_mrd(tmp_path / "pf.h5", xml_header(h, w, limits=limits, coils=c), acqs)
    data = read_mrd(path)
    assert data.header.acquired_pe == acquired and data.header.pe_center == w // 2
    # recon info: 12 of the 16 lines the limits span around centre 8 = 6/8 partial Fourier; (0, 7, 4) is a
    # symmetric (smaller) acquisition, not partial Fourier; readouts are symmetric (centre = samples / 2)
    info = open_mrd(path).info()
    assert info.get("partial_fourier_pe") == (0.75 if limits == (0, 11, 8) else None)
    assert "partial_fourier_readout" not in info
    assert data.mask is None  # every acquirable line is there
    np.testing.assert_array_equal(np.moveaxis(data.kspace[0], -1, 0)[first_col:first_col + n_lines], lines)
    assert np.count_nonzero(data.kspace[0][..., :first_col]) == 0
    assert np.count_nonzero(data.kspace[0][..., first_col + n_lines:]) == 0


def test_asymmetric_echo_is_listed_as_readout_partial_fourier(tmp_path):
    """Every readout misses its first 3 of 8 samples (centre sample 1 of 5): recon info lists 5/8."""
    rng = np.random.default_rng(4)
    h, w, c = 8, 6, 2
    acqs = [acquisition(random_kspace(rng, c, h)[:, 3:], y, center=h // 2 - 3) for y in range(w)]
    path = write_mrd(tmp_path / "asym.h5", xml_header(h, w, limits=(0, w - 1, w // 2), coils=c), acqs)
    info = open_mrd(path).info()
    assert info["partial_fourier_readout"] == 0.625 and "partial_fourier_pe" not in info


# ------------------------------------------------------------------------------------------ errors


def _lines(h: int, w: int, c: int = 2) -> list:
    rng = np.random.default_rng(3)
    return [acquisition(random_kspace(rng, c, h), y) for y in range(w)]


def test_error_no_xml_header(tmp_path):
    path = write_mrd(tmp_path / "noxml.h5", None, _lines(8, 4))
    with pytest.raises(FormatError, match="no XML header") as exc:
        open_raw(path)
    assert exc.value.path == path and str(path) in str(exc.value)


def test_error_only_noise(tmp_path):
    rng = np.random.default_rng(4)
    acqs = [acquisition(random_kspace(rng, 2, 16), 0, flags=(ismrmrd.ACQ_IS_NOISE_MEASUREMENT,)) for _ in range(3)]
    path = write_mrd(tmp_path / "noise.h5", xml_header(8, 4), acqs)
    with pytest.raises(DataError, match=r"no image acquisitions \(only 3 noise scans\)") as exc:
        open_mrd(path)
    assert exc.value.path == path


def test_error_empty(tmp_path):
    path = write_mrd(tmp_path / "empty.h5", xml_header(8, 4), [])
    with pytest.raises(DataError, match="no acquisitions") as exc:
        open_raw(path)
    assert exc.value.path == path


def test_error_non_cartesian_header(tmp_path):
    path = write_mrd(tmp_path / "radial.h5", xml_header(8, 4, trajectory="radial"), _lines(8, 4))
    with pytest.raises(FormatError, match="trajectory 'radial': non-Cartesian MRD is not supported here yet"):
        open_raw(path)


def test_error_non_cartesian_coordinates(tmp_path):
    h, w = 8, 4
    rng = np.random.default_rng(5)
    acqs = []
    for y in range(w):
        angle = np.pi * y / w
        r = np.linspace(-0.5, 0.5, h, endpoint=False)
        traj = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1).astype(np.float32)
        acqs.append(acquisition(random_kspace(rng, 2, h), y, traj=traj))
    path = write_mrd(tmp_path / "radial_traj.h5", xml_header(h, w), acqs)
    with pytest.raises(FormatError, match="non-Cartesian trajectory.*not supported here yet") as exc:
        open_raw(path)
    assert exc.value.path == path


def test_error_sample_count_disagrees_with_header(tmp_path):
    path = write_mrd(tmp_path / "long.h5", xml_header(8, 4), _lines(16, 4))  # 16 samples, header x = 8
    with pytest.raises(DataError, match=r"acquisition 0: 16 samples .* do not fit the header's encoded "
                                        r"readout of 8 samples"):
        open_raw(path)


def test_error_nan(tmp_path):
    acqs = _lines(8, 4)
    acqs[2].data[1, 3] = np.nan
    path = write_mrd(tmp_path / "nan.h5", xml_header(8, 4), acqs)
    with pytest.raises(DataError, match=r"acquisition 2 \(phase-encode step 2\) contains NaN/Inf"):
        open_raw(path)
    acqs = _lines(8, 4)
    acqs[0].data[0, 0] = np.inf
    path = write_mrd(tmp_path / "inf.h5", xml_header(8, 4), acqs)
    with pytest.raises(DataError, match="NaN/Inf"):
        open_raw(path)


def test_error_line_outside_matrix_and_3d(tmp_path):
    acqs = _lines(8, 4)
    acqs[3].idx.kspace_encode_step_1 = 9
    path = write_mrd(tmp_path / "outside.h5", xml_header(8, 4), acqs)
    with pytest.raises(DataError, match="phase-encode step 9 .* outside the header's 4 encoded lines"):
        open_raw(path)
    path = write_mrd(tmp_path / "3d.h5", xml_header(8, 4, z=4), _lines(8, 4))
    with pytest.raises(FormatError, match="3D Cartesian encoding .* not supported here yet"):
        open_raw(path)


def test_empty_limits_mean_unknown_padding(tmp_path):
    acqs = _lines(8, 4)
    data = read_mrd(write_mrd(tmp_path / "nolim.h5", xml_header(8, 4), acqs))
    assert data.header.acquired_pe is None and data.header.pe_center is None and data.mask is None
    for y, a in enumerate(acqs):
        np.testing.assert_array_equal(data.kspace[0, :, :, y], a.data)
