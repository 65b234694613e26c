"""``recon.reconstruct`` (the one entry point), its errors, and ``recon run`` with the classical methods."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import recon
from recon.data import sample_path
from recon.errors import DataError, UsageError
from recon.io import read_raw
from recon.arrays import rss
from recon.io.fourier import fft2c, ifft2c
from recon.io.types import RawData
from recon.sampling import apply_mask, mask_from_options

SAMPLE = sample_path()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def slice0() -> RawData:
    return read_raw(SAMPLE).slices(0)


def _maps(c: int, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    m = np.stack([np.exp(-((yy - 0.5 - 0.4 * np.sin(a)) ** 2 + (xx - 0.5 - 0.4 * np.cos(a)) ** 2) * 4)
                  * np.exp(1j * a * xx) for a in np.linspace(0, 2 * np.pi, c, endpoint=False)])
    return (m / np.sqrt((np.abs(m) ** 2).sum(0))).astype(np.complex64)


def test_lazy_export_and_result_fields(slice0) -> None:
    assert recon.reconstruct is recon.solvers.reconstruct.reconstruct
    res = recon.reconstruct(slice0, "sense", iterations=3)
    assert res.image.shape == (1, 224, 192) and res.image.dtype == np.float32
    assert res.complex_image.shape == (1, 224, 192) and res.maps.shape == (1, 8, 224, 192)
    assert res.solver.iterations <= 3 and len(res.solver.history) == res.solver.iterations + 1
    assert res.cropped().shape == (1, 224, 192)
    assert res.summary()["method"] == "sense"


def test_fully_sampled_noiseless_array_input_gives_rss() -> None:
    h, w = 32, 24
    maps = _maps(6, h, w)
    yy, xx = np.mgrid[:h, :w]
    img = ((yy - 16) ** 2 / 100 + (xx - 12) ** 2 / 50 < 1) * (1 + 0.2 * np.cos(xx / 2.0))
    k = fft2c(maps * img).astype(np.complex64)  # (C, H, W): a slice axis is added
    truth = rss(ifft2c(k[None]), axis=1)
    for method in ("zero-filled", "grappa"):
        assert np.abs(recon.reconstruct(k, method).image - truth).max() < 1e-5 * truth.max()
    res = recon.reconstruct(k, "sense", maps=2 * maps)  # maps are normalised
    assert np.abs(res.image - truth).max() < 1e-4 * truth.max()
    res = recon.reconstruct(k, "l1-wavelet", maps=maps, lam=0.0, iterations=5)
    assert np.abs(res.image - truth).max() < 1e-4 * truth.max()


def test_mask_inferred_from_zeros_of_an_array(slice0) -> None:
    mask, _ = mask_from_options("random", slice0.shape, [4], [0.08], SAMPLE.name)
    k, _ = apply_mask(slice0.kspace, mask)
    a = recon.reconstruct(k, "l1-wavelet", iterations=5)
    b = recon.reconstruct(RawData(k, slice0.header, mask), "l1-wavelet", iterations=5)
    assert np.allclose(a.image, b.image, rtol=0, atol=1e-5 * b.image.max())


def test_bad_input_errors(slice0) -> None:
    k = slice0.kspace.copy()
    no_centre = k.copy()
    no_centre[..., 96] = 0  # the centre line missing: no fully sampled centre
    for method in ("sense", "l1-wavelet"):
        with pytest.raises(DataError, match="ESPIRiT sensitivity maps need a fully sampled k-space centre"):
            recon.reconstruct(no_centre, method)
    with pytest.raises(DataError, match="GRAPPA needs a fully sampled k-space centre"):
        recon.reconstruct(no_centre, "grappa")
    with pytest.raises(UsageError, match="lambda must be >= 0"):
        recon.reconstruct(k, "l1-wavelet", lam=-0.1)
    with pytest.raises(UsageError, match="unknown method"):
        recon.reconstruct(k, "magic")
    with pytest.raises(UsageError, match="GRAPPA needs Cartesian data undersampled along the phase encode"):
        recon.reconstruct(k, "grappa", mask=np.random.default_rng(0).uniform(size=k.shape[-2:]) < 0.5)
    with pytest.raises(UsageError, match="zero-filled takes no lambda"):
        recon.reconstruct(k, "zero-filled", lam=0.1)
    with pytest.raises(UsageError, match="do not fit k-space"):
        recon.reconstruct(k, "sense", maps=np.ones((8, 10, 10), np.complex64))


# ---- recon run, as a user runs it ----------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recon", *map(str, args)], capture_output=True, text=True,
                          timeout=180, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def test_cli_run_l1_wavelet(tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    proc = run_cli("run", SAMPLE, out, "--method", "l1-wavelet", "--accel", "4")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f, h5py.File(SAMPLE) as g:
        rec, ref = f["reconstruction"][()], g["reconstruction_rss"][()]
        assert f.attrs["method"] == "l1-wavelet"
        assert f["mask"].shape == (192,)
    assert rec.shape == ref.shape == (3, 224, 192)
    psnr = 10 * np.log10(ref.max() ** 2 / np.mean((rec - ref) ** 2))
    assert psnr > 26.29  # the same mask as tests/test_solvers_sample.py: measured 26.67 dB


def test_cli_solver_options_and_errors(tmp_path: Path) -> None:
    out = tmp_path / "tv.h5"
    proc = run_cli("run", SAMPLE, out, "--method", "tv", "--accel", "4", "--lambda", "0.01",
                   "--iterations", "3", "--solver", "pdhg", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"solver": "pdhg"' in proc.stdout and '"lam": 0.01' in proc.stdout
    bad = run_cli("run", SAMPLE, tmp_path / "bad.h5", "--method", "l1-wavelet", "--lambda", "-1")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "lambda must be >= 0" in bad.stderr and not (tmp_path / "bad.h5").exists()
    zf = run_cli("run", SAMPLE, tmp_path / "zf.h5", "--lambda", "0.1")
    assert zf.returncode == 2 and "does not take option(s): lam" in zf.stderr


def test_few_calibration_lines_get_walsh_maps_instead_of_failing_espirit() -> None:
    """4 centre lines of 96 (fastMRI's 8x centre fraction 0.04): ESPIRiT maps fail (recon's and BART's; 3.0 dB
    measured with ESPIRiT); the Walsh fallback gives 17.7 dB, above zero-filled's 17.1 (measured)."""
    from recon.metrics import volume_metrics
    from recon.simulate import load_colin27, simulate_multicoil
    from recon.solvers.zero_filled import rss_reconstruction

    sim = simulate_multicoil(load_colin27([88], shape=(128, 96)), num_coils=12, snr=20, seed=3).raw
    mask = np.zeros(96, bool)
    mask[[14, 16, 34, 43, 46, 47, 48, 49, 75, 82]] = True
    k, used = apply_mask(sim.kspace, mask, sim.header)
    data = RawData(k, sim.header, used)
    zf = volume_metrics(sim.reference, np.asarray(rss_reconstruction(k, used)))["psnr"]
    res = recon.reconstruct(data, "l1-wavelet")
    psnr = volume_metrics(sim.reference, res.image)["psnr"]
    assert psnr > zf + 0.3 and psnr > 17.4, (psnr, zf)
    maps = np.asarray(res.maps)
    np.testing.assert_allclose(np.sum(np.abs(maps) ** 2, axis=1), 1.0, atol=1e-4)  # unit norm everywhere
    espirit = recon.reconstruct(data, "l1-wavelet", espirit={"kernel_size": 4})  # explicit options: ESPIRiT
    assert volume_metrics(sim.reference, espirit.image)["psnr"] < 10


def test_torch_kspace_is_taken_as_a_tensor_and_gives_the_numpy_result(slice0) -> None:
    """A torch k-space is checked and solved where it is (issue 13: no GPU -> numpy -> GPU round trip); same
    result as the numpy array, same errors for bad values."""
    mask, _ = mask_from_options("random", slice0.shape, [4], [0.08], SAMPLE.name)
    k, _ = apply_mask(slice0.kspace, mask)
    for method, kw in (("zero-filled", {}), ("grappa", {}), ("sense", {"iterations": 3}),
                       ("l1-wavelet", {"iterations": 3})):
        a = recon.reconstruct(k, method, **kw).image
        b = recon.reconstruct(torch.from_numpy(k), method, **kw).image
        np.testing.assert_array_equal(a, b)
    c = recon.reconstruct(torch.from_numpy(k[0]), "zero-filled").image  # (C, H, W): a slice axis is added
    np.testing.assert_array_equal(c, recon.reconstruct(k, "zero-filled").image)
    bad = torch.from_numpy(k.copy())
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="1 NaN/Inf values"):
        recon.reconstruct(bad, "zero-filled")
    with pytest.raises(DataError, match="must be complex"):
        recon.reconstruct(torch.ones(2, 8, 8, dtype=torch.int32), "zero-filled")
    with pytest.raises(UsageError, match=r"\(slices, coils, H, W\) or \(coils, H, W\)"):
        recon.reconstruct(torch.from_numpy(k[0, 0]), "zero-filled")


def test_solver_options_are_checked_by_name_and_solver_bugs_are_not_hidden(slice0, monkeypatch) -> None:
    """Unknown solver options are a UsageError naming what the solver takes; a TypeError raised inside a solver
    is a bug and propagates as one (issue 13: no TypeError catch turning bugs into usage errors)."""
    from recon.solvers import cs

    with pytest.raises(UsageError, match=r"l1-wavelet with fista does not take option\(s\): rho \(fista takes step"):
        recon.reconstruct(slice0, "l1-wavelet", iterations=2, rho=1.0)
    with pytest.raises(UsageError, match=r"tv with admm does not take option\(s\): step"):
        recon.reconstruct(slice0, "tv", iterations=2, step=1.0)

    def broken(*args, **kwargs):
        raise TypeError("a bug inside the solver")

    monkeypatch.setitem(cs.SOLVERS, "fista", broken)
    with pytest.raises(TypeError, match="a bug inside the solver"):
        recon.reconstruct(slice0, "l1-wavelet", iterations=2)
