"""Which files a batch reconstructs, and where each output goes.

Inputs are the files under ``INPUT_DIR`` matching a glob pattern (recursively), in sorted order of their
relative paths; hidden files and folders (names starting with ``.``, e.g. our own ``.*.part`` temporaries)
and anything inside ``OUTPUT_DIR`` are left out. Each output keeps the input's relative path and name with
the suffix ``.h5`` (the fastMRI submission layout, so fastMRI's ``evaluate.py`` and ``recon eval`` read
``OUTPUT_DIR`` directly).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recon.errors import InputError, UsageError

#: default ``--pattern``: every raw format ``recon run`` reads (fastMRI/MRD ``.h5``/``.hdf5``, twix ``.dat``,
#: BART ``.cfl`` — its ``.hdr`` goes with it)
DEFAULT_PATTERN = "*.h5,*.hdf5,*.dat,*.cfl"


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch.

    Attributes
    ----------
    rel: the input's path relative to ``INPUT_DIR`` (POSIX form; the manifest's key).
    input: absolute input path.
    output: absolute output path (``OUTPUT_DIR / rel`` with suffix ``.h5``).
    """

    rel: str
    input: Path
    output: Path


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def find_inputs(
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    pattern: str = DEFAULT_PATTERN,
    limit: int | None = None,
) -> list[BatchItem]:
    """The batch's inputs with their output paths, sorted by relative path.

    Parameters
    ----------
    input_dir: folder searched recursively.
    output_dir: where outputs go; files inside it are never inputs (it may lie inside ``input_dir``).
    pattern: glob on file names (``*.h5``, ``file_brain_*.h5``), matched at any depth; a pattern with a
        ``/`` is matched against the relative path from ``input_dir`` (``multicoil_val/*.h5``, ``**/*.dat``);
        several globs separated by commas (``*.h5,*.dat``) take the files any of them matches.
    limit: keep only the first ``limit`` inputs (after sorting); None = all.

    Raises :class:`InputError` when ``input_dir`` is not a folder, :class:`UsageError` for a bad
    ``limit`` or when two inputs would write the same output.
    """
    root = Path(input_dir).absolute()
    out_root = Path(output_dir).absolute()
    if not root.exists():
        raise InputError("input folder not found", root)
    if not root.is_dir():
        raise InputError("input is not a folder", root)
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    globs = [g.strip() for g in pattern.split(",") if g.strip()]
    if not globs:
        raise UsageError(f"--pattern {pattern!r} holds no glob")
    matches = [path for g in globs for path in (root.glob(g) if "/" in g else root.rglob(g))]
    found: dict[str, Path] = {}
    for path in matches:
        rel = path.relative_to(root)
        if _hidden(rel) or not path.is_file() or _inside(path.absolute(), out_root):
            continue
        found[rel.as_posix()] = path
    # a BART pair is one input: keep the .cfl, drop the .hdr beside it
    for key in [k for k in found if k.lower().endswith(".hdr")]:
        stem = key[:-4]
        if f"{stem}.cfl" in found or f"{stem}.CFL" in found:
            del found[key]
    items: list[BatchItem] = []
    seen: dict[Path, str] = {}
    for key in sorted(found):
        out = (out_root / key).with_suffix(".h5")
        if out in seen:
            raise UsageError(f"inputs {seen[out]} and {key} would both write {out}; narrow --pattern")
        seen[out] = key
        items.append(BatchItem(key, found[key].absolute(), out))
    return items[:limit] if limit is not None else items
