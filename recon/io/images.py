"""Image outputs by extension: PNG (preview montage), NIfTI (``.nii``/``.nii.gz``) and DICOM (``.dcm``).

Every writer is atomic (:func:`recon.io.atomic.atomic_path`) and refuses to replace an existing file unless
``overwrite`` is set. Input is a magnitude volume ``(S, H, W)`` (H = readout, W = phase encode), e.g. a
reconstruction.

PNG
    Grayscale 8-bit (``round(255 * value / white)``), one slice -> an ``H x W`` pixel image; several slices -> a montage grid of
    ``ceil(sqrt(S))`` columns, slice 0 top left, in reading order, unused cells black. The grey scale runs
    from 0 (black) to the volume's 99.5th percentile (white; brighter pixels saturate), so a few hot pixels
    do not darken the image. Each slice is drawn as stored: row 0 at the top.
NIfTI
    The array is stored as ``(H, W, S)`` float32, voxel sizes ``(dH, dW, dS)`` in mm from the header
    (``recon_fov_mm / recon_matrix`` along x=H and y=W; the slice thickness ``recon_fov_mm[2] /
    recon_matrix[2]``), 1 mm when unknown. The affine assumes the slice is displayed as an axial
    radiological image, as fastMRI brain data and our Colin 27 simulations are: H runs anterior -> posterior,
    W patient right -> left, slices inferior -> superior, so the voxel axes are (P, L, S) and viewers
    (FSLeyes, ITK-SNAP, nibabel's ``aff2axcodes``) show it upright. The volume is centred on the origin.
    For data of another orientation (e.g. a coronal knee) the anatomical labels are nominal; sizes hold.
Geometry
    When the header carries the patient geometry (``Header.geometry``, data_specs/geometry.md) NIfTI gets the
    scanner affine (RAS+, one volume per contrast) and DICOM the per-frame positions instead of the display
    affine above; ``.dcm`` is then written as one Enhanced MR Image file (``recon.io.dicom_enhanced``, also
    without geometry) and ``.mrd.h5`` as ISMRMRD images (``recon.io.mrd_images``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import gzip

from recon.errors import OutputError, UsageError, require
from recon.io.atomic import atomic_path, check_output_path
from recon.io.types import Header
from recon.io.geometry import LPS_TO_RAS, output_layout
from recon.io.dicom_enhanced import write_enhanced_mr
from recon.io.mrd_images import write_mrd_images

#: extension -> format name
IMAGE_FORMATS = {".png": "png", ".nii": "nifti", ".nii.gz": "nifti", ".dcm": "dicom", ".mrd.h5": "mrd"}
#: the PNG grey scale saturates at this percentile of the volume
PNG_PERCENTILE = 99.5


def image_format(path: str | Path) -> str:
    """``png``, ``nifti`` or ``dicom`` from the file name, else :class:`OutputError` listing the options."""
    path = Path(path)
    name = path.name.lower()
    for ext in sorted(IMAGE_FORMATS, key=len, reverse=True):
        if name.endswith(ext):
            return IMAGE_FORMATS[ext]
    raise OutputError(
        f"unknown image extension '{''.join(path.suffixes) or '(none)'}' (use .png, .nii, .nii.gz, .dcm or .mrd.h5)", path
    )


def _as_volume(volume: Any) -> np.ndarray:
    vol = np.asarray(volume)
    if np.iscomplexobj(vol):
        vol = np.abs(vol)
    if vol.ndim == 2:
        vol = vol[None]
    if vol.ndim != 3 or 0 in vol.shape:
        raise UsageError(f"an image volume must have shape (slices, H, W), got {np.shape(volume)}")
    vol = vol.astype(np.float32)
    if not np.all(np.isfinite(vol)):
        raise UsageError("image volume contains NaN/Inf")
    return vol


def voxel_size_mm(header: Header | None) -> tuple[float, float, float]:
    """``(dH, dW, dSlice)`` in mm from the header's recon field of view and matrix (1 mm where unknown)."""
    if header is None:
        return (1.0, 1.0, 1.0)
    sizes = []
    for fov, n in zip(header.recon_fov_mm, header.recon_matrix):
        sizes.append(float(fov) / float(n) if fov and fov > 0 and n and n > 0 else 1.0)
    return sizes[0], sizes[1], sizes[2]


def montage(volume: np.ndarray, columns: int | None = None) -> np.ndarray:
    """Tile ``(S, H, W)`` slices into one ``(rows * H, columns * W)`` image, reading order, zeros elsewhere."""
    s, h, w = volume.shape
    cols = columns or math.ceil(math.sqrt(s))
    rows = math.ceil(s / cols)
    grid = np.zeros((rows * h, cols * w), dtype=volume.dtype)
    for i in range(s):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = volume[i]
    return grid


def nifti_affine(voxel_mm: tuple[float, float, float], shape: tuple[int, int, int]) -> np.ndarray:
    """Affine of the stored ``(H, W, S)`` array: axes (P, L, S) with the given voxel sizes, centred at 0."""
    dh, dw, ds = voxel_mm
    affine = np.eye(4)
    affine[:3, :3] = np.array([
        [0.0, -dw, 0.0],  # W (column) index increases toward patient left = -x (RAS)
        [-dh, 0.0, 0.0],  # H (row) index increases toward posterior = -y
        [0.0, 0.0, ds],   # slice index increases toward superior = +z
    ])
    centre = (np.asarray(shape, dtype=float) - 1) / 2
    affine[:3, 3] = -affine[:3, :3] @ centre
    return affine


def _write_png(tmp: Path, vol: np.ndarray, provenance: str | None = None) -> None:
    # deferred: loads matplotlib, which importing recon.io.images does not
    import matplotlib

    matplotlib.use("Agg", force=False)
    # deferred: loads matplotlib, which importing recon.io.images does not
    from matplotlib import image as mpimg

    vmax = float(np.percentile(vol, PNG_PERCENTILE))
    if vmax <= 0:
        vmax = float(vol.max()) or 1.0
    grey = np.rint(np.clip(montage(vol) / vmax, 0.0, 1.0) * 255).astype(np.uint8)
    mpimg.imsave(tmp, np.repeat(grey[..., None], 3, axis=-1), format="png",  # linear 8-bit, no colormap LUT
                 metadata={"Description": provenance} if provenance else None)  # a PNG tEXt chunk


def _layout(vol: np.ndarray, header: Header | None) -> Any:
    s, h, w = vol.shape
    return output_layout(header, vol.shape, voxel_size_mm(header), nifti_affine(voxel_size_mm(header), (h, w, s)))


def _write_nifti(tmp: Path, vol: np.ndarray, header: Header | None, gz: bool, provenance: str | None = None) -> None:
    nib = require("nibabel", None, "writing NIfTI images")

    layout = _layout(vol, header)  # scanner geometry (recon.io.geometry) or the display affine
    sizes = {len(idx) for _, idx in layout.stacks}
    if len(layout.stacks) > 1 and len(sizes) == 1:  # one volume per contrast: (H, W, slices, contrasts)
        data = np.stack([np.transpose(vol[idx], (1, 2, 0)) for _, idx in layout.stacks], axis=-1)
    else:
        data = np.transpose(vol[[e for _, idx in layout.stacks for e in idx]], (1, 2, 0))
    data = np.ascontiguousarray(data)  # (H, W, S[, contrasts])
    affine = layout.affines[0].copy()
    affine[:3] = LPS_TO_RAS @ affine[:3]
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(img.affine, code=1)
    img.header.set_sform(img.affine, code=1)
    if provenance:
        img.header["descrip"] = provenance.encode("ascii", "replace")[:79]  # NIfTI-1 allows 80 bytes
    # nibabel picks gzip from the file name; the temporary name ends in .part, so write bytes ourselves

    raw = img.to_bytes()
    if gz:
        with gzip.open(tmp, "wb", compresslevel=6) as fh:
            fh.write(raw)
    else:
        tmp.write_bytes(raw)


def _write_enhanced_dicom(tmp: Path, vol: np.ndarray, header: Header | None, provenance: str | None = None) -> None:
    layout = _layout(vol, header)
    write_enhanced_mr(tmp, vol, layout.stacks, layout.positions, layout.row_dir, layout.col_dir,
                      voxel_size_mm(header), layout.spacing_mm,
                      description=f"recon {header.acquisition}" if header is not None and header.acquisition
                      else "recon reconstruction", comments=provenance)


def write_image(
    path: str | Path, volume: Any, *, header: Header | None = None, overwrite: bool = False,
    provenance: str | None = None,
) -> Path:
    """Write a magnitude volume as PNG, NIfTI or DICOM, chosen by the extension (see module doc).

    Parameters
    ----------
    path: ``*.png``, ``*.nii``, ``*.nii.gz`` or ``*.dcm``.
    volume: ``(S, H, W)`` (or ``(H, W)``) magnitude; complex input is written as its magnitude.
    header: supplies voxel sizes (mm) for NIfTI/DICOM; None = 1 mm.
    overwrite: replace an existing file (else :class:`OutputError`, file untouched).
    provenance: one line on how the image was made (``recon run`` gives version, method and torch threads):
        the PNG ``Description`` text chunk, the NIfTI ``descrip`` (80 bytes), DICOM ``ImageComments``, the
        MRD images' ``ImageComments`` meta attribute.

    Returns
    -------
    The path written.
    """
    path = Path(path)
    fmt = image_format(path)
    check_output_path(path, overwrite)
    vol = _as_volume(volume)
    with atomic_path(path, overwrite) as tmp:
        if fmt == "png":
            _write_png(tmp, vol, provenance)
        elif fmt == "nifti":
            _write_nifti(tmp, vol, header, gz=path.name.lower().endswith(".gz"), provenance=provenance)
        elif fmt == "mrd":
            write_mrd_images(tmp, vol, header, voxel_size_mm(header), _layout(vol, header), provenance=provenance)
        else:
            _write_enhanced_dicom(tmp, vol, header, provenance)
    return path
