"""Posterior samplers with a diffusion prior on our SENSE operator: DDS (fast, CG data consistency) and DPS.

The image model (one slice): ``y = A x + n`` with ``A = M F S`` (:class:`recon.operators.Sense`; maps
``(C, H, W)``, any 1D/2D mask, any coil count), ``x`` the coil-combined complex image ``(H, W)``. The samplers
work on NORMALISED images (``x / s``, ``y / s``; :func:`recon.solvers.diffusion.prior.normalize_scale`) and
draw ``K`` samples at once: every image tensor is ``(K, H, W)`` complex64 and the operator broadcasts its maps
over the leading sample axis.

The denoiser ``D(x, sigma)`` (:class:`~recon.solvers.diffusion.prior.DenoiserPrior`, or any callable with the
same signature) estimates ``E[x0 | x0 + sigma n]`` for complex Gaussian ``n`` with unit variance in EACH of the
real and imaginary parts. Noise levels follow the EDM / Karras et al. (2022) schedule
(:func:`karras_sigmas`, ``rho = 7``) from ``sigma_max`` down to ``sigma_min``, then 0.

* :func:`dds_sample` (Chung, Lee & Ye, "Decomposed diffusion sampler", ICLR 2024): per step the Tweedie
  estimate ``x0_hat = D(x_t, sigma_t)``, then a few CG steps on ``(A^H A + gamma I) x = A^H y + gamma x0_hat``
  started at ``x0_hat`` (data consistency on the clean-image manifold, no network gradient), then a DDIM
  re-noising to ``sigma_{t+1}`` with stochasticity ``eta`` that reuses the step's noise estimate.
* :func:`dps_sample` (Chung et al., "Diffusion posterior sampling", ICLR 2023): the DDIM/ancestral step of the
  prior, then a gradient step ``x <- x - zeta * grad_x ||y - A D(x_t, sigma_t)||_2`` through the denoiser
  (autograd). DPS's own form ``zeta' / ||r|| * grad ||r||^2`` is the same with ``zeta = 2 zeta'``. It needs
  many more steps than DDS (the paper uses 1000).

"Exactly data-consistent" (``hard_dc=True``): the last image is moved, by CG on ``A^H A x = A^H y`` started at
the sample (no Tikhonov term), to the least-squares solution nearest to it within the Krylov space: its
component in the null space of ``A`` (what the prior filled in) is kept and its range component is fitted to
the data. When ``y`` lies in the range of ``A`` (noiseless data from the SENSE model) this makes
``||A x - y|| / ||y||`` as small as CG gets it (< 1e-3 in the tests); for one coil with a unit-magnitude map
``A^H A`` is a projection, one CG step is exact and ``M F x == y`` to float32 precision (sampled k-space is
replaced exactly). On noisy data the measured noise is then kept in the sampled k-space (as in any
exactly-consistent reconstruction), so the pipeline's default is the soft DC of the last DDS step.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from recon.errors import UsageError
from recon.operators import Sense
from recon.operators.device import to_device
from recon.solvers.cg import conjugate_gradient

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SAMPLERS = ("dds", "dps")


@dataclass
class SenseData:
    """One slice's measurement model ``y = M F S x`` for samplers batched over samples.

    Attributes
    ----------
    op: :class:`Sense` with maps ``(C, H, W)`` and the mask; images ``(K, H, W)`` -> k-space ``(K, C, H, W)``.
    y: measured (masked) k-space ``(C, H, W)`` complex64, on the same scale as the images.
    aty: ``A^H y`` ``(H, W)``.
    """

    op: Sense
    y: torch.Tensor
    aty: torch.Tensor

    @classmethod
    def build(cls, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor | None) -> "SenseData":
        """From k-space ``(C, H, W)``, maps ``(C, H, W)`` and a mask broadcastable to it (None = all sampled)."""
        if kspace.ndim != 3 or tuple(maps.shape) != tuple(kspace.shape):
            raise UsageError(f"k-space {tuple(kspace.shape)} and maps {tuple(maps.shape)} must both be (C, H, W)")
        op = Sense(maps, mask)
        y = kspace if mask is None else kspace * mask.to(device=kspace.device, dtype=kspace.real.dtype)
        return cls(op, y, op.adjoint(y))

    @property
    def shape(self) -> tuple[int, int]:
        """The image grid ``(H, W)``."""
        return tuple(self.op.ishape)  # type: ignore[return-value]

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` for ``x`` ``(..., H, W)``."""
        return self.op.normal()(x)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``A x - y`` ``(K, C, H, W)``."""
        return self.op(x) - self.y

    def scaled(self, factor: float) -> "SenseData":
        """The same model with data (and ``A^H y``) divided by ``factor`` (image normalisation)."""
        return SenseData(self.op, self.y / factor, self.aty / factor)

    def data_consistency(self, x0: torch.Tensor, gamma: float, iterations: int, tol: float = 1e-6) -> torch.Tensor:
        """``iterations`` CG steps on ``(A^H A + gamma I) x = A^H y + gamma x0`` started at ``x0`` ``(K, H, W)``.

        With ``gamma = 0`` this is the least-squares fit nearest to ``x0`` (its null-space part is kept).
        """
        if iterations <= 0:
            return x0
        b = self.aty.expand_as(x0) + gamma * x0 if gamma else self.aty.expand_as(x0).clone()
        return conjugate_gradient(self.normal, b, x0, lam=float(gamma), max_iter=int(iterations), tol=tol).image


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """The EDM noise levels ``(steps + 1,)`` float32: ``steps`` levels from ``sigma_max`` to ``sigma_min``
    (spaced uniformly in ``sigma^(1/rho)``), then 0."""
    if steps < 1:
        raise UsageError(f"steps must be >= 1, got {steps}")
    if not 0 < sigma_min <= sigma_max:
        raise UsageError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    i = torch.arange(steps, dtype=torch.float64)
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    frac = i / max(steps - 1, 1)
    sig = (hi + frac * (lo - hi)) ** rho
    return torch.cat([sig, torch.zeros(1, dtype=torch.float64)]).to(torch.float32).to(device)


def complex_noise(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Complex Gaussian noise ``shape`` complex64 on ``device`` with unit variance in each of the real and
    imaginary parts, drawn on the generator's device (the CPU: :func:`_generator`) and moved."""
    noise = torch.randn(*shape, 2, generator=generator, device=generator.device, dtype=torch.float32)
    return torch.view_as_complex(to_device(noise, device))


def _generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``, whatever device the sampler runs on: the same seed then gives
    the same noise, and the same samples to rounding, on the CPU and on a GPU (drawing ~1.6 M normals on the
    CPU takes ~5 ms and overlaps the queued GPU work)."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def _renoise(x0: torch.Tensor, eps: torch.Tensor, sigma: float, sigma_next: float, eta: float,
             gen: torch.Generator) -> torch.Tensor:
    """DDIM step of the variance-exploding process: ``x0 + sqrt(s'^2 - c^2) eps + c z``,
    ``c = eta s' sqrt(1 - s'^2 / s^2)`` (``eta = 0``: deterministic DDIM; ``eta = 1``: ancestral sampling)."""
    if sigma_next <= 0:
        return x0
    c = eta * sigma_next * math.sqrt(max(1.0 - (sigma_next / sigma) ** 2, 0.0))
    out = x0 + math.sqrt(max(sigma_next ** 2 - c ** 2, 0.0)) * eps
    if c > 0:
        out = out + c * complex_noise(tuple(x0.shape), gen, x0.device)
    return out


def _check(samples: int, steps: int, eta: float) -> None:
    if int(samples) < 1:
        raise UsageError(f"samples must be >= 1, got {samples}")
    if int(steps) < 1:
        raise UsageError(f"steps must be >= 1, got {steps}")
    if not 0.0 <= float(eta) <= 1.0:
        raise UsageError(f"eta must be in [0, 1], got {eta}")


def _sigma_range(denoiser: Denoiser, sigma_min: float | None, sigma_max: float | None) -> tuple[float, float]:
    lo = sigma_min if sigma_min is not None else float(getattr(denoiser, "sigma_min", 0.002))
    hi = sigma_max if sigma_max is not None else float(getattr(denoiser, "sigma_max", 10.0))
    return float(lo), float(hi)


def _start(data: SenseData, samples: int, sigma0: float, gen: torch.Generator,
           init: torch.Tensor | None = None) -> torch.Tensor:
    """``init + sigma0 * n`` (``init`` = 0 when None: a pure-noise start), ``(samples, H, W)``."""
    h, w = data.shape
    x = sigma0 * complex_noise((samples, h, w), gen, data.aty.device)
    return x if init is None else x + init.to(x.device, torch.complex64)


def _hard_dc(data: SenseData, x: torch.Tensor, iterations: int) -> torch.Tensor:
    return data.data_consistency(x, 0.0, iterations, tol=1e-7)


def dds_sample(
    denoiser: Denoiser,
    data: SenseData,
    *,
    samples: int = 4,
    steps: int = 12,
    eta: float = 0.85,
    gamma: float = 0.05,
    cg_iterations: int = 5,
    hard_dc: bool = False,
    hard_dc_iterations: int = 100,
    seed: int = 0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    init: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Draw ``samples`` posterior samples with DDS; returns ``(samples, H, W)`` complex64 (normalised units).

    Parameters
    ----------
    denoiser: ``D(x (K, H, W) complex, sigma (K,)) -> (K, H, W)``; its ``sigma_min``/``sigma_max`` attributes
        are the defaults of the schedule.
    data: the (normalised) measurement model :class:`SenseData`.
    samples: ``K``, drawn as one batch.
    steps: number of denoiser evaluations (noise levels of :func:`karras_sigmas`).
    eta: DDIM stochasticity in ``[0, 1]`` (0 = deterministic given the start noise).
    gamma: weight of the denoised image in the CG data-consistency problem (normalised units; larger trusts
        the prior more). ``cg_iterations``: CG steps per sampling step.
    hard_dc: finish with ``hard_dc_iterations`` CG steps on ``A^H A x = A^H y`` (see the module docstring).
    seed: seeds a :class:`torch.Generator`; the same seed gives the same samples on the same device.
    sigma_min, sigma_max, rho: the schedule (defaults: the denoiser's range, rho 7).
    init: start from ``init + sigma_max n`` instead of pure noise (``(H, W)`` or ``(K, H, W)``, normalised):
        with a smaller ``sigma_max`` the chain starts closer to the answer and needs fewer steps ("come closer,
        diffuse faster", Chung et al., CVPR 2022).
    callback: ``callback(step, x0)`` after each step (e.g. progress).
    """
    _check(samples, steps, eta)
    lo, hi = _sigma_range(denoiser, sigma_min, sigma_max)
    dev = data.aty.device
    sigmas = karras_sigmas(int(steps), lo, hi, rho).tolist()
    gen = _generator(seed)
    x = _start(data, int(samples), sigmas[0], gen, init)
    x0 = x
    with torch.no_grad():
        for i in range(int(steps)):
            s, s_next = sigmas[i], sigmas[i + 1]
            x0_hat = denoiser(x, torch.full((x.shape[0],), s, device=dev)).to(torch.complex64)
            eps = (x - x0_hat) / s
            x0 = data.data_consistency(x0_hat, gamma, cg_iterations)
            x = _renoise(x0, eps, s, s_next, eta, gen)
            if callback is not None:
                callback(i, x0)
        if hard_dc:
            x0 = _hard_dc(data, x0, hard_dc_iterations)
    return x0


def dps_sample(
    denoiser: Denoiser,
    data: SenseData,
    *,
    samples: int = 4,
    steps: int = 50,
    eta: float = 1.0,
    zeta: float = 30.0,
    hard_dc: bool = False,
    hard_dc_iterations: int = 100,
    seed: int = 0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    init: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Draw ``samples`` posterior samples with DPS; returns ``(samples, H, W)`` complex64 (normalised units).

    Per step: ``x0_hat = D(x_t, sigma_t)`` with autograd on, the prior's DDIM step (``eta``; 1 = ancestral, as
    in DPS) from ``x0_hat``, then ``x <- x - zeta * grad_{x_t} ||y - A x0_hat||_2`` per sample (DPS's step size
    ``zeta' / ||y - A x0_hat||`` on the squared norm, with ``zeta = 2 zeta'``; in normalised units, the
    default 30 was the best of 1 / 3 / 10 / 30 on the bundled sample at 8x with the bundled prior, 40 steps
    from the CG-SENSE image at noise 1). Other parameters as :func:`dds_sample`.
    """
    _check(samples, steps, eta)
    if not float(zeta) >= 0:
        raise UsageError(f"zeta must be >= 0, got {zeta}")
    lo, hi = _sigma_range(denoiser, sigma_min, sigma_max)
    dev = data.aty.device
    sigmas = karras_sigmas(int(steps), lo, hi, rho).tolist()
    gen = _generator(seed)
    x = _start(data, int(samples), sigmas[0], gen, init)
    x0_hat = x
    for i in range(int(steps)):
        s, s_next = sigmas[i], sigmas[i + 1]
        xt = x.detach().requires_grad_(True)
        with torch.enable_grad():
            x0_hat = denoiser(xt, torch.full((x.shape[0],), s, device=dev)).to(torch.complex64)
            r = data.residual(x0_hat)
            norms = (r.real.square() + r.imag.square()).sum(dim=(-3, -2, -1)).clamp_min(1e-30).sqrt()
            (grad,) = torch.autograd.grad(norms.sum(), xt)
        with torch.no_grad():
            x0_hat = x0_hat.detach()
            eps = (xt.detach() - x0_hat) / s
            x = _renoise(x0_hat, eps, s, s_next, eta, gen)
            if s_next > 0:
                x = x - zeta * grad
        if callback is not None:
            callback(i, x0_hat)
    with torch.no_grad():
        out = x0_hat if not hard_dc else _hard_dc(data, x0_hat, hard_dc_iterations)
    return out


def sample(sampler: str, denoiser: Denoiser, data: SenseData, **options) -> torch.Tensor:
    """:func:`dds_sample` or :func:`dps_sample` by name (``"dds"`` / ``"dps"``)."""
    if sampler == "dds":
        return dds_sample(denoiser, data, **options)
    if sampler == "dps":
        return dps_sample(denoiser, data, **options)
    raise UsageError(f"unknown sampler {sampler!r}; available: {', '.join(SAMPLERS)}")
