"""Patient geometry of each entry of the slice axis, from the raw headers, and the affines it gives.

Specification: ``data_specs/geometry.md``. Coordinates are the scanner's patient coordinates, **LPS**
(DICOM: +x toward the patient's left, +y posterior, +z head), in mm; NIfTI affines are **RAS+**
(x and y negated), as dcm2niix writes them.

For entry ``s`` of the slice axis (k-space ``(S, C, H, W)``, image ``(S, H, W)``):

* ``position[s]``: the centre of the slice (LPS mm): MRD ``AcquisitionHeader.position``; twix MDH
  ``sSliceData.sSlicePos`` (dSag, dCor, dTra).
* ``read_dir[s]``: the direction of increasing H (readout), ``phase_dir[s]``: of increasing W (phase
  encode), ``slice_dir[s]``: the slice normal. MRD: the acquisition header's ``read_dir``, ``phase_dir``,
  ``slice_dir``; twix: the MDH quaternion (stored w, x, y, z) converted as ISMRMRD's
  ``ismrmrd_quaternion_to_directions`` with the ``(x, y, z, w)`` order and the first two outputs
  swapped (phase, read), as ``siemens_to_ismrmrd`` does.
* The image pixel ``(h, w)`` of entry ``s`` (``H x W`` image of voxel size ``dH x dW``) is centred at
  ``position[s] + (h - H // 2) dH read_dir[s] + (w - W // 2) dW phase_dir[s]``: index ``n // 2`` is the
  centre of a centred FFT.
* ``counters[name][s]``: the contrast counters of each entry (``slice``, ``contrast`` (echo), ``repetition``,
  ``set``, ``phase``), so that outputs label them instead of folding them into slices.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Geometry", "LPS_TO_RAS", "quaternion_to_directions", "twix_geometry", "mrd_geometry",
           "sort_by_position", "affine_lps", "affine_ras", "COUNTERS"]

#: diag(-1, -1, 1): LPS (DICOM) <-> RAS (NIfTI) coordinates
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
#: the contrast counters carried per entry, outermost first (the slice axis order before sorting)
COUNTERS = ("repetition", "contrast", "phase", "set", "slice")


@dataclass
class Geometry:
    """Per-entry patient geometry (LPS mm and unit vectors), arrays of shape ``(S, 3)``; counters ``(S,)``."""

    position: np.ndarray
    read_dir: np.ndarray
    phase_dir: np.ndarray
    slice_dir: np.ndarray
    counters: dict[str, list[int]] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("position", "read_dir", "phase_dir", "slice_dir"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64).reshape(-1, 3))

    def __len__(self) -> int:
        return int(self.position.shape[0])

    def take(self, order: Any) -> "Geometry":
        order = np.asarray(order, dtype=int)
        return Geometry(self.position[order], self.read_dir[order], self.phase_dir[order],
                        self.slice_dir[order], {k: [v[i] for i in order] for k, v in self.counters.items()},
                        self.source)

    def contrast_groups(self) -> list[tuple[dict[str, int], list[int]]]:
        """Entries grouped by every counter but ``slice``: ``[(labels, entry indices in slice order)]``."""
        groups: dict[tuple, list[int]] = {}
        names = [k for k in COUNTERS if k != "slice" and k in self.counters]
        for s in range(len(self)):
            groups.setdefault(tuple(self.counters[k][s] for k in names), []).append(s)
        return [(dict(zip(names, key)), idx) for key, idx in groups.items()]

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable: first entry's position/orientation, slice range, counters present."""
        normal = self.slice_dir[0]
        along = self.position @ normal
        out = {"source": self.source, "entries": len(self),
               "position_lps_mm": [round(float(v), 4) for v in self.position[0]],
               "read_dir": [round(float(v), 6) for v in self.read_dir[0]],
               "phase_dir": [round(float(v), 6) for v in self.phase_dir[0]],
               "slice_dir": [round(float(v), 6) for v in normal],
               "slice_positions_mm": [round(float(along.min()), 4), round(float(along.max()), 4)]}
        multi = {k: sorted(set(v)) for k, v in self.counters.items() if len(set(v)) > 1}
        if multi:
            out["counters"] = multi
        return out


def quaternion_to_directions(quat: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ISMRMRD's ``ismrmrd_quaternion_to_directions``: ``(a, b, c, d)`` (d the scalar part) -> 3 columns."""
    a, b, c, d = (float(v) for v in quat)
    first = np.array([1 - 2 * (b * b + c * c), 2 * (a * b + c * d), 2 * (a * c - b * d)])
    second = np.array([2 * (a * b - c * d), 1 - 2 * (a * a + c * c), 2 * (b * c + a * d)])
    third = np.array([2 * (a * c + b * d), 2 * (b * c - a * d), 1 - 2 * (a * a + b * b)])
    return first, second, third


def _twix_dirs(quat_wxyz: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(read, phase, slice) from a Siemens MDH quaternion stored ``(w, x, y, z)`` (siemens_to_ismrmrd)."""
    w, x, y, z = (float(v) for v in quat_wxyz)
    phase, read, normal = quaternion_to_directions((x, y, z, w))
    return read, phase, normal


_TWIX_COUNTERS = {"repetition": "Rep", "contrast": "Eco", "phase": "Phs", "set": "Set", "slice": "Sli"}


def twix_geometry(mdb_list: Any, sizes: dict[str, int], dim_order: tuple[str, ...],
                  averaged: tuple[str, ...]) -> Geometry | None:
    """Geometry of each slice-axis entry of the twix reader (``sizes``: the array's sizes per dimension).

    The twix reader's slice axis is the C-order flattening of ``dim_order[:Lin]`` (``Sli`` fastest); the
    entry of an MDB is its counters' flat index there. ``Par`` (3D) entries share the MDB's geometry,
    offset along the slice normal by ``(par - n_par // 2)`` x the partition thickness (not known here: 0).
    """
    dims = list(dim_order[:dim_order.index("Lin")])
    shape = [1 if d in averaged else int(sizes[d]) for d in dims]
    n = int(np.prod(shape))
    pos = np.full((n, 3), np.nan)
    rd, ph, sl = (np.full((n, 3), np.nan) for _ in range(3))
    for mdb in mdb_list:
        c = mdb.mdh.Counter
        idx = [0 if d in averaged else int(getattr(c, d)) for d in dims]
        if any(i >= s for i, s in zip(idx, shape)):
            continue
        e = int(np.ravel_multi_index(idx, shape))
        if not np.isnan(pos[e, 0]):
            continue
        sd = mdb.mdh.SliceData
        pos[e] = (sd.SlicePos.Sag, sd.SlicePos.Cor, sd.SlicePos.Tra)
        rd[e], ph[e], sl[e] = _twix_dirs(sd.Quaternion)
    if np.isnan(pos).all():
        return None
    # entries never acquired (e.g. 3D partitions beyond the first) take the first known geometry
    first = int(np.flatnonzero(~np.isnan(pos[:, 0]))[0])
    for arr in (pos, rd, ph, sl):
        arr[np.isnan(arr[:, 0])] = arr[first]
    grid = np.unravel_index(np.arange(n), shape)
    counters = {name: [int(v) for v in grid[dims.index(d)]] for name, d in _TWIX_COUNTERS.items()}
    return Geometry(pos, rd, ph, sl, counters, source="twix MDH sSliceData")


def mrd_geometry(heads: np.ndarray, frame_of: np.ndarray, frames: np.ndarray,
                 frame_fields: tuple[str, ...]) -> Geometry | None:
    """Geometry of each MRD entry from the first acquisition header landing on it (None when the
    headers leave the directions zero, as ``ismrmrd_generate_cartesian_shepp_logan`` does).

    heads: the kept acquisitions' headers (``ismrmrd.hdf5.acquisition_header_dtype`` records).
    frame_of: entry index of each kept acquisition; frames: ``(F, len(frame_fields))`` counters.
    """
    n = frames.shape[0]
    first = np.full(n, -1)
    for j in range(frame_of.size - 1, -1, -1):
        first[frame_of[j]] = j
    h = heads[first]
    norms = [np.linalg.norm(np.asarray(h[k], dtype=np.float64), axis=-1) for k in ("read_dir", "phase_dir")]
    if not all(np.all(np.abs(v - 1) < 1e-3) for v in norms):
        return None
    counters = {k: [int(v) for v in frames[:, i]] for i, k in enumerate(frame_fields)}
    return Geometry(h["position"], h["read_dir"], h["phase_dir"], h["slice_dir"], counters,
                    source="MRD acquisition headers")


def sort_by_position(geom: Geometry) -> np.ndarray:
    """Entry order: by every counter but ``slice`` (outermost first), then by position along the normal.

    Interleaved acquisitions (slice counter != spatial order) come out spatially ordered, increasing along
    ``slice_dir`` of the first entry.
    """
    along = geom.position @ geom.slice_dir[0]
    keys = [np.round(along, 4)]
    for name in reversed([k for k in COUNTERS if k != "slice" and k in geom.counters]):
        keys.append(np.asarray(geom.counters[name]))
    return np.lexsort(keys)


def affine_lps(geom: Geometry, entries: list[int], shape_hw: tuple[int, int],
               voxel_mm: tuple[float, float, float]) -> np.ndarray:
    """4x4 affine (LPS mm) of the stored ``(H, W, len(entries))`` volume of those entries (voxel centres).

    Column 0 steps one H pixel (``dH read_dir``), column 1 one W pixel (``dW phase_dir``), column 2 one
    entry: the mean step between consecutive entries' positions, or ``dSlice slice_dir`` for one entry.
    """
    h, w = shape_hw
    dh, dw, ds = voxel_mm
    g = geom.take(entries)
    col0 = dh * g.read_dir[0]
    col1 = dw * g.phase_dir[0]
    if len(g) > 1:
        col2 = (g.position[-1] - g.position[0]) / (len(g) - 1)
    else:
        col2 = ds * g.slice_dir[0]
    origin = g.position[0] - (h // 2) * col0 - (w // 2) * col1
    aff = np.eye(4)
    aff[:3, 0], aff[:3, 1], aff[:3, 2], aff[:3, 3] = col0, col1, col2, origin
    return aff


def affine_ras(geom: Geometry, entries: list[int], shape_hw: tuple[int, int],
               voxel_mm: tuple[float, float, float]) -> np.ndarray:
    """:func:`affine_lps` in RAS+ (the NIfTI affine)."""
    aff = affine_lps(geom, entries, shape_hw, voxel_mm)
    aff[:3] = LPS_TO_RAS @ aff[:3]
    return aff


def frame_position_lps(geom: Geometry, entry: int, shape_hw: tuple[int, int],
                       voxel_mm: tuple[float, float, float]) -> np.ndarray:
    """DICOM ``ImagePositionPatient`` of an entry: the centre of its first pixel (row 0, column 0), LPS mm."""
    h, w = shape_hw
    return (geom.position[entry] - (h // 2) * voxel_mm[0] * geom.read_dir[entry]
            - (w // 2) * voxel_mm[1] * geom.phase_dir[entry])


@dataclass
class OutputLayout:
    """How an ``(S, H, W)`` volume is written: stacks (one per contrast) and their geometry (LPS).

    stacks: ``[(contrast labels, entry indices in spatial order)]``; affines: one LPS affine per stack of
    the ``(H, W, len(stack))`` volume; positions: ``(S, 3)`` ImagePositionPatient of each entry;
    row_dir / col_dir: LPS unit vectors along W / H; spacing_mm: distance between slices.
    """

    stacks: list[tuple[dict[str, int], list[int]]]
    affines: list[np.ndarray]
    positions: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    spacing_mm: float
    scanner: bool  # True: from the file's geometry; False: the display affine (no geometry in the file)


def output_layout(header: Any, shape: tuple[int, int, int], voxel_mm: tuple[float, float, float],
                  display_affine_ras: np.ndarray) -> OutputLayout:
    """The layout of a volume of ``shape`` ``(S, H, W)``: from ``header.geometry`` when it describes the
    ``S`` entries, else one stack on ``display_affine_ras`` (the field-of-view display affine)."""
    s, h, w = shape
    geom = getattr(header, "geometry", None) if header is not None else None
    if isinstance(geom, Geometry) and len(geom) == s:
        stacks = geom.contrast_groups()
        affines = [affine_lps(geom, idx, (h, w), voxel_mm) for _, idx in stacks]
        positions = np.stack([frame_position_lps(geom, e, (h, w), voxel_mm) for e in range(s)])
        return OutputLayout(stacks, affines, positions, geom.phase_dir[0], geom.read_dir[0],
                            float(np.linalg.norm(affines[0][:3, 2])), True)
    aff = np.array(display_affine_ras, dtype=np.float64)
    aff[:3] = LPS_TO_RAS @ aff[:3]
    positions = np.stack([aff[:3, 3] + k * aff[:3, 2] for k in range(s)])
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    return OutputLayout([({}, list(range(s)))], [aff], positions, unit(aff[:3, 1]), unit(aff[:3, 0]),
                        float(np.linalg.norm(aff[:3, 2])), False)
