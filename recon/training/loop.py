"""The training loop behind ``recon train``: reproducible, resumable, validated every epoch.

Reproducibility: the model is initialised after ``torch.manual_seed(seed)``; the order of the training slices
in epoch ``e`` is a permutation drawn from a generator seeded with ``(seed, e)``, and each example's mask
from ``(seed, e, index)`` (:class:`~recon.training.transforms.UndersampleTransform`). So a run with the same
seed and data repeats, and a run resumed from the checkpoint of epoch ``e`` continues exactly as the
uninterrupted run would (same next-step loss; tested). Checkpoints (model, optimizer, RNG states, epoch,
history) are written atomically at the end of every epoch.

``loss="ssdu"`` trains without references (:class:`~recon.training.transforms.SelfSupervisedTransform`): each
step feeds the network the DC subset of a slice's acquired samples and penalises its k-space on the held-back
loss subset; validation reports the self-validation k-space loss (``val_kspace_loss``) on fixed held-back
samples of the validation files, and NMSE/PSNR/SSIM only for validation files that have a reference.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon.errors import DataError, UsageError
from recon.training.checkpoint import resume_optimizer, save_checkpoint, set_rng_states
from recon.training.dataset import SliceDataset
from recon.training.losses import LOSSES, get_loss
from recon.training.transforms import SelfSupervisedTransform, UndersampleTransform


#: models ``--loss ssdu`` trains (they return their k-space: ``model(k, mask, return_kspace=True)``)
SSDU_MODELS = ("varnet", "modl")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint; a resumed run reuses it)."""

    model: str = "varnet"
    model_options: dict[str, Any] = field(default_factory=dict)
    mask_type: str = "random"
    accelerations: tuple[float, ...] = (4, 8)
    center_fractions: tuple[float, ...] = (0.08, 0.04)
    epochs: int = 10
    loss: str = "ssim"
    batch_size: int = 1
    lr: float = 1e-3
    seed: int = 0
    max_train_slices: int | None = None
    max_val_slices: int | None = None

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise UsageError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if self.loss == "ssdu" and self.model not in SSDU_MODELS:
            raise UsageError(f"--loss ssdu trains {' and '.join(SSDU_MODELS)} (k-space output), not {self.model}")
        if len(self.accelerations) != len(self.center_fractions):
            raise UsageError("--accelerations and --center-fractions need the same number of values")


def crop_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre crop the last two axes of ``image`` to ``size`` (fastMRI's crop: start ``(H - h) // 2``)."""
    h, w = image.shape[-2:]
    th, tw = int(size[0]), int(size[1])
    if th > h or tw > w:
        raise DataError(f"reference image {size} is larger than the k-space grid {(h, w)}")
    top, left = (h - th) // 2, (w - tw) // 2
    return image[..., top:top + th, left:left + tw]


def predict(model: torch.nn.Module, item: dict[str, Any], device: torch.device | str) -> torch.Tensor:
    """Model output for one dataset item, cropped to the target: ``(1, h, w)``."""
    kspace = item["kspace"].to(device)[None]
    mask = item["mask"].to(device)[None]
    return crop_to(model(kspace, mask), tuple(item["target"].shape[-2:]))


def evaluate(model: torch.nn.Module, dataset: SliceDataset, device: torch.device | str = "cpu",
             progress: bool = False) -> dict[str, float]:
    """Validation NMSE / PSNR / SSIM: fastMRI's volume metrics per file (data range = the file's ``max``),
    averaged over files. Also ``seconds`` (wall time)."""
    from tqdm import tqdm

    from recon.metrics import volume_metrics

    start = time.perf_counter()
    model.eval()
    volumes: dict[str, tuple[list[np.ndarray], list[np.ndarray], float]] = {}
    with torch.no_grad():
        for i in tqdm(range(len(dataset)), desc="validation", disable=not progress, file=sys.stderr, leave=False):
            item = dataset[i]
            pred = predict(model, item, device)[0].cpu().numpy()
            preds, targets, _ = volumes.setdefault(item["fname"], ([], [], item["maxval"]))
            preds.append(pred)
            targets.append(item["target"].numpy())
    per_file = [volume_metrics(np.stack(t), np.stack(p), maxval=m) for p, t, m in volumes.values()]
    out = {k: float(np.mean([r[k] for r in per_file])) for k in ("nmse", "psnr", "ssim")}
    out["seconds"] = time.perf_counter() - start
    return out


def ssdu_predict(model: torch.nn.Module, item: dict[str, Any], device: torch.device | str,
                 where: str = "dc") -> tuple[torch.Tensor, torch.Tensor]:
    """The network's ``(image (1, H, W), kspace (1, C, H, W))`` given the ``where`` subset of an SSDU item."""
    kspace = item["kspace"].to(device)[None]
    grid = item[where].to(device)[None]
    return model(kspace * grid, grid, return_kspace=True)


def evaluate_self_supervised(model: torch.nn.Module, dataset: SliceDataset, device: torch.device | str = "cpu",
                             progress: bool = False) -> dict[str, Any]:
    """SSDU validation: ``kspace_loss``, the mean self-validation k-space loss (network given every acquired
    sample but the fixed held-back ones, loss on those); and, over the files with a reference, fastMRI's
    volume ``nmse``/``psnr``/``ssim`` of the network given all acquired samples (None when no file has one);
    ``files_with_reference``; ``seconds``."""
    from tqdm import tqdm

    from recon.metrics import volume_metrics
    from recon.solvers.learned.adapt import kspace_loss

    start = time.perf_counter()
    model.eval()
    losses: list[float] = []
    volumes: dict[str, tuple[list[np.ndarray], list[np.ndarray], float]] = {}
    with torch.no_grad():
        for i in tqdm(range(len(dataset)), desc="validation", disable=not progress, file=sys.stderr, leave=False):
            item = dataset[i]
            _, k = ssdu_predict(model, item, device, "dc")
            losses.append(float(kspace_loss(k, item["kspace"].to(device)[None], item["loss"].to(device)[None])))
            if item["target"] is not None:
                image, _ = ssdu_predict(model, item, device, "mask")
                pred = crop_to(image, tuple(item["target"].shape[-2:]))[0].cpu().numpy()
                preds, targets, _ = volumes.setdefault(item["fname"], ([], [], item["maxval"]))
                preds.append(pred)
                targets.append(item["target"].numpy())
    out: dict[str, Any] = {"kspace_loss": float(np.mean(losses)), "files_with_reference": len(volumes)}
    per_file = [volume_metrics(np.stack(t), np.stack(p), maxval=m) for p, t, m in volumes.values()]
    for key in ("nmse", "psnr", "ssim"):
        out[key] = float(np.mean([r[key] for r in per_file])) if per_file else None
    out["seconds"] = time.perf_counter() - start
    return out


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
    return torch.randperm(n, generator=g).tolist()


def train(out: str | Path, train_dir: str | Path, val_dir: str | Path, config: TrainConfig, *,
          resume: bool = False, overwrite: bool = False, device: str | torch.device = "cpu",
          progress: bool = True, log: Callable[[str], None] | None = None,
          on_step: Callable[[int, int, float], None] | None = None,
          lr: float | None = None) -> list[dict[str, Any]]:
    """Train ``config.model`` on the slices of ``train_dir``, validating on ``val_dir`` after every epoch.

    Parameters
    ----------
    out: checkpoint path, written after every epoch (atomically).
    resume: continue from ``out`` if it exists (its stored :class:`TrainConfig` is used, except ``epochs``).
    lr: on resume, a new learning rate from the next epoch on (a manual step schedule: train at a high rate,
        then resume at a lower one); it is stored in the checkpoint, so a later resume keeps it.
    overwrite: start afresh even if ``out`` exists (otherwise an existing ``out`` without ``resume`` is an
        :class:`~recon.errors.OutputError` before any work).
    on_step: called as ``on_step(epoch, step, loss)`` after each optimizer step (tests, logging).

    Returns the history: one dict per epoch (``epoch``, ``train_loss``, ``val_nmse``, ``val_psnr``,
    ``val_ssim``, ``seconds``).
    """
    from tqdm import tqdm

    from recon.solvers.learned.registry import build_model
    from recon.training.checkpoint import run_config

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    config, blob = run_config(out, config, resume=resume, overwrite=overwrite, lr=lr, models=("varnet", "modl", "fastmri-varnet"),
                              tuple_keys=("accelerations", "center_fractions"))
    config.check()
    dev = torch.device(device)

    ssdu = config.loss == "ssdu"
    transform = SelfSupervisedTransform if ssdu else UndersampleTransform
    train_tf = transform(config.mask_type, config.accelerations, config.center_fractions, config.seed, "train")
    val_tf = transform(config.mask_type, config.accelerations, config.center_fractions, config.seed, "val")
    train_set = SliceDataset(train_dir, train_tf, config.max_train_slices)
    val_set = SliceDataset(val_dir, val_tf, config.max_val_slices)

    torch.manual_seed(config.seed)
    model = build_model({"model": config.model, **config.model_options}).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if blob is not None:
        model.load_state_dict(blob["state_dict"])
        set_rng_states(blob["rng"])
        history, start_epoch = resume_optimizer(blob, optimizer, config.lr)
        log(f"resuming {out} after epoch {start_epoch}")
    if ssdu:
        from recon.solvers.learned.adapt import kspace_loss
    else:
        loss_fn = get_loss(config.loss)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{config.model}: {n_params} parameters; {len(train_set)} training / {len(val_set)} validation slices; "
        f"device {dev}")

    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        model.train()
        train_set.set_epoch(epoch)
        order = _epoch_order(len(train_set), config.seed, epoch)
        losses: list[float] = []
        bar = tqdm(total=len(order), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   file=sys.stderr, leave=False)
        step = 0
        for first in range(0, len(order), config.batch_size):
            batch = order[first:first + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for i in batch:  # gradient accumulation: slices of different sizes and coil counts mix freely
                item = train_set[i]
                if ssdu:  # k-space loss on the held-back samples; the reference is never read
                    _, k = ssdu_predict(model, item, dev, "dc")
                    loss = kspace_loss(k, item["kspace"].to(dev)[None], item["loss"].to(dev)[None]) / len(batch)
                else:
                    pred = predict(model, item, dev)
                    maxval = torch.tensor([item["maxval"]], device=dev)
                    loss = loss_fn(pred, item["target"].to(dev)[None], maxval) / len(batch)
                loss.backward()
                total += float(loss.detach())
            optimizer.step()
            losses.append(total)
            if on_step is not None:
                on_step(epoch, step, total)
            step += 1
            bar.update(len(batch))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        bar.close()
        metrics = (evaluate_self_supervised if ssdu else evaluate)(model, val_set, dev, progress)
        record = {"epoch": epoch + 1, "lr": config.lr, "train_loss": float(np.mean(losses)), "val_nmse": metrics["nmse"],
                  "val_psnr": metrics["psnr"], "val_ssim": metrics["ssim"],
                  "seconds": time.perf_counter() - t0}
        if ssdu:
            record["val_kspace_loss"] = metrics["kspace_loss"]
        history.append(record)
        save_checkpoint(out, model, optimizer, epoch=epoch + 1, history=history, train_config=_jsonable(config))
        log(f"epoch {epoch + 1}/{config.epochs}: train loss {record['train_loss']:.4f}, {describe_validation(record)} "
            f"({record['seconds']:.0f} s) -> {out}")
    return history


def describe_validation(record: dict[str, Any]) -> str:
    """``val PSNR .. dB, SSIM .., NMSE ..`` (and the SSDU self-validation loss) of one history record."""
    parts = []
    if record.get("val_kspace_loss") is not None:
        parts.append(f"val k-space loss {record['val_kspace_loss']:.4f}")
    if record.get("val_psnr") is not None:
        parts.append(f"val PSNR {record['val_psnr']:.2f} dB, SSIM {record['val_ssim']:.4f}, NMSE {record['val_nmse']:.4f}")
    elif record.get("val_kspace_loss") is not None:
        parts.append("no validation references")
    return ", ".join(parts)


def _jsonable(config: TrainConfig) -> dict[str, Any]:
    d = asdict(config)
    d["accelerations"] = [float(a) for a in d["accelerations"]]
    d["center_fractions"] = [float(c) for c in d["center_fractions"]]
    return d
