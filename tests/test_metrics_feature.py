"""recon.metrics.feature: HaarPSI, VIFp, GMSD and HFEN against independent implementations.

Oracles:
* the published algorithms written here in plain numpy/scipy, MATLAB-style (HaarPSI as the authors'
  ``haarPsi.py``/``HaarPSI.m``; GMSD as Xue et al.'s ``GMSD.m``; HFEN as Ravishankar & Bresler's
  ``imfilter(., fspecial('log', 15, 1.5))``, its filter built from ``scipy.ndimage.gaussian_laplace``);
* ``sewar.vifp`` (numpy port of Sheikh & Bovik's ``vifp_mscale.m``) and ``piq`` (``haarpsi``, ``vif_p``,
  ``gmsd``), test-only packages from the ``dev`` extra; their tests skip with a reason where they are absent.
  piq's package ``__init__`` imports torchvision (for its FID/LPIPS models, not used here), so its three
  modules are loaded from the installed files without running that ``__init__``.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage, signal

from recon.errors import UsageError
from recon.metrics import (
    FEATURE_METRICS,
    HIGHER_IS_BETTER,
    feature_metrics,
    gmsd,
    haarpsi,
    hfen,
    vif,
)
import recon.metrics.feature as feature_module
from recon.metrics.feature import gmsd_slices, haarpsi_slices, hfen_slices, log_kernel, vif_slices

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RTOL = 1e-4  # the brief's bar; the float64 implementations agree far closer (asserted where known)


# ------------------------------------------------------------------------------------------------ test images

def _phantom(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A non-negative 'magnitude image': smooth shapes, edges of several sizes, a little texture."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w].astype(np.float64)
    img = 0.4 + 0.3 * np.sin(x / 4.0) * np.cos(y / 6.0)
    img += 0.8 * (((x - w / 2) / (0.35 * w)) ** 2 + ((y - h / 2) / (0.3 * h)) ** 2 < 1)  # an ellipse
    img += 0.5 * ((np.abs(x - w / 3) < 2) & (y > h / 4))  # a thin bar
    img += 0.05 * g.random((h, w))
    return img


def _degrade(img: np.ndarray, blur: float = 0.0, noise: float = 0.0, seed: int = 1) -> np.ndarray:
    out = ndimage.gaussian_filter(img, blur) if blur > 0 else img.copy()
    if noise > 0:
        out = out + noise * np.random.default_rng(seed).standard_normal(img.shape)
    return np.abs(out)


PAIRS = [
    pytest.param((64, 64), 1.0, 0.03, id="64x64-blur-noise"),
    pytest.param((63, 70), 0.0, 0.1, id="63x70-noise"),  # odd sizes: the 2 x 2 averaging pads with zeros
    pytest.param((96, 80), 2.0, 0.0, id="96x80-blur"),
]


# --------------------------------------------------------------------------- MATLAB-style numpy references

def _conv2_same(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """MATLAB ``conv2(a, k, 'same')``: scipy's 'same' centres even kernels one sample the other way, so
    convolve the 180-degree rotated arrays and rotate back (as the HaarPSI authors' Python port does)."""
    return np.rot90(signal.convolve2d(np.rot90(a, 2), np.rot90(k, 2), mode="same"), 2)


def _subsample(a: np.ndarray) -> np.ndarray:
    return _conv2_same(a, np.ones((2, 2)) / 4.0)[::2, ::2]


def _haarpsi_reference(ref: np.ndarray, dist: np.ndarray) -> float:
    """HaarPSI for grayscale images in [0, 255], step by step as Reisenhofer et al.'s reference code."""
    c, alpha, scales = 30.0, 4.2, 3
    ref, dist = _subsample(ref), _subsample(dist)

    def decompose(a: np.ndarray) -> list[np.ndarray]:  # [scale 1..3 horizontal, scale 1..3 vertical]
        out_h, out_v = [], []
        for s in range(1, scales + 1):
            f = 2.0 ** -s * np.ones((2 ** s, 2 ** s))
            f[: 2 ** s // 2] *= -1
            out_h.append(_conv2_same(a, f))
            out_v.append(_conv2_same(a, f.T))
        return out_h + out_v

    cr, cd = decompose(ref), decompose(dist)
    sims, weights = [], []
    for o in range(2):
        weights.append(np.maximum(np.abs(cr[2 + 3 * o]), np.abs(cd[2 + 3 * o])))
        s = 0.0
        for k in (3 * o, 3 * o + 1):
            a, b = np.abs(cr[k]), np.abs(cd[k])
            s = s + (2 * a * b + c) / (a ** 2 + b ** 2 + c)
        sims.append(s / 2)
    sim, w = np.stack(sims), np.stack(weights)
    pooled = np.sum(w / (1 + np.exp(-alpha * sim))) / np.sum(w)
    return float((np.log(pooled / (1 - pooled)) / alpha) ** 2)


def _gmsd_reference(ref: np.ndarray, dist: np.ndarray) -> float:
    """GMSD.m of Xue et al. for images in [0, 255] (T = 170), with the paper's 1/N standard deviation."""
    ref, dist = _subsample(ref), _subsample(dist)
    dx = np.array([[1.0, 0.0, -1.0]] * 3) / 3.0

    def grad(a: np.ndarray) -> np.ndarray:
        return np.sqrt(_conv2_same(a, dx) ** 2 + _conv2_same(a, dx.T) ** 2)

    gr, gd = grad(ref), grad(dist)
    gms = (2 * gr * gd + 170.0) / (gr ** 2 + gd ** 2 + 170.0)
    return float(np.std(gms))


def _fspecial_log(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('log', size, sigma)`` from its documented formula."""
    r = (size - 1) / 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    h = np.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2))
    h[h < np.finfo(float).eps * h.max()] = 0
    h = h / h.sum()
    h1 = h * (x ** 2 + y ** 2 - 2 * sigma ** 2) / sigma ** 4
    return h1 - h1.sum() / h1.size


def _log_filter_scipy(a: np.ndarray, size: int = 15, sigma: float = 1.5) -> np.ndarray:
    """``imfilter(a, fspecial('log', size, sigma))`` (zero padding) built on ``scipy.ndimage.gaussian_laplace``.

    gaussian_laplace with a ``size``-wide window (truncate = radius / sigma) and zero padding is the
    un-centred LoG; fspecial subtracts the kernel's mean, i.e. mean * (box sum of ``a``).
    """
    r = size // 2
    lap = ndimage.gaussian_laplace(a, sigma, mode="constant", truncate=r / sigma)
    delta = np.zeros((size, size))
    delta[r, r] = 1.0
    kernel_mean = ndimage.gaussian_laplace(delta, sigma, mode="constant", truncate=r / sigma).sum() / size ** 2
    box = ndimage.uniform_filter(a, size, mode="constant") * size ** 2
    return lap - kernel_mean * box


def _hfen_reference(ref: np.ndarray, dist: np.ndarray) -> float:
    lr, ld = _log_filter_scipy(ref), _log_filter_scipy(dist)
    return float(np.linalg.norm(ld - lr) / np.linalg.norm(lr))


# ------------------------------------------------------------------------------------- published formulas

@pytest.mark.parametrize("shape, blur, noise", PAIRS)
def test_haarpsi_matches_the_authors_algorithm(shape, blur, noise):
    ref = _phantom(*shape)
    dist = _degrade(ref, blur, noise)
    m = ref.max()
    expected = _haarpsi_reference(ref * 255 / m, dist * 255 / m)
    assert 0.3 < expected < 0.999
    assert haarpsi(ref, dist) == pytest.approx(expected, rel=1e-10)
    assert haarpsi(dist, ref, data_range=m) == pytest.approx(expected, rel=1e-10)  # symmetric


@pytest.mark.parametrize("shape, blur, noise", PAIRS)
def test_gmsd_matches_the_published_algorithm(shape, blur, noise):
    ref = _phantom(*shape)
    dist = _degrade(ref, blur, noise)
    m = ref.max()
    expected = _gmsd_reference(ref * 255 / m, dist * 255 / m)
    assert 0.001 < expected < 0.3
    assert gmsd(ref, dist) == pytest.approx(expected, rel=1e-10)
    assert gmsd(ref * 7.0, dist * 7.0) == pytest.approx(expected, rel=1e-10)  # data range = the ref's max


def test_log_kernel_is_matlab_fspecial_log():
    k = log_kernel(15, 1.5).numpy()
    np.testing.assert_allclose(k, _fspecial_log(15, 1.5), rtol=0, atol=1e-15)
    assert abs(k.sum()) < 1e-15
    np.testing.assert_allclose(log_kernel(9, 1.0).numpy(), _fspecial_log(9, 1.0), rtol=0, atol=1e-15)


@pytest.mark.parametrize("shape, blur, noise", PAIRS)
def test_hfen_matches_gaussian_laplace_computation(shape, blur, noise):
    ref = _phantom(*shape)
    dist = _degrade(ref, blur, noise)
    expected = _hfen_reference(ref, dist)
    assert 0.01 < expected < 2
    assert hfen(ref, dist) == pytest.approx(expected, rel=1e-10)
    assert hfen(ref * 3.0, dist * 3.0) == pytest.approx(expected, rel=1e-10)  # scale invariant


# ------------------------------------------------------------------------------------------ package oracles

def _piq() -> types.SimpleNamespace:
    """piq's haarpsi / vif_p / gmsd, loaded without piq/__init__.py (which imports torchvision)."""
    spec = importlib.util.find_spec("piq")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("piq is not installed (test-only oracle: pip install --no-deps piq, in the dev extra)")
    saved = {k: v for k, v in sys.modules.items() if k == "piq" or k.startswith("piq.")}
    try:
        for k in saved:
            del sys.modules[k]
        package = types.ModuleType("piq")
        package.__path__ = [str(Path(list(spec.submodule_search_locations)[0]))]
        sys.modules["piq"] = package
        mods = {name: importlib.import_module(f"piq.{name}") for name in ("haarpsi", "vif", "gmsd")}
        return types.SimpleNamespace(haarpsi=mods["haarpsi"].haarpsi, vif_p=mods["vif"].vif_p,
                                     gmsd=mods["gmsd"].gmsd)
    finally:
        for k in [k for k in sys.modules if k == "piq" or k.startswith("piq.")]:
            del sys.modules[k]
        sys.modules.update(saved)


@pytest.mark.parametrize("shape, blur, noise", PAIRS)
def test_against_piq(shape, blur, noise):
    piq = _piq()
    ref = _phantom(*shape)
    dist = _degrade(ref, blur, noise)
    m = max(ref.max(), dist.max())  # piq insists on inputs within [0, data_range]
    r = torch.from_numpy(ref / m)[None, None]
    d = torch.from_numpy(dist / m)[None, None]
    assert haarpsi(ref, dist, m) == pytest.approx(float(piq.haarpsi(d, r)), rel=1e-10)
    assert gmsd(ref, dist, m) == pytest.approx(float(piq.gmsd(d, r)), rel=1e-10)
    # piq floors variances at 1e-8 where vifp_mscale.m (and we) use 1e-10: ~1e-9 apart
    assert vif(ref, dist, m) == pytest.approx(float(piq.vif_p(d, r)), rel=1e-7)


@pytest.mark.parametrize("shape, blur, noise", PAIRS)
def test_vif_matches_sewar(shape, blur, noise):
    sewar = pytest.importorskip("sewar.full_ref", reason="sewar is a test-only oracle (dev extra)")
    ref = _phantom(*shape)
    dist = _degrade(ref, blur, noise)
    m = ref.max()
    expected = sewar.vifp(ref * 255 / m, dist * 255 / m)
    assert 0.05 < expected < 0.99
    assert vif(ref, dist) == pytest.approx(expected, rel=1e-9)
    assert vif_slices(ref, dist).dtype == torch.float64


# ---------------------------------------------------------------------------------------- sanity, behaviour

def test_identical_images_are_perfect():
    ref = _phantom(64, 64)
    assert haarpsi(ref, ref) == pytest.approx(1.0, abs=1e-12)
    assert vif(ref, ref) == pytest.approx(1.0, abs=1e-9)  # g = cov / (var + 1e-10), as vifp_mscale.m
    assert gmsd(ref, ref) == 0.0
    assert hfen(ref, ref) == 0.0


@pytest.mark.parametrize("kind", ["noise", "blur"])
def test_metrics_worsen_monotonically(kind):
    ref = _phantom(80, 80)
    levels = [0.02, 0.05, 0.1, 0.2] if kind == "noise" else [0.5, 1.0, 1.5, 2.5]
    dists = [_degrade(ref, noise=s) if kind == "noise" else _degrade(ref, blur=s) for s in levels]
    for name, fn in (("haarpsi", haarpsi), ("vif", vif), ("gmsd", gmsd), ("hfen", hfen)):
        values = [fn(ref, d) for d in dists]
        sign = -1.0 if HIGHER_IS_BETTER[name] else 1.0  # make "worse" = "larger"
        assert all(sign * b > sign * a for a, b in zip(values, values[1:])), (name, kind, values)


def test_feature_metrics_volume_means_slices_with_volume_range(monkeypatch):
    target = np.stack([_phantom(48, 48, seed=s) * (1.0 + s) for s in range(3)]).astype(np.float32)
    prediction = np.stack([_degrade(t, blur=1.0, noise=0.02, seed=s) for s, t in enumerate(target)])
    out = feature_metrics(target, prediction)
    assert tuple(out) == FEATURE_METRICS
    assert set(HIGHER_IS_BETTER) == set(FEATURE_METRICS)
    m = float(target.max())  # the volume's maximum, not each slice's
    per_slice = {
        "haarpsi": [haarpsi(t, p, m) for t, p in zip(target, prediction)],
        "vif": [vif(t, p, m) for t, p in zip(target, prediction)],
        "gmsd": [gmsd(t, p, m) for t, p in zip(target, prediction)],
        "hfen": [hfen(t, p) for t, p in zip(target, prediction)],
    }
    for name in FEATURE_METRICS:
        assert out[name] == pytest.approx(np.mean(per_slice[name]), rel=1e-12), name
    # a per-slice range would differ (HaarPSI, VIF and GMSD depend on the scale): the volume range is used
    assert haarpsi(target[0], prediction[0]) != pytest.approx(per_slice["haarpsi"][0], rel=1e-6)
    # torch and complex inputs give the same numbers; an explicit maxval is honoured
    same = feature_metrics(torch.from_numpy(target), torch.from_numpy(prediction).to(torch.complex64))
    for name in FEATURE_METRICS:
        assert same[name] == pytest.approx(out[name], rel=1e-6)
    assert feature_metrics(target, prediction, maxval=m)["gmsd"] == pytest.approx(out["gmsd"], rel=1e-12)
    assert feature_metrics(target, prediction, maxval=2 * m)["gmsd"] != pytest.approx(out["gmsd"], rel=1e-3)
    monkeypatch.setattr(feature_module, "_CHUNK", 2)  # slices scored in chunks of 2 + 1: same numbers
    assert feature_metrics(target, prediction) == pytest.approx(out, rel=1e-12)


def test_slices_are_independent():
    vol = np.stack([_phantom(48, 48, seed=s) for s in range(2)])
    dist = np.stack([_degrade(v, noise=0.05, seed=s) for s, v in enumerate(vol)])
    m = float(vol.max())
    for fn in (haarpsi_slices, vif_slices, gmsd_slices):
        both = fn(vol, dist, m)
        assert both.shape == (2,)
        assert float(both[1]) == pytest.approx(float(fn(vol[1], dist[1], m)[0]), rel=1e-12)
    assert float(hfen_slices(vol, dist)[1]) == pytest.approx(hfen(vol[1], dist[1]), rel=1e-12)


def test_bad_inputs_raise_usage_errors():
    a = _phantom(48, 48)
    with pytest.raises(UsageError, match="shapes differ"):
        feature_metrics(a, a[:-1])
    with pytest.raises(UsageError, match="at least 41"):
        vif(a[:32, :32], a[:32, :32])
    with pytest.raises(UsageError, match="data range"):
        haarpsi(np.zeros((32, 32)), a[:32, :32])
    with pytest.raises(UsageError, match="volumes"):
        feature_metrics(a[None, None], a[None, None])
    with pytest.raises(UsageError, match="odd kernel"):
        hfen_slices(a, a, kernel_size=14)
