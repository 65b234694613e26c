"""VarNet / MoDL training steps for :class:`~recon.training.trainer.Trainer`: supervised (an image loss
against the reference) and SSDU (a k-space loss on held-back samples, no reference).

Reproducibility: the order of the training slices in epoch ``e`` is a permutation drawn from a generator
seeded with ``(seed, e)``, and each example's mask from ``(seed, e, index)``
(:class:`~recon.training.transforms.UndersampleTransform`). The global RNG states are restored on resume.

``loss="ssdu"`` trains without references (:class:`~recon.training.transforms.SelfSupervisedTransform`): each
step feeds the network the DC subset of a slice's acquired samples and penalises its k-space on the held-back
loss subset; validation reports the self-validation k-space loss (``val_kspace_loss``) on fixed held-back
samples of the validation files, and NMSE/PSNR/SSIM only for validation files that have a reference.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from recon.errors import DataError
from recon.training.checkpoint import set_rng_states
from recon.training.dataset import SliceDataset
from recon.training.losses import get_loss
from recon.training.trainer import ModelStep
from recon.training.transforms import SelfSupervisedTransform, UndersampleTransform
from tqdm import tqdm
from recon.metrics import volume_metrics


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
    # deferred: loads recon.solvers.learned, which importing recon.training.supervised does not
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


class SupervisedStep(ModelStep):
    """VarNet / MoDL against the reference: each batch is ``batch_size`` training slices (gradients
    accumulated, so slices of different sizes and coil counts mix freely), each undersampled with its own mask
    and scored by ``config.loss`` against its reference; validation is fastMRI's NMSE/PSNR/SSIM."""

    transform = UndersampleTransform

    def prepare(self, train_dir, val_dir) -> None:
        self.open_slices(train_dir, val_dir)
        self.loss_fn = get_loss(self.config.loss)

    def open_slices(self, train_dir, val_dir) -> None:
        """The training and validation :class:`SliceDataset` with this step's transform."""
        c = self.config
        train_tf = self.transform(c.mask_type, c.accelerations, c.center_fractions, c.seed, "train")
        val_tf = self.transform(c.mask_type, c.accelerations, c.center_fractions, c.seed, "val")
        self.train_set = SliceDataset(train_dir, train_tf, c.max_train_slices)
        self.val_set = SliceDataset(val_dir, val_tf, c.max_val_slices)

    def validate(self, model: torch.nn.Module) -> dict[str, Any]:
        return evaluate(model, self.val_set, self.device, self.progress)

    def extra_record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Entries of the history record after ``seconds`` (none here)."""
        return {}

    def load(self, model: torch.nn.Module, blob: dict[str, Any]) -> None:
        model.load_state_dict(blob["state_dict"])
        set_rng_states(blob["rng"])

    def describe(self, model: torch.nn.Module) -> str:
        n_params = sum(p.numel() for p in model.parameters())
        return (f"{self.config.model}: {n_params} parameters; {len(self.train_set)} training / "
                f"{len(self.val_set)} validation slices; device {self.device}")

    def epoch(self, epoch: int) -> tuple[int, Iterator[tuple[list[int], int]]]:
        self.train_set.set_epoch(epoch)
        order = _epoch_order(len(self.train_set), self.config.seed, epoch)
        size = self.config.batch_size
        return len(order), ((order[i:i + size], len(order[i:i + size])) for i in range(0, len(order), size))

    def loss(self, model: torch.nn.Module, batch: list[int]) -> float:
        total = 0.0
        for i in batch:
            loss = self.item_loss(model, self.train_set[i]) / len(batch)
            loss.backward()
            total += float(loss.detach())
        return total

    def item_loss(self, model: torch.nn.Module, item: dict[str, Any]) -> torch.Tensor:
        pred = predict(model, item, self.device)
        maxval = torch.tensor([item["maxval"]], device=self.device)
        return self.loss_fn(pred, item["target"].to(self.device)[None], maxval)

    def epoch_record(self, model: torch.nn.Module, epoch: int, train_loss: float, t0: float) -> dict[str, Any]:
        metrics = self.validate(model)
        record = {"epoch": epoch + 1, "lr": self.config.lr, "train_loss": train_loss, "val_nmse": metrics["nmse"],
                  "val_psnr": metrics["psnr"], "val_ssim": metrics["ssim"], "seconds": time.perf_counter() - t0}
        record.update(self.extra_record(metrics))
        return record

    def epoch_line(self, record: dict[str, Any]) -> str:
        return (f"epoch {record['epoch']}/{self.config.epochs}: train loss {record['train_loss']:.4f}, "
                f"{describe_validation(record)} ({record['seconds']:.0f} s) -> {self.out}")


class SelfSupervisedStep(SupervisedStep):
    """SSDU (``loss="ssdu"``): the k-space loss on the held-back samples of each slice; the reference is never
    read. Validation adds the self-validation k-space loss (``val_kspace_loss``)."""

    transform = SelfSupervisedTransform

    def prepare(self, train_dir, val_dir) -> None:
        # deferred: loads recon.solvers.learned, which importing recon.training.supervised does not
        from recon.solvers.learned.adapt import kspace_loss

        self.open_slices(train_dir, val_dir)
        self.kspace_loss = kspace_loss

    def item_loss(self, model: torch.nn.Module, item: dict[str, Any]) -> torch.Tensor:
        _, k = ssdu_predict(model, item, self.device, "dc")
        return self.kspace_loss(k, item["kspace"].to(self.device)[None], item["loss"].to(self.device)[None])

    def validate(self, model: torch.nn.Module) -> dict[str, Any]:
        return evaluate_self_supervised(model, self.val_set, self.device, self.progress)

    def extra_record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"val_kspace_loss": metrics["kspace_loss"]}


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
