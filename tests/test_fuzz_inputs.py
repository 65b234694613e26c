"""issue 18: a fast fuzz of every reader with malformed inputs, all held to the bad-input contract.

Inputs generated from the bundled sample (fastMRI), the bundled twix files and BART ``.cfl`` pairs written
here: truncations at many offsets, wrong dtypes and ranks, absurd declared shapes, corrupt headers, NaN/Inf.
Each goes through ``recon run`` in-process (``recon.cli.main``, fast enough for CI) and must end either in
exit 2 with one stderr line naming the file, or (for a truncation that still leaves a readable file) exit 0
with a finite, non-zero image; never a traceback, nothing under the output name or as ``.part`` on failure,
the input byte-identical.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

from recon.cli import main as recon_main
from recon.data import sample_path

TWIX = Path(__file__).parent / "data" / "twix" / "gre.dat"
FRACTIONS = (0.0, 0.001, 0.01, 0.1, 0.33, 0.5, 0.77, 0.999)


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _truncated(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def _replace(name: str, value):
    def edit(f):
        del f[name]
        f[name] = value
    return edit


def _set_kspace_value(value):
    def edit(f):
        k = f["kspace"][()]
        k[1, 2, 100, 90] = value
        f["kspace"][...] = k
    return edit


def _cfl(tmp: Path, name: str, dims: list[int], data: np.ndarray | None = None, hdr: str | None = None) -> Path:
    base = tmp / name
    (tmp / f"{name}.hdr").write_text(hdr if hdr is not None else "# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    arr = data if data is not None else (np.random.default_rng(0).standard_normal(int(np.prod(dims)) * 2)
                                         .astype(np.float32))
    arr.astype(np.complex64 if np.iscomplexobj(arr) else np.float32).tofile(tmp / f"{name}.cfl")
    return Path(str(base) + ".cfl")


def _cases(tmp: Path, edited_sample) -> list[tuple[str, Path]]:
    cases: list[tuple[str, Path]] = []
    for i, fr in enumerate(FRACTIONS):
        cases.append((f"fastmri-trunc-{fr}", _truncated(Path(sample_path()), tmp / f"t{i}.h5", fr)))
        cases.append((f"twix-trunc-{fr}", _truncated(TWIX, tmp / f"t{i}.dat", fr)))
    k = np.zeros((3, 8, 224, 192), np.complex64)
    cases += [
        ("fastmri-int-kspace", edited_sample("int.h5", _replace("kspace", np.ones((3, 8, 224, 192), np.int16)))),
        ("fastmri-rank2", edited_sample("rank2.h5", _replace("kspace", k[0, 0]))),
        ("fastmri-rank5", edited_sample("rank5.h5", _replace("kspace", k[None]))),
        ("fastmri-huge", edited_sample("huge.h5", lambda f: (f.__delitem__("kspace"), f.__delitem__("reconstruction_rss"),
                                                              f.create_dataset("kspace", (10 ** 6, 8, 224, 192),
                                                                               np.complex64, chunks=(1, 8, 224, 192))))),
        ("fastmri-header-garbage", edited_sample("hdr.h5", _replace("ismrmrd_header", "<ismrmrdHeader><enc"))),
        ("fastmri-nan", edited_sample("nan.h5", _set_kspace_value(np.nan))),
        ("fastmri-inf", edited_sample("inf.h5", _set_kspace_value(np.inf))),
        ("fastmri-zero", edited_sample("zero.h5", _replace("kspace", k))),
        ("bart-absurd", _cfl(tmp, "absurd", [10 ** 6, 10 ** 6, 1, 8], data=np.zeros(16, np.complex64))),
        ("bart-negative", _cfl(tmp, "neg", [-4, 64, 1, 8], data=np.zeros(16, np.complex64))),
        ("bart-short", _cfl(tmp, "short", [64, 64, 1, 8], data=np.zeros(100, np.complex64))),
        ("bart-garbage-hdr", _cfl(tmp, "garb", [1], hdr="# Dimensions\nfoo bar\n")),
        ("bart-nan", _cfl(tmp, "bnan", [32, 32, 1, 4], data=np.full(32 * 32 * 4, np.nan, np.complex64))),
        ("garbage-h5", tmp / "garbage.h5"),
        ("garbage-dat", tmp / "garbage.dat"),
    ]
    rng = np.random.default_rng(1)
    (tmp / "garbage.h5").write_bytes(rng.bytes(5000))
    (tmp / "garbage.dat").write_bytes(rng.bytes(50000))
    return cases


def test_every_reader_holds_the_contract_on_malformed_input(tmp_path: Path, edited_sample, capsys) -> None:
    failures = []
    for name, src in _cases(tmp_path, edited_sample):
        inputs = [src] + ([src.with_suffix(".hdr")] if src.suffix == ".cfl" else [])
        before = {p: _digest(p) for p in inputs}
        out = tmp_path / f"out-{name}.h5"
        capsys.readouterr()
        try:
            rc = recon_main(["run", str(src), str(out)])
        except BaseException as exc:  # noqa: BLE001 - a traceback is the defect we look for
            failures.append(f"{name}: uncaught {type(exc).__name__}: {exc}")
            continue
        err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("recon: slice")]
        if rc == 0:
            with h5py.File(out) as f:
                img = f["reconstruction"][()]
            if not (np.isfinite(img).all() and np.any(img)):
                failures.append(f"{name}: exit 0 with a NaN/zero image")
        elif rc != 2 or len(err) != 1 or (src.stem if src.suffix == ".cfl" else src.name) not in err[0]:
            failures.append(f"{name}: rc {rc}, stderr {err!r}")
        elif out.exists():
            failures.append(f"{name}: output left behind")
        if list(tmp_path.glob(".*.part")):
            failures.append(f"{name}: .part left")
        if {p: _digest(p) for p in inputs} != before:
            failures.append(f"{name}: input changed")
    assert not failures, "\n".join(failures)
