"""The diffusion prior: a noise-conditional MMSE denoiser ``D(x, sigma) ~ E[x0 | x0 + sigma * n]`` of
coil-combined complex MR images, with EDM preconditioning (Karras et al. 2022, "Elucidating the design
space of diffusion-based generative models", Table 1).

Images are *normalised* before they reach the prior: ``x0 / normalize_scale(|x0|)``, so that the 99th
percentile of the magnitude is 1 (:func:`normalize_scale`). ``sigma`` is the standard deviation of the
Gaussian noise in each of the real and the imaginary part (so ``n = n_re + i n_im``, both N(0, 1)).

The denoiser is ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` with

* ``c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)``,
* ``c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)``,
* ``c_in = 1 / sqrt(sigma^2 + sigma_data^2)``,
* ``c_noise = log(sigma) / 4``,

where ``F`` is a small U-Net (:class:`NoiseUNet`) on the real and imaginary parts as 2 channels, conditioned
on ``c_noise`` by a sinusoidal embedding and a per-block scale/shift (FiLM). The score of the noisy-image
density follows by Tweedie: ``grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2`` (per real component).

Weights: ``recon/weights/diffusion_sim.pt`` (``recon.weights.bundled_weights("diffusion")``) or a file
written by ``recon train --model diffusion``; :func:`recon.solvers.diffusion.loading.load_prior` loads either,
without network access (the prior module itself knows nothing of weight files).
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

#: the percentile of |image| that :func:`normalize_scale` maps to 1
NORMALIZE_PERCENTILE = 99.0


def normalize_scale(image_magnitude: Tensor | np.ndarray) -> float:
    """The scale ``s`` so that ``image / s`` is normalised: the 99th percentile of ``|image|`` over the whole
    slice (any shape; complex input is taken by magnitude). Returns 1.0 for an all-zero image."""
    if isinstance(image_magnitude, Tensor):
        mag = image_magnitude.detach().abs().to(torch.float64).flatten().cpu().numpy()
    else:
        mag = np.abs(np.asarray(image_magnitude)).astype(np.float64).ravel()
    if mag.size == 0:
        return 1.0
    s = float(np.percentile(mag, NORMALIZE_PERCENTILE))
    if not s > 0 or not math.isfinite(s):
        s = float(mag.max()) if mag.size and mag.max() > 0 and math.isfinite(float(mag.max())) else 1.0
    return s


#: old spellings, deprecated for one release: old name -> new name
_RENAMED = {"normalise_scale": "normalize_scale", "NORMALISE_PERCENTILE": "NORMALIZE_PERCENTILE"}


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        warnings.warn(f"{__name__}.{name} is deprecated; use {_RENAMED[name]}", DeprecationWarning, stacklevel=2)
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class NoiseEmbedding(nn.Module):
    """``c_noise (B,) -> (B, dim)``: sinusoidal features of ``c_noise`` followed by a 2-layer MLP."""

    def __init__(self, dim: int = 64, freqs: int = 16):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(1000.0), freqs)), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * freqs, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU())

    def forward(self, c_noise: Tensor) -> Tensor:
        arg = c_noise[:, None] * self.freqs[None]
        return self.mlp(torch.cat([torch.cos(arg), torch.sin(arg)], dim=1))


def _groups(ch: int) -> int:
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


class FiLMBlock(nn.Module):
    """Residual block ``(B, cin, H, W), emb (B, E) -> (B, cout, H, W)``:
    conv3x3 -> GroupNorm -> FiLM(emb) -> SiLU -> conv3x3 -> GroupNorm -> SiLU, plus a 1x1 skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.film = nn.Linear(emb_dim, 2 * cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.norm1(self.conv1(x))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(h * (1 + scale) + shift)
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class NoiseUNet(nn.Module):
    """U-Net ``(B, 2, H, W), c_noise (B,) -> (B, 2, H, W)``; H, W multiples of ``2 ** (len(chans) - 1)``.

    ``chans``: channels per level (e.g. ``(16, 32, 48, 64)``: three poolings); one :class:`FiLMBlock` per
    level on the way down and up, one at the bottom; average-pool down, nearest-neighbour up.
    """

    def __init__(self, chans: tuple[int, ...] = (16, 32, 48, 64), emb_dim: int = 64):
        super().__init__()
        chans = tuple(int(c) for c in chans)
        self.embed = NoiseEmbedding(emb_dim)
        self.inp = nn.Conv2d(2, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        prev = chans[0]
        for c in chans:
            self.down.append(FiLMBlock(prev, c, emb_dim))
            prev = c
        self.mid = FiLMBlock(prev, prev, emb_dim)
        self.up = nn.ModuleList()
        for c in reversed(chans):
            self.up.append(FiLMBlock(prev + c, c, emb_dim))
            prev = c
        self.out = nn.Conv2d(prev, 2, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.multiple = 2 ** (len(chans) - 1)

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        emb = self.embed(c_noise)
        h = self.inp(x)
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                h = F.avg_pool2d(h, 2)
            h = block(h, emb)
            skips.append(h)
        h = self.mid(h, emb)
        for i, block in enumerate(self.up):
            if i > 0:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


def _pad(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Pad ``(B, C, H, W)`` on the last two axes to multiples of ``multiple`` (reflect where it fits, else
    zeros); returns the padding ``(left, right, top, bottom)``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if not (ph or pw):
        return x, pad
    mode = "reflect" if max(pad[0], pad[1]) < w and max(pad[2], pad[3]) < h else "constant"
    return F.pad(x, pad, mode=mode), pad


class DenoiserPrior(nn.Module):
    """``D(x, sigma) ~ E[x0 | x0 + sigma * n]``: the MMSE denoiser of normalised coil-combined complex images.

    Parameters
    ----------
    chans: U-Net channels per level (:class:`NoiseUNet`).
    emb_dim: size of the noise embedding.
    sigma_min, sigma_max: the noise range the prior was trained for (per real component, normalised images).
    sigma_data: the standard deviation of the (normalised) data per real component, for the preconditioning.

    ``forward(x, sigma)``: ``x`` complex64 ``(B, H, W)`` (any H, W; padded internally), normalised;
    ``sigma`` ``(B,)`` (or a scalar / 0-d tensor, broadcast) float; returns complex64 ``(B, H, W)``.
    """

    def __init__(self, chans: tuple[int, ...] | list[int] = (16, 32, 48, 64), emb_dim: int = 64,
                 sigma_min: float = 0.002, sigma_max: float = 10.0, sigma_data: float = 0.5):
        super().__init__()
        self.chans = tuple(int(c) for c in chans)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.sigma_data = float(sigma_data)
        self.net = NoiseUNet(self.chans, int(emb_dim))
        self.config = {"model": "diffusion", "chans": list(self.chans), "emb_dim": int(emb_dim),
                       "sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "sigma_data": self.sigma_data}

    def _sigma(self, sigma: Tensor | float, batch: int, device: torch.device) -> Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float32, device=device).flatten()
        if s.numel() == 1:
            s = s.expand(batch)
        if s.numel() != batch:
            raise ValueError(f"sigma must have {batch} values (one per image) or one, got {s.numel()}")
        return s.clamp_min(1e-8)

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        if not torch.is_complex(x) or x.ndim != 3:
            raise ValueError(f"x must be complex (B, H, W), got {tuple(x.shape)} {x.dtype}")
        b, h, w = x.shape
        s = self._sigma(sigma, b, x.device)
        sd2 = self.sigma_data ** 2
        c_skip = sd2 / (s ** 2 + sd2)
        c_out = s * self.sigma_data / (s ** 2 + sd2).sqrt()
        c_in = 1.0 / (s ** 2 + sd2).sqrt()
        c_noise = s.log() / 4
        xr = torch.stack([x.real, x.imag], dim=1).float()  # (B, 2, H, W)
        inp, pad = _pad(xr * c_in[:, None, None, None], self.net.multiple)
        f = self.net(inp, c_noise)
        left, right, top, bottom = pad
        f = f[..., top:top + h, left:left + w]
        d = c_skip[:, None, None, None] * xr + c_out[:, None, None, None] * f
        return torch.complex(d[:, 0].contiguous(), d[:, 1].contiguous())
