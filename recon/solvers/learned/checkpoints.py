"""Read fastMRI checkpoints: a plain ``state_dict`` (``torch.save(model.state_dict(), FILE)``, e.g. the official
``knee_leaderboard_state_dict.pt``), a Lightning ``.ckpt`` from fastMRI's training scripts (``state_dict`` with
the ``varnet.`` / ``unet.`` prefix), or a recon weights file of a fastMRI-architecture model
(``config.model`` = ``fastmri-varnet`` / ``fastmri-unet``). The architecture is inferred from the keys and
shapes; nothing is unpickled (``weights_only=True``).

:func:`export_fastmri` writes a plain fastMRI state dict back (``recon export-weights IN OUT --format fastmri``).
"""
from __future__ import annotations

import os
import re
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recon.errors import CorruptFileError, DataError, InputError
from recon.solvers.learned.fastmri_unet import Unet
from recon.solvers.learned.fastmri_varnet import FastMRIVarNet

VARNET_PROBE = "sens_net.norm_unet.unet.down_sample_layers.0.layers.0.weight"
UNET_PROBE = "down_sample_layers.0.layers.0.weight"
FASTMRI_MODELS = ("fastmri-varnet", "fastmri-unet")
_EXPECTED = ("a fastMRI VarNet/U-Net checkpoint: a plain state dict with keys 'sens_net.norm_unet.unet.*' + "
             "'cascades.N.*' (VarNet) or 'down_sample_layers.N.*' + 'up_conv.N.*' (U-Net), a Lightning .ckpt "
             "holding one under 'state_dict' with the 'varnet.'/'unet.' prefix, or a recon weights file")


def _load(path: Path) -> Any:
    if not path.is_file():
        raise InputError("weights file does not exist", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for garbage files / refused pickles
        raise CorruptFileError(f"not a PyTorch weights file that loads without running code "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})", path) from None


def _tensors(d: Any) -> bool:
    return isinstance(d, dict) and bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def _strip(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def fastmri_state_dict(blob: Any) -> tuple[str, dict[str, torch.Tensor]] | None:
    """``("varnet"|"unet", state dict without prefixes)`` when ``blob`` (a loaded file) is a fastMRI
    checkpoint in any of the three forms, else None."""
    if isinstance(blob, dict) and isinstance(blob.get("config"), dict) and "state_dict" in blob:
        name = blob["config"].get("model")
        if name in FASTMRI_MODELS:
            return name.split("-", 1)[1], dict(blob["state_dict"])
        return None
    sd = blob.get("state_dict") if isinstance(blob, dict) and "state_dict" in blob else blob
    if not _tensors(sd):
        return None
    for prefix in ("", "varnet.", "model.", "module."):
        if prefix + VARNET_PROBE in sd:
            return "varnet", _strip(sd, prefix)
    for prefix in ("", "unet.", "model.", "module."):
        if prefix + UNET_PROBE in sd:
            return "unet", _strip(sd, prefix)
    return None


def _indices(sd: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in sd for m in [rx.match(k)] if m}
    return max(found) + 1 if found else 0


def infer_varnet_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """VarNet constructor arguments from a (prefix-free) fastMRI state dict's keys and shapes."""
    cascades = _indices(sd, r"cascades\.(\d+)\.dc_weight$")
    c0 = "cascades.0.model.unet."
    if cascades == 0 or c0 + UNET_PROBE not in sd:
        raise DataError("a VarNet state dict needs 'cascades.N.dc_weight' and 'cascades.N.model.unet.*' keys")
    return {"model": "fastmri-varnet", "num_cascades": cascades,
            "chans": int(sd[c0 + UNET_PROBE].shape[0]),
            "pools": _indices(sd, r"cascades\.0\.model\.unet\.down_sample_layers\.(\d+)\."),
            "sens_chans": int(sd[VARNET_PROBE].shape[0]),
            "sens_pools": _indices(sd, r"sens_net\.norm_unet\.unet\.down_sample_layers\.(\d+)\."),
            "mask_center": True}


def infer_unet_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """U-Net constructor arguments from a (prefix-free) fastMRI ``Unet`` state dict."""
    pools = _indices(sd, r"down_sample_layers\.(\d+)\.")
    last = f"up_conv.{pools - 1}.1.weight"
    if last not in sd:
        raise DataError(f"a U-Net state dict needs the final 1x1 convolution '{last}'")
    w = sd[UNET_PROBE]
    return {"model": "fastmri-unet", "in_chans": int(w.shape[1]), "out_chans": int(sd[last].shape[0]),
            "chans": int(w.shape[0]), "num_pool_layers": pools}


def build_fastmri(config: dict[str, Any]) -> nn.Module:
    """A fresh fastMRI-architecture model from ``config`` (``model`` = ``fastmri-varnet``/``fastmri-unet``)."""
    cfg = dict(config)
    name = cfg.pop("model")
    return FastMRIVarNet(**cfg) if name == "fastmri-varnet" else Unet(**cfg)


def load_fastmri_blob(blob: Any, path: str | Path, expect: str | None = None) -> nn.Module:
    """The model in a loaded file ``blob`` (CPU, eval mode); ``expect`` = ``"varnet"``/``"unet"`` or None."""
    found = fastmri_state_dict(blob)
    if found is None:
        keys = list(blob.get("state_dict", blob))[:3] if isinstance(blob, dict) else []
        raise DataError(f"not {_EXPECTED}; found keys {keys}", Path(path))
    kind, sd = found
    if expect is not None and kind != expect:
        raise DataError(f"this is a fastMRI {kind} checkpoint, but --method {expect} needs a fastMRI {expect} one",
                        Path(path))
    try:
        config = infer_varnet_config(sd) if kind == "varnet" else infer_unet_config(sd)
        model = build_fastmri(config)
        model.load_state_dict(sd, strict=True)
    except (DataError, RuntimeError, KeyError, IndexError) as exc:
        msg = str(exc).splitlines()[0][:300]
        raise DataError(f"not the fastMRI {kind} architecture fastmri 0.3.0 builds ({msg})", Path(path)) from None
    return model.eval()


@lru_cache(maxsize=8)
def _cached(path: str, mtime: float, device: str, expect: str | None) -> nn.Module:
    return load_fastmri_blob(_load(Path(path)), path, expect).to(device)


def load_fastmri(path: str | Path, device: str = "cpu", expect: str | None = None) -> nn.Module:
    """The fastMRI-architecture model stored in ``path`` (any of the three forms), eval mode, on ``device``;
    cached per (file, modification time, device)."""
    p = Path(path)
    mtime = p.stat().st_mtime if p.is_file() else 0.0
    return _cached(str(p), mtime, str(torch.device(device)), expect)


def is_fastmri_file(path: str | Path) -> bool:
    """See :func:`_is_fastmri_file` (cached per file and modification time: the pipeline asks per slice)."""
    p = Path(path)
    return _is_fastmri_file(str(p), p.stat().st_mtime if p.is_file() else 0.0)


@lru_cache(maxsize=8)
def _is_fastmri_file(path: str, mtime: float) -> bool:
    """True when ``path`` holds a fastMRI checkpoint (any form) rather than one of recon's own models.

    A file that is neither (a dict without recon's ``config`` whose keys fit no fastMRI model) also gives True,
    so that the caller reports the fastMRI expectation; unreadable files give False (recon's loader reports)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        blob = _load(p)
    except CorruptFileError:
        return False
    if isinstance(blob, dict) and isinstance(blob.get("config"), dict) and "state_dict" in blob:
        return blob["config"].get("model") in FASTMRI_MODELS
    return True


def export_fastmri(src: str | Path, out: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Write the plain fastMRI state dict of the fastMRI-architecture model in ``src`` (a recon checkpoint,
    a recon weights file, a Lightning .ckpt or a plain state dict) to ``out``, atomically.
    Returns the inferred config."""
    src, out = Path(src), Path(out)
    if out.exists() and not overwrite:
        raise InputError("output exists (use --overwrite)", out)
    blob = _load(src)
    model = load_fastmri_blob(blob, src)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(sd, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return model.config
