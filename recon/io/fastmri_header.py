"""The ``ismrmrd_header`` XML of fastMRI files: parsing it as fastMRI's data code does, and writing one.

fastMRI (``fastmri/data/mri_data.py``) reads four things from the header's first ``<encoding>``:
the encoded matrix, the recon matrix, and ``encodingLimits/kspace_encoding_step_1`` ``center`` and
``maximum``, from which it derives the zero-padded phase-encode columns::

    padding_left  = encoded_y // 2 - limits.center
    padding_right = padding_left + limits.maximum + 1

Lines ``[padding_left, padding_right)`` of W can hold data; fastMRI zeroes masks outside them. We read
the same values (plus the fields of view) into :class:`recon.io.types.Header`, where
``acquired_pe = (padding_left, padding_right)`` and ``pe_center = padding_left + limits.center``
(which equals ``encoded_y // 2`` by construction).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from recon.errors import DataError
from recon.io.types import Header

ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"
_NS = {"m": ISMRMRD_NS}

Triple = tuple[int, int, int]
FloatTriple = tuple[float, float, float]


@dataclass(frozen=True)
class EncodingInfo:
    """What a fastMRI ``ismrmrd_header`` says (sizes in samples, fields of view in mm).

    ``limits_center`` / ``limits_maximum`` are ``encodingLimits/kspace_encoding_step_1`` as stored
    (``maximum`` is the last acquired phase-encode index, inclusive).
    """

    encoded_matrix: Triple
    encoded_fov_mm: FloatTriple
    recon_matrix: Triple
    recon_fov_mm: FloatTriple
    limits_center: int
    limits_maximum: int
    receiver_channels: int | None

    @property
    def padding_left(self) -> int:
        """First phase-encode column that can hold data (fastMRI's ``padding_left``)."""
        return self.encoded_matrix[1] // 2 - self.limits_center

    @property
    def padding_right(self) -> int:
        """One past the last phase-encode column that can hold data (fastMRI's ``padding_right``)."""
        return self.padding_left + self.limits_maximum + 1

    @property
    def pe_center(self) -> int:
        """Column of the k-space centre line: ``padding_left + limits.center``."""
        return self.padding_left + self.limits_center


def _text(root: ET.Element, path: str, what: str, source: Path | str | None) -> str:
    node = root.find(path, _NS)
    if node is None or node.text is None or not node.text.strip():
        raise DataError(f"ismrmrd_header has no {what}", source)
    return node.text.strip()


def _int(root: ET.Element, path: str, what: str, source: Path | str | None) -> int:
    text = _text(root, path, what, source)
    try:
        return int(text)
    except ValueError:
        try:  # some converters write "640.0"
            value = float(text)
        except ValueError:
            raise DataError(f"ismrmrd_header {what} is not a number: {text!r}", source) from None
        if value != int(value):
            raise DataError(f"ismrmrd_header {what} is not an integer: {text!r}", source) from None
        return int(value)


def _float(root: ET.Element, path: str, what: str, source: Path | str | None) -> float:
    text = _text(root, path, what, source)
    try:
        return float(text)
    except ValueError:
        raise DataError(f"ismrmrd_header {what} is not a number: {text!r}", source) from None


def _triple(root: ET.Element, space: str, field: str, source: Path | str | None, as_float: bool) -> tuple:
    conv = _float if as_float else _int
    return tuple(conv(root, f"m:{space}/m:{field}/m:{a}", f"{space}/{field}/{a}", source) for a in "xyz")


def parse_encoding(xml: str | bytes, source: Path | str | None = None) -> EncodingInfo:
    """Parse a fastMRI ``ismrmrd_header``; raise :class:`DataError` naming ``source`` if it is not usable.

    Requires (as fastMRI does) encodedSpace and reconSpace matrix sizes and
    ``encodingLimits/kspace_encoding_step_1`` center and maximum. Fields of view default to 0 when absent.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise DataError(f"ismrmrd_header is not valid XML: {exc}", source) from None
    enc = root.find("m:encoding", _NS)
    if enc is None:
        enc = root.find(".//m:encoding", _NS)
    if enc is None:
        raise DataError("ismrmrd_header has no <encoding> element (ISMRMRD namespace)", source)
    enc_matrix = _triple(enc, "encodedSpace", "matrixSize", source, as_float=False)
    rec_matrix = _triple(enc, "reconSpace", "matrixSize", source, as_float=False)
    try:
        enc_fov = _triple(enc, "encodedSpace", "fieldOfView_mm", source, as_float=True)
        rec_fov = _triple(enc, "reconSpace", "fieldOfView_mm", source, as_float=True)
    except DataError:
        enc_fov = rec_fov = (0.0, 0.0, 0.0)
    lim = "m:encodingLimits/m:kspace_encoding_step_1"
    center = _int(enc, f"{lim}/m:center", "encodingLimits/kspace_encoding_step_1/center", source)
    maximum = _int(enc, f"{lim}/m:maximum", "encodingLimits/kspace_encoding_step_1/maximum", source)
    channels_node = root.find("m:acquisitionSystemInformation/m:receiverChannels", _NS)
    channels = None
    if channels_node is not None and channels_node.text and channels_node.text.strip().isdigit():
        channels = int(channels_node.text.strip())
    return EncodingInfo(enc_matrix, enc_fov, rec_matrix, rec_fov, center, maximum, channels)


def encoding_from_header(header: Header, width: int) -> EncodingInfo:
    """The :class:`EncodingInfo` that, written and read back, gives ``header``'s sizes and ``acquired_pe``.

    ``width`` is W of the k-space, used when ``header.acquired_pe`` is None (then all of W is acquirable).
    The limits are chosen so that fastMRI's padding rule returns ``acquired_pe`` exactly:
    ``center = encoded_y // 2 - start`` and ``maximum = end - start - 1``.
    """
    start, end = header.acquired_pe if header.acquired_pe is not None else (0, width)
    enc_y = int(header.encoded_matrix[1])
    return EncodingInfo(
        encoded_matrix=tuple(int(v) for v in header.encoded_matrix),  # type: ignore[arg-type]
        encoded_fov_mm=tuple(float(v) for v in header.encoded_fov_mm),  # type: ignore[arg-type]
        recon_matrix=tuple(int(v) for v in header.recon_matrix),  # type: ignore[arg-type]
        recon_fov_mm=tuple(float(v) for v in header.recon_fov_mm),  # type: ignore[arg-type]
        limits_center=enc_y // 2 - int(start),
        limits_maximum=int(end) - int(start) - 1,
        receiver_channels=int(header.num_coils),
    )


def _fmt(v: float | int) -> str:
    return repr(float(v)) if isinstance(v, float) else str(int(v))


def build_xml(info: EncodingInfo) -> str:
    """A minimal valid ISMRMRD header (namespace, encoding, limits, channels) for a fastMRI-layout file."""
    def triple(tag: str, values: tuple) -> str:
        return f"<{tag}>" + "".join(f"<{a}>{_fmt(v)}</{a}>" for a, v in zip("xyz", values)) + f"</{tag}>"

    channels = info.receiver_channels if info.receiver_channels is not None else 1
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<ismrmrdHeader xmlns="{ISMRMRD_NS}">'
        "<acquisitionSystemInformation>"
        f"<receiverChannels>{channels}</receiverChannels>"
        "</acquisitionSystemInformation>"
        "<experimentalConditions><H1resonanceFrequency_Hz>0</H1resonanceFrequency_Hz></experimentalConditions>"
        "<encoding>"
        "<encodedSpace>" + triple("matrixSize", info.encoded_matrix)
        + triple("fieldOfView_mm", info.encoded_fov_mm) + "</encodedSpace>"
        "<reconSpace>" + triple("matrixSize", info.recon_matrix)
        + triple("fieldOfView_mm", info.recon_fov_mm) + "</reconSpace>"
        "<encodingLimits>"
        "<kspace_encoding_step_1>"
        f"<minimum>0</minimum><maximum>{info.limits_maximum}</maximum><center>{info.limits_center}</center>"
        "</kspace_encoding_step_1>"
        "<kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>"
        "</encodingLimits>"
        "<trajectory>cartesian</trajectory>"
        "</encoding>"
        "</ismrmrdHeader>"
    )


def _same_encoding(a: EncodingInfo, b: EncodingInfo) -> bool:
    return (a.encoded_matrix == b.encoded_matrix and a.recon_matrix == b.recon_matrix
            and a.encoded_fov_mm == b.encoded_fov_mm and a.recon_fov_mm == b.recon_fov_mm
            and a.padding_left == b.padding_left and a.padding_right == b.padding_right)


def header_xml(header: Header, width: int) -> str:
    """The XML to store for ``header``: its own ``xml`` when that already says the same sizes and limits
    (kept byte for byte), otherwise a freshly generated header (:func:`build_xml`)."""
    wanted = encoding_from_header(header, width)
    if header.xml:
        try:
            if _same_encoding(parse_encoding(header.xml), wanted):
                return header.xml
        except DataError:
            pass
    return build_xml(wanted)
