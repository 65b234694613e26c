"""Non-Cartesian trajectories (radians/pixel in [-pi, pi)) and density compensation, checked with SigPy's NUFFT."""
from __future__ import annotations

import numpy as np
import pytest

from recon.errors import UsageError
from recon.sampling import (
    GOLDEN_ANGLE_DEG,
    GOLDEN_ANGLE_RAD,
    check_trajectory,
    from_cycles,
    pipe_menon_dcf,
    radial,
    radial_angles,
    radial_ramp_dcf,
    spiral,
    to_cycles,
)

N = 32  # image size of the DCF/PSF tests (small: fast)


def test_golden_angle_increments_are_exact():
    assert GOLDEN_ANGLE_DEG == pytest.approx(111.24611797498108, abs=1e-12)
    assert GOLDEN_ANGLE_RAD == pytest.approx(np.pi * 2 / (1 + np.sqrt(5)), abs=1e-15)
    theta = radial_angles(500, golden=True)
    assert np.all((theta >= 0) & (theta < np.pi))
    np.testing.assert_allclose(np.mod(np.diff(theta), np.pi), GOLDEN_ANGLE_RAD, rtol=0, atol=1e-12)
    # the spokes themselves point along those angles (direction of the positive half of each spoke)
    k = radial(500, 16, golden=True)
    last = k[:, -1]
    np.testing.assert_allclose(np.mod(np.arctan2(last[:, 1], last[:, 0]), np.pi), theta, atol=1e-12)


def test_uniform_angles():
    theta = radial_angles(7)
    np.testing.assert_allclose(np.diff(theta), np.pi / 7, atol=1e-15)
    assert theta[0] == 0 and theta[-1] < np.pi


@pytest.mark.parametrize("oversampling", [1.0, 2.0])
@pytest.mark.parametrize("golden", [False, True])
def test_radial_coverage(oversampling, golden):
    k = radial(40, 64, oversampling=oversampling, golden=golden)
    ns = int(64 * oversampling)
    assert k.shape == (40, ns, 2)
    r = np.linalg.norm(k, axis=-1)
    assert r.max() == pytest.approx(np.pi, abs=1e-12)  # max |k| = pi
    assert k.min() >= -np.pi and k.max() < np.pi  # half-open range
    np.testing.assert_array_equal(r[:, ns // 2], 0)  # every spoke through the centre
    np.testing.assert_allclose(np.diff(r[0, ns // 2:]), 2 * np.pi / ns, atol=1e-12)  # spacing 2 pi / (N os)
    check_trajectory(k)


def test_spiral_reaches_kmax_and_density():
    n, n_int = 64, 8
    k = spiral(n_int, 2000, n)
    assert k.shape == (n_int, 2000, 2)
    r = np.linalg.norm(k, axis=-1)
    assert r.max() == pytest.approx(np.pi, abs=1e-12) and np.all(r[:, -1] == pytest.approx(np.pi))
    assert r[:, 0].max() == 0 and k.min() >= -np.pi and k.max() < np.pi
    # interleaves are rotated copies: 2 pi / n_int apart (the last samples can sit on +pi, written -pi)
    a = np.arctan2(k[:, -2, 1], k[:, -2, 0])
    np.testing.assert_allclose(np.mod(np.diff(a), 2 * np.pi), 2 * np.pi / n_int, atol=1e-9)
    # constant density: at the edge, neighbouring interleaves' turns are one Nyquist step (2 pi / N) apart
    n_turns = np.pi * n / (2 * np.pi * n_int)
    assert np.pi / (n_turns * n_int) == pytest.approx(2 * np.pi / n)
    total_angle = np.unwrap(np.arctan2(k[0, 1:-1, 1], k[0, 1:-1, 0]))
    assert (total_angle[-1] - total_angle[0]) / (2 * np.pi) == pytest.approx(n_turns * 1997 / 1999, abs=1e-9)
    # variable density (alpha = 2) puts more samples inside |k| < pi / 2 than constant density
    r_vd = np.linalg.norm(spiral(n_int, 2000, n, alpha=2.0), axis=-1)
    assert (r_vd < np.pi / 2).mean() > 1.3 * (r < np.pi / 2).mean()
    assert r_vd.max() == pytest.approx(np.pi)


def test_cycles_conversion_roundtrip():
    k = radial(10, 48)
    c = to_cycles(k, (48, 48))
    assert c.min() >= -24 and c.max() < 24 and c.min() == pytest.approx(-24)
    np.testing.assert_allclose(from_cycles(c, (48, 48)), k, atol=1e-12)
    c2 = to_cycles(k, (96, 48))  # axis 0 (H) scaled by 96, axis 1 (W) by 48
    np.testing.assert_allclose(c2[..., 0], k[..., 0] * 96 / (2 * np.pi))
    np.testing.assert_allclose(c2[..., 1], k[..., 1] * 48 / (2 * np.pi))


def test_radial_ramp_dcf():
    k = radial(101, 64)
    w = radial_ramp_dcf(k)
    r = np.linalg.norm(k, axis=-1)
    assert w.shape == (101, 64)
    assert np.corrcoef(w[r > 0], r[r > 0])[0, 1] > 0.9999
    assert w.sum() == pytest.approx(np.pi**3, rel=0.01)  # area of the disc of radius pi
    with pytest.raises(UsageError, match="equally spaced samples along straight spokes"):
        radial_ramp_dcf(spiral(4, 100, 32))


@pytest.fixture(scope="module")
def radial_pm():
    k = radial(51, N)  # Nyquist: pi / 2 * N ~ 50 spokes
    return k, pipe_menon_dcf(k, (N, N))


def test_pipe_menon_matches_ramp_and_sigpy(radial_pm):
    import sigpy.mri

    k, w = radial_pm
    ramp = radial_ramp_dcf(k)
    r = np.linalg.norm(k, axis=-1)
    inner = r < 0.9 * np.pi
    assert np.corrcoef(w[inner], r[inner])[0, 1] > 0.99
    assert np.median(w[inner & (r > 0.2 * np.pi)] / ramp[inner & (r > 0.2 * np.pi)]) == pytest.approx(1, abs=0.03)
    assert w.sum() == pytest.approx(np.pi**3, rel=0.05)
    # SigPy's own Pipe-Menon (no grid oversampling, narrower kernel) is lumpier on this small grid
    # (measured: correlation with |k| 0.912 against our 0.998), so it is compared on a 64 grid below.
    ref = sigpy.mri.pipe_menon_dcf(to_cycles(k, (N, N)), (N, N), show_pbar=False)
    assert np.corrcoef(w[inner], r[inner])[0, 1] > np.corrcoef(ref[inner], r[inner])[0, 1]


def test_pipe_menon_agrees_with_sigpy():
    import sigpy.mri

    n = 64
    k = radial(101, n)
    r = np.linalg.norm(k, axis=-1)
    inner = r < 0.9 * np.pi
    w = pipe_menon_dcf(k, (n, n))
    ref = sigpy.mri.pipe_menon_dcf(to_cycles(k, (n, n)), (n, n), show_pbar=False)
    assert np.corrcoef(w[inner], ref[inner])[0, 1] > 0.99  # measured 0.998
    assert np.corrcoef(w[inner], r[inner])[0, 1] > 0.9999  # measured 0.99998


def _psf(k: np.ndarray, weights: np.ndarray) -> np.ndarray:
    import sigpy

    return np.abs(sigpy.nufft_adjoint(weights.astype(np.complex128), to_cycles(k, (N, N)), (N, N)))


def _central_energy(psf: np.ndarray) -> float:
    return float(psf[N // 2, N // 2] ** 2 / np.sum(psf**2))


def test_dcf_weighted_adjoint_is_delta_like(radial_pm):
    """Adjoint NUFFT of constant k-space: a delta at the centre once density-compensated.

    For uniform density over the disc |k| < pi, the central pixel holds pi/4 of the PSF energy (Parseval:
    disc area / square area); without compensation the radial oversampling of the centre blurs it."""
    k, w = radial_pm
    for weights in (w, radial_ramp_dcf(k)):
        psf = _psf(k, weights)
        assert np.unravel_index(psf.argmax(), psf.shape) == (N // 2, N // 2)
        assert _central_energy(psf) == pytest.approx(np.pi / 4, rel=0.05)
        off = psf.copy()
        off[N // 2 - 1:N // 2 + 2, N // 2 - 1:N // 2 + 2] = 0
        assert psf.max() > 10 * off.max()
    assert _central_energy(_psf(k, np.ones(k.shape[:-1]))) < 0.4
    # a spiral too
    ks = spiral(16, 400, N)
    ws = pipe_menon_dcf(ks, (N, N))
    psf = _psf(ks, ws)
    assert np.unravel_index(psf.argmax(), psf.shape) == (N // 2, N // 2)
    assert _central_energy(psf) == pytest.approx(np.pi / 4, rel=0.05)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: check_trajectory(np.full((2, 3, 2), 3.2)), r"trajectory must lie in \[-pi, pi\)"),
        (lambda: check_trajectory(np.full((2, 3, 2), np.pi)), r"trajectory must lie in \[-pi, pi\)"),
        (lambda: check_trajectory(to_cycles(radial(4, 32), (32, 32))), "cycles\\? convert with from_cycles"),
        (lambda: check_trajectory(np.full((2, 3, 2), np.nan)), "NaN or Inf"),
        (lambda: check_trajectory(np.zeros((5, 4))), r"shape \(\.\.\., 2\)"),
        (lambda: check_trajectory(np.zeros((5, 2), dtype=complex)), "must be real"),
        (lambda: from_cycles(np.full((3, 2), 20.0), (32, 32)), r"coord must lie in \[-pi, pi\)"),
        (lambda: to_cycles(radial(4, 32), (32,)), "does not match"),
        (lambda: radial(0, 32), "n_spokes must be an integer >= 1"),
        (lambda: radial(8, 1), "base_resolution must be an integer >= 2"),
        (lambda: radial(8, 32, oversampling=0.5), "oversampling must be >= 1"),
        (lambda: spiral(4, 100, 32, alpha=0.5), "alpha must be >= 1"),
        (lambda: spiral(4, 100, 32, kmax=4.0), r"kmax must be in \(0, pi\]"),
        (lambda: spiral(0, 100, 32), "n_interleaves must be an integer >= 1"),
        (lambda: pipe_menon_dcf(np.full((2, 3, 2), 4.0), (32, 32)), r"trajectory must lie in \[-pi, pi\)"),
        (lambda: pipe_menon_dcf(radial(4, 32), (32,)), r"image_shape must be \(H, W\)"),
        (lambda: pipe_menon_dcf(radial(4, 32), (32, 32), iterations=0), "iterations must be an int >= 1"),
    ],
)
def test_bad_trajectory_input(call, match):
    with pytest.raises(UsageError, match=match):
        call()
