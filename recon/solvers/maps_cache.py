"""Coil maps shared between methods run on the same data: ``reconstruct_file(..., maps_cache=MapsCache())``.

``recon demo`` reconstructs each undersampled slice with ``sense``, ``l1-wavelet`` and ``tv``; their ESPIRiT
maps depend on the k-space and the mask only, so the first method computes them and the others reuse them
(the result is the same as recomputing: ESPIRiT is deterministic). The cache is an explicit argument, handed
to the methods whose :class:`recon.solvers.methods.Method` says ``shares_maps``; nothing global changes.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


class MapsCache:
    """``key -> {"maps": (S, C, H, W) complex tensor, ...}``, keyed by a slice batch's k-space, mask and device."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}

    @staticmethod
    def key(kspace: np.ndarray, mask: Any, device: Any) -> str:
        """A digest of the k-space and mask bytes, plus the device name."""
        digest = hashlib.blake2b(np.ascontiguousarray(kspace).tobytes(), digest_size=16)
        if mask is not None:
            digest.update(np.ascontiguousarray(np.asarray(mask)).tobytes())
        return f"{digest.hexdigest()}:{device}"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored options (``maps``, and ``scale`` where the readout was cropped), or None."""
        return self._entries.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store ``entry`` under ``key`` (the first one stays)."""
        self._entries.setdefault(key, entry)

    def __len__(self) -> int:
        return len(self._entries)
