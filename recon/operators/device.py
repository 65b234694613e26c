"""Moving host arrays to the compute device: numpy arrays and CPU tensors bound for a GPU go through pinned
(page-locked) memory with an asynchronous copy, so the transfer overlaps the work queued after it instead of
blocking the host; every other move is a plain ``Tensor.to``."""
from __future__ import annotations

import warnings
from collections.abc import Callable
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


def to_host(*tensors: torch.Tensor | None) -> tuple[np.ndarray | None, ...]:
    """The tensors (None stays None) as numpy arrays, same shapes and dtypes. From a GPU every copy goes
    into pinned host memory without blocking, and the host waits once for all of them, instead of one
    blocking copy through pageable memory each."""
    on_gpu = [t for t in tensors if t is not None and t.device.type == "cuda"]
    out: list[np.ndarray | None] = []
    for t in tensors:
        if t is None or t.device.type != "cuda":
            out.append(None if t is None else t.detach().cpu().numpy())
            continue
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t.detach(), non_blocking=True)
        out.append(host)
    for dev in {t.device for t in on_gpu}:
        torch.cuda.current_stream(dev).synchronize()
    return tuple(a.numpy() if isinstance(a, torch.Tensor) else a for a in out)


def count_host_syncs(fn: Callable[[], object]) -> int:
    """How many times ``fn()`` makes the host wait for the current CUDA device (torch's sync debug mode warns
    at each synchronising call: ``.item()``, ``bool(tensor)``, blocking copies to the host, ...). Needs CUDA."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)
