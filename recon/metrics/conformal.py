"""Distribution-free calibration of per-pixel uncertainty intervals (issue 14); numpy only, no CLI.

Setting (Angelopoulos et al., ICML 2022, "Image-to-image regression with distribution-free uncertainty
quantification"): per slice ``i`` a point estimate ``m_i`` (the posterior mean magnitude), heuristic lower
and upper spreads ``lo_i, hi_i >= 0`` (from posterior samples), the truth ``t_i`` and an object mask ``O_i``,
all ``(H, W)``. For a scale ``lam >= 0`` the interval of pixel ``p`` is
``[m(p) - lam lo(p), m(p) + lam hi(p)]`` and the slice's LOSS is the fraction of object pixels it misses::

    L_i(lam) = |{p in O_i : t(p) < m(p) - lam lo(p)  or  t(p) > m(p) + lam hi(p)}| / |O_i|   in [0, 1]

``L_i`` is non-increasing and right-continuous in ``lam``. Each pixel's miss is decided by its SCORE
``r(p) = (m - t) / lo`` below the mean and ``(t - m) / hi`` above it (``inf`` where the spread is 0 and
``t != m``): ``p`` is missed iff ``r(p) > lam``. :func:`slice_scores` keeps each slice's sorted object
scores, so every ``L_i(lam)`` is exact (no grid).

Two guarantees, over exchangeable calibration and test SLICES (the unit of exchangeability; pixels of one
slice are not independent, so no guarantee treats them as such):

* :func:`crc_scale`, conformal risk control (Angelopoulos, Bates, Fisch, Lei & Schuster, ICLR 2024):
  ``lam = inf{lam : n/(n+1) Rhat_n(lam) + B/(n+1) <= alpha}`` with ``B = 1`` (the loss's bound) gives
  ``E[L_test(lam)] <= alpha``; the expected miss rate also exceeds ``alpha - 2B/(n+1)`` (tight for large n).
* :func:`rcps_scale`, a risk-controlling prediction set (Bates, Angelopoulos, Lei, Malik & Jordan, JACM 2021)
  with the Hoeffding-Bentkus upper confidence bound: ``lam = inf{lam : UCB(Rhat(lam'), n, delta) < alpha for
  all lam' >= lam}`` gives ``P(E[L_test(lam)] <= alpha) >= 1 - delta``. It is distribution-free, so it needs
  ``n >= log(delta) / log(1 - alpha)`` slices at all (22 at alpha = delta = 0.1) and is conservative with a
  few dozen (the realised miss rate is well below alpha).

One scalar ``lam``: a per-group scale (e.g. per intensity band) would need a guarantee per group (and
``n`` slices per group) to keep the overall one; the heuristic spreads already vary per pixel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: guarantees :func:`fit_scale` knows
GUARANTEES = ("crc", "rcps")


def interval_scores(mean: np.ndarray, truth: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The per-pixel score ``r`` (see the module text): ``(m - t) / lo`` where ``t < m``, ``(t - m) / hi``
    where ``t > m``, 0 where ``t == m``; ``inf`` where the relevant spread is 0. Same shape, float64."""
    m, t = np.asarray(mean, np.float64), np.asarray(truth, np.float64)
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    below = m - t
    spread = np.where(below > 0, lo, hi)
    dist = np.abs(below)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(dist == 0, 0.0, np.where(spread > 0, dist / np.where(spread > 0, spread, 1.0), np.inf))
    return r


def slice_scores(mean: np.ndarray, truth: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 obj: np.ndarray) -> np.ndarray:
    """The sorted scores of one slice's object pixels (1D float64): ``L(lam) = mean(scores > lam)``."""
    obj = np.asarray(obj, dtype=bool)
    if not obj.any():
        raise ValueError("the slice has no object pixels")
    return np.sort(interval_scores(mean, truth, lo, hi)[obj])


def slice_loss(scores: np.ndarray, lam: float) -> float:
    """``L(lam)`` = fraction of the (sorted) ``scores`` above ``lam``: the missed fraction of object pixels."""
    s = np.asarray(scores)
    return float(s.size - np.searchsorted(s, lam, side="right")) / s.size


def miss_fraction(mean: np.ndarray, truth: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                  obj: np.ndarray) -> float:
    """Fraction of object pixels whose truth lies outside ``[lower, upper]`` (all ``(..., H, W)``)."""
    obj = np.asarray(obj, dtype=bool)
    t = np.asarray(truth, np.float64)
    miss = (t < np.asarray(lower, np.float64)) | (t > np.asarray(upper, np.float64))
    return float(miss[obj].mean())


def empirical_risk(scores: list[np.ndarray], lam: float) -> float:
    """``Rhat(lam)``: the mean over slices of their losses."""
    return float(np.mean([slice_loss(s, lam) for s in scores]))


def _candidates(scores: list[np.ndarray]) -> np.ndarray:
    """Every finite score (where some loss jumps), sorted, with 0 first: the infimum of a set
    ``{lam : f(Rhat(lam)) <= c}`` of a non-increasing step function is one of these."""
    allv = np.concatenate([s[np.isfinite(s)] for s in scores] + [np.zeros(1)])
    return np.unique(allv)


def _first_ok(cands: np.ndarray, ok) -> float | None:
    """Smallest candidate with ``ok`` true, given ``ok`` monotone (false ... false true ... true); None if none."""
    lo, hi = 0, len(cands) - 1
    if not ok(cands[hi]):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(cands[mid]):
            hi = mid
        else:
            lo = mid + 1
    return float(cands[lo])


def crc_scale(scores: list[np.ndarray], alpha: float, bound: float = 1.0) -> float | None:
    """Conformal risk control: smallest ``lam`` with ``(n Rhat(lam) + bound) / (n + 1) <= alpha``
    (``E[L_test] <= alpha``); None when even the largest score leaves too much risk (``alpha (n+1) < bound``
    or infinite scores)."""
    n = len(scores)
    return _first_ok(_candidates(scores), lambda lam: (n * empirical_risk(scores, lam) + bound) / (n + 1) <= alpha)


def _binom_cdf(k: int, n: int, p: float) -> float:
    """``P(Binomial(n, p) <= k)``."""
    # deferred: loads scipy, which importing recon.metrics.conformal does not
    from scipy.stats import binom

    return float(binom.cdf(k, n, p))


def hb_pvalue(risk: float, n: int, alpha: float) -> float:
    """Hoeffding-Bentkus p-value of the null ``E[L] > alpha`` given the empirical risk of ``n`` losses in [0, 1]
    (Bates et al. 2021, Prop. 3): ``min(exp(-n h(risk, alpha)), e P(Bin(n, alpha) <= ceil(n risk)))``."""
    r = min(max(float(risk), 0.0), 1.0)
    if r >= alpha:
        hoeffding = 1.0
    else:
        h = (r * math.log(r / alpha) if r > 0 else 0.0) + (1 - r) * math.log((1 - r) / (1 - alpha))
        hoeffding = math.exp(-n * h)
    bentkus = math.e * _binom_cdf(math.ceil(n * r - 1e-12), n, alpha)
    return min(hoeffding, bentkus)


def hb_ucb(risk: float, n: int, delta: float) -> float:
    """The Hoeffding-Bentkus upper confidence bound: the smallest ``alpha`` not rejected at level ``delta``."""
    lo, hi = float(risk), 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if hb_pvalue(risk, n, mid) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def rcps_scale(scores: list[np.ndarray], alpha: float, delta: float) -> float | None:
    """RCPS with the Hoeffding-Bentkus bound: smallest ``lam`` whose p-value (and every larger ``lam``'s, the
    risk being non-increasing) is ``< delta``; None when no ``lam`` qualifies (too few slices)."""
    n = len(scores)
    return _first_ok(_candidates(scores), lambda lam: hb_pvalue(empirical_risk(scores, lam), n, alpha) < delta)


def rcps_min_slices(alpha: float, delta: float) -> int:
    """Fewest slices for which RCPS can succeed at all (zero empirical risk): ``(1 - alpha)^n < delta``."""
    return math.floor(math.log(delta) / math.log(1 - alpha)) + 1


@dataclass
class ScaleFit:
    """A fitted interval scale and what it was fitted on."""

    scale: float              #: lam
    guarantee: str            #: ``crc`` or ``rcps``
    alpha: float
    delta: float
    n: int                    #: calibration slices
    calibration_risk: float   #: Rhat(lam): mean missed fraction on the calibration slices
    ucb: float | None         #: Hoeffding-Bentkus UCB of the risk at lam (rcps)


def fit_scale(scores: list[np.ndarray], alpha: float = 0.1, delta: float = 0.1, guarantee: str = "crc") -> ScaleFit:
    """Fit ``lam`` on per-slice sorted scores (:func:`slice_scores`); ValueError when impossible (with why)."""
    if guarantee not in GUARANTEES:
        raise ValueError(f"unknown guarantee {guarantee!r}; available: {', '.join(GUARANTEES)}")
    if not 0 < alpha < 1 or not 0 < delta < 1:
        raise ValueError(f"alpha and delta must lie in (0, 1), got {alpha} and {delta}")
    n = len(scores)
    if n < 1:
        raise ValueError("no calibration slices")
    if guarantee == "crc":
        lam = crc_scale(scores, alpha)
        if lam is None:
            raise ValueError(f"conformal risk control at alpha {alpha} needs at least {math.ceil(1 / alpha)} "
                             f"calibration slices with finite scores, got {n}")
        ucb = None
    else:
        lam = rcps_scale(scores, alpha, delta)
        if lam is None:
            raise ValueError(f"RCPS at alpha {alpha}, delta {delta} needs more calibration slices than {n} "
                             f"(at least {rcps_min_slices(alpha, delta)}, in practice several times that)")
        ucb = hb_ucb(empirical_risk(scores, lam), n, delta)
    return ScaleFit(scale=lam, guarantee=guarantee, alpha=float(alpha), delta=float(delta), n=n,
                    calibration_risk=empirical_risk(scores, lam), ucb=ucb)


def intervals(mean: np.ndarray, lo: np.ndarray, hi: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` = ``(m - lam lo, m + lam hi)``, float32, same shape as ``mean``; ``lower`` is not
    clipped at 0 (a magnitude's interval may reach below it), so ``lower <= mean <= upper`` always."""
    m = np.asarray(mean, np.float32)
    lower = m - np.float32(scale) * np.asarray(lo, np.float32)
    upper = m + np.float32(scale) * np.asarray(hi, np.float32)
    return np.minimum(lower, m), np.maximum(upper, m)
