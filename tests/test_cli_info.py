"""``recon info FILE`` on one file of each supported format, through the real command line."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recon.data import sample_path

TWIX = Path(__file__).parent / "data" / "twix" / "gre.dat"


def _info(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recon", "info", str(path), *extra], capture_output=True, text=True)


def _json_info(path: Path) -> dict:
    r = _info(path, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_fastmri_sample() -> None:
    info = _json_info(sample_path())
    assert info["format"] == "fastmri"
    assert info["shape"] == [3, 8, 224, 192] and info["coils"] == 8 and info["slices"] == 3
    assert info["recon_matrix"][:2] == [224, 192] and info["sampling"] == "fully sampled"
    text = _info(sample_path()).stdout
    assert "3 x 8 x 224 x 192" in text and "fastmri" in text


def test_twix() -> None:
    info = _json_info(TWIX)
    assert info["format"] == "twix" and info["shape"] == [1, 2, 160, 160]


def test_bart_pair_by_cfl_and_hdr(tmp_path: Path) -> None:
    from recon.io import read_raw
    from recon.io.bart import write_bart_kspace

    write_bart_kspace(tmp_path / "sample", read_raw(sample_path()).slices(0))
    for name in ("sample.cfl", "sample.hdr"):
        info = _json_info(tmp_path / name)
        assert info["format"] == "bart" and info["shape"] == [1, 8, 224, 192]


def test_mrd_with_noise_scan(tmp_path: Path) -> None:
    tool = "ismrmrd_generate_cartesian_shepp_logan"
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (apt-get install ismrmrd-tools)")
    out = tmp_path / "shepp.h5"
    subprocess.run([tool, "-o", str(out), "-m", "64", "-c", "4", "-a", "2", "-w", "16", "-C"],
                   check=True, capture_output=True)
    info = _json_info(out)
    assert info["format"] == "mrd" and info["coils"] == 4 and info["shape"][2:] == [128, 64]
    assert info["noise"] is not None and "sampled" in info["sampling"]


@pytest.mark.parametrize("content,needle", [(b"", "empty"), (b"not hdf5 at all" * 10, "HDF5")])
def test_bad_file_is_one_line_exit_2(tmp_path: Path, content: bytes, needle: str) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_bytes(content)
    r = _info(bad)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and str(bad) in r.stderr and needle in r.stderr
