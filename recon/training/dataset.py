"""A PyTorch ``Dataset`` over the slices of a folder of raw files (fastMRI layout, or any format ``recon`` reads).

:class:`SliceDataset` lists the files once (headers only) and reads one slice per ``__getitem__`` (lazily,
through :func:`recon.io.open_raw`), so folders much larger than memory work. Each item is whatever the
``transform`` makes of ``(raw, example)``; without a transform, the :class:`~recon.io.types.RawData` of the slice.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from recon.errors import InputError
from recon.io.types import RawData
from recon.io import open_raw

#: file name patterns taken from a folder
PATTERNS = ("*.h5", "*.hdf5")


@dataclass(frozen=True)
class Example:
    """Where one item comes from: ``path``, ``slice`` index in the file, ``index`` in the dataset."""

    path: Path
    slice: int
    index: int
    num_slices: int


class SliceDataset(Dataset):
    """Every slice of every raw file in ``root`` (sorted by name; sub-folders included).

    Parameters
    ----------
    root: a folder of raw files (fastMRI ``.h5``: ``kspace`` + ``reconstruction_rss`` for training), or a
        list of files.
    transform: ``transform(raw, example) -> item``; ``raw`` is the slice's :class:`RawData`
        (``(1, C, H, W)`` k-space, its ``reference`` ``(1, h, w)``), ``example`` an :class:`Example`.
    max_slices: keep only the first ``max_slices`` slices (quick runs, tests).

    Raises :class:`~recon.errors.InputError` when the folder is missing or holds no readable file.
    """

    def __init__(self, root: str | Path | list[str | Path], transform: Callable[[RawData, Example], Any] | None = None,
                 max_slices: int | None = None):
        if isinstance(root, (list, tuple)):
            files = sorted(Path(p) for p in root)
            where = Path(files[0]).parent if files else Path(".")
        else:
            where = Path(root)
            if not where.is_dir():
                raise InputError("training/validation folder does not exist", where)
            files = sorted({p for pat in PATTERNS for p in where.rglob(pat) if not p.name.startswith(".")})
        if not files:
            raise InputError(f"no raw files ({', '.join(PATTERNS)}) in this folder", where)
        self.transform = transform
        self.examples: list[Example] = []
        self.epoch = 0
        for path in files:
            with open_raw(path) as f:
                n = f.num_slices
            for s in range(n):
                self.examples.append(Example(path, s, len(self.examples), n))
        if max_slices is not None:
            self.examples = self.examples[: int(max_slices)]
        self.files = files

    def set_epoch(self, epoch: int) -> None:
        """Tell the transform which epoch it is (masks drawn per example and epoch are reproducible)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.examples)

    def read(self, index: int) -> RawData:
        """The raw data of item ``index``: ``(1, C, H, W)`` k-space and its reference."""
        ex = self.examples[index]
        with open_raw(ex.path) as f:
            return f.read_slices(ex.slice)

    def __getitem__(self, index: int) -> Any:
        raw = self.read(index)
        if self.transform is None:
            return raw
        ex = self.examples[index]
        if hasattr(self.transform, "epoch"):
            self.transform.epoch = self.epoch
        return self.transform(raw, ex)
