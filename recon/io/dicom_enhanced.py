"""One Enhanced MR Image Storage file (multi-frame) per output, with per-frame patient geometry.

Specification: ``data_specs/geometry.md``. Frames are the entries of the slice axis (image ``(S, H, W)``,
rows = H = readout, columns = W = phase encode), grouped into one stack per contrast (echo / repetition /
set / cardiac phase: ``StackID`` = contrast group number, ``DimensionIndexValues`` = (stack, in-stack
position)). Per frame: ``PlanePositionSequence.ImagePositionPatient`` (LPS mm, the centre of the first
pixel), ``PlaneOrientationSequence.ImageOrientationPatient`` (row direction = ``phase_dir``, i.e. along W;
column direction = ``read_dir``, along H), ``PixelMeasuresSequence`` (``PixelSpacing [dH, dW]``,
``SliceThickness``, ``SpacingBetweenSlices``), ``FrameContentSequence`` and the rescale in
``PixelValueTransformationSequence``. One ``FrameOfReferenceUID`` for the file. Pixel values are uint16
scaled to the volume maximum (``value = stored * RescaleSlope``), as the Secondary Capture writer was.
Debian's ``dcm2niix`` converts the file into the same affine as our NIfTI (tests/test_geometry.py).
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import require
from recon import __version__

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR Image Storage


def _ds(s: float) -> str:
    """A DICOM decimal string (<= 16 characters)."""
    return f"{s:.10g}"[:16] if abs(s) >= 1e-6 else "0"


def write_enhanced_mr(tmp: Path, vol: np.ndarray, stacks: list[tuple[dict[str, int], list[int]]],
                      positions: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray,
                      voxel_mm: tuple[float, float, float], spacing_mm: float,
                      description: str = "recon reconstruction", comments: str | None = None) -> None:
    """Write ``vol`` ``(S, H, W)`` as one Enhanced MR file at ``tmp``.

    stacks: ``[(contrast labels, frame indices in spatial order)]``; positions: ``(S, 3)``
        ImagePositionPatient of every frame (LPS mm); row_dir / col_dir: unit LPS vectors along W / H;
    voxel_mm: ``(dH, dW, thickness)``; spacing_mm: distance between neighbouring slices.
    comments: ``ImageComments`` (how the image was made: version, method, threads), if given.
    """
    require("pydicom", None, "writing DICOM images")
    ds = _file_dataset(tmp, description, comments)
    slope, pixels = _image_module(ds, vol, voxel_mm)
    _dimension_module(ds)
    _shared_groups(ds, slope, row_dir, col_dir, voxel_mm, spacing_mm)
    order = _per_frame_groups(ds, stacks, positions, vol.shape[0])
    ds.PixelData = np.ascontiguousarray(pixels[order]).tobytes()
    ds.save_as(tmp, enforce_file_format=True)


def _file_dataset(tmp: Path, description: str, comments: str | None) -> Any:
    """The pydicom ``FileDataset``: file meta, fresh UIDs, dates (now), anonymous patient and study modules."""
    # deferred: loads pydicom, which importing recon.io.dicom_enhanced does not
    from pydicom.dataset import FileDataset, FileMetaDataset
    # deferred: loads pydicom, which importing recon.io.dicom_enhanced does not
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_MR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(tmp), {}, file_meta=meta, preamble=b"\0" * 128)
    now = datetime.datetime.now()
    ds.SOPClassUID = ENHANCED_MR
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.Modality = "MR"
    ds.ImageType = ["DERIVED", "PRIMARY", "RECON", "NONE"]
    ds.SeriesDescription = description
    ds.Manufacturer = "recon"
    ds.SoftwareVersions = str(__version__)
    if comments:
        ds.ImageComments = comments
    for tag in ("ContentDate", "StudyDate", "SeriesDate", "AcquisitionDateTime"):
        setattr(ds, tag, now.strftime("%Y%m%d") if not tag.endswith("Time") else now.strftime("%Y%m%d%H%M%S"))
    ds.ContentTime = ds.StudyTime = ds.SeriesTime = now.strftime("%H%M%S")
    ds.PatientName = "Anonymous"
    ds.PatientID = "0"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    return ds


def _image_module(ds: Any, vol: np.ndarray, voxel_mm: tuple[float, float, float]) -> tuple[float, np.ndarray]:
    """Pixel-description attributes of ``vol`` ``(S, H, W)`` on ``ds``; returns (RescaleSlope, uint16 pixels
    ``(S, H, W)``), ``value = stored * slope`` with the volume maximum at 65535. ``voxel_mm``: (dH, dW, dz) mm."""
    s, h, w = vol.shape
    dh, dw, dz = voxel_mm
    vmax = float(vol.max())
    slope = vmax / 65535.0 if vmax > 0 else 1.0
    pixels = np.clip(np.rint(vol / slope), 0, 65535).astype(np.uint16)
    ds.NumberOfFrames = s
    ds.Rows, ds.Columns = h, w
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.ContentQualification = "RESEARCH"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.VolumetricProperties = "VOLUME"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = "UNKNOWN"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    # the Secondary Capture writer's top-level attributes, kept for readers that look only there
    ds.RescaleIntercept = 0
    ds.RescaleSlope = _ds(slope)
    ds.RescaleType = "US"
    ds.PixelSpacing = [_ds(dh), _ds(dw)]
    ds.SliceThickness = _ds(dz)
    return slope, pixels


def _dimension_module(ds: Any) -> None:
    """Multi-frame dimensions on ``ds``: stack (TemporalPositionIndex, the contrast), then InStackPositionNumber."""
    # deferred: loads pydicom, which importing recon.io.dicom_enhanced does not
    from pydicom.dataset import Dataset
    # deferred: loads pydicom, which importing recon.io.dicom_enhanced does not
    from pydicom.sequence import Sequence
    # deferred: loads pydicom, which importing recon.io.dicom_enhanced does not
    from pydicom.uid import generate_uid

    # dimensions: stack, then position within the stack
    dim_uid = generate_uid()
    dims = []
    # TemporalPositionIndex (the contrast), InStackPositionNumber
    for pointer, group in ((0x00209128, 0x00209111), (0x00209057, 0x00209111)):
        d = Dataset()
        d.DimensionOrganizationUID = dim_uid
        d.DimensionIndexPointer = pointer
        d.FunctionalGroupPointer = group
        dims.append(d)
    org = Dataset()
    org.DimensionOrganizationUID = dim_uid
    ds.DimensionOrganizationSequence = Sequence([org])
    ds.DimensionIndexSequence = Sequence(dims)


def _shared_groups(ds: Any, slope: float, row_dir: np.ndarray, col_dir: np.ndarray,
                   voxel_mm: tuple[float, float, float], spacing_mm: float) -> None:
    """``SharedFunctionalGroupsSequence``: pixel measures (mm), orientation (unit LPS row/column directions
    ``(3,)``), rescale ``slope`` and the MR frame type, the same for every frame."""
    # deferred: loads pydicom, which importing recon.io.dicom_enhanced does not
    from pydicom.dataset import Dataset
    # deferred: loads pydicom, which importing recon.io.dicom_enhanced does not
    from pydicom.sequence import Sequence

    dh, dw, dz = voxel_mm
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [_ds(dh), _ds(dw)]
    measures.SliceThickness = _ds(dz)
    measures.SpacingBetweenSlices = _ds(spacing_mm)
    shared.PixelMeasuresSequence = Sequence([measures])
    orient = Dataset()
    orient.ImageOrientationPatient = [_ds(v) for v in np.concatenate([row_dir, col_dir])]
    shared.PlaneOrientationSequence = Sequence([orient])
    pvt = Dataset()
    pvt.RescaleIntercept = 0
    pvt.RescaleSlope = _ds(slope)
    pvt.RescaleType = "US"
    shared.PixelValueTransformationSequence = Sequence([pvt])
    mrtype = Dataset()
    mrtype.FrameType = ["DERIVED", "PRIMARY", "RECON", "NONE"]
    mrtype.PixelPresentation = "MONOCHROME"
    mrtype.VolumetricProperties = "VOLUME"
    mrtype.VolumeBasedCalculationTechnique = "NONE"
    mrtype.ComplexImageComponent = "MAGNITUDE"
    mrtype.AcquisitionContrast = "UNKNOWN"
    shared.MRImageFrameTypeSequence = Sequence([mrtype])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])


def _per_frame_groups(ds: Any, stacks: list[tuple[dict[str, int], list[int]]], positions: np.ndarray,
                      n_frames: int) -> list[int]:
    """``PerFrameFunctionalGroupsSequence`` (frame content, ImagePositionPatient from ``positions`` ``(S, 3)``
    LPS mm), frames stored stack by stack in spatial order; returns that order (indices into the S frames)."""
    # deferred: loads pydicom, which importing recon.io.dicom_enhanced does not
    from pydicom.dataset import Dataset
    # deferred: loads pydicom, which importing recon.io.dicom_enhanced does not
    from pydicom.sequence import Sequence

    per_frame: list[Any] = [None] * n_frames
    order: list[int] = []
    for stack_no, (labels, frames) in enumerate(stacks, start=1):
        for pos_no, f in enumerate(frames, start=1):
            item = Dataset()
            content = Dataset()
            content.StackID = "1"  # one spatial stack; contrasts are temporal positions
            content.InStackPositionNumber = pos_no
            content.DimensionIndexValues = [stack_no, pos_no]
            content.FrameAcquisitionNumber = stack_no
            content.TemporalPositionIndex = stack_no
            if labels:
                content.FrameLabel = ",".join(f"{k}={v}" for k, v in labels.items())[:64]
            item.FrameContentSequence = Sequence([content])
            plane = Dataset()
            plane.ImagePositionPatient = [_ds(v) for v in positions[f]]
            item.PlanePositionSequence = Sequence([plane])
            per_frame[f] = item
            order.append(f)
    # frames stored stack by stack, in spatial order
    ds.PerFrameFunctionalGroupsSequence = Sequence([per_frame[f] for f in order])
    return order
