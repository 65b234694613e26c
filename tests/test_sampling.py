"""Cartesian masks: bit-identical to fastMRI's subsample.py (loaded by path as the oracle), 2D masks, errors."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from recon.errors import DataError, UsageError
from recon.io.types import Header
from recon.sampling import (
    ColumnMaskFunc,
    apply_mask,
    calibration_box,
    gaussian_mask,
    mask_from_options,
    poisson_disc_mask,
    seed_from_name,
    SamplingMask,
)
from recon.sampling.masks2d import radial_density_profile


def _load_oracle():
    spec = importlib.util.find_spec("fastmri")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("fastmri (test oracle) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "subsample.py"
    mod_spec = importlib.util.spec_from_file_location("fastmri_subsample_oracle", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fm():
    return _load_oracle()


ORACLE_CLASSES = {
    "random": "RandomMaskFunc",
    "equispaced": "EquiSpacedMaskFunc",
    "equispaced_fraction": "EquispacedMaskFractionFunc",
    "magic": "MagicMaskFunc",
    "magic_fraction": "MagicMaskFractionFunc",
}
# fastMRI shapes (..., H, W, 2): the width is shape[-2]
FASTMRI_SHAPES = [(1, 640, 368, 2), (1, 320, 320, 2), (1, 640, 321, 2), (1, 640, 372, 2), (15, 1, 768, 396, 2)]
# (center_fractions, accelerations, allow_any_combination)
CONFIGS = [
    ([0.08], [4], False),
    ([0.04], [8], False),
    ([0.08, 0.04], [4, 8], False),
    ([0.08, 0.04], [4, 8], True),
    ([0.08], [4, 8], True),
]
SEEDS = [0, 1, 42, 123, "file1000001.h5", "file_brain_AXT2_200_2000019.h5"]


def _oracle_seed(seed):
    return tuple(map(ord, seed)) if isinstance(seed, str) else seed


def _as_np(mask_t: torch.Tensor) -> np.ndarray:
    return mask_t.numpy().reshape(-1) > 0


@pytest.mark.parametrize("mask_type", list(ORACLE_CLASSES))
@pytest.mark.parametrize("cfs,accs,any_comb", CONFIGS)
def test_masks_equal_fastmri_per_call_seeds(fm, mask_type, cfs, accs, any_comb):
    ours = ColumnMaskFunc(mask_type, cfs, accs, allow_any_combination=any_comb)
    theirs = getattr(fm, ORACLE_CLASSES[mask_type])(cfs, accs, allow_any_combination=any_comb)
    chosen = set()
    for shape in FASTMRI_SHAPES:
        for seed in SEEDS:
            ref, ref_low = theirs(shape, seed=_oracle_seed(seed))
            mask, info = ours.sample(shape[-2], seed=seed)
            assert mask.dtype == np.bool_ and mask.shape == (shape[-2],)
            np.testing.assert_array_equal(mask, _as_np(ref), err_msg=f"{mask_type} {shape} {seed}")
            assert info["num_low_frequencies"] == ref_low
            chosen.add((info["center_fraction"], info["acceleration"]))
    if len(cfs) > 1 or len(accs) > 1:  # the random choice among the lists really happened
        assert len(chosen) > 1


@pytest.mark.parametrize("mask_type", list(ORACLE_CLASSES))
def test_masks_equal_fastmri_constructor_seed_stream(fm, mask_type):
    """Constructor seed, consecutive calls without seed, a per-call seed that must not disturb the stream."""
    cfs, accs = [0.08, 0.04], [4, 8]
    ours = ColumnMaskFunc(mask_type, cfs, accs, seed=7)
    theirs = getattr(fm, ORACLE_CLASSES[mask_type])(cfs, accs, seed=7)
    for i, seed in enumerate([None, None, 5, None, "file1.h5", None, None]):
        shape = FASTMRI_SHAPES[i % len(FASTMRI_SHAPES)]
        ref, ref_low = theirs(shape, seed=_oracle_seed(seed))
        mask, low = ours(shape[-2], seed=seed)
        np.testing.assert_array_equal(mask, _as_np(ref))
        assert low == ref_low


@pytest.mark.parametrize("mask_type", ["equispaced", "equispaced_fraction", "magic", "magic_fraction"])
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_explicit_offsets_equal_fastmri(fm, mask_type, offset):
    ours = ColumnMaskFunc(mask_type, [0.08], [4])
    theirs = getattr(fm, ORACLE_CLASSES[mask_type])([0.08], [4])
    for shape in FASTMRI_SHAPES[:4]:
        ref, _ = theirs(shape, offset=offset, seed=3)
        mask, info = ours.sample(shape[-2], offset=offset, seed=3)
        np.testing.assert_array_equal(mask, _as_np(ref))
        assert info["offset"] == offset


def test_random_mask_reaches_acceleration_on_average():
    f = ColumnMaskFunc("random", [0.08], [4], seed=0)
    fractions = [f(368)[0].mean() for _ in range(200)]
    assert abs(np.mean(fractions) - 0.25) < 0.005


@pytest.mark.parametrize("cf,accel", [(0.08, 4), (0.04, 8)])
def test_achieved_accelerations_of_the_deterministic_types(cf, accel):
    """fastMRI's documented behaviour: *_fraction reach R; plain equispaced/magic undershoot it (centre added);
    magic_fraction slightly overshoots (its outer lines overlap the centre), measured 4.27-4.33x and 8.4-8.6x."""
    for width in (320, 368, 372):
        got = {t: ColumnMaskFunc(t, [cf], [accel]).sample(width, seed=0)[1]["achieved_acceleration"]
               for t in ("equispaced_fraction", "magic_fraction", "equispaced", "magic")}
        assert abs(got["equispaced_fraction"] - accel) / accel < 0.02, got
        assert accel < got["magic_fraction"] < 1.1 * accel, got
        assert 0.75 * accel < got["equispaced"] < accel and 0.75 * accel < got["magic"] < accel, got


def test_file_name_seed_is_fastmri_per_volume_seed(fm):
    name = "file1000031.h5"
    assert seed_from_name(name) == tuple(map(ord, name))
    assert seed_from_name(f"/data/knee/multicoil_val/{name}") == tuple(map(ord, name))
    f = ColumnMaskFunc("random", [0.08, 0.04], [4, 8])
    slices = [f(368, seed=name)[0] for _ in range(3)]  # every slice of the volume: same mask
    assert all(np.array_equal(slices[0], m) for m in slices)
    ref, _ = fm.RandomMaskFunc([0.08, 0.04], [4, 8])((1, 640, 368, 2), seed=tuple(map(ord, name)))
    np.testing.assert_array_equal(slices[0], _as_np(ref))


def test_mask_from_options_matches_fastmri_and_records_parameters(fm):
    mask, info = mask_from_options("equispaced_fraction", (2, 15, 640, 368), [4, 8], [0.08, 0.04], seed="file1.h5")
    ref, ref_low = fm.EquispacedMaskFractionFunc([0.08, 0.04], [4, 8])((1, 640, 368, 2), seed=tuple(map(ord, "file1.h5")))
    np.testing.assert_array_equal(mask, _as_np(ref))
    assert info["num_low_frequencies"] == ref_low
    assert info["seed"] == "file1.h5" and info["mask_type"] == "equispaced_fraction"
    assert (info["center_fraction"], info["acceleration"]) in [(0.08, 4), (0.04, 8)]
    assert info["num_lines"] == int(mask.sum()) and info["achieved_acceleration"] == pytest.approx(368 / mask.sum())

    m42, i42 = mask_from_options("random", 368, 4, 0.08, seed=42)
    ref42, _ = fm.RandomMaskFunc([0.08], [4])((1, 640, 368, 2), seed=42)
    np.testing.assert_array_equal(m42, _as_np(ref42))
    np.testing.assert_array_equal(mask_from_options("random", 368, 4, 0.08, seed="42")[0], m42)
    assert i42["seed"] == 42

    # no seed: one is drawn and recorded, and it reproduces the mask
    m_none, i_none = mask_from_options("magic", 368, 4, 0.08)
    assert isinstance(i_none["seed"], int)
    np.testing.assert_array_equal(mask_from_options("magic", 368, 4, 0.08, seed=i_none["seed"])[0], m_none)


def test_torch_versions(fm):
    mask, _ = mask_from_options("magic", 368, 4, 0.08, seed=0)
    ref, _ = fm.MagicMaskFunc([0.08], [4])((1, 640, 368, 2), seed=0)
    t = SamplingMask(mask).fastmri_tensor(ndim=4)
    assert t.dtype == torch.float32 and t.shape == ref.shape and torch.equal(t, ref)
    tb = SamplingMask(mask).bool_tensor()
    assert tb.dtype == torch.bool and tuple(tb.shape) == (1, 1, 1, 368)


def test_apply_mask_honours_acquired_pe_like_fastmri(fm):
    rng = np.random.default_rng(0)
    s, c, h, w = 2, 3, 16, 372
    k = (rng.standard_normal((s, c, h, w)) + 1j * rng.standard_normal((s, c, h, w))).astype(np.complex64)
    k[0, 0, 0, 0] = -1 - 1j  # masked out below: must become +0, not -0
    start, end = 17, 355
    header = Header(encoded_matrix=(h, w, 1), recon_matrix=(h, w, 1), num_coils=c, acquired_pe=(start, end))
    name = "file1000001.h5"
    mask, _ = mask_from_options("equispaced_fraction", (s, c, h, w), 4, 0.08, seed=name)
    assert mask[:start].any() and mask[end:].any()  # the padding really removes lines here
    masked, used = apply_mask(k, mask, header)

    # fastMRI's apply_mask(data, mask_func, seed, padding=(start, end)) on the (.., H, W, 2) layout
    data = torch.view_as_real(torch.from_numpy(k))
    ref_mask, _ = fm.EquispacedMaskFractionFunc([0.08], [4])((1,) * 2 + tuple(data.shape[-3:]), seed=tuple(map(ord, name)))
    ref_mask[..., :start, :] = 0
    ref_mask[..., end:, :] = 0
    ref = (data * ref_mask + 0.0).numpy()
    np.testing.assert_array_equal(torch.view_as_real(torch.from_numpy(masked)).numpy(), ref)
    np.testing.assert_array_equal(used, _as_np(ref_mask))
    assert not np.signbit(masked.real[masked == 0]).any() and not np.signbit(masked.imag[masked == 0]).any()
    assert masked.dtype == np.complex64

    # no header: mask applied as is; 2D and per-slice masks broadcast over coils
    plain, used_plain = apply_mask(k, mask)
    np.testing.assert_array_equal(used_plain, mask)
    np.testing.assert_array_equal(plain[..., ~mask], 0)
    np.testing.assert_array_equal(plain[..., mask], k[..., mask])
    m2 = np.zeros((h, w), dtype=bool)
    m2[3, 5] = True
    out2, _ = apply_mask(k, m2)
    assert np.count_nonzero(out2) == s * c and out2[1, 2, 3, 5] == k[1, 2, 3, 5]


def test_apply_mask_errors():
    k = np.ones((1, 2, 8, 10), dtype=np.complex64)
    with pytest.raises(UsageError, match="does not fit k-space"):
        apply_mask(k, np.ones(9, dtype=bool))
    with pytest.raises(UsageError, match="slices, coils, H, W"):
        apply_mask(k[0], np.ones(10, dtype=bool))
    with pytest.raises(UsageError, match="boolean"):
        apply_mask(k, np.full(10, 0.5))
    bad = Header(encoded_matrix=(8, 10, 1), recon_matrix=(8, 10, 1), num_coils=2, acquired_pe=(2, 12))
    with pytest.raises(DataError, match="acquired_pe"):
        apply_mask(k, np.ones(10, dtype=bool), bad)


# ---- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mask_type="random", center_fractions=[0.08], accelerations=[0.5]), "accelerations must be >= 1"),
        (dict(mask_type="random", center_fractions=[1.5], accelerations=[4]), r"center_fractions must be in \(0, 1\]"),
        (dict(mask_type="random", center_fractions=[0.0], accelerations=[4]), r"center_fractions must be in \(0, 1\]"),
        (dict(mask_type="random", center_fractions=[-0.1], accelerations=[4]), r"center_fractions must be in \(0, 1\]"),
        (dict(mask_type="random", center_fractions=[0.08, 0.04], accelerations=[4]), "same length"),
        (dict(mask_type="equispaced", center_fractions=[0.08], accelerations=[4.5]), "integers for mask type 'equispaced'"),
        (dict(mask_type="magic", center_fractions=[0.08], accelerations=[2.5]), "integers for mask type 'magic'"),
        (dict(mask_type="random", center_fractions=[0.5], accelerations=[4]), "accelerations: 4x cannot be met"),
        (dict(mask_type="random", center_fractions=[0.08, 0.3], accelerations=[4, 8], allow_any_combination=True),
         "cannot be met with center_fractions 0.3"),
        (dict(mask_type="gaussian_blur", center_fractions=[0.08], accelerations=[4]), "mask_type must be one of"),
        (dict(mask_type="random", center_fractions=[0.08], accelerations=[]), "accelerations must not be empty"),
        (dict(mask_type="random", center_fractions=[0.08], accelerations=[4], seed=-3), "seed must be in"),
    ],
)
def test_bad_mask_parameters(kwargs, match):
    with pytest.raises(UsageError, match=match):
        ColumnMaskFunc(**kwargs)


def test_bad_shapes_offsets_and_unreachable_targets():
    f = ColumnMaskFunc("random", [0.04], [8])
    with pytest.raises(UsageError, match="shape: the phase-encode width must be at least 2"):
        f(1)
    with pytest.raises(UsageError, match="shape: width 10 is too small for center_fractions 0.04"):
        f(10)
    with pytest.raises(UsageError, match="shape must be a tuple of ints"):
        f(("a", 3))
    with pytest.raises(UsageError, match="offset must be a non-negative int"):
        ColumnMaskFunc("equispaced", [0.08], [4])(368, offset=-1)
    # centre exactly 1/R of the lines: nothing left for the outer part of these types
    with pytest.raises(UsageError, match="equispaced_fraction needs the centre to be smaller"):
        ColumnMaskFunc("equispaced_fraction", [0.25], [4])(320, seed=0)
    with pytest.raises(UsageError, match="accelerations: 4x cannot be met for width 320"):
        ColumnMaskFunc("magic_fraction", [0.25], [4])(320, seed=0)
    # rounding the centre up past W / R (W=10: round(2.6)=3 lines > 10/3.8)
    with pytest.raises(UsageError, match="accelerations: 3.8x cannot be met for width 10: the 3 centre lines alone exceed 10/3.8"):
        ColumnMaskFunc("random", [0.26], [3.8])(10, seed=0)
    with pytest.raises(UsageError, match="seed must be an int, a file name or None"):
        mask_from_options("random", 368, 4, 0.08, seed=1.5)
    with pytest.raises(UsageError, match="seed: cannot derive a seed from the empty file name"):
        seed_from_name("")


# ---- 2D masks ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,accel,calib", [((96, 96), 4, (12, 12)), ((80, 64), 6, (10, 8)), ((64, 71), 3, (9, 7))])
def test_poisson_disc_acceleration_calibration_and_density(shape, accel, calib):
    import sigpy.mri

    state = np.random.get_state()
    mask = poisson_disc_mask(shape, accel, calib, seed=5)
    after = np.random.get_state()
    assert np.array_equal(state[1], after[1]) and state[2] == after[2]  # global RNG left alone
    assert mask.dtype == np.bool_ and mask.shape == shape
    achieved = mask.size / mask.sum()
    assert abs(achieved - accel) / accel < 0.05, achieved
    assert mask[calibration_box(shape, calib)].all()
    np.testing.assert_array_equal(poisson_disc_mask(shape, accel, calib, seed=5), mask)
    assert not np.array_equal(poisson_disc_mask(shape, accel, calib, seed=6), mask)
    # against sigpy directly: same calibration region, same acceleration (within tol), similar density
    ref = sigpy.mri.poisson(shape, accel, calib=calib, seed=11, dtype=bool)
    assert abs(ref.size / ref.sum() - achieved) / accel < 0.1
    prof, prof_ref = radial_density_profile(mask, 6), radial_density_profile(ref, 6)
    assert np.all(np.diff(prof[1:]) < 0.02)  # decreasing outwards (beyond the fully sampled centre)
    np.testing.assert_allclose(prof, prof_ref, atol=0.08)


@pytest.mark.parametrize("shape,accel,calib", [((96, 96), 4, (12, 12)), ((64, 71), 8, (8, 8)), ((40, 40), 1, (4, 4))])
def test_gaussian_mask_exact_count_and_calibration(shape, accel, calib):
    mask = gaussian_mask(shape, accel, calib, seed="file1.h5")
    assert mask.sum() == round(mask.size / accel)
    assert mask[calibration_box(shape, calib)].all()
    np.testing.assert_array_equal(gaussian_mask(shape, accel, calib, seed="file1.h5"), mask)
    if accel > 1:
        prof = radial_density_profile(mask, 5)
        assert prof[0] > prof[2] > prof[4]


def test_mask2d_from_options():
    mask, info = mask_from_options("poisson", (1, 4, 96, 80), [4, 8], [0.08, 0.04], seed=3)
    assert mask.shape == (96, 80)
    assert abs(info["achieved_acceleration"] - info["acceleration"]) / info["acceleration"] < 0.05
    cf = info["center_fraction"]
    assert info["calibration"] == [round(96 * cf), round(80 * cf)]
    assert mask[calibration_box((96, 80), info["calibration"])].all()
    g, gi = mask_from_options("gaussian", (96, 80), 5, 0.1, seed="file2.h5")
    assert g.sum() == round(96 * 80 / 5) and gi["seed"] == "file2.h5"


def test_mask2d_bad_input():
    with pytest.raises(UsageError, match="acceleration must be > 1"):
        poisson_disc_mask((64, 64), 1.0)
    with pytest.raises(UsageError, match="acceleration must be >= 1"):
        gaussian_mask((64, 64), 0.5)
    with pytest.raises(UsageError, match="calibration box alone samples more than"):
        gaussian_mask((64, 64), 8, calib=(32, 32))
    with pytest.raises(UsageError, match="calib"):
        poisson_disc_mask((64, 64), 4, calib=(64, 10))
    with pytest.raises(UsageError, match="at least"):
        gaussian_mask((3, 64), 2)
    with pytest.raises(UsageError, match="needs the k-space shape"):
        mask_from_options("poisson", 368, 4, 0.08, seed=0)
    with pytest.raises(UsageError, match="same length"):
        mask_from_options("gaussian", (64, 64), [4, 8], [0.08], seed=0)
    with pytest.raises(UsageError, match="center_fractions must be in"):
        mask_from_options("gaussian", (64, 64), 4, 1.5, seed=0)
