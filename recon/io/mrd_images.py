"""``OUTPUT.mrd.h5``: the reconstruction as ISMRMRD images with their image headers (geometry, counters).

Specification: ``data_specs/geometry.md``. One image per entry of the slice axis, appended to the group
``/dataset/image_0`` of an ISMRMRD HDF5 file (``ismrmrd.Dataset.append_image``), in entry order:
data ``(1, 1, W, H)`` float32 (ISMRMRD's ``(channels, z, y, x)`` with x = readout = our H), header
``matrix_size = (H, W, 1)``, ``field_of_view = (H dH, W dW, thickness)`` mm, ``position`` = the slice
centre (LPS mm), ``read_dir`` / ``phase_dir`` / ``slice_dir`` from the input's geometry (the display
geometry of :mod:`recon.io.images` without one), ``slice`` / ``contrast`` / ``repetition`` / ``set`` /
``phase`` counters, ``image_index`` (1-based), ``image_series_index`` = the contrast stack (1-based),
``image_type`` magnitude. The input's ISMRMRD XML header is copied when the input had one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recon.io.geometry import Geometry

__all__ = ["write_mrd_images", "read_mrd_images"]


def write_mrd_images(tmp: Path, vol: np.ndarray, header: Any, voxel_mm: tuple[float, float, float],
                     layout: Any, provenance: str | None = None) -> None:
    """Write ``vol`` ``(S, H, W)`` (magnitude) at ``tmp`` as ISMRMRD images (see module doc); ``voxel_mm`` and
    ``layout`` (:func:`recon.io.geometry.output_layout`) come from the image writer (:mod:`recon.io.images`);
    ``provenance`` becomes each image's ``ImageComments`` meta attribute."""
    # deferred: loads ismrmrd, which importing recon.io.mrd_images does not
    import ismrmrd

    s, h, w = vol.shape
    dh, dw, dz = voxel_mm
    geom = getattr(header, "geometry", None) if header is not None else None
    if not (isinstance(geom, Geometry) and len(geom) == s):
        centre = layout.positions + (h // 2) * dh * layout.col_dir + (w // 2) * dw * layout.row_dir
        normal = np.cross(layout.col_dir, layout.row_dir)
        geom = Geometry(centre, np.tile(layout.col_dir, (s, 1)), np.tile(layout.row_dir, (s, 1)),
                        np.tile(normal, (s, 1)), {"slice": list(range(s))}, source="display")
    series = np.zeros(s, dtype=int)
    for n, (_, idx) in enumerate(layout.stacks, start=1):
        series[idx] = n
    dset = ismrmrd.Dataset(str(tmp), "dataset", create_if_needed=True)
    try:
        if header is not None and getattr(header, "xml", None):
            dset.write_xml_header(header.xml)
        for e in range(s):
            img = ismrmrd.Image.from_array(np.ascontiguousarray(vol[e].T[None, None].astype(np.float32)))
            img.field_of_view = (float(h * dh), float(w * dw), float(dz))
            img.position = tuple(float(v) for v in geom.position[e])
            img.read_dir = tuple(float(v) for v in geom.read_dir[e])
            img.phase_dir = tuple(float(v) for v in geom.phase_dir[e])
            img.slice_dir = tuple(float(v) for v in geom.slice_dir[e])
            for name in ("slice", "contrast", "repetition", "set", "phase"):
                if name in geom.counters:
                    setattr(img, name, int(geom.counters[name][e]))
            img.image_index = e + 1
            img.image_series_index = int(series[e])
            img.image_type = ismrmrd.IMTYPE_MAGNITUDE
            if provenance:
                meta = ismrmrd.Meta()
                meta["ImageComments"] = provenance
                img.attribute_string = meta.serialize()
            dset.append_image("image_0", img)
    finally:
        dset.close()


def read_mrd_images(path: str | Path, group: str = "image_0") -> tuple[np.ndarray, list[Any]]:
    """Read back ``(S, H, W)`` float32 images and their ``ismrmrd.ImageHeader`` objects (tests, tools)."""
    # deferred: loads ismrmrd, which importing recon.io.mrd_images does not
    import ismrmrd

    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    try:
        n = dset.number_of_images(group)
        imgs = [dset.read_image(group, i) for i in range(n)]
    finally:
        dset.close()
    vol = np.stack([np.asarray(im.data)[0, 0].T for im in imgs]).astype(np.float32)
    return vol, [im.getHead() for im in imgs]
