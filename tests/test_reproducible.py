"""issue 17 item 5 / issue 18 defect 14: the same command gives bit-identical outputs whatever the load.

The default thread count no longer follows the load (recon.app.runtime); the load only picks OpenMP's wait
policy, which changes speed, not results. ``recon run`` without ``--threads`` is run idle and beside a CPU
burner process and the outputs must be ``np.array_equal``, with the thread count recorded in both.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.data import sample_path

ROOT = Path(__file__).resolve().parents[1]
BURN = "import os\nwhile True:\n    sum(i * i for i in range(10000))\n"


def _run(out: Path) -> tuple[np.ndarray, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "recon", "run", str(sample_path()), str(out), "--method", "sense"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        return f["reconstruction"][()], int(f.attrs["threads"])


def test_run_is_bit_identical_idle_and_under_load(tmp_path: Path) -> None:
    idle, threads_idle = _run(tmp_path / "idle.h5")
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(max(2, os.cpu_count() or 1))]
    try:
        busy, threads_busy = _run(tmp_path / "busy.h5")
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert threads_idle == threads_busy >= 1
    assert np.array_equal(idle, busy)


def _provenance(path: Path) -> str:
    """The provenance line stored in an image output (PNG text chunk, NIfTI descrip, DICOM ImageComments,
    MRD images' ImageComments meta attribute)."""
    name = path.name
    if name.endswith(".png"):
        from PIL import Image

        with Image.open(path) as im:
            return im.info["Description"]
    if name.endswith((".nii", ".nii.gz")):
        import nibabel

        return nibabel.load(path).header["descrip"].item().decode()
    if name.endswith(".dcm"):
        import pydicom

        return str(pydicom.dcmread(path).ImageComments)
    import ismrmrd

    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    try:
        text = dset.read_image("image_0", 0).attribute_string
    finally:
        dset.close()
    return ismrmrd.Meta.deserialize(text)["ImageComments"]


@pytest.mark.parametrize("suffix", [".png", ".nii", ".nii.gz", ".dcm", ".mrd.h5"])
def test_image_outputs_record_the_thread_count(tmp_path: Path, suffix: str) -> None:
    """The thread count (which decides the last bits of the result) is in every output, not only .h5."""
    from recon import __version__

    if suffix in (".nii", ".nii.gz"):
        pytest.importorskip("nibabel")
    if suffix == ".dcm":
        pytest.importorskip("pydicom")
    if suffix == ".mrd.h5":
        pytest.importorskip("ismrmrd")
    out = tmp_path / f"o{suffix}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "recon", "run", str(sample_path()), str(out), "--threads", "2"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _provenance(out) == f"recon {__version__} zero-filled threads=2"
