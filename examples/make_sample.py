"""Regenerate the bundled sample ``recon/data/sample_brain.h5`` (deterministic).

Three axial Colin 27 T1 slices through the lateral ventricles (``recon.simulate.SAMPLE_SLICES``), padded
from 217 x 181 to 224 (H, readout) x 192 (W, phase encode), 8 birdcage coils, smooth background phase,
complex Gaussian noise at SNR 30 (seed 0), no readout oversampling (keeps the file under 10 MB), written in
the fastMRI multi-coil layout with ``reconstruction_rss`` and ``acquisition = "AXT1_SIM"``.

Usage::

    python examples/make_sample.py [--out recon/data/sample_brain.h5] [--overwrite]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from recon.io.fastmri import write_fastmri_kspace
from recon.simulate import SAMPLE_SLICES, load_colin27, simulate_multicoil

SAMPLE_SHAPE = (224, 192)
SAMPLE_SEED = 0
SAMPLE_SNR = 30.0
SAMPLE_COILS = 8
SAMPLE_ACQUISITION = "AXT1_SIM"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "recon" / "data" / "sample_brain.h5"


def make_sample(out: Path, overwrite: bool = False) -> Path:
    """Simulate the sample and write it to ``out``; return the path."""
    images = load_colin27(SAMPLE_SLICES, shape=SAMPLE_SHAPE)
    sim = simulate_multicoil(images, num_coils=SAMPLE_COILS, snr=SAMPLE_SNR, seed=SAMPLE_SEED,
                             acquisition=SAMPLE_ACQUISITION)
    sim.raw.header.attrs["source"] = f"Colin 27 T1 (BSD-3-Clause), axial slices {list(SAMPLE_SLICES)}"
    return write_fastmri_kspace(out, sim.raw, overwrite=overwrite, reference="reconstruction_rss",
                                acquisition=SAMPLE_ACQUISITION)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    path = make_sample(args.out, args.overwrite)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
