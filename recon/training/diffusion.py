"""Training of the diffusion prior (``recon train --model diffusion``): images, augmentation, EDM loss, and
its step of the one training loop (:class:`DiffusionStep` for :class:`~recon.training.trainer.Trainer`).

Training images are what the SENSE model sees: the coil-combined complex image ``x0 = sum_c conj(S_c)
ifft2c(k_c)`` of each fully sampled slice, with ESPIRiT maps estimated from the slice itself
(:func:`recon.solvers.reconstruct.estimate_maps`), divided by :func:`~recon.solvers.diffusion.normalize_scale`
of ``|x0|`` (99th percentile -> 1). They are computed once per run and cached next to the checkpoint
(``OUT.pt.images.pt``; recomputed when the file list or sizes change).

Each step draws ``batch_size`` random patches (``patch x patch``; centred on the object with probability
0.8), random flips / 90-degree rotations, a random global phase and a random intensity factor in [0.8, 1.25],
then ``sigma = exp(P_mean + P_std * N(0, 1))`` (log-normal, EDM's ``P_mean -1.2``, ``P_std 1.2``) and the
EDM loss ``lambda(sigma) |D(x0 + sigma n, sigma) - x0|^2`` with ``lambda = (sigma^2 + sigma_data^2) /
(sigma sigma_data)^2`` (mean over the real and imaginary parts of every pixel).

Reproducibility: every random draw of epoch ``e`` comes from a generator seeded with ``(seed, e)``, so a run
resumed from the checkpoint of epoch ``e`` continues exactly as the uninterrupted run. The exported weights
(``state_dict``) are an exponential moving average (EMA) of the trained weights (EDM does the same); the raw
weights are kept in the checkpoint as ``train_state_dict`` for resuming.

Validation (every epoch, on whole held-out images): for each sigma in ``val_sigmas`` a fixed noise draw,
the EDM loss and the PSNR of ``D(x0 + sigma n)`` and of the noisy input against ``x0`` (complex images,
``10 log10(max|x0|^2 / mean |.-x0|^2)``, mean over slices).
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon.errors import DataError
from recon.training.config import VAL_SIGMAS, TrainConfig
from recon.training.trainer import ModelStep, Trainer
from recon.operators.fft import ifft2c
from recon.solvers.reconstruct import estimate_maps
from recon.training.dataset import SliceDataset
from recon.io.atomic import atomic_path



def combined_image(kspace: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(C, H, W)`` or ``(1, C, H, W)`` fully sampled k-space -> ``(H, W)`` complex64 SENSE-combined image
    ``sum_c conj(S_c) ifft2c(k_c)`` with ESPIRiT maps from the same k-space (on the data's scale)."""
    k = torch.as_tensor(np.asarray(kspace) if not isinstance(kspace, torch.Tensor) else kspace)
    if k.ndim == 3:
        k = k[None]
    k = k.to(torch.complex64)
    maps = estimate_maps(k, None)  # (1, C, H, W)
    return (maps.conj() * ifft2c(k)).sum(dim=1)[0]


def load_images(root: str | Path | list[str | Path], max_slices: int | None = None,
                cache: str | Path | None = None, log: Callable[[str], None] | None = None) -> list[torch.Tensor]:
    """The normalised combined images ``(H, W)`` complex64 of every slice in ``root`` (a folder of fully
    sampled fastMRI-layout files, as :class:`~recon.training.SliceDataset` lists them).

    ``cache``: a file to read them from if it was made from the same files (names, sizes, mtimes) and
    ``max_slices``, else to write them to.
    """
    # deferred: loads recon.solvers.diffusion, recon.solvers.learned, which importing recon.training.diffusion does not
    from recon.solvers.diffusion.prior import normalize_scale

    ds = SliceDataset(root, None, max_slices)
    key = [[str(p), int(p.stat().st_size), float(p.stat().st_mtime)] for p in ds.files] + [[max_slices]]
    key_s = repr(key)
    if cache is not None and Path(cache).is_file():
        try:
            blob = torch.load(cache, map_location="cpu", weights_only=True)
            if blob.get("key") == key_s:
                return list(blob["images"])
        except Exception:  # a stale or broken cache is recomputed
            pass
    t0 = time.perf_counter()
    images = []
    for i in range(len(ds)):
        raw = ds.read(i)
        if raw.is_undersampled:
            raise DataError("diffusion training needs fully sampled k-space", ds.examples[i].path)
        x0 = combined_image(raw.kspace)
        images.append((x0 / normalize_scale(x0.abs())).to(torch.complex64).contiguous())
    if log is not None:
        log(f"{len(images)} combined images from {root} ({time.perf_counter() - t0:.0f} s)")
    if cache is not None:
        with atomic_path(cache, overwrite=True) as tmp:
            torch.save({"key": key_s, "images": images}, tmp)
    return images


def random_patches(images: list[torch.Tensor], batch: int, patch: int, g: torch.Generator) -> torch.Tensor:
    """``(batch, patch, patch)`` complex64 augmented patches of randomly chosen ``images`` (see module doc);
    images smaller than ``patch`` are zero-padded. All randomness from ``g``."""
    out = []
    for _ in range(batch):
        x = images[int(torch.randint(len(images), (1,), generator=g))]
        h, w = x.shape
        ph, pw = max(0, patch - h), max(0, patch - w)
        if ph or pw:
            x = torch.nn.functional.pad(x[None], (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))[0]
            h, w = x.shape
        if float(torch.rand((), generator=g)) < 0.8:
            idx = torch.nonzero(x.abs() > 0.1)
            if len(idx):
                cy, cx = idx[int(torch.randint(len(idx), (1,), generator=g))].tolist()
            else:
                cy, cx = h // 2, w // 2
            top = min(max(cy - patch // 2, 0), h - patch)
            left = min(max(cx - patch // 2, 0), w - patch)
        else:
            top = int(torch.randint(h - patch + 1, (1,), generator=g))
            left = int(torch.randint(w - patch + 1, (1,), generator=g))
        p = x[top:top + patch, left:left + patch]
        p = torch.rot90(p, int(torch.randint(4, (1,), generator=g)), dims=(0, 1))
        if float(torch.rand((), generator=g)) < 0.5:
            p = p.flip(1)
        phase = float(torch.rand((), generator=g)) * 2 * math.pi
        scale = math.exp((float(torch.rand((), generator=g)) * 2 - 1) * math.log(1.25))
        out.append(p * complex(scale * math.cos(phase), scale * math.sin(phase)))
    return torch.stack(out).to(torch.complex64)


def complex_noise(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """Complex Gaussian noise with N(0, 1) real and imaginary parts."""
    return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))


def edm_loss(model: torch.nn.Module, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """EDM's weighted denoising loss (0-d): ``mean lambda(sigma) |D(x0 + sigma n) - x0|^2 / 2`` (per real
    component); ``x0`` ``(B, H, W)`` complex, ``sigma`` ``(B,)``, ``noise`` like ``x0``."""
    sd = model.sigma_data
    weight = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
    d = model(x0 + sigma[:, None, None] * noise, sigma)
    err = (d - x0).abs().square().flatten(1).mean(1) / 2
    return (weight * err).mean()


def psnr_complex(estimate: torch.Tensor, target: torch.Tensor) -> float:
    """``10 log10(max|target|^2 / mean|estimate - target|^2)`` of complex images."""
    mse = float((estimate - target).abs().square().mean())
    peak = float(target.abs().max())
    return 10 * math.log10(peak ** 2 / max(mse, 1e-30))


def evaluate_denoiser(model: torch.nn.Module, images: list[torch.Tensor], sigmas: tuple[float, ...] = VAL_SIGMAS,
                      seed: int = 0, device: str | torch.device = "cpu") -> dict[str, float]:
    """Denoising quality of ``model`` on whole images at fixed sigmas (fixed noise from ``seed``).

    Returns ``val_loss`` (EDM loss averaged over sigmas and images) and per sigma ``psnr_{sigma}`` (of
    ``D(x0 + sigma n)``) and ``psnr_noisy_{sigma}`` (of the noisy input), means over images; ``seconds``.
    """
    t0 = time.perf_counter()
    model.eval()
    out: dict[str, float] = {}
    losses = []
    with torch.no_grad():
        for j, s in enumerate(sigmas):
            g = torch.Generator().manual_seed(int(seed) * 7919 + 1000 + j)
            ps, pn = [], []
            for x0 in images:
                x0 = x0[None].to(device)
                n = complex_noise(tuple(x0.shape), g).to(device)
                sig = torch.full((1,), float(s), device=device)
                y = x0 + s * n
                d = model(y, sig)
                sd = model.sigma_data
                losses.append(float((s ** 2 + sd ** 2) / (s * sd) ** 2 * (d - x0).abs().square().mean() / 2))
                ps.append(psnr_complex(d, x0))
                pn.append(psnr_complex(y, x0))
            out[f"psnr_{s:g}"] = float(np.mean(ps))
            out[f"psnr_noisy_{s:g}"] = float(np.mean(pn))
    out["val_loss"] = float(np.mean(losses))
    out["seconds"] = time.perf_counter() - t0
    return out


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1.0 - decay)
        for be, bm in zip(ema.buffers(), model.buffers()):
            be.copy_(bm)


class DiffusionStep(ModelStep):
    """The diffusion prior's step: ``batch_size`` augmented patches per optimizer step (:func:`random_patches`,
    log-normal sigmas, :func:`edm_loss`), all drawn from a generator seeded with ``(seed, epoch)``; an EMA of
    the weights (decay ``min(ema_decay, (1 + t) / (10 + t))`` at global step ``t``) is validated
    (:func:`evaluate_denoiser`) and is the checkpoint's ``state_dict``; the trained weights are its
    ``train_state_dict``. The combined images are cached next to the checkpoint (``cache``)."""

    smoothing = 50

    def prepare(self, train_dir, val_dir) -> None:
        c, out = self.config, self.out
        self.train_images = load_images(train_dir, c.max_train_slices,
                                        Path(str(out) + ".images.pt") if self.cache else None, self.log)
        self.val_images = load_images(val_dir, c.max_val_slices,
                                      Path(str(out) + ".val-images.pt") if self.cache else None, self.log)

    def attach(self, model: torch.nn.Module) -> None:
        self.ema = copy.deepcopy(model)

    def load(self, model: torch.nn.Module, blob: dict[str, Any]) -> None:
        model.load_state_dict(blob.get("train_state_dict", blob["state_dict"]))
        self.ema.load_state_dict(blob["state_dict"])

    def describe(self, model: torch.nn.Module) -> str:
        c = self.config
        n_params = sum(p.numel() for p in model.parameters())
        return (f"diffusion prior: {n_params} parameters; {len(self.train_images)} training / "
                f"{len(self.val_images)} validation images; patches {c.patch}x{c.patch}, batch {c.batch_size}; "
                f"device {self.device}")

    def epoch(self, epoch: int) -> tuple[int, Iterator[tuple[tuple[torch.Tensor, ...], int]]]:
        c = self.config
        g = torch.Generator().manual_seed(int(c.seed) * 100_003 + epoch)

        def draws() -> Iterator[tuple[tuple[torch.Tensor, ...], int]]:
            for _ in range(c.steps_per_epoch):
                x0 = random_patches(self.train_images, c.batch_size, c.patch, g)
                sigma = torch.exp(c.p_mean + c.p_std * torch.randn(c.batch_size, generator=g))
                noise = complex_noise(tuple(x0.shape), g)
                yield (x0, sigma, noise), 1

        return c.steps_per_epoch, draws()

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> float:
        x0, sigma, noise = batch
        loss = edm_loss(model, x0.to(self.device), sigma.to(self.device), noise.to(self.device))
        loss.backward()
        return float(loss.detach())

    def after_update(self, model: torch.nn.Module, epoch: int, step: int) -> None:
        global_step = epoch * self.config.steps_per_epoch + step
        decay = min(self.config.ema_decay, (1 + global_step) / (10 + global_step))
        _ema_update(self.ema, model, decay)

    def epoch_record(self, model: torch.nn.Module, epoch: int, train_loss: float, t0: float) -> dict[str, Any]:
        c = self.config
        metrics = evaluate_denoiser(self.ema, self.val_images, tuple(c.val_sigmas), c.seed, self.device)
        return {"epoch": epoch + 1, "lr": c.lr, "train_loss": train_loss,
                **{k: v for k, v in metrics.items() if k != "seconds"}, "seconds": time.perf_counter() - t0}

    def saved_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.ema

    def checkpoint_extra(self, model: torch.nn.Module) -> dict[str, Any]:
        return {"train_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}

    def epoch_line(self, record: dict[str, Any]) -> str:
        c = self.config
        psnrs = ", ".join(f"{s:g}: {record[f'psnr_{s:g}']:.2f} ({record[f'psnr_noisy_{s:g}']:.2f})"
                          for s in c.val_sigmas)
        return (f"epoch {record['epoch']}/{c.epochs}: train loss {record['train_loss']:.4f}, val loss "
                f"{record['val_loss']:.4f}, denoised PSNR dB (noisy) at sigma {psnrs} ({record['seconds']:.0f} s) "
                f"-> {self.out}")


def DiffusionTrainConfig(**fields: Any) -> TrainConfig:  # noqa: N802 (the old class name)
    """Deprecated: ``TrainConfig(model="diffusion", ...)`` (one config type for every model)."""
    warnings.warn("DiffusionTrainConfig is deprecated; use recon.training.TrainConfig(model='diffusion', ...)",
                  DeprecationWarning, stacklevel=2)
    return TrainConfig(**{"model": "diffusion", **fields})


def train_diffusion(out: str | Path, train_dir: str | Path | list, val_dir: str | Path | list,
                    config: TrainConfig, *, resume: bool = False, overwrite: bool = False,
                    device: str | torch.device = "cpu", progress: bool = True,
                    log: Callable[[str], None] | None = None,
                    on_step: Callable[[int, int, float], None] | None = None,
                    lr: float | None = None, cache: bool = True) -> list[dict[str, Any]]:
    """Deprecated: :func:`recon.training.train` trains every model (the diffusion prior included)."""
    warnings.warn("train_diffusion is deprecated; use recon.training.train", DeprecationWarning, stacklevel=2)
    trainer = Trainer(out, config, DiffusionStep, resume=resume, overwrite=overwrite, device=device,
                      progress=progress, log=log, lr=lr, cache=cache)
    return trainer.fit(train_dir, val_dir, on_step)
