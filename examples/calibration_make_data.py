"""Calibration and test folders for ``recon calibrate`` (issue 14): data unlike the priors' training data.

Sources (none trained on; see recon/weights/MODEL_CARD.md):

* Colin 27 axial slices 72-105 (the gaps and the held-out validation slab) and 166-177 (vertex), 217 x 181;
* dipy's ``S0_10slices`` (another subject, echo-planar b0 contrast, 128 x 128 x 10);
* nibabel's ``example4d`` (another subject, EPI, 128 x 96 x 24, first volume);

each simulated on 6 coils at SNR 20 (the priors saw 8 coils at SNR 30) with ``recon.simulate.write_dataset``
(no readout oversampling). Slices alternate between calibration (even positions) and test (odd): the two sets
are disjoint and drawn from the same mixture, as conformal calibration needs (exchangeable slices).

Usage: ``python examples/calibration_make_data.py OUT [--shared ../shared/data]`` writes OUT/cal and OUT/test.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def sources(shared: Path) -> dict[str, np.ndarray]:
    """Name -> ``(N, H, W)`` float32 magnitude volumes scaled to [0, 1]."""
    import nibabel as nib

    from recon.simulate import load_colin27

    out = {"colin": load_colin27(list(range(72, 106)) + list(range(166, 178)))}
    s0 = np.asarray(nib.load(shared / "images" / "S0_10slices.nii.gz").dataobj, dtype=np.float32).reshape(128, 128, 10)
    out["dipy_s0"] = np.rot90(s0, 1, axes=(0, 1)).transpose(2, 0, 1)
    ex = np.asarray(nib.load(shared / "images" / "example4d.nii.gz").dataobj, dtype=np.float32)[..., 0]
    out["nib_epi"] = np.rot90(ex, 1, axes=(0, 1)).transpose(2, 0, 1)
    return {k: np.ascontiguousarray(v / np.percentile(v, 99.5)).clip(0, 1.2).astype(np.float32) for k, v in out.items()}


def main() -> None:
    from recon.simulate import write_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    ap.add_argument("--slices-per-file", type=int, default=4)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, vol) in enumerate(sources(Path(a.shared)).items()):
        for part, sel in (("cal", slice(0, None, 2)), ("test", slice(1, None, 2))):
            (out / part).mkdir(exist_ok=True)
            paths = write_dataset(out / part, vol[sel], slices_per_file=a.slices_per_file, num_coils=6, snr=20.0,
                                  seed=1000 * (i + 1) + (part == "test") * 500, prefix=name, overwrite=True)
            print(f"{part}: {name} {vol[sel].shape} -> {len(paths)} files")


if __name__ == "__main__":
    main()
