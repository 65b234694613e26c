"""Task-level tier (recon.metrics.task) and the tier registry (recon.metrics.tiers)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

pytest.importorskip("skimage")

from recon.errors import DataError, UsageError
from recon.metrics.task import (CLASS_NAMES, TASK_METRICS, classify, dice, edge_f1, fit_classes, object_mask,
                                task_metrics)
from recon.metrics.tiers import (TIER_NAMES, higher_is_better, parse_tiers, tier_metric_names,
                                 volume_tier_metrics)

SAMPLE = Path(__file__).resolve().parents[1] / "recon" / "data" / "sample_brain.h5"
INTENSITY = {0: 0.25, 1: 0.6, 2: 1.0}  # CSF, GM, WM (T1: CSF dark, WM bright)


def phantom(size: int = 64, slices: int = 2, noise: float = 0.02, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 3-class 'brain' ``(slices, size, size)`` on a zero background and its labels (-1 outside, 0 CSF, 1 GM,
    2 WM): a GM disc, a WM disc inside it, two CSF 'ventricles' inside the WM, Gaussian noise."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(yy, xx)
    labels = np.full((size, size), -1)
    labels[r < 0.42 * size] = 1
    labels[r < 0.28 * size] = 2
    labels[(np.abs(yy) < 0.14 * size) & (np.abs(np.abs(xx) - 0.1 * size) < 0.04 * size)] = 0
    img = np.zeros((size, size))
    for k, v in INTENSITY.items():
        img[labels == k] = v
    rng = np.random.default_rng(seed)
    vol = np.stack([img + noise * rng.standard_normal(img.shape) for _ in range(slices)])
    return np.abs(vol), np.stack([labels] * slices)


@pytest.fixture(scope="module")
def brain() -> dict[str, np.ndarray]:
    """The bundled Colin27 sample's reference, cropped to fastMRI's (W, W), and a 4x equispaced zero-filled RSS
    reconstruction of its k-space, cropped alike."""
    import h5py

    with h5py.File(SAMPLE, "r") as f:
        ref = f["reconstruction_rss"][()].astype(np.float64)
        kspace = f["kspace"][()]
    w = kspace.shape[-1]
    mask = np.zeros(w, dtype=bool)
    mask[::4] = True
    mask[w // 2 - 8:w // 2 + 8] = True
    axes = (-2, -1)
    coils = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace * mask, axes=axes), norm="ortho", axes=axes),
                            axes=axes)
    zf = np.sqrt(np.sum(np.abs(coils) ** 2, axis=1))
    top = (ref.shape[1] - w) // 2
    return {"ref": ref[:, top:top + w], "zf": zf[:, top:top + w]}


# --------------------------------------------------------------------------------------------- building blocks

def test_dice_known_values():
    a = np.zeros(10, bool)
    b = np.zeros(10, bool)
    a[:4] = True
    b[2:8] = True  # overlap 2, sizes 4 and 6
    assert dice(a, b) == pytest.approx(2 * 2 / 10)
    assert dice(a, a) == 1.0
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    assert dice(a, np.zeros(10, bool)) == 0.0


def test_edge_f1_tolerance_of_one_pixel():
    ref = np.zeros((1, 20, 20), bool)
    ref[0, 2:18, 10] = True
    near, far = np.zeros_like(ref), np.zeros_like(ref)
    near[0, 2:18, 11] = True  # one pixel off: found
    far[0, 2:18, 12] = True  # two pixels off: not found
    assert edge_f1(ref, near) == 1.0
    assert edge_f1(ref, far) == 0.0
    half = near.copy()
    half[0, 2:10, 11] = False
    half[0, 2:10, 12] = True  # half of the edge found: precision 1/2, recall 1/2 (of the 16 reference pixels
    # those at rows 9..17 see a predicted pixel within one: rows 9 and 10..17 -> 9/16)
    p, r = 8 / 16, 9 / 16
    assert edge_f1(ref, half) == pytest.approx(2 * p * r / (p + r))
    assert edge_f1(np.zeros_like(ref), np.zeros_like(ref)) == 1.0
    assert edge_f1(ref, np.zeros_like(ref)) == 0.0


def test_fit_classes_and_classify():
    values = np.concatenate([np.full(50, 1.0), np.full(30, 2.0), np.full(20, 5.0)])
    centres = fit_classes(values)
    np.testing.assert_allclose(centres, [1.0, 2.0, 5.0])
    np.testing.assert_array_equal(classify([0.0, 1.4, 1.6, 3.4, 3.6, 9.0], centres), [0, 0, 1, 1, 2, 2])
    with pytest.raises(DataError, match="distinct"):
        fit_classes(np.array([1.0, 1.0, 2.0]))


def test_phantom_mask_and_classes_are_recovered():
    vol, labels = phantom()
    mask = object_mask(vol)
    assert dice(mask, labels >= 0) > 0.99
    centres = fit_classes(vol[mask])
    np.testing.assert_allclose(centres, sorted(INTENSITY.values()), atol=0.02)
    found = classify(vol[mask], centres)
    truth = labels[mask]
    for k, name in enumerate(CLASS_NAMES):
        assert dice(found == k, truth == k) > 0.95, name


# --------------------------------------------------------------------------------------------- task_metrics

def test_identical_volumes_score_one():
    vol, _ = phantom()
    assert task_metrics(vol, vol) == {name: 1.0 for name in TASK_METRICS}


def test_blur_lowers_dice_and_edges_more_for_more_blur(brain):
    ref = brain["ref"]
    scores = [task_metrics(ref, ref)] + [task_metrics(ref, ndi.gaussian_filter(ref, (0, s, s))) for s in (0.7, 1.5)]
    for name in ("dice_csf", "dice_gm", "dice_wm", "dice_mean", "edge_f1"):
        values = [s[name] for s in scores]
        assert values[0] == 1.0 and values[0] > values[1] > values[2], (name, values)
    assert scores[2]["dice_mean"] < 0.9 and scores[2]["edge_f1"] < 0.95


def test_zero_filled_sample_scores_clearly_below_one(brain):
    m = task_metrics(brain["ref"], brain["zf"])
    assert m["dice_mean"] < 0.85 and m["edge_f1"] < 0.85
    assert all(0.3 < m[name] < 1.0 for name in TASK_METRICS), m


def test_intensity_shift_is_penalised_by_the_reference_model():
    vol, _ = phantom(noise=0.02)
    shifted = task_metrics(vol, vol * 1.5)  # GM (0.6 -> 0.9) moves past the GM/WM boundary (0.8)
    assert shifted["dice_gm"] < 0.2 and shifted["dice_mean"] < 0.75
    assert shifted["dice_csf"] > 0.9  # CSF (0.25 -> 0.375) stays below the CSF/GM boundary (0.425)
    assert shifted["edge_f1"] > 0.9  # edges of a brighter image stay where they were


def test_task_metrics_errors():
    vol, _ = phantom()
    with pytest.raises(UsageError, match="differ"):
        task_metrics(vol, vol[:, :-1])
    with pytest.raises(DataError, match="constant"):
        task_metrics(np.ones_like(vol), vol)
    with pytest.raises(DataError, match="non-finite"):
        task_metrics(vol, np.full_like(vol, np.nan))
    two = (vol > 0.5).astype(float)  # an object of one intensity: no three classes
    with pytest.raises(DataError):
        task_metrics(two, two)


# --------------------------------------------------------------------------------------------- tiers

def test_parse_tiers():
    assert TIER_NAMES == ("pixel", "feature", "task")
    assert parse_tiers("task, pixel,task") == ["task", "pixel"]
    assert parse_tiers(["pixel", "feature"]) == ["pixel", "feature"]
    for bad in ("", " , ", "pixel,semantic"):
        with pytest.raises(UsageError):
            parse_tiers(bad)


def test_metric_names_and_directions():
    assert tier_metric_names("pixel,task") == ["nmse", "psnr", "ssim", *TASK_METRICS]
    assert higher_is_better("nmse") is False
    assert higher_is_better("psnr") and higher_is_better("ssim") and higher_is_better("dice_mean")
    with pytest.raises(UsageError):
        higher_is_better("accuracy")


def test_volume_tier_metrics_crops_like_the_pixel_tier():
    from recon.metrics.fidelity import volume_metrics

    vol, _ = phantom(size=64)
    target = np.pad(vol, ((0, 0), (8, 8), (0, 0)))  # 80 x 64: fastMRI's crop is the central 64 x 64
    pred = ndi.gaussian_filter(target, (0, 1, 1))
    out = volume_tier_metrics(target, pred, "pixel,task", crop="fastmri")
    assert list(out) == tier_metric_names("pixel,task")
    want = {**volume_metrics(target, pred, crop="fastmri"), **task_metrics(vol, pred[:, 8:72])}
    assert out == pytest.approx(want)
    with pytest.raises(UsageError):
        volume_tier_metrics(target, pred[:, :40], "task", crop="fastmri")
