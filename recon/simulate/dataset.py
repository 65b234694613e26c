"""A fastMRI-layout folder of simulated multi-coil files (what ``recon simulate`` writes)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from recon.errors import OutputError, UsageError
from recon.io.atomic import check_output_path
from recon.simulate.multicoil import simulate_multicoil


def write_dataset(
    out_dir: str | Path,
    volume: np.ndarray,
    *,
    slices_per_file: int = 4,
    num_coils: int = 8,
    snr: float | None = 30.0,
    seed: int = 0,
    readout_oversampling: int = 1,
    noise_correlation: float = 0.0,
    voxel_size_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    acquisition: str = "AXT1_SIM",
    prefix: str = "sim",
    overwrite: bool = False,
    progress: Callable[[int, int, Path], None] | None = None,
) -> list[Path]:
    """Simulate multi-coil k-space for ``volume`` and write one fastMRI file per slab of slices.

    Parameters
    ----------
    out_dir: folder to write into; created if missing (its parent must exist).
    volume: ``(N, H, W)`` real magnitude images (e.g. :func:`recon.simulate.load_colin27`); H = readout.
    slices_per_file: consecutive slices per file (the last file may hold fewer).
    seed: file ``i`` is simulated with seed ``seed + i`` (independent noise and phase per file).
    prefix: files are named ``{prefix}_{i:03d}.h5``.
    overwrite: replace existing files of the same names (otherwise :class:`OutputError`, before any work).
    progress: called as ``progress(i, n_files, path)`` after each file is written.
    Other parameters: as :func:`recon.simulate.simulate_multicoil`.

    Returns
    -------
    The written paths, in slice order. Each file has ``kspace`` ``(slices, C, H*oversampling, W)``
    complex64, ``reconstruction_rss`` ``(slices, H, W)`` float32 and an ``ismrmrd_header``.
    """
    # deferred: loads h5py, which importing recon.simulate.dataset does not
    from recon.io.fastmri import write_fastmri_kspace

    vol = np.asarray(volume)
    if vol.ndim == 2:
        vol = vol[None]
    if vol.ndim != 3 or 0 in vol.shape:
        raise UsageError(f"volume must have shape (slices, H, W), got {np.shape(volume)}")
    if int(slices_per_file) < 1:
        raise UsageError(f"slices_per_file must be >= 1, got {slices_per_file}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError("output path exists and is not a folder", out)
    if not out.parent.is_dir():
        raise OutputError(f"parent folder {out.parent} does not exist", out)
    starts = list(range(0, vol.shape[0], int(slices_per_file)))
    paths = [out / f"{prefix}_{i:03d}.h5" for i in range(len(starts))]
    if out.exists():
        for p in paths:  # fail before simulating anything
            check_output_path(p, overwrite)
    out.mkdir(exist_ok=True)
    for i, (start, path) in enumerate(zip(starts, paths)):
        sim = simulate_multicoil(
            vol[start:start + int(slices_per_file)],
            num_coils=num_coils, snr=snr, seed=int(seed) + i, readout_oversampling=readout_oversampling,
            noise_correlation=noise_correlation, voxel_size_mm=voxel_size_mm, acquisition=acquisition,
        )
        write_fastmri_kspace(path, sim.raw, overwrite=overwrite, reference="reconstruction_rss",
                             acquisition=acquisition)
        if progress is not None:
            progress(i, len(paths), path)
    return paths
