"""Training of the diffusion prior (``recon train --model diffusion``): images, augmentation, EDM loss, loop.

Training images are what the SENSE model sees: the coil-combined complex image ``x0 = sum_c conj(S_c)
ifft2c(k_c)`` of each fully sampled slice, with ESPIRiT maps estimated from the slice itself
(:func:`recon.solvers.reconstruct.estimate_maps`), divided by :func:`~recon.solvers.diffusion.normalise_scale`
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
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon.errors import DataError, UsageError

#: sigmas (normalised images, per real component) of the per-epoch validation
VAL_SIGMAS = (0.05, 0.1, 0.2, 0.5)


@dataclass
class DiffusionTrainConfig:
    """Everything that defines a diffusion-prior training run (stored in the checkpoint)."""

    model: str = "diffusion"
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    steps_per_epoch: int = 200
    batch_size: int = 8
    patch: int = 64
    lr: float = 5e-4
    seed: int = 0
    p_mean: float = -1.2
    p_std: float = 1.2
    ema_decay: float = 0.999
    val_sigmas: tuple[float, ...] = VAL_SIGMAS
    max_train_slices: int | None = None
    max_val_slices: int | None = None

    def check(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if int(self.patch) < 8:
            raise UsageError(f"--patch-size must be >= 8, got {self.patch}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UsageError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


def combined_image(kspace: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(C, H, W)`` or ``(1, C, H, W)`` fully sampled k-space -> ``(H, W)`` complex64 SENSE-combined image
    ``sum_c conj(S_c) ifft2c(k_c)`` with ESPIRiT maps from the same k-space (on the data's scale)."""
    from recon.operators.fft import ifft2c
    from recon.solvers.reconstruct import estimate_maps

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
    from recon.solvers.diffusion.prior import normalise_scale
    from recon.training.dataset import SliceDataset

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
        images.append((x0 / normalise_scale(x0.abs())).to(torch.complex64).contiguous())
    if log is not None:
        log(f"{len(images)} combined images from {root} ({time.perf_counter() - t0:.0f} s)")
    if cache is not None:
        from recon.io.atomic import atomic_path

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


def _jsonable(config: DiffusionTrainConfig) -> dict[str, Any]:
    d = asdict(config)
    d["val_sigmas"] = [float(s) for s in d["val_sigmas"]]
    return d


def train_diffusion(out: str | Path, train_dir: str | Path | list, val_dir: str | Path | list,
                    config: DiffusionTrainConfig, *, resume: bool = False, overwrite: bool = False,
                    device: str | torch.device = "cpu", progress: bool = True,
                    log: Callable[[str], None] | None = None,
                    on_step: Callable[[int, int, float], None] | None = None,
                    lr: float | None = None, cache: bool = True) -> list[dict[str, Any]]:
    """Train the diffusion prior; checkpoint ``out`` after every epoch (atomically). Arguments as
    :func:`recon.training.train` (``resume``, ``lr`` on resume, ``overwrite``, ``on_step(epoch, step,
    loss)``); ``cache``: keep the combined images in ``OUT.pt.images.pt`` / ``OUT.pt.val-images.pt``.

    Returns the history: one dict per epoch (``epoch``, ``lr``, ``train_loss``, ``val_loss``,
    ``psnr_{sigma}``, ``psnr_noisy_{sigma}``, ``seconds``).
    """
    from tqdm import tqdm

    from recon.solvers.learned.registry import build_model
    from recon.training.checkpoint import resume_optimizer, run_config, save_checkpoint

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    config, blob = run_config(out, config, resume=resume, overwrite=overwrite, lr=lr, models=("diffusion",),
                              tuple_keys=("val_sigmas",))
    config.check()
    dev = torch.device(device)
    train_images = load_images(train_dir, config.max_train_slices,
                               Path(str(out) + ".images.pt") if cache else None, log)
    val_images = load_images(val_dir, config.max_val_slices,
                             Path(str(out) + ".val-images.pt") if cache else None, log)

    torch.manual_seed(config.seed)
    model = build_model({"model": "diffusion", **config.model_options}).to(dev)
    ema = copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if blob is not None:
        model.load_state_dict(blob.get("train_state_dict", blob["state_dict"]))
        ema.load_state_dict(blob["state_dict"])
        history, start_epoch = resume_optimizer(blob, optimizer, config.lr)
        log(f"resuming {out} after epoch {start_epoch}")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"diffusion prior: {n_params} parameters; {len(train_images)} training / {len(val_images)} validation "
        f"images; patches {config.patch}x{config.patch}, batch {config.batch_size}; device {dev}")

    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        model.train()
        g = torch.Generator().manual_seed(int(config.seed) * 100_003 + epoch)
        losses: list[float] = []
        bar = tqdm(total=config.steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   file=sys.stderr, leave=False)
        for step in range(config.steps_per_epoch):
            x0 = random_patches(train_images, config.batch_size, config.patch, g)
            sigma = torch.exp(config.p_mean + config.p_std * torch.randn(config.batch_size, generator=g))
            noise = complex_noise(tuple(x0.shape), g)
            optimizer.zero_grad(set_to_none=True)
            loss = edm_loss(model, x0.to(dev), sigma.to(dev), noise.to(dev))
            loss.backward()
            optimizer.step()
            global_step = epoch * config.steps_per_epoch + step
            decay = min(config.ema_decay, (1 + global_step) / (10 + global_step))
            _ema_update(ema, model, decay)
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(epoch, step, losses[-1])
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        bar.close()
        metrics = evaluate_denoiser(ema, val_images, tuple(config.val_sigmas), config.seed, dev)
        record = {"epoch": epoch + 1, "lr": config.lr, "train_loss": float(np.mean(losses)),
                  **{k: v for k, v in metrics.items() if k != "seconds"},
                  "seconds": time.perf_counter() - t0}
        history.append(record)
        save_checkpoint(out, ema, optimizer, epoch=epoch + 1, history=history, train_config=_jsonable(config),
                        extra={"train_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}})
        psnrs = ", ".join(f"{s:g}: {record[f'psnr_{s:g}']:.2f} ({record[f'psnr_noisy_{s:g}']:.2f})"
                          for s in config.val_sigmas)
        log(f"epoch {epoch + 1}/{config.epochs}: train loss {record['train_loss']:.4f}, val loss "
            f"{record['val_loss']:.4f}, denoised PSNR dB (noisy) at sigma {psnrs} ({record['seconds']:.0f} s) -> {out}")
    return history
