"""recon.metrics: fastMRI's NMSE/PSNR/SSIM (parity with skimage and fastMRI's evaluate.py), SSIMLoss,
evaluate_folders and the data-consistency residual."""
from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from recon.data import sample_path
from recon.errors import DataError, InputError, UsageError
from recon.arrays import rss
from recon.io.fourier import fft2c, ifft2c
from recon.metrics import (
    SSIMLoss,
    dc_residual,
    evaluate_folders,
    nmse,
    psnr,
    ssim,
    ssim_tensor,
    volume_metrics,
)

FASTMRI_DIR = Path(__file__).resolve().parents[1] / ".venv/lib/python3.11/site-packages/fastmri"
if not FASTMRI_DIR.exists():  # another venv layout: find the wheel through the import system
    _spec = importlib.util.find_spec("fastmri")
    FASTMRI_DIR = Path(_spec.origin).parent if _spec and _spec.origin else FASTMRI_DIR


# ------------------------------------------------------------------------------------------- fastMRI oracle

def _placeholder(attr: str) -> type:
    if attr.startswith("_"):
        raise AttributeError(attr)
    return type(attr, (), {})


class _Statistics:
    """Stand-in for ``runstats.Statistics`` (not installed here): push / mean / stddev (ddof 1, as runstats)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def push(self, value) -> None:
        self.values.append(float(np.asarray(value).reshape(-1)[0]))  # fastMRI's SSIM comes as shape (1,)

    def mean(self) -> float:
        return float(np.mean(self.values))

    def stddev(self, ddof: float = 1.0) -> float:
        return float(np.std(self.values, ddof=ddof))


def load_fastmri_evaluate(monkeypatch) -> types.ModuleType:
    """fastmri/evaluate.py of the installed wheel, loaded by path; modules it imports but its metric functions
    never use (runstats, pandas, requests, yaml: not installed here) get stand-ins for this test only."""
    if not (FASTMRI_DIR / "evaluate.py").exists():
        pytest.skip("the fastmri wheel (test oracle) is not installed")
    if importlib.util.find_spec("runstats") is None:
        stats = types.ModuleType("runstats")
        stats.Statistics = _Statistics
        monkeypatch.setitem(sys.modules, "runstats", stats)
    for mod in ("pandas", "requests", "yaml"):
        if importlib.util.find_spec(mod) is None:
            stand_in = types.ModuleType(mod)
            stand_in.__getattr__ = _placeholder
            monkeypatch.setitem(sys.modules, mod, stand_in)
    for name in [n for n in sys.modules if n == "fastmri" or n.startswith("fastmri.")]:
        monkeypatch.delitem(sys.modules, name)  # re-imported under the stand-ins, dropped afterwards
    spec = importlib.util.spec_from_file_location("_fastmri_evaluate_metrics_oracle", FASTMRI_DIR / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fastmri_eval(monkeypatch):
    before = set(sys.modules)
    yield load_fastmri_evaluate(monkeypatch)
    for name in set(sys.modules) - before:
        if name.split(".")[0] == "fastmri":
            del sys.modules[name]


# ------------------------------------------------------------------------------------------------ references

def skimage_ssim(gt: np.ndarray, pred: np.ndarray, data_range: float, **kw) -> float:
    """fastMRI's SSIM definition written with skimage, explicit settings: per slice, averaged."""
    return float(np.mean([structural_similarity(g, p, win_size=7, K1=0.01, K2=0.03, data_range=data_range,
                                                gaussian_weights=False, **kw) for g, p in zip(gt, pred)]))


@pytest.fixture(scope="module")
def sample_pair() -> tuple[np.ndarray, np.ndarray]:
    """Real-looking images: the sample's reconstruction_rss and a zero-filled 4x reconstruction (float32)."""
    from recon.sampling import apply_mask, mask_from_options

    with h5py.File(sample_path()) as f:
        kspace, ref = f["kspace"][()], f["reconstruction_rss"][()]
    mask, _ = mask_from_options("random", kspace.shape, [4], [0.08], "sample_brain.h5")
    under, _ = apply_mask(kspace, mask)
    zf = rss(ifft2c(under), axis=1).astype(np.float32)
    assert zf.shape == ref.shape
    return ref, zf


def _noisy(rng, shape, noise=0.1):
    gt = rng.random(shape)
    return gt, gt + noise * rng.standard_normal(shape)


# --------------------------------------------------------------------------------------- parity with skimage

@pytest.mark.parametrize("shape", [(3, 37, 29), (1, 7, 7), (2, 64, 48), (1, 9, 100), (4, 31, 8)])
def test_metrics_match_skimage_random(rng, shape):
    gt, pred = _noisy(rng, shape)
    m = gt.max()
    assert ssim(gt, pred) == pytest.approx(skimage_ssim(gt, pred, m), abs=1e-12)
    assert psnr(gt, pred) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=m), abs=1e-10)
    assert nmse(gt, pred) == pytest.approx(np.sum((gt - pred) ** 2) / np.sum(gt ** 2), rel=1e-12)
    vm = volume_metrics(gt, pred)
    assert vm == {"nmse": nmse(gt, pred), "psnr": psnr(gt, pred), "ssim": ssim(gt, pred)}


def test_ssim_uses_the_volume_maximum_not_each_slice(rng):
    gt, pred = _noisy(rng, (2, 20, 20))
    gt[1] *= 0.25  # slice maxima differ a lot from the volume's
    pred[1] *= 0.25
    per_slice_range = np.mean([structural_similarity(g, p, data_range=g.max()) for g, p in zip(gt, pred)])
    assert ssim(gt, pred) == pytest.approx(skimage_ssim(gt, pred, gt.max()), abs=1e-12)
    assert abs(ssim(gt, pred) - per_slice_range) > 1e-3


def test_explicit_maxval_and_population_covariance(rng):
    gt, pred = _noisy(rng, (2, 16, 18))
    assert ssim(gt, pred, maxval=3.0) == pytest.approx(skimage_ssim(gt, pred, 3.0), abs=1e-12)
    assert psnr(gt, pred, maxval=3.0) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=3.0), abs=1e-10)
    assert ssim(gt, pred, sample_covariance=False) == pytest.approx(
        skimage_ssim(gt, pred, gt.max(), use_sample_covariance=False), abs=1e-12)
    assert ssim(gt, pred, win_size=5) == pytest.approx(np.mean(
        [structural_similarity(g, p, win_size=5, data_range=gt.max()) for g, p in zip(gt, pred)]), abs=1e-12)


def test_ssim_3d_matches_skimage_on_the_volume(rng):
    gt, pred = _noisy(rng, (9, 15, 12))
    assert ssim(gt, pred, dims=3) == pytest.approx(structural_similarity(gt, pred, data_range=gt.max()), abs=1e-12)
    assert abs(ssim(gt, pred, dims=3) - ssim(gt, pred)) > 1e-4  # really a different definition


def test_real_images_match_skimage(sample_pair):
    ref, zf = sample_pair
    m = float(ref.max())
    g, p = ref.astype(np.float64), zf.astype(np.float64)
    assert ssim(ref, zf) == pytest.approx(skimage_ssim(g, p, m), abs=1e-12)
    assert psnr(ref, zf) == pytest.approx(peak_signal_noise_ratio(g, p, data_range=m), abs=1e-9)
    assert 0.3 < ssim(ref, zf) < 0.95 and 15 < psnr(ref, zf) < 35  # a 4x zero-filled image, not a copy


def test_single_image_and_torch_and_complex_inputs(rng):
    gt, pred = _noisy(rng, (1, 12, 10))
    expected = ssim(gt, pred)
    assert ssim(gt[0], pred[0]) == expected
    assert ssim(torch.from_numpy(gt), torch.from_numpy(pred)) == pytest.approx(expected, abs=1e-15)
    phase = np.exp(1j * rng.uniform(-np.pi, np.pi, gt.shape))
    assert ssim(gt * phase, pred * phase) == pytest.approx(ssim(gt, np.abs(pred)), abs=1e-12)  # magnitudes
    assert nmse(gt.astype(np.float32), pred) == pytest.approx(nmse(gt.astype(np.float32).astype(float), pred))


def test_identity_values(rng):
    x = rng.random((2, 11, 13))
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert nmse(x, x) == 0.0
    with np.errstate(divide="ignore"):
        assert psnr(x, x) == float("inf")


def test_crop_options(rng):
    gt, pred = _noisy(rng, (2, 30, 20))
    cropped = volume_metrics(gt[:, 5:25, 3:17], pred[:, 5:25, 3:17])
    assert volume_metrics(gt, pred, crop=(20, 14)) == cropped
    # fastMRI's evaluate crops to (W, W): (20, 20), starting at (30 - 20) // 2 = 5
    assert volume_metrics(gt, pred, crop="fastmri") == volume_metrics(gt[:, 5:25], pred[:, 5:25])


@pytest.mark.parametrize("call,message", [
    (lambda g, p: ssim(g, p[:, :-1]), "shapes differ"),
    (lambda g, p: ssim(g[:, :6, :6], p[:, :6, :6]), "larger than the image size"),
    (lambda g, p: ssim(g, p, dims=4), "dims must be 2"),
    (lambda g, p: ssim(g, p, dims=3), "larger than the image size"),  # 2 slices < 7
    (lambda g, p: psnr(g, p, crop=(40, 4)), "cannot crop"),
    (lambda g, p: psnr(g, p, maxval=0.0), "must be positive"),
    (lambda g, p: nmse(g, p, crop="square"), "crop must be"),
])
def test_bad_arguments(rng, call, message):
    gt, pred = _noisy(rng, (2, 10, 9))
    with pytest.raises(UsageError, match=message):
        call(gt, pred)


# --------------------------------------------------------------------------------- parity with fastMRI itself

def test_fastmri_functions_random_odd_sizes(fastmri_eval, rng):
    for shape in [(1, 7, 9), (3, 33, 17), (2, 50, 41)]:
        gt, pred = _noisy(rng, shape)
        assert nmse(gt, pred) == pytest.approx(float(fastmri_eval.nmse(gt, pred)), rel=1e-12)
        assert psnr(gt, pred) == pytest.approx(float(fastmri_eval.psnr(gt, pred)), abs=1e-10)
        assert ssim(gt, pred) == pytest.approx(float(fastmri_eval.ssim(gt, pred)[0]), abs=1e-12)


def test_fastmri_functions_on_real_float32_images(fastmri_eval, sample_pair):
    """float32 volumes as fastMRI reads them (it computes in float32; we in float64): within 1e-6."""
    ref, zf = sample_pair
    assert nmse(ref, zf) == pytest.approx(float(fastmri_eval.nmse(ref, zf)), abs=1e-6)  # its norm is float32
    assert psnr(ref, zf) == pytest.approx(float(fastmri_eval.psnr(ref, zf)), rel=1e-6)
    assert ssim(ref, zf) == pytest.approx(float(fastmri_eval.ssim(ref, zf)[0]), abs=1e-6)
    assert ssim(ref[:1], zf[:1]) == pytest.approx(float(fastmri_eval.ssim(ref[:1], zf[:1])[0]), abs=1e-6)


# ---------------------------------------------------------------------------------------------- as a loss

def test_ssim_loss_value_and_gradient(rng):
    gt, pred = _noisy(rng, (2, 16, 14))
    target = torch.from_numpy(gt)
    x = torch.from_numpy(pred).requires_grad_(True)
    loss = SSIMLoss()(x[:, None], target[:, None], data_range=float(gt.max()))
    assert float(loss.detach()) == pytest.approx(1.0 - skimage_ssim(gt, pred, gt.max()), abs=1e-12)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    # gradient descent on the loss moves the prediction towards the target
    step = x.detach() - 2.0 * x.grad
    assert float(SSIMLoss()(step, target, float(gt.max()))) < float(loss.detach())


def test_ssim_loss_gradcheck_and_identity():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 9, 8, generator=g, dtype=torch.float64)
    x = torch.rand(1, 9, 8, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: SSIMLoss()(p, target, 1.0), (x,))
    assert float(SSIMLoss()(target, target)) == pytest.approx(0.0, abs=1e-12)
    y = x.detach().clone().requires_grad_(True)
    ssim_tensor(target[0], y[0]).backward()  # the functional form is differentiable too
    assert y.grad.abs().max() > 0


def test_ssim_loss_per_image_data_range(rng):
    gt, pred = _noisy(rng, (2, 12, 12))
    ranges = torch.tensor([1.0, 2.0], dtype=torch.float64)
    loss = SSIMLoss()(torch.from_numpy(pred), torch.from_numpy(gt), ranges)
    expected = 1 - np.mean([structural_similarity(gt[i], pred[i], data_range=float(ranges[i])) for i in range(2)])
    assert float(loss) == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------------------------ data consistency

def test_dc_residual_is_the_noise_on_the_acquired_samples(rng):
    s, c, h, w = 2, 3, 8, 10
    image = rng.standard_normal((s, h, w)) + 1j * rng.standard_normal((s, h, w))
    maps = rng.standard_normal((c, h, w)) + 1j * rng.standard_normal((c, h, w))
    predicted = fft2c(maps[None] * image[:, None])
    noise = 0.01 * (rng.standard_normal(predicted.shape) + 1j * rng.standard_normal(predicted.shape))
    mask = np.zeros(w, dtype=bool)
    mask[[1, 4, 5, 8]] = True
    measured = np.where(mask, predicted + noise, 0)
    out = dc_residual(measured, mask, predicted)
    sampled_noise = np.where(mask, noise, 0)
    assert np.allclose(out["per_coil_line"], np.sqrt((np.abs(sampled_noise) ** 2).sum(axis=2)), rtol=1e-12)
    assert np.allclose(out["per_coil"], np.sqrt((np.abs(sampled_noise) ** 2).sum(axis=(0, 2, 3))), rtol=1e-12)
    assert out["per_line"].shape == (w,) and np.all(out["per_line"][~mask] == 0) and np.all(out["per_line"][mask] > 0)
    assert out["total"] == pytest.approx(np.linalg.norm(sampled_noise), rel=1e-12)
    assert out["relative"] == pytest.approx(np.linalg.norm(sampled_noise) / np.linalg.norm(measured), rel=1e-12)
    # torch inputs, a 2D mask and a per-slice mask give the same answer; a perfect prediction gives zero
    as_2d = np.broadcast_to(mask, (h, w))
    t = dc_residual(torch.from_numpy(measured), torch.from_numpy(as_2d.copy()), torch.from_numpy(predicted))
    assert np.allclose(t["per_coil_line"], out["per_coil_line"], rtol=1e-12)
    per_slice = np.broadcast_to(mask, (s, h, w)).astype(np.uint8)
    assert dc_residual(measured, per_slice, predicted)["total"] == pytest.approx(out["total"], rel=1e-12)
    assert dc_residual(measured, mask, measured)["total"] == 0.0


def test_dc_residual_bad_input(rng):
    k = np.zeros((1, 2, 4, 6), dtype=np.complex64)
    with pytest.raises(UsageError, match="does not match"):
        dc_residual(k, None, k[..., :5])
    with pytest.raises(UsageError, match="does not fit"):
        dc_residual(k, np.ones(5, dtype=bool), k)
    with pytest.raises(UsageError, match="boolean"):
        dc_residual(k, np.full(6, 2), k)


# ------------------------------------------------------------------------------------------ folder evaluation

def _target(path: Path, ref: np.ndarray, key: str = "reconstruction_rss", **attrs) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=ref.astype(np.float32))
        for k, v in attrs.items():
            f.attrs[k] = v
    return path


def _prediction(path: Path, rec: np.ndarray, **attrs) -> Path:
    from recon.io.fastmri import write_reconstruction

    return write_reconstruction(path, rec, attrs=attrs, overwrite=True)


@pytest.fixture
def folders(tmp_path, rng):
    t, p = tmp_path / "t", tmp_path / "p"
    t.mkdir()
    p.mkdir()
    vols = {}
    for i, (acq, acc) in enumerate([("CORPD_FBK", 4), ("AXT2", 8), ("CORPD_FBK", 8)]):
        gt = (rng.random((2, 24, 16)) + 0.2).astype(np.float32)
        pred = (gt + 0.05 * (i + 1) * rng.standard_normal(gt.shape)).astype(np.float32)
        _target(t / f"f{i}.h5", gt, acquisition=acq, acceleration=acc)
        _prediction(p / f"f{i}.h5", pred)
        vols[f"f{i}.h5"] = (gt, pred)
    return t, p, vols


def test_evaluate_folders_equals_fastmri_evaluate(folders, fastmri_eval):
    t, p, vols = folders
    result = evaluate_folders(t, p)
    assert list(result.files) == ["f0.h5", "f1.h5", "f2.h5"] and result.count == 3
    for name, (gt, pred) in vols.items():  # fastMRI crops to (W, W) = (16, 16)
        want = volume_metrics(gt[:, 4:20], pred[:, 4:20])
        assert {k: result.files[name][k] for k in want} == want
    theirs = fastmri_eval.evaluate(argparse.Namespace(target_path=t, predictions_path=p, acquisition=None,
                                                      acceleration=None), "reconstruction_rss")
    means, stds = theirs.means(), theirs.stddevs()
    assert result.mean["nmse"] == pytest.approx(means["NMSE"], rel=1e-6)
    assert result.mean["psnr"] == pytest.approx(means["PSNR"], rel=1e-6)
    assert result.mean["ssim"] == pytest.approx(means["SSIM"], abs=1e-6)
    assert result.std["psnr"] == pytest.approx(stds["PSNR"], rel=1e-5)
    assert result.std["ssim"] == pytest.approx(stds["SSIM"], abs=1e-6)
    for flt in [dict(acquisition="CORPD_FBK"), dict(acceleration=8), dict(acquisition="CORPD_FBK", acceleration=8)]:
        mine = evaluate_folders(t, p, **flt)
        args = argparse.Namespace(target_path=t, predictions_path=p, acquisition=flt.get("acquisition"),
                                  acceleration=flt.get("acceleration"))
        assert mine.mean["nmse"] == pytest.approx(fastmri_eval.evaluate(args, "reconstruction_rss").means()["NMSE"],
                                                  rel=1e-6)
    assert list(evaluate_folders(t, p, acquisition="CORPD_FBK", acceleration=8).files) == ["f2.h5"]
    assert evaluate_folders(t, p, acquisition="AXT2").skipped == ["f0.h5", "f2.h5"]
    assert "+/-" in result.summary_line() and result.summary_line().startswith("NMSE = ")


def test_evaluate_folders_single_coil_and_mask_acceleration(tmp_path, rng):
    t, p = tmp_path / "t", tmp_path / "p"
    (t / "sub").mkdir(parents=True)
    (p / "sub").mkdir(parents=True)
    gt = rng.random((1, 10, 10)).astype(np.float32)
    _target(t / "sub" / "a.h5", gt, key="reconstruction_esc")  # no acceleration attribute: fully sampled
    _target(t / ".a.h5.123.part", gt)  # a temporary: ignored
    _prediction(p / "sub" / "a.h5", gt * 0.9, mask_acceleration=4)
    result = evaluate_folders(t, p, acceleration=4)
    assert list(result.files) == ["sub/a.h5"] and result.std == {"nmse": 0.0, "psnr": 0.0, "ssim": 0.0}
    assert result.files["sub/a.h5"]["nmse"] == pytest.approx(0.01, rel=1e-6)
    with pytest.raises(InputError, match="no target files match"):
        evaluate_folders(t, p, acceleration=8)
    with pytest.raises(InputError, match="no reconstruction_rss"):
        evaluate_folders(t, p, recon_key="reconstruction_rss")


def test_evaluate_folders_errors(folders, tmp_path):
    t, p, vols = folders
    with pytest.raises(InputError, match="target folder does not exist"):
        evaluate_folders(tmp_path / "nope", p)
    with pytest.raises(InputError, match="predictions folder does not exist"):
        evaluate_folders(t, tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no .h5 target files"):
        evaluate_folders(empty, p)
    (p / "f1.h5").unlink()
    (p / "f2.h5").unlink()
    with pytest.raises(InputError, match=r"2 prediction\(s\) missing for targets: f1.h5, f2.h5"):
        evaluate_folders(t, p)
    assert evaluate_folders(t, p, acquisition="CORPD_FBK", acceleration=4).count == 1  # f1, f2 filtered out
    _prediction(p / "f1.h5", vols["f1.h5"][1][:, :, :12])
    with pytest.raises(DataError, match="does not fit target shape"):
        evaluate_folders(t, p, acquisition="AXT2")


def test_float32_tensors_keep_their_dtype(rng):
    gt, pred = _noisy(rng, (2, 16, 16))
    g32, p32 = torch.from_numpy(gt).float(), torch.from_numpy(pred).float()
    assert ssim_tensor(g32, p32).dtype == torch.float32
    assert float(SSIMLoss()(p32, g32, float(gt.max()))) == pytest.approx(1 - ssim(gt, pred), abs=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensors_give_the_cpu_values(rng):
    gt, pred = _noisy(rng, (2, 20, 18))
    g, p = torch.from_numpy(gt).cuda(), torch.from_numpy(pred).cuda()
    assert volume_metrics(g, p) == pytest.approx(volume_metrics(gt, pred), rel=1e-10)
    k = torch.randn(1, 2, 8, 6, dtype=torch.complex64)
    assert dc_residual(k.cuda(), None, 0 * k.cuda())["relative"] == pytest.approx(1.0, rel=1e-6)
