"""Nyquist ghost-to-signal ratio and readout edge width of EPI images (defined in ``recon.io.ghost``, where
the EPI readers use them to detect unflagged EPI; re-exported here with the other metrics)."""
from __future__ import annotations

from recon.io.ghost import edge_width, ghost_to_signal_ratio, object_mask

__all__ = ["object_mask", "ghost_to_signal_ratio", "edge_width"]
