"""issue 18: a fast fuzz of every reader with malformed inputs, all held to the bad-input contract.

Inputs generated from the bundled sample (fastMRI), the bundled twix files, BART ``.cfl`` pairs and small
ISMRMRD files written here: truncations at many offsets, wrong dtypes and ranks, absurd declared shapes,
corrupt or missing headers, NaN/Inf.
Each goes through ``recon run`` in-process (``recon.app.cli.main``, fast enough for CI) and must end either in
exit 2 with one stderr line naming the file, or (for a truncation that still leaves a readable file) exit 0
with a finite, non-zero image; never a traceback, nothing under the output name or as ``.part`` on failure,
the input byte-identical.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

from recon.app.cli import main as recon_main
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
        ("bart-zero", _cfl(tmp, "bzero", [32, 32, 1, 4], data=np.zeros(32 * 32 * 4, np.complex64))),
        ("bart-random-bytes", _cfl(tmp, "brand", [32, 32, 1, 4],
                                   data=np.frombuffer(np.random.default_rng(2).bytes(32 * 32 * 4 * 8), np.complex64))),
        ("garbage-h5", tmp / "garbage.h5"),
        ("garbage-dat", tmp / "garbage.dat"),
    ]
    rng = np.random.default_rng(1)
    (tmp / "garbage.h5").write_bytes(rng.bytes(5000))
    (tmp / "garbage.dat").write_bytes(rng.bytes(50000))
    return cases


def _contract_failures(cases: list[tuple[str, Path]], tmp_path: Path, capsys) -> list[str]:
    """Run ``recon run`` on each case; the ways it broke the contract (empty: none)."""
    failures = []
    for name, src in cases:
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
    return failures


def test_every_reader_holds_the_contract_on_malformed_input(tmp_path: Path, edited_sample, capsys) -> None:
    failures = _contract_failures(_cases(tmp_path, edited_sample), tmp_path, capsys)
    assert not failures, "\n".join(failures)


def _set_sample(index: int, value):
    """Edit one stored sample of acquisition ``index`` in an MRD file (``data`` is a vlen float32 field)."""
    def edit(f):
        recs = f["dataset/data"][()]
        data = recs[index]["data"].copy()
        data[0] = value
        recs[index]["data"] = data
        f["dataset/data"][...] = recs
    return edit


def _zero_samples(f) -> None:
    """Every stored sample of an MRD file set to 0 (a valid file that acquired nothing)."""
    recs = f["dataset/data"][()]
    for r in recs:
        r["data"][...] = 0
    f["dataset/data"][...] = recs


def _replace_mrd(name: str, value):
    def edit(f):
        del f[f"dataset/{name}"]
        if value is not None:
            f[f"dataset/{name}"] = value
    return edit


def _mrd_cases(tmp: Path, mrd_file) -> list[tuple[str, Path]]:
    import re

    valid = mrd_file("valid.mrd.h5")
    cases = [(f"mrd-trunc-{fr}", _truncated(valid, tmp / f"t{i}.mrd.h5", fr)) for i, fr in enumerate(FRACTIONS)]

    def sub(pattern: str, repl: str):
        return lambda xml: re.sub(pattern, repl, xml)

    cases += [
        ("mrd-zero", mrd_file("zero.mrd.h5", edit=_zero_samples)),
        ("mrd-no-header", mrd_file("nohdr.mrd.h5", edit=_replace_mrd("xml", None))),
        ("mrd-garbage-header", mrd_file("garb.mrd.h5", xml_edit=lambda x: x[: len(x) // 2])),
        ("mrd-no-encoding", mrd_file("noenc.mrd.h5", xml_edit=sub(r"<encoding>.*</encoding>", ""))),
        ("mrd-no-data", mrd_file("nodata.mrd.h5", edit=_replace_mrd("data", None))),
        ("mrd-data-wrong-dtype", mrd_file("int.mrd.h5", edit=_replace_mrd("data", np.ones((32, 4), np.int16)))),
        ("mrd-data-wrong-rank", mrd_file("rank.mrd.h5", edit=_replace_mrd("data", np.ones((2, 3, 4), np.float32)))),
        ("mrd-nan", mrd_file("nan.mrd.h5", edit=_set_sample(3, np.nan))),
        ("mrd-inf", mrd_file("inf.mrd.h5", edit=_set_sample(5, np.inf))),
        ("mrd-huge-encoded", mrd_file("huge.mrd.h5", xml_edit=sub(r"(<encodedSpace><matrixSize><x>)\d+",
                                                                  r"\g<1>100000000"))),
        ("mrd-negative-recon", mrd_file("neg.mrd.h5", xml_edit=sub(r"(<reconSpace><matrixSize><x>)\d+", r"\g<1>-5"))),
        ("mrd-radial", mrd_file("radial.mrd.h5", xml_edit=sub(r"cartesian", "radial"))),
        ("mrd-readout-too-long", mrd_file("short.mrd.h5", xml_edit=sub(r"(<encodedSpace><matrixSize><x>)\d+",
                                                                       r"\g<1>16"))),
    ]
    return cases


def test_mrd_reader_holds_the_contract_on_malformed_input(tmp_path: Path, mrd_file, capsys) -> None:
    failures = _contract_failures(_mrd_cases(tmp_path, mrd_file), tmp_path, capsys)
    assert not failures, "\n".join(failures)
