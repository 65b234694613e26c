"""EPI correction and geometry figures of the README ("EPI correction and patient geometry").

    PYTHONPATH=. python benchmarks/epi_geometry.py

Prints the Nyquist ghost-to-signal ratio of tests/data/twix/epi.dat with and without the correction, the
readout edge width (10-90%) regridded vs ramp-ignoring, and the gre.dat image-centre offset from the
protocol's slice position; for the Pulseq EPI files (tests/data/twix/pulseq_epi.dat and, where
../shared/data/twix/pulseq/11_from_GRE_to_EPI exists, the tutorial's other EPI files) the ghost-to-signal
ratio as stored, with every second readout (of each shot) reversed, and reversed + reference-free phase fit,
and the shot layout found from the time stamps (single-shot, or S shots x E readouts of segmented EPI).
"""
from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np

from recon.io import epi
from recon.io.geometry import LPS_TO_RAS, affine_ras
from recon.io.images import voxel_size_mm
from recon.io.twix import open_twix
from recon.metrics.ghost import edge_width, ghost_to_signal_ratio, object_mask

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "twix"
_ROOT = Path(__file__).resolve().parent.parent
# ../shared beside the repository (a main checkout) or beside its worktree folder (/work/wt/NAME)
SHARED_PULSEQ = next((p / "shared/data/twix/pulseq/11_from_GRE_to_EPI/data" for p in (_ROOT.parent, _ROOT.parent.parent)
                      if (p / "shared/data/twix/pulseq/11_from_GRE_to_EPI/data").is_dir()), Path("/nonexistent"))


def pulseq_epi() -> None:
    files = [DATA / "pulseq_epi.dat", DATA / "pulseq_epi_5seg.dat"]
    if SHARED_PULSEQ.is_dir():
        copied = ("05_EPI.dat", "04b_GRE_5seg_fast.dat")  # in tests/data/twix as pulseq_epi(_5seg).dat
        files += sorted(p for p in SHARED_PULSEQ.glob("*.dat") if p.name not in copied)
    for path in files:
        f = open_twix(path)
        d = (f.info().get("epi_correction") or {}).get("detection")
        if d is None:
            print(f"{path.name}: not EPI (not detected)")
            continue
        on = rss(f.read().kspace)
        off = rss(open_twix(path, epi_correction=False).read().kspace)
        mask = object_mask(on)
        g_on, g_off = ghost_to_signal_ratio(on, mask), ghost_to_signal_ratio(off, mask)
        layout = ("single-shot" if d["shots"] == 1 else f"{d['shots']} shots x {d['readouts_per_shot']}"
                  + (" (one image each)" if d["shots_are_images"] else " segmented"))
        print(f"{path.name} [{layout}]: ghost-to-signal as stored {g_off:.3f}, reversed {d['ghost_to_signal_reversed']:.3f}, "
              f"output {g_on:.3f} (phase fit applied: {d['phase_applied']}; {g_off / g_on:.1f}x lower than stored)")


def rss(kspace: np.ndarray) -> np.ndarray:
    x = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    return np.sqrt((np.abs(x) ** 2).sum(1))[0]


def main() -> None:
    on = rss(open_twix(DATA / "epi.dat").read().kspace)
    off = rss(open_twix(DATA / "epi.dat", epi_correction=False).read().kspace)
    mask = object_mask(on)
    g_on, g_off = ghost_to_signal_ratio(on, mask), ghost_to_signal_ratio(off, mask)
    print(f"epi.dat ghost-to-signal: corrected {g_on:.3f}, uncorrected {g_off:.3f} ({g_off / g_on:.1f}x lower)")
    orig = epi.apply_twix
    with mock.patch.object(epi, "apply_twix", lambda *a, **k: orig(*a, **{**k, "regrid_ramps": False})):
        ramp = rss(open_twix(DATA / "epi.dat").read().kspace)
    cols = list(range(15, 36)) + list(range(50, 66))
    w_on = np.median([edge_width(on[:40, c]) for c in cols])
    w_ramp = np.median([edge_width(ramp[:40, c]) for c in cols])
    print(f"epi.dat readout edge 10-90% width: regridded {w_on:.2f} px, ramp-ignoring {w_ramp:.2f} px")
    f = open_twix(DATA / "gre.dat")
    h, w = f.header.recon_size
    aff = affine_ras(f.header.geometry, [0], (h, w), voxel_size_mm(f.header))
    import twixtools

    prot = twixtools.read_twix(str(DATA / "gre.dat"), verbose=False)[-1]["hdr"]["MeasYaps"]["sSliceArray"]
    pos = np.array([prot["asSlice"][0]["sPosition"][k] for k in ("dSag", "dCor", "dTra")])
    centre = aff @ np.array([h // 2, w // 2, 0, 1.0])
    pulseq_epi()
    print(f"gre.dat image centre - protocol slice position: {np.abs(centre[:3] - LPS_TO_RAS @ pos).max():.2e} mm")


if __name__ == "__main__":
    main()
