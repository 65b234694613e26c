"""``recon run --method varnet|modl`` and ``recon batch --method varnet`` on every supported input format
(issue 6, acceptance): fastMRI ``.h5`` (fully sampled and already undersampled), ISMRMRD/MRD ``.h5`` (fully
sampled and with missing lines), Siemens twix ``.dat`` (real scanner file, 2 coils) and a BART ``.cfl``/``.hdr``
pair. Each run must write the header's recon size in fastMRI orientation and beat zero-filled PSNR against the
fully sampled reference.

Inputs cover the awkward cases: odd matrix sizes (217 x 181, 201 x 171), 1, 2, 3 and 4 coils, 2x readout
oversampling (fastMRI and MRD), MRD repetitions with a different mask each, a header-less BART pair. The runs
go through the real CLI entry point in this process (``recon.app.cli.main``); the batch runs as a subprocess.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.io import read_raw
from recon.io.bart import write_bart_kspace
from recon.io.fastmri import write_fastmri_kspace
from recon.arrays import center_crop_or_pad, rss
from recon.io.fourier import ifft2c
from recon.io.types import RawData
from recon.metrics.reference import reference_metrics
from recon.sampling import apply_mask, mask_from_options
from recon.simulate import load_colin27, simulate_multicoil
from recon.solvers.learned.method import remove_readout_oversampling

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
TWIX = ROOT / "tests" / "data" / "twix" / "gre.dat"
MRD_GENERATOR = "ismrmrd_generate_cartesian_shepp_logan"

#: (input, method) -> PSNR gain in dB over zero-filled that the run must exceed: about half of the gain measured
#: when the test was written (VarNet / MoDL: fastMRI +5.96 / +5.16, BART +5.42 / +3.45, MRD +2.38 / +2.82, MRD
#: repetitions at least +1.92 / +2.70, twix gre.dat +0.65 / +0.74: a phantom unlike the training brains, see
#: benchmarks/learned_real.py)
MARGIN = {
    ("fastmri", "varnet"): 3.0, ("fastmri", "modl"): 2.5,
    ("fastmri_us", "varnet"): 3.0, ("fastmri_us", "modl"): 2.5,
    ("mrd", "varnet"): 1.0, ("mrd", "modl"): 1.0,
    ("mrd_us", "varnet"): 1.0, ("mrd_us", "modl"): 1.0,
    ("twix", "varnet"): 0.3, ("twix", "modl"): 0.3,
    ("bart", "varnet"): 2.0, ("bart", "modl"): 1.5,
}


def cli_json(capsys, *args: str) -> dict:
    """``recon run ... --json`` through the real CLI entry point in this process (one torch thread: fast on
    a loaded machine, and the module's setting is kept); the printed summary."""
    from recon.app.cli import main

    capsys.readouterr()
    code = main(["run", *args, "--json", "--overwrite", "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def colin(slice_index: int, shape: tuple[int, int], coils: int, oversampling: int, seed: int):
    """A Colin 27 slice at native resolution (odd sizes pad the 217 x 181 slice), simulated coils, SNR 30."""
    images = load_colin27([slice_index], shape=shape)
    return simulate_multicoil(images, num_coils=coils, snr=30.0, seed=seed, readout_oversampling=oversampling).raw


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """One file per case; an MRD pair needs the ISMRMRD generator (skipped without it)."""
    d = tmp_path_factory.mktemp("formats")
    files: dict[str, Path] = {}
    # fastMRI: 217 x 181, 3 coils, 2x readout oversampling (k-space 434 x 181)
    full = colin(90, (217, 181), coils=3, oversampling=2, seed=1)
    files["fastmri"] = write_fastmri_kspace(d / "fastmri.h5", full)
    # the same file already undersampled: fastMRI test layout (mask dataset, masked k-space, reference kept)
    mask, _ = mask_from_options("random", full.kspace.shape, [4], [0.08], 1)
    kspace, used = apply_mask(full.kspace, mask, full.header)
    files["fastmri_us"] = write_fastmri_kspace(d / "fastmri_us.h5", RawData(kspace, full.header, used,
                                                                              full.reference))
    # BART: no header (no recon size, no oversampling information), 1 coil, 201 x 171
    bart = colin(100, (201, 171), coils=1, oversampling=1, seed=2)
    files["bart"] = write_bart_kspace(d / "bart", bart)[0]
    files["twix"] = TWIX
    if shutil.which(MRD_GENERATOR) is not None:
        # Shepp-Logan, 4 coils of the generator, 128 x 128 with 2x readout oversampling, no noise; the -a 4 file
        # holds 4 repetitions, each every 4th line (shifted by one per repetition) + 16 calibration lines
        for name, extra in (("mrd", []), ("mrd_us", ["-a", "4", "-w", "16"])):
            files[name] = d / f"{name}.h5"
            subprocess.run([MRD_GENERATOR, "-o", str(files[name]), "-c", "4", "-m", "128", "-n", "0", *extra],
                           check=True, capture_output=True)
    return files


def _need(inputs: dict[str, Path], name: str) -> Path:
    if name not in inputs:
        pytest.skip(f"{MRD_GENERATOR} (ismrmrd-tools) is not installed")
    return inputs[name]


def full_rss(path: Path) -> np.ndarray:
    """The fully sampled RSS of a file, centre-cropped to its recon size: ``(S, h, w)``."""
    raw = read_raw(path)
    return center_crop_or_pad(rss(ifft2c(raw.kspace), axis=1), raw.header.recon_size).astype(np.float32)


def assert_orientation(rec: np.ndarray, ref: np.ndarray) -> None:
    """Same shape as the reference; it correlates with the reference better than with any flip of it, and best
    with no shift (a one-pixel misplaced crop of an odd size would show)."""
    assert rec.shape == ref.shape

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a[:, 2:-2, 2:-2].ravel(), b[:, 2:-2, 2:-2].ravel())[0, 1])

    same = corr(rec, ref)
    assert same > 0.8, same
    for flipped in (ref[:, ::-1], ref[:, :, ::-1], ref[:, ::-1, ::-1]):
        assert same > corr(rec, flipped), (same, corr(rec, flipped))
    shifts = {(dy, dx): corr(rec, np.roll(ref, (dy, dx), axis=(1, 2))) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    assert max(shifts, key=shifts.get) == (0, 0), shifts


@pytest.mark.parametrize("name", ["fastmri", "bart", "twix", "mrd"])
def test_learned_run_fully_sampled_input_accel_4(inputs, name, tmp_path, capsys):
    """Fully sampled input + ``--accel 4``: the written image has the recon size, the reference's orientation,
    and VarNet and MoDL beat zero-filled (metrics against the fully sampled RSS, as ``recon run`` reports)."""
    src = _need(inputs, name)
    ref = full_rss(src)
    psnr = {}
    for method in ("zero-filled", "varnet", "modl"):
        out = tmp_path / f"{method}.h5"
        summary = cli_json(capsys, str(src), str(out), "--method", method, "--accel", "4", "--seed", "1")
        with h5py.File(out) as f:
            rec = f["reconstruction"][()]
            assert f["mask"].shape == (read_raw(src).kspace.shape[-1],)
        assert summary["shape"] == list(ref.shape) and rec.dtype == np.float32
        assert_orientation(rec, ref)
        psnr[method] = summary["metrics"]["psnr"]
        assert abs(psnr[method] - reference_metrics(rec, [ref])["psnr"]) < 1e-3  # the reference: the full RSS
    print(name, psnr)
    for method in ("varnet", "modl"):
        assert psnr[method] > psnr["zero-filled"] + MARGIN[(name, method)], psnr


def test_learned_run_undersampled_fastmri(inputs, tmp_path, capsys):
    """A fastMRI file that is already undersampled (``mask`` dataset): scored against its own
    ``reconstruction_rss``."""
    src = inputs["fastmri_us"]
    ref = read_raw(inputs["fastmri"]).reference
    psnr = {}
    for method in ("zero-filled", "varnet", "modl"):
        out = tmp_path / f"{method}.h5"
        summary = cli_json(capsys, str(src), str(out), "--method", method)
        rec = h5py.File(out)["reconstruction"][()]
        assert_orientation(rec, ref)
        psnr[method] = summary["metrics"]["psnr"]
    print(psnr)
    for method in ("varnet", "modl"):
        assert psnr[method] > psnr["zero-filled"] + MARGIN[("fastmri_us", method)], psnr


def test_learned_run_undersampled_mrd_repetitions(inputs, tmp_path, capsys):
    """MRD with missing lines: 4 repetitions, each with its own mask; every repetition is scored against the
    fully sampled file's RSS (the generator's sampled lines are bit-identical to the full file's)."""
    src = _need(inputs, "mrd_us")
    ref = full_rss(inputs["mrd"])
    psnr = {}
    for method in ("zero-filled", "varnet", "modl"):
        out = tmp_path / f"{method}.h5"
        summary = cli_json(capsys, str(src), str(out), "--method", method)
        rec = h5py.File(out)["reconstruction"][()]
        assert summary["shape"] == [4, *ref.shape[-2:]] and "metrics" not in summary  # no reference in the file
        refs = np.repeat(ref, 4, axis=0)
        assert_orientation(rec, refs)
        per_rep = [reference_metrics(rec[r:r + 1], [ref])["psnr"] for r in range(4)]
        psnr[method] = per_rep
    print(psnr)
    for method in ("varnet", "modl"):
        for r in range(4):
            assert psnr[method][r] > psnr["zero-filled"][r] + MARGIN[("mrd_us", method)], (r, psnr)


def test_remove_readout_oversampling_is_the_image_space_crop(rng):
    """Cropping the readout in image space: the cropped k-space's image is the centre crop of the full one
    (odd target height), a 2D mask that varies along H leaves the data alone."""
    from recon.io.fourier import fft2c

    image = (rng.standard_normal((1, 2, 40, 12)) + 1j * rng.standard_normal((1, 2, 40, 12))).astype(np.complex64)
    k = fft2c(image).astype(np.complex64)
    col = np.zeros((1, 1, 12), dtype=bool)
    col[..., ::3] = True
    cropped, m = remove_readout_oversampling(k, col, 19)
    assert cropped.shape == (1, 2, 19, 12) and cropped.dtype == np.complex64 and m.shape == (1, 1, 12)
    np.testing.assert_allclose(ifft2c(cropped), center_crop_or_pad(image, (19, 12)), atol=1e-5)
    full_2d = np.broadcast_to(col, (1, 40, 12))  # a 2D mask constant along H is a column mask
    np.testing.assert_allclose(remove_readout_oversampling(k, full_2d, 19)[0], cropped)
    poisson = rng.random((1, 40, 12)) < 0.5
    same, m2 = remove_readout_oversampling(k, poisson, 19)
    assert same is k and m2 is poisson
    assert remove_readout_oversampling(k, col, 40)[0] is k


def test_recon_batch_varnet_over_every_format(inputs, tmp_path):
    """``recon batch --method varnet`` over a folder with one file of each format (BART pair counted once)."""
    src = tmp_path / "in"
    src.mkdir()
    names = ["fastmri", "twix", "bart"] + (["mrd"] if "mrd" in inputs else [])
    for name in names:
        path = inputs[name]
        shutil.copy(path, src / path.name)
        if name == "bart":
            shutil.copy(path.with_suffix(".hdr"), src / path.with_suffix(".hdr").name)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "recon", "batch", str(src), str(out), "--method", "varnet",
                        "--accel", "4", "--seed", "1", "--pattern", "*", "--workers", "1", "--threads", "1"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    files = manifest["files"]
    assert sorted(files) == sorted(inputs[n].name for n in names), files
    for name in names:
        entry = files[inputs[name].name]
        assert entry["status"] == "ok", entry
        rec = h5py.File(out / Path(inputs[name].name).with_suffix(".h5"))["reconstruction"][()]
        ref = full_rss(inputs[name])
        assert_orientation(rec, ref)
        assert entry["metrics"]["psnr"] == pytest.approx(reference_metrics(rec, [ref])["psnr"], abs=1e-3)


@pytest.mark.parametrize("name", ["fastmri", "fastmri_us", "bart", "twix", "mrd", "mrd_us"])
def test_adapt_and_lambda_auto_on_every_format(inputs, name, tmp_path, capsys):
    """Issue 12: ``--adapt`` works on every input format the learned methods take and ``--lambda auto`` on every
    format the classical methods take: adapted VarNet (2 steps) records its choice and, by its self-validation
    rule, keeps step 0 unless a step lowered that loss; the cross-validated L1 weight lies on its ladder."""
    src = _need(inputs, name)
    sampling = [] if name.endswith("_us") else ["--accel", "4", "--seed", "1"]
    cli_json(capsys, str(src), str(tmp_path / "v.h5"), "--method", "varnet", *sampling)
    adapted = cli_json(capsys, str(src), str(tmp_path / "a.h5"), "--method", "varnet", "--adapt",
                       "--adapt-steps", "2", *sampling)
    record = adapted["adaptation"]
    with h5py.File(tmp_path / "a.h5") as f, h5py.File(tmp_path / "v.h5") as g:
        assert f["reconstruction"].shape == g["reconstruction"].shape
        curves, chosen = f["adapt_validation"][()], f["adapt_chosen_step"][()]
        assert curves.shape == (g["reconstruction"].shape[0], 3) and np.isfinite(curves).all()
        for s, c in enumerate(chosen):
            assert curves[s, c] == curves[s].min()
            if c == 0:  # the unadapted weights were kept: the same image
                np.testing.assert_array_equal(f["reconstruction"][s], g["reconstruction"][s])
    assert record["steps"] == 2 and record["per"] == "slice"
    cli_json(capsys, str(src), str(tmp_path / "l.h5"), "--method", "l1-wavelet", "--lambda", "auto",
                    *sampling)
    with h5py.File(tmp_path / "l.h5") as f:
        chosen_lam = f["lambda_auto"][()]
        grid = f["lambda_grid"][()]
        assert grid.shape == (chosen_lam.shape[0], 6) and np.isfinite(f["lambda_validation_error"][:, 2]).all()
        for s, lam in enumerate(chosen_lam):
            assert np.float32(lam) in grid[s]
        assert '"lam": "auto"' in f.attrs["parameters"]
