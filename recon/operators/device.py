"""Moving host arrays to the compute device: numpy arrays and CPU tensors bound for a GPU go through pinned
(page-locked) memory with an asynchronous copy, so the transfer overlaps the work queued after it instead of
blocking the host; every other move is a plain ``Tensor.to``."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_device(x: np.ndarray | torch.Tensor, device: Any = None) -> torch.Tensor:
    """``x`` (numpy array or tensor, any shape and dtype) as a tensor on ``device`` (None: where it is, the CPU
    for numpy), same shape and dtype. Host -> CUDA copies are pinned and non-blocking; the copy is ordered
    before any later work on the current stream, so the result can be used at once."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    if device is None:
        return t
    dev = torch.device(device)
    if dev.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(dev, non_blocking=True)
    return t.to(dev)
