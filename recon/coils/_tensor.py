"""Input handling shared by the coil tools: numpy or torch in, complex64 torch out, optional slice axis."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recon.errors import UsageError
from recon.operators.device import to_device

ArrayLike = Any  # numpy array or torch tensor


def as_complex_tensor(x: ArrayLike, name: str, ndim: tuple[int, ...], device: Any = None) -> torch.Tensor:
    """Convert ``x`` to a complex64 tensor, checking its rank is one of ``ndim``.

    Raises :class:`UsageError` naming the argument ``name`` for anything else.
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            t = torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
        except TypeError as exc:
            raise UsageError(f"{name} must be a numeric array, got {type(x).__name__} ({exc})") from None
    if t.dim() not in ndim:
        want = " or ".join(str(n) for n in ndim)
        raise UsageError(f"{name} must have {want} axes, got shape {tuple(t.shape)}")
    if t.is_complex():
        t = t.to(torch.complex64)
    elif t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        t = t.to(torch.float32).to(torch.complex64)
    else:
        raise UsageError(f"{name} must be numeric, got dtype {t.dtype}")
    if 0 in t.shape:
        raise UsageError(f"{name} has an empty axis: shape {tuple(t.shape)}")
    if device is not None:
        t = to_device(t, device)
    return t


def with_slice_axis(x: torch.Tensor, ndim_without: int) -> tuple[torch.Tensor, bool]:
    """Add a leading slice axis when ``x`` has ``ndim_without`` axes; say whether one was added."""
    if x.dim() == ndim_without:
        return x.unsqueeze(0), True
    return x, False
