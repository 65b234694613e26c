"""Simulate the training and validation folders used for the bundled weights (recon/weights/MODEL_CARD.md).

Data: the Colin 27 T1 volume bundled with recon (``recon.simulate.load_colin27``; BSD-3-Clause, see
``recon/data/LICENSE-colin27``). Held-out validation: the whole axial slab 76-101 (it contains the bundled
sample's slices 80, 88, 96); training: slabs 10-71 and 106-165 (4 slices of gap on each side of the
validation slab, so no training slice is adjacent to a validation slice).

Training set = two simulated copies of the training slabs:
  * as is, padded to 224 x 192 (H readout x W phase encode), 8 birdcage coils, SNR 30;
  * mirrored left-right (the head's left-right symmetry makes this a plausible other head), padded to
    232 x 200, 12 coils, SNR 20 (another matrix size, coil count and noise level).
Validation set: slab 76-101 as is, 224 x 192, 8 coils, SNR 30 (the bundled sample's settings), other seeds.
Each file holds 4 consecutive slices with its own background phase and noise (``recon.simulate.write_dataset``).

    python examples/train_make_data.py OUT_DIR      # writes OUT_DIR/train and OUT_DIR/val
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from recon.simulate import load_colin27, write_dataset

TRAIN_SLICES = list(range(10, 72)) + list(range(106, 166))
VAL_SLICES = list(range(76, 102))


def main(out: str) -> None:
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    train = load_colin27(TRAIN_SLICES, shape=(224, 192))
    flipped = np.ascontiguousarray(load_colin27(TRAIN_SLICES, shape=(232, 200))[:, :, ::-1])
    val = load_colin27(VAL_SLICES, shape=(224, 192))
    write_dataset(root / "train", train, num_coils=8, snr=30.0, seed=1000, prefix="colin_t1")
    write_dataset(root / "train", flipped, num_coils=12, snr=20.0, seed=2000, prefix="colin_t1_flip")
    write_dataset(root / "val", val, num_coils=8, snr=30.0, seed=3000, prefix="colin_t1_val")
    print(f"{root}: {len(TRAIN_SLICES) * 2} training slices, {len(VAL_SLICES)} validation slices")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/train_data")
