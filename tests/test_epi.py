"""EPI ramp-sampling regridding and Nyquist-ghost correction (recon.io.epi) on the real ep2d_bold epi.dat."""
from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest

pytest.importorskip("twixtools")

from recon.io import epi  # noqa: E402
from recon.io.twix import open_twix  # noqa: E402
from recon.metrics.ghost import edge_width, ghost_to_signal_ratio, object_mask  # noqa: E402

EPI = Path(__file__).parent / "data" / "twix" / "epi.dat"


def _rss(kspace: np.ndarray) -> np.ndarray:
    x = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    return np.sqrt((np.abs(x) ** 2).sum(1))


def test_flat_readout_trajectory_is_the_grid_and_regrid_is_identity():
    spec = epi.RampSpec(2, rampup_us=0.0, flattop_us=1000.0, rampdown_us=0.0, delay_us=0.0, adc_us=1000.0, n_out=64)
    traj = epi.ramp_trajectory(spec, 64)
    np.testing.assert_allclose(traj, np.arange(64) - 32, atol=1e-9)
    rng = np.random.default_rng(0)
    line = (rng.standard_normal(64) + 1j * rng.standard_normal(64)).astype(np.complex64)
    out = epi.regrid(line, epi.regrid_matrix(traj, 64, tikhonov=1e-9))
    np.testing.assert_allclose(out, line, atol=1e-4)


def test_regrid_recovers_band_limited_signal_from_ramp_samples():
    spec = epi.RampSpec(2, rampup_us=160, flattop_us=240, rampdown_us=160, delay_us=32, adc_us=496, n_out=160)
    traj = epi.ramp_trajectory(spec, 160)
    assert np.all(np.diff(traj) > 0)
    assert traj[0] > -81 and traj[-1] < 80 and traj[-1] - traj[0] > 150  # spans the output grid
    assert np.diff(traj)[80] > 2 * np.diff(traj)[0]  # flat top steps are larger than the first ramp step
    # a compact object: its k-space is band-limited in k; sample it at the ramp positions
    x = np.zeros(160)
    x[60:100] = 1.0
    grid = np.arange(160) - 80
    k_true = np.exp(-2j * np.pi * np.outer(grid, grid - 0) / 160) @ x
    k_ramp = np.exp(-2j * np.pi * np.outer(traj, grid) / 160) @ x
    out = epi.regrid(k_ramp.astype(np.complex64), epi.regrid_matrix(traj, 160))
    err = np.linalg.norm(out - k_true) / np.linalg.norm(k_true)
    naive = np.linalg.norm(k_ramp - k_true) / np.linalg.norm(k_true)
    assert err < 0.04 and naive > 0.3, (err, naive)  # measured 0.023 vs 0.46


def test_odd_even_phase_fit_recovers_constant_and_linear_terms():
    rng = np.random.default_rng(1)
    n = 128
    xs = np.arange(n) - n // 2
    obj = np.where(np.abs(xs) < 40, 1.0, 0.0) * (1 + 0.3 * rng.standard_normal(n))
    pos = np.stack([obj * np.exp(1j * 0.2 * c) for c in range(4)])
    neg = pos * np.exp(1j * (0.7 - 0.031 * xs))
    neg = neg + 0.01 * (rng.standard_normal(neg.shape) + 1j * rng.standard_normal(neg.shape))
    a, b = epi.fit_odd_even_phase(pos, neg)
    assert a == pytest.approx(0.7, abs=0.01) and b == pytest.approx(-0.031, abs=0.001)


def test_epi_dat_ghost_reduced_at_least_3x():
    on = open_twix(EPI)
    off = open_twix(EPI, epi_correction=False)
    assert "epi_correction" in on.info() and on.info()["epi_correction"]["navigators"] == 3
    assert on.info()["epi_correction"]["ramp_regridding"]["n_out"] == 160
    img_on, img_off = _rss(on.read().kspace)[0], _rss(off.read().kspace)[0]
    assert img_on.shape == img_off.shape == (80, 80)
    mask = object_mask(img_on)
    g_on, g_off = ghost_to_signal_ratio(img_on, mask), ghost_to_signal_ratio(img_off, mask)
    # ignoring the ramps stretches the object along the readout by ADC time / gradient area of the
    # sampled window (496 us / 393.6 us of the 160/240/160 us trapezoid, 32 us delay), so its mean drops
    # by that factor: the regridded image is on the scanner's scale (measured 1.283)
    assert img_on[mask].mean() / img_off[mask].mean() == pytest.approx(496 / 393.6, rel=0.03)
    # measured: 0.101 corrected vs 0.498 uncorrected (4.9x)
    assert g_off / g_on > 4.0, (g_on, g_off)
    assert g_on < 0.12


def test_epi_dat_regridded_edges_sharper_than_ramp_ignoring():
    orig = epi.apply_twix

    def image(regrid: bool) -> np.ndarray:
        with mock.patch.object(epi, "apply_twix", lambda *a, **k: orig(*a, **{**k, "regrid_ramps": regrid})):
            return _rss(open_twix(EPI).read().kspace)[0]

    cols = list(range(15, 36)) + list(range(50, 66))
    w_regrid = np.median([edge_width(image(True)[:40, c]) for c in cols])
    w_ramp = np.median([edge_width(image(False)[:40, c]) for c in cols])
    # measured: 1.47 px regridded vs 2.39 px ramp-ignoring (readout 10-90% edge width)
    assert w_regrid < 1.7 and w_ramp > 1.3 * w_regrid, (w_regrid, w_ramp)


def test_edge_width_of_known_ramp():
    prof = np.concatenate([np.zeros(20), np.linspace(0, 1, 11), np.ones(20)])  # 10-sample linear rise
    assert edge_width(prof) == pytest.approx(8.0, abs=0.01)


def test_batch_no_epi_correction_matches_run_and_resumes(tmp_path):
    """``recon batch --no-epi-correction`` passes the setting to its workers (same image as ``recon run
    --no-epi-correction``), records it, and a resumed batch with other EPI settings does not reuse the output."""
    import json
    import shutil
    import subprocess
    import sys

    import h5py

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(EPI, src / "epi.dat")

    def recon(*args):
        return subprocess.run([sys.executable, "-m", "recon", *map(str, args)], capture_output=True, text=True,
                              timeout=600)

    run = recon("run", src / "epi.dat", tmp_path / "run.h5", "--no-epi-correction", "--threads", "1")
    assert run.returncode == 0, run.stderr
    batch = recon("batch", src, tmp_path / "out", "--no-epi-correction", "--workers", "1", "--threads", "1")
    assert batch.returncode == 0, batch.stderr
    out = tmp_path / "out" / "epi.h5"
    with h5py.File(out) as f, h5py.File(tmp_path / "run.h5") as g:
        np.testing.assert_array_equal(f["reconstruction"][()], g["reconstruction"][()])
        assert json.loads(f.attrs["parameters"])["epi_correction"] is False
    with h5py.File(tmp_path / "run.h5") as g:
        corrected = recon("run", src / "epi.dat", tmp_path / "on.h5", "--threads", "1")
        assert corrected.returncode == 0
        with h5py.File(tmp_path / "on.h5") as h:
            assert not np.array_equal(h["reconstruction"][()], g["reconstruction"][()])
    again = recon("batch", src, tmp_path / "out", "--no-epi-correction", "--workers", "1", "--threads", "1")
    assert again.returncode == 0 and "skipped" in (again.stdout + again.stderr).lower()
    other = recon("batch", src, tmp_path / "out", "--workers", "1", "--threads", "1")
    assert other.returncode != 0 and "epi_correction" in (other.stdout + other.stderr)


# ------------------------------------------------------------------ Pulseq EPI (no flags, no navigators)

PULSEQ_EPI = Path(__file__).parent / "data" / "twix" / "pulseq_epi.dat"
PULSEQ_NOPE = Path(__file__).parent / "data" / "twix" / "pulseq_epi_nope.dat"
PULSEQ_GRE = Path(__file__).parent / "data" / "twix" / "pulseq_vb_gre.dat"
PULSEQ_5SEG = Path(__file__).parent / "data" / "twix" / "pulseq_epi_5seg.dat"


def test_pulseq_epi_detected_and_ghost_reduced_reference_free():
    on = open_twix(PULSEQ_EPI)
    off = open_twix(PULSEQ_EPI, epi_correction=False)
    info = on.info()["epi_correction"]
    assert info["navigators"] == 0 and info["ghost_phase_source"] == "reference-free"
    assert info["ramp_regridding"] is None
    assert any("no phase-correction navigators" in n for n in on.info()["notes"])
    assert any("ramp sampling unknown" in n for n in on.info()["notes"])
    assert "epi_correction" not in off.info()
    img_on, img_off = _rss(on.read().kspace)[0], _rss(off.read().kspace)[0]
    assert img_on.shape == (152, 128)
    mask = object_mask(img_on)
    g_on, g_off = ghost_to_signal_ratio(img_on, mask), ghost_to_signal_ratio(img_off, mask)
    # measured: 0.054 corrected vs 0.608 as stored (11.3x); reversal without the phase fit: 0.650
    assert g_on < 0.065 and g_off / g_on > 9.0, (g_on, g_off)
    assert info["detection"]["ghost_to_signal_reversed"] > 0.5


def test_pulseq_reference_free_fit_agrees_with_the_no_phase_encode_calibration_scan():
    """The noPE scan (every readout at ky = 0) is what navigators measure; its odd/even phase, applied to the
    EPI lines, gives the same ghost level as the reference-free fit from the image lines."""
    from recon.io.epi_unflagged import _apply, _image, reverse_odd

    import twixtools

    def lines(path):
        scan = twixtools.read_twix(str(path), verbose=False)[-1]
        return np.stack([m.data for m in scan["mdb"] if m.is_image_scan()]).astype(np.complex64)

    xn = epi.to_x(reverse_odd(lines(PULSEQ_NOPE)))
    a_cal, b_cal = epi.fit_odd_even_phase(xn[0::2].mean(0), xn[1::2].mean(0))
    a_free, b_free = open_twix(PULSEQ_EPI).info()["epi_correction"]["ghost_phase_per_slice"]["0"]
    # measured: calibration (-0.018, -0.0582), reference-free (-0.040, -0.0552)
    assert abs(b_free - b_cal) < 0.006 and abs(a_free - a_cal) < 0.05, (a_cal, b_cal, a_free, b_free)
    xr = epi.to_x(reverse_odd(lines(PULSEQ_EPI)))
    img_cal, img_free = _image(_apply(xr, a_cal, b_cal)), _image(_apply(xr, a_free, b_free))
    mask = object_mask(img_free)
    g_cal, g_free = ghost_to_signal_ratio(img_cal, mask), ghost_to_signal_ratio(img_free, mask)
    assert g_cal < 0.07 and abs(g_free - g_cal) < 0.01, (g_cal, g_free)  # measured 0.050 / 0.054


def test_object_mask_is_the_whole_striped_phantom_not_its_largest_strip():
    """The tutorial's phantom has dark grid lines along both axes: thresholded, it falls into strips. The
    object is the phantom (holes and gaps of up to 4 px closed), not its largest strip, so that the ghost
    region (the object shifted by W / 2, outside the object) is where the phantom's ghost lies."""
    img = _rss(open_twix(PULSEQ_EPI).read().kspace)[0]
    mask, strip = object_mask(img), object_mask(img, closing=0, min_part=1.0)  # the old mask: largest piece
    # measured: 0.228 of the image (columns 39-107 of 128) vs the largest strip's 0.082 (columns 71-107)
    assert mask.mean() > 0.2 and strip.mean() < 0.1, (mask.mean(), strip.mean())
    cols = np.flatnonzero(mask.any(0))
    assert cols[0] < 45 and cols[-1] > 102, cols
    assert mask[strip].all()  # the strip is part of the object


SHARED_EPI = Path("/work/shared/data/twix/pulseq/11_from_GRE_to_EPI/data")
OTHER_SCANNER = SHARED_EPI / "04c_improvised_EPI_other_phantom_other scanner.dat"


@pytest.mark.skipif(not OTHER_SCANNER.exists(), reason="needs ../shared/data/twix/pulseq (the Pulseq tutorial data)")
def test_pulseq_other_scanner_epi_ghost_reduced_at_least_3x():
    """The tutorial's 04c EPI from a TrioTim (4 channels, a phantom with a grid): 1.7x with the largest strip
    as the object (0.444 -> 0.264, the ghost region on a readout streak), over 10x with the phantom."""
    on = open_twix(OTHER_SCANNER)
    info = on.info()["epi_correction"]
    assert info["ghost_phase_source"] == "reference-free"
    img_on = _rss(on.read().kspace)[0]
    img_off = _rss(open_twix(OTHER_SCANNER, epi_correction=False).read().kspace)[0]
    mask = object_mask(img_on)
    g_on, g_off = ghost_to_signal_ratio(img_on, mask), ghost_to_signal_ratio(img_off, mask)
    # measured: 0.057 corrected vs 0.591 as stored (10.4x); reversal without the phase fit: 0.734
    assert g_on < 0.07 and g_off / g_on > 8.0, (g_on, g_off)
    assert mask.mean() > 0.19  # measured 0.219 (the largest strip: 0.036)


def test_shot_layout_from_time_stamps():
    from recon.io.epi_unflagged import line_order, shot_layout

    train = [0, 0, 1, 0, 1]  # 2.5 ms ticks: readouts of one train are < 2 ms apart
    assert shot_layout(np.array(train), 5) == (1, 5)
    three = np.concatenate([np.array(train) + 12 * i for i in range(3)])  # a shot every 30 ms
    assert shot_layout(three, 15) == (3, 5)
    assert shot_layout(np.array([0, 0, 12, 12, 12, 24]), 6) == (1, 6)  # unequal shots: read as one train
    assert shot_layout(np.arange(0, 40, 4), 10) == (1, 10)  # one readout per shot (GRE): not segmented
    assert shot_layout(None, 7) == (1, 7)
    order, reflected = line_order(3, 2)  # shot i, readout e at ky line i + 3 e
    np.testing.assert_array_equal(order, [0, 2, 4, 1, 3, 5])
    np.testing.assert_array_equal(reflected, [False] * 3 + [True] * 3)
    order, reflected = line_order(1, 4)
    np.testing.assert_array_equal(order, np.arange(4))
    np.testing.assert_array_equal(reflected, [False, True, False, True])


def test_pulseq_segmented_epi_lines_interleaved_and_reversed_per_shot():
    """The tutorial's 04b (25 shots x 5 bipolar readouts, ky = shot + 25 x readout): grouped by time stamps,
    interleaved, reversed by the readout's parity within its shot. Before, the file was read in ADC order
    (not taken for EPI): five narrow copies of the phantom."""
    from recon.io.epi_unflagged import _image, _read_lines, line_order

    import twixtools

    f = open_twix(PULSEQ_5SEG)
    det = f.info()["epi_correction"]["detection"]
    assert (det["shots"], det["readouts_per_shot"]) == (25, 5)
    assert any("25 shots x 5 readouts" in n for n in f.info()["notes"])
    assert f.info()["epi_reversed_lines"].startswith("every second readout of each of the 25 shots")
    img = _rss(f.read().kspace)[0]
    off = _rss(open_twix(PULSEQ_5SEG, epi_correction=False).read().kspace)[0]
    assert img.shape == (128, 125)
    mask = object_mask(img)
    g_on, g_off = ghost_to_signal_ratio(img, mask), ghost_to_signal_ratio(off, mask)
    # measured: 0.086 read as segmented EPI vs 1.104 in ADC order; object 0.374 of the image
    assert g_on < 0.1 and g_off > 1.0 and mask.mean() > 0.33, (g_on, g_off, mask.mean())
    scan = twixtools.read_twix(str(PULSEQ_5SEG), verbose=False)[-1]
    k = np.stack([m.data for m in scan["mdb"] if m.is_image_scan()]).astype(np.complex64)
    order, reflected = line_order(25, 5)
    parity_of_adc = _image(_read_lines(k, order, order % 2 == 1))  # the single-shot rule after interleaving
    # measured 0.525: every second shot's readouts reversed the wrong way
    assert ghost_to_signal_ratio(parity_of_adc, mask) > 0.45
    mine = _image(_read_lines(k, order, reflected))
    np.testing.assert_allclose(mine / mine.max(), img / img.max(), atol=2e-3)  # phase fit not applied here


def test_pulseq_multi_shot_single_shot_images_become_slices():
    """Two 128-readout trains 100 ms apart (a 2-slice Pulseq EPI: no slice counters, Lin = ADC index) are two
    single-shot images, not 2 segments of one: each is reversed and fitted on its own, on the slice axis.
    The trains are pulseq_epi.dat's readouts and a copy at half the scale (twixtools writes only VD/VE files
    and that file is VB, so the reader's step is called on the array the reader hands it)."""
    from recon.io.epi_unflagged import correct_unflagged

    import twixtools

    mdbs = [m for m in twixtools.read_twix(str(PULSEQ_EPI), verbose=False)[-1]["mdb"] if m.is_image_scan()]
    k = np.stack([m.data for m in mdbs]).astype(np.complex64)  # (128, 4, 152) in ADC order
    stamps = np.array([int(m.mdh.TimeStamp) for m in mdbs])
    later = stamps[-1] - stamps[0] + 40  # ticks of 2.5 ms
    arr = np.concatenate([k, 0.5 * k])[None, None]  # (Sli, Ave, Lin, Cha, Col)
    out, info, notes, det = correct_unflagged(arr, np.concatenate([stamps, stamps + later]), slice_axis=0)
    assert (det["shots"], det["readouts_per_shot"], det["shots_are_images"]) == (2, 128, True)
    assert out.shape == (2, 1, 128, 4, 152)
    one, info_one, _, det_one = correct_unflagged(k[None, None], stamps, slice_axis=0)
    assert det_one["shots"] == 1 and not det_one["shots_are_images"]
    np.testing.assert_allclose(out[0, 0], one[0, 0], rtol=0, atol=1e-6 * np.abs(one).max())
    np.testing.assert_allclose(out[1, 0], 0.5 * one[0, 0], rtol=0, atol=1e-6 * np.abs(one).max())
    np.testing.assert_allclose(info.ghost[0], info.ghost[1], atol=1e-5)
    np.testing.assert_allclose(info.ghost[0], info_one.ghost[0], atol=1e-5)
    assert any("2 shots x 128 readouts" in n and "single-shot image" in n for n in notes)
    # without a slice axis to put them on, the two trains are not split (read as segments of one image)
    _, _, _, det_flat = correct_unflagged(arr, np.concatenate([stamps, stamps + later]))
    assert not det_flat.get("shots_are_images")


def _two_trains_from_segmented(dst: Path) -> Path:
    """A VD/VE twix file of two single-shot trains (a 2-slice Pulseq EPI, no slice counters), derived from the
    real segmented pulseq_epi_5seg.dat: its readouts in ky order (the first 124 lines), stored reversed on odd
    lines as a single-shot EPI stores them, time stamps of one train; then a copy at half the scale, 200 ms
    after the first began."""
    from recon.io.epi_unflagged import line_order

    import twixtools

    scan = twixtools.read_twix(str(PULSEQ_5SEG), verbose=False, keep_acqend=True, parse_pmu=False,
                               parse_geometry=False)[-1]
    data = [m for m in scan["mdb"] if not m.is_flag_set("ACQEND") and not m.is_flag_set("SYNCDATA")]
    rest = [m for m in scan["mdb"] if m.is_flag_set("ACQEND")]
    order, reflected = line_order(25, 5)
    out = []
    for train, scale in enumerate((1.0, 0.5)):
        for n in range(124):
            src = data[order[n]]
            line = np.atleast_2d(src.data)
            line = line[:, ::-1] if reflected[n] != (n % 2 == 1) else line  # single-shot parity
            m = src.convert_to_local()
            m.data = np.ascontiguousarray(scale * line).astype(np.complex64)
            m.mdh.Counter.Lin = train * 124 + n
            m.mdh.TimeStamp = int(data[0].mdh.TimeStamp) + 80 * train + n // 3  # 0.8 ms a readout
            out.append(m)
    scan["mdb"] = out + rest
    twixtools.write_twix([scan], str(dst), version_is_ve=True)
    return dst


def test_pulseq_two_trains_read_as_two_slices_end_to_end(tmp_path: Path):
    f = open_twix(_two_trains_from_segmented(tmp_path / "two_trains.dat"))
    det = f.info()["epi_correction"]["detection"]
    assert (det["shots"], det["readouts_per_shot"], det["shots_are_images"]) == (2, 124, True)
    k = f.read().kspace
    assert k.shape == (2, 1, 128, 124)
    np.testing.assert_allclose(k[1], 0.5 * k[0], rtol=0, atol=1e-6 * np.abs(k).max())
    img = _rss(k)[0]
    seg = _rss(open_twix(PULSEQ_5SEG).read().kspace[..., :124])[0]  # the segmented reading's first 124 lines
    assert np.abs(img - seg).max() < 1e-3 * seg.max()


SHARED_SERIES = ["01_GRE", "02_GRE_3echoes", "03_GRE_3echoes_bipolar", "04a_GRE_3seg", "04b_GRE_5seg_fast",
                 "04c_improvised_EPI", "05_EPI", "06_EPI_singleTraj"]


@pytest.mark.skipif(not SHARED_EPI.is_dir(), reason="needs ../shared/data/twix/pulseq (the Pulseq tutorial data)")
def test_pulseq_tutorial_series_detection_and_ghost():
    """Every file of the tutorial 'from GRE to EPI': the EPI ones (single-shot 04c/05, segmented 04a 85x3 and
    04b 25x5) are read as EPI with the ghost at least 3x below the stored reading, the others are not EPI
    (GRE, multi-echo GRE with the same ky per echo, 06's one long ADC per shot)."""
    found = {}
    for name in SHARED_SERIES:
        f = open_twix(SHARED_EPI / f"{name}.dat")
        info = f.info().get("epi_correction")
        if info is None:
            found[name] = None
            continue
        img = _rss(f.read().kspace)[0]
        off = _rss(open_twix(SHARED_EPI / f"{name}.dat", epi_correction=False).read().kspace)[0]
        mask = object_mask(img)
        found[name] = (info["detection"]["shots"], ghost_to_signal_ratio(img, mask), ghost_to_signal_ratio(off, mask))
    assert [n for n, v in found.items() if v is None] == ["01_GRE", "02_GRE_3echoes", "03_GRE_3echoes_bipolar",
                                                          "06_EPI_singleTraj"], found
    assert found["04a_GRE_3seg"][0] == 85 and found["04b_GRE_5seg_fast"][0] == 25
    assert found["04c_improvised_EPI"][0] == 1 and found["05_EPI"][0] == 1
    # measured (output, as stored): 04a 0.102, 1.182; 04b 0.086, 1.104; 04c 0.054, 1.010; 05 0.054, 0.608
    for name in ("04a_GRE_3seg", "04b_GRE_5seg_fast", "04c_improvised_EPI", "05_EPI"):
        _, g_on, g_off = found[name]
        assert g_on < 0.12 and g_off / g_on > 8.0, (name, g_on, g_off)


def test_pulseq_gre_is_not_taken_for_epi():
    f = open_twix(PULSEQ_GRE)
    assert "epi_correction" not in f.info()
    np.testing.assert_array_equal(f.read().kspace, open_twix(PULSEQ_GRE, epi_correction=False).read().kspace)


def test_info_lists_epi_correction_data_also_when_off(capsys):
    import argparse

    from recon.app.cli.info import main as info_main

    for kw in ({}, {"epi_correction": False}):
        i = open_twix(EPI, **kw).info()
        assert i["epi_navigators"] == 3 and i["epi_reversed_lines"] == 40
    assert open_twix(PULSEQ_EPI).info()["epi_navigators"] == 0
    info_main(argparse.Namespace(file=str(PULSEQ_EPI), json=False))
    out = capsys.readouterr().out
    assert "epi_correction" in out and "reference-free" in out and "no phase-correction navigators" in out
