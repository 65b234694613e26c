"""issue 18: bad inputs and faults never lose data, hang or pass silently.

Each case runs the real ``recon`` command in a subprocess and asserts the contract: the exit code, one stderr
line naming the file and the problem, no traceback, nothing under the output name or as a ``.part``, and the
inputs byte-identical afterwards.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.data import sample_path

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    e = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    e.pop("OMP_WAIT_POLICY", None)
    return e


def recon(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recon", *map(str, args)], capture_output=True, text=True,
                          env=env(), timeout=timeout, **kw)


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if not ln.startswith("recon: slice")]


def assert_clean_failure(proc, code: int, *words: str, output: Path | None = None,
                         inputs: dict[Path, str] | None = None) -> None:
    lines = error_lines(proc)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    if output is not None:
        assert not output.exists()
        assert not list(output.parent.glob(f".{output.name}.*.part"))
    for p, h in (inputs or {}).items():
        assert digest(p) == h, f"{p} changed"


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    p = tmp_path / "x.h5"
    shutil.copy(sample_path(), p)
    return p


# 1. an output is never an input
@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_output_is_never_an_input(tmp_path: Path, sample: Path, link: str) -> None:
    h = digest(sample)
    out = sample
    if link == "symlink":
        out = tmp_path / "l.h5"
        out.symlink_to(sample)
    elif link == "hardlink":
        out = tmp_path / "hl.h5"
        os.link(sample, out)
    proc = recon("run", sample, out, "--overwrite")
    assert_clean_failure(proc, 2, str(out), "output is the input", inputs={sample: h})


# 2/3. absurd declared shapes and recon sizes
def _huge_kspace(f) -> None:
    del f["kspace"]
    f.create_dataset("kspace", shape=(10 ** 6, 8, 224, 192), dtype=np.complex64, chunks=(1, 8, 224, 192))
    del f["reconstruction_rss"]


def _negative_recon(f) -> None:
    xml = f["ismrmrd_header"][()]
    xml = xml.decode() if isinstance(xml, bytes) else xml
    import re

    xml = re.sub(r"(<reconSpace>\s*<matrixSize>\s*<x>)\d+", r"\g<1>-5", xml)
    del f["ismrmrd_header"]
    f["ismrmrd_header"] = xml


@pytest.mark.parametrize("edit, words", [(_huge_kspace, ("kspace", "declares")),
                                         (_negative_recon, ("recon size",))])
def test_absurd_declared_sizes_refused_before_work(tmp_path: Path, edited_sample, edit, words) -> None:
    src = edited_sample("bad.h5", edit)
    h = digest(src)
    out = tmp_path / "o.h5"
    t0 = time.perf_counter()
    proc = recon("run", src, out)
    assert time.perf_counter() - t0 < 60
    assert_clean_failure(proc, 2, str(src), *words, output=out, inputs={src: h})
    assert "slice 1/" not in proc.stderr  # refused before any slice was reconstructed


# 4. all-zero results are not a success
def _zero_kspace(f) -> None:
    f["kspace"][...] = 0


def test_all_zero_kspace_refused(tmp_path: Path, edited_sample) -> None:
    src = edited_sample("zero.h5", _zero_kspace)
    h = digest(src)
    out = tmp_path / "o.h5"
    proc = recon("run", src, out)
    assert_clean_failure(proc, 2, str(src), "all zeros", output=out, inputs={src: h})


# 5. NaN in the reference
def test_nan_reference_named(tmp_path: Path, edited_sample) -> None:
    def edit(f):
        ref = f["reconstruction_rss"][()]
        ref[0, 3, 3] = np.nan
        f["reconstruction_rss"][...] = ref

    src = edited_sample("nanref.h5", edit)
    h = digest(src)
    out = tmp_path / "o.h5"
    proc = recon("run", src, out)
    assert_clean_failure(proc, 2, str(src), "reconstruction_rss", "NaN", output=out, inputs={src: h})


# 6/7. options that are numbers only on paper
@pytest.mark.parametrize("accel", ["0", "-4", "nan", "inf", "1"])
@pytest.mark.parametrize("command", ["run", "batch"])
def test_bad_accel_is_one_line(tmp_path: Path, sample: Path, accel: str, command: str) -> None:
    h = digest(sample)
    out = tmp_path / ("o.h5" if command == "run" else "out")
    src = sample if command == "run" else tmp_path
    proc = recon(command, src, out, "--accel", accel)
    assert_clean_failure(proc, 2, "--accel", inputs={sample: h})
    assert "centre fraction" not in proc.stderr and "center fraction" not in proc.stderr.lower()
    if command == "run":
        assert not out.exists()


def test_snr_nan_refused(tmp_path: Path) -> None:
    out = tmp_path / "sim.h5"
    proc = recon("simulate", out, "--snr", "nan")
    assert_clean_failure(proc, 2, "--snr", "finite", output=out)


# 8. unwritable output folder: refused before any work
def test_read_only_output_folder_before_work(tmp_path: Path, sample: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    kw = {}
    immutable = False
    if os.geteuid() == 0:  # root writes anywhere: run the command as nobody, or make the folder immutable
        kw["preexec_fn"] = lambda: (os.setgid(65534), os.setuid(65534))
        tmp_path.chmod(0o755)
        sample.chmod(0o644)
        try:
            ok = subprocess.run([sys.executable, "-c", "import recon"], env=env(), capture_output=True,
                                **kw).returncode == 0
        except OSError:
            ok = False
        if not ok:  # e.g. the venv is not readable by nobody: chattr +i stops root too
            kw = {}
            immutable = shutil.which("chattr") is not None and subprocess.run(
                ["chattr", "+i", str(ro)], capture_output=True).returncode == 0
            if not immutable:
                pytest.skip("cannot run the project as an unprivileged user, nor make a folder immutable, here")
    h = digest(sample)
    out = ro / "o.h5"
    try:
        proc = recon("run", sample, out, **kw)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(ro)], check=True)
        ro.chmod(0o755)
    assert_clean_failure(proc, 2, str(out), "not writable", output=out, inputs={sample: h})
    assert "slice 1/" not in proc.stderr


# 9. a full disk: one line naming the path
def test_full_disk_is_one_line(tmp_path: Path, sample: Path, monkeypatch) -> None:
    import errno

    from recon.io import fastmri
    from recon.app.pipeline import reconstruct_file
    from recon.errors import OutputError

    real = h5py.File

    def full(name, mode="r", *a, **k):
        if "w" in str(mode) and str(name).endswith(".part"):
            raise OSError(errno.ENOSPC, "Unable to synchronously create file (unable to open file: name = "
                          f"'{name}', errno = 28, error message = 'No space left on device')\nHDF5-DIAG: stack")
        return real(name, mode, *a, **k)

    monkeypatch.setattr(h5py, "File", full)
    del fastmri
    out = tmp_path / "o.h5"
    with pytest.raises(OutputError) as info:
        reconstruct_file(sample, out)
    text = str(info.value)
    assert "\n" not in text and str(out) in text and "No space left on device" in text
    assert not out.exists() and not list(tmp_path.glob(".o.h5.*.part"))


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True).returncode == 0
    except OSError:
        return False


def test_real_full_disk_is_one_line(tmp_path: Path, sample: Path) -> None:
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "1m"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        (disk / "fill").write_bytes(b"\0" * 900 * 1024)
        h = digest(sample)
        out = disk / "o.h5"
        proc = recon("run", sample, out)
        assert_clean_failure(proc, 2, str(out), "No space left on device", output=out, inputs={sample: h})
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# 11. a truncated manifest is named as such
def test_report_on_truncated_manifest(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text('{"files": {"a.h5": {"status": "ok"')
    h = digest(run / "manifest.json")
    proc = recon("report", run)
    assert_clean_failure(proc, 2, "manifest.json", "truncated", output=run / "report.html",
                         inputs={run / "manifest.json": h})


# 13. SIGTERM during the work: no .part, clean exit
def test_sigterm_leaves_no_part(tmp_path: Path, sample: Path) -> None:
    h = digest(sample)
    out = tmp_path / "o.h5"
    proc = subprocess.Popen([sys.executable, "-m", "recon", "run", str(sample), str(out), "--method", "l1-wavelet"],
                            env=env(), stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # the first slice is done: the run is mid-work
    assert "slice 1/" in line, line
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    rc = proc.wait(60)
    lines = [ln for ln in rest.splitlines() if not ln.startswith("recon: slice")]
    assert rc == 143 and len(lines) == 1 and "Traceback" not in rest and "SIGTERM" in lines[0], rest
    assert not out.exists() and not list(tmp_path.glob(".o.h5.*.part"))
    assert digest(sample) == h


# 12. batch workers die with the parent; the lock covers them
def _children(pid: int) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.add(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and prctl")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_batch_workers_die_with_parent(tmp_path: Path, sig: int) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(4):
        shutil.copy(sample_path(), inp / f"s{i}.h5")
    hashes = {p: digest(p) for p in inp.iterdir()}
    out = tmp_path / "out"
    parent = subprocess.Popen([sys.executable, "-m", "recon", "batch", str(inp), str(out), "--method", "l1-wavelet",
                               "--workers", "2", "--threads", "1"], env=env(), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    workers: set[int] = set()
    while time.time() < deadline and not list(out.glob(".recon_batch.workers.lock")) or len(workers) < 2:
        workers = {c for c in _children(parent.pid) if "multiprocessing" in
                   (Path("/proc") / str(c) / "cmdline").read_text(errors="replace")} if _alive(parent.pid) else set()
        assert time.time() < deadline, "workers did not start"
        time.sleep(0.2)
    time.sleep(1.0)  # workers are reconstructing
    parent.send_signal(sig)
    parent.wait(60)
    end = time.time() + 30
    while time.time() < end and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "orphan workers left running"
    assert not list(out.rglob("*.part"))
    for p, h in hashes.items():
        assert digest(p) == h
    if sig == signal.SIGTERM:
        assert parent.returncode == 143
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["state"] == "interrupted"
    # a rerun (resume) finishes the job, nothing marked failed for "output exists"
    proc = recon("batch", inp, out, "--method", "zero-filled", "--workers", "1", "--no-resume")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock")
def test_lock_covers_an_earlier_runs_workers(tmp_path: Path) -> None:
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(sample_path(), inp / "a.h5")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; fh = open(sys.argv[1], 'a+'); "
                               "fcntl.flock(fh, fcntl.LOCK_SH); print('held', flush=True); time.sleep(60)",
                               str(out / ".recon_batch.workers.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        proc = recon("batch", inp, out)
        assert_clean_failure(proc, 2, str(out), "still writing", output=out / "a.h5")
    finally:
        holder.kill()
        holder.wait()
    del fcntl


# 10. no Python warnings reach the user: one clear line, or nothing
TWIX = Path(__file__).parent / "data" / "twix" / "gre.dat"


def _random_cfl(tmp: Path, seed: int, huge: bool) -> Path:
    """A ``.cfl`` of random bytes read as floats (NaN/Inf among them), or with those replaced by 1e30."""
    rng = np.random.default_rng(seed)
    (tmp / f"r{seed}.hdr").write_text("# Dimensions\n64 64 1 4\n")
    data = np.frombuffer(rng.bytes(64 * 64 * 4 * 8), np.float32).copy()
    if huge:
        data[~np.isfinite(data)] = 1e30
    data.tofile(tmp / f"r{seed}.cfl")
    return tmp / f"r{seed}.cfl"


def _garbled_mdh(tmp: Path, seed: int) -> Path:
    """The bundled twix file with random bytes written into the headers (MDH) of ten image lines."""
    twixtools = pytest.importorskip("twixtools")
    raw = TWIX.read_bytes()
    scans = twixtools.read_twix(str(TWIX), verbose=False, keep_acqend=True)
    positions = [int(m.mem_pos) for m in scans[-1]["mdb"]][1:-1]
    rng = np.random.default_rng(seed)
    data = bytearray(raw)
    for p in rng.choice(positions, 10, replace=False):
        for k in rng.integers(0, 192, 20):
            data[p + k] = int(rng.integers(0, 256))
    out = tmp / f"garbled{seed}.dat"
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("make", ["cfl-nan", "cfl-huge", "twix-mdh-0", "twix-mdh-6"])
def test_no_runtime_warning_reaches_stderr(tmp_path: Path, make: str) -> None:
    if make.startswith("cfl"):
        src = _random_cfl(tmp_path, 0, huge=make == "cfl-huge")
        inputs = {src: digest(src), src.with_suffix(".hdr"): digest(src.with_suffix(".hdr"))}
    else:
        src = _garbled_mdh(tmp_path, int(make.rsplit("-", 1)[1]))
        inputs = {src: digest(src)}
    out = tmp_path / "o.h5"
    proc = recon("run", src, out)
    assert "Warning" not in proc.stderr, proc.stderr  # RuntimeWarning from numpy/twixtools: defect 10
    assert_clean_failure(proc, 2, src.stem, output=out, inputs=inputs)


# 4. (cont.) a mask with no sampled line, and zero iterations: refused before any work
@pytest.mark.parametrize("method", ["zero-filled", "sense"])
def test_empty_mask_refused_before_work(tmp_path: Path, edited_sample, method: str) -> None:
    def edit(f):
        f["mask"] = np.zeros(f["kspace"].shape[-1], bool)  # the fastMRI test layout's mask, sampling nothing

    src = edited_sample("nomask.h5", edit)
    h = digest(src)
    out = tmp_path / "o.h5"
    proc = recon("run", src, out, "--method", method)
    assert_clean_failure(proc, 2, str(src), "no sampled line", output=out, inputs={src: h})
    assert "slice 1/" not in proc.stderr


@pytest.mark.parametrize("command", ["run", "batch"])
@pytest.mark.parametrize("method, iterations", [("sense", "0"), ("l1-wavelet", "0"), ("sense", "-2")])
def test_zero_iterations_refused_before_work(tmp_path: Path, sample: Path, command: str, method: str,
                                             iterations: str) -> None:
    h = digest(sample)
    out = tmp_path / ("o.h5" if command == "run" else "out")
    proc = recon(command, sample if command == "run" else tmp_path, out, "--method", method,
                 "--iterations", iterations)
    assert_clean_failure(proc, 2, "--iterations", ">= 1", inputs={sample: h})
    assert "slice 1/" not in proc.stderr
    assert not out.exists() or (command == "batch" and not list(out.rglob("*.h5")))


# 3. (cont.) a recon or encoded matrix of 10^8 in an ISMRMRD XML header: one line, exit 2, no MemoryError
def _matrix(space: str, x: int, y: int | None = None):
    """An XML edit setting ``<space><matrixSize>`` x (and y)."""
    import re

    def edit(xml: str) -> str:
        xml = re.sub(rf"(<{space}>\s*<matrixSize>\s*<x>)\d+", rf"\g<1>{x}", xml)
        if y is not None:
            xml = re.sub(rf"(<{space}>\s*<matrixSize>\s*<x>\d+</x>\s*<y>)\d+", rf"\g<1>{y}", xml)
        return xml
    return edit


@pytest.mark.parametrize("space", ["reconSpace", "encodedSpace"])
def test_huge_matrix_in_fastmri_xml_header(tmp_path: Path, edited_sample, space: str) -> None:
    def edit(f):
        xml = f["ismrmrd_header"][()]
        xml = _matrix(space, 10 ** 8)(xml.decode() if isinstance(xml, bytes) else xml)
        del f["ismrmrd_header"]
        f["ismrmrd_header"] = xml

    src = edited_sample("big.h5", edit)
    h = digest(src)
    out = tmp_path / "o.h5"
    proc = recon("run", src, out)
    assert "MemoryError" not in proc.stderr
    assert_clean_failure(proc, 2, str(src), output=out, inputs={src: h})
    assert "slice 1/" not in proc.stderr


@pytest.mark.parametrize("space, x, y, words", [
    ("reconSpace", 10 ** 8, None, ("recon size", "100000000")),
    ("encodedSpace", 10 ** 8, None, ("encodedSpace", "100000000")),
    # each side valid, together 16000 x 16000 x 2 coils = 4 GB zero-filled from a few KB of samples
    ("encodedSpace", 16000, 16000, ("declares", "MRD encodedSpace")),
])
def test_huge_matrix_in_mrd_xml_header(tmp_path: Path, mrd_file, space: str, x: int, y, words) -> None:
    src = mrd_file("big.mrd.h5", xml_edit=_matrix(space, x, y))
    h = digest(src)
    out = tmp_path / "o.h5"
    t0 = time.perf_counter()
    proc = recon("run", src, out)
    assert time.perf_counter() - t0 < 60
    assert "MemoryError" not in proc.stderr
    assert_clean_failure(proc, 2, str(src), *words, output=out, inputs={src: h})


def test_write_check_leaves_nothing_and_a_rerun_removes_killed_runs_temporaries(tmp_path: Path) -> None:
    """The output-folder write check leaves no file; the ``.part`` temporaries a SIGKILLed batch left beside an
    output (its own, and the write check's where the OS has no unnamed temporary files) go at the rerun, other
    hidden files stay (a flaky test_sigkill_mid_run_then_resume found a killed write check's file)."""
    from recon.app.batch.runner import _remove_stale_parts
    from recon.io.validate import check_folder_writable

    check_folder_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []
    stale = [tmp_path / ".o.h5.ab12.part", tmp_path / ".recon-write-test.cd34.part"]
    kept = [tmp_path / ".other.h5.ef56.part", tmp_path / "o.h5"]
    for p in stale + kept:
        p.write_bytes(b"x")
    _remove_stale_parts(tmp_path / "o.h5")
    assert sorted(tmp_path.iterdir()) == sorted(kept)
