"""Shared pytest fixtures. Keep each one small, generic and documented; add yours below the others.

* ``one_torch_thread`` (module scope): torch on one thread for the module, restored after; solver tests use it
  (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): small arrays run faster on one thread, and
  two threads spin badly when other processes share the cores.
* ``rng``: a seeded numpy Generator (the same numbers on every run).
* ``random_kspace``: ``random_kspace(shape, seed=0)`` -> complex64 Gaussian array of that shape.
* ``write_h5``: ``write_h5(name, datasets={...}, attrs={...})`` -> Path of an HDF5 file written with
  h5py directly under ``tmp_path`` (for building valid and broken inputs byte by byte).
* ``fastmri_xml``: ``fastmri_xml(encoded=(640, 368, 1), recon=(320, 320, 1), center=184, maximum=367,
  channels=15, encoded_fov=(280.0, 140.0, 4.5), recon_fov=(140.0, 140.0, 4.5))`` -> an
  ``ismrmrd_header`` laid out like the ones in the fastMRI knee files (namespace, element order, extra
  elements fastMRI ignores), with the given sizes and ``kspace_encoding_step_1`` limits.
* ``edited_sample``: ``edited_sample(name, edit)`` -> Path of a copy of the bundled sample under ``tmp_path``
  after ``edit(h5py.File)`` ran on it (a broken fastMRI input made from a valid one).
* ``tiny_prior_weights`` (module scope): an untrained small ``DenoiserPrior`` saved as a weights file, for
  tests of the diffusion plumbing (not of its quality).
* ``mrd_file``: ``mrd_file(name, encoded=(64, 32), recon=None, xml_edit=None, edit=None)`` -> Path of a small
  valid ISMRMRD file (2 coils, every line sampled, random k-space) written with the ``ismrmrd`` package
  (skipped without it); ``xml_edit(str) -> str`` changes its XML header first, ``edit(h5py.File)`` the file
  after (broken MRD inputs made from a valid one).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def random_kspace() -> Callable[..., np.ndarray]:
    def make(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
        g = np.random.default_rng(seed)
        return (g.standard_normal(shape) + 1j * g.standard_normal(shape)).astype(np.complex64)

    return make


@pytest.fixture
def write_h5(tmp_path: Path) -> Callable[..., Path]:
    def write(name: str, datasets: dict[str, Any] | None = None, attrs: dict[str, Any] | None = None) -> Path:
        path = tmp_path / name
        with h5py.File(path, "w") as f:
            for key, value in (datasets or {}).items():
                if isinstance(value, str):
                    f.create_dataset(key, data=value, dtype=h5py.string_dtype("utf-8"))
                else:
                    f.create_dataset(key, data=value)
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
        return path

    return write


_FASTMRI_XML = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xs="http://www.w3.org/2001/XMLSchema" xsi:schemaLocation="http://www.ismrm.org/ISMRMRD ismrmrd.xsd">
   <studyInformation>
      <studyTime>10:21:14</studyTime>
   </studyInformation>
   <measurementInformation>
      <measurementID>45160_40954118_40954127_1024</measurementID>
      <patientPosition>FFS</patientPosition>
      <protocolName>CORPD_FBK</protocolName>
      <frameOfReferenceUID>1.3.12.2.1107.5.2.19.45160.1.20180424101914587.0.0.4990</frameOfReferenceUID>
   </measurementInformation>
   <acquisitionSystemInformation>
      <systemVendor>SIEMENS</systemVendor>
      <systemModel>Skyra</systemModel>
      <systemFieldStrength_T>2.89362</systemFieldStrength_T>
      <relativeReceiverNoiseBandwidth>0.793</relativeReceiverNoiseBandwidth>
      <receiverChannels>{channels}</receiverChannels>
      <institutionName>NYU</institutionName>
   </acquisitionSystemInformation>
   <experimentalConditions>
      <H1resonanceFrequency_Hz>123251815</H1resonanceFrequency_Hz>
   </experimentalConditions>
   <encoding>
      <encodedSpace>
         <matrixSize>
            <x>{ex}</x>
            <y>{ey}</y>
            <z>{ez}</z>
         </matrixSize>
         <fieldOfView_mm>
            <x>{efx}</x>
            <y>{efy}</y>
            <z>{efz}</z>
         </fieldOfView_mm>
      </encodedSpace>
      <reconSpace>
         <matrixSize>
            <x>{rx}</x>
            <y>{ry}</y>
            <z>{rz}</z>
         </matrixSize>
         <fieldOfView_mm>
            <x>{rfx}</x>
            <y>{rfy}</y>
            <z>{rfz}</z>
         </fieldOfView_mm>
      </reconSpace>
      <trajectory>cartesian</trajectory>
      <encodingLimits>
         <kspace_encoding_step_1>
            <minimum>0</minimum>
            <maximum>{maximum}</maximum>
            <center>{center}</center>
         </kspace_encoding_step_1>
         <kspace_encoding_step_2>
            <minimum>0</minimum>
            <maximum>0</maximum>
            <center>0</center>
         </kspace_encoding_step_2>
         <average>
            <minimum>0</minimum>
            <maximum>0</maximum>
            <center>0</center>
         </average>
         <slice>
            <minimum>0</minimum>
            <maximum>34</maximum>
            <center>0</center>
         </slice>
      </encodingLimits>
      <parallelImaging>
         <accelerationFactor>
            <kspace_encoding_step_1>1</kspace_encoding_step_1>
            <kspace_encoding_step_2>1</kspace_encoding_step_2>
         </accelerationFactor>
         <calibrationMode>other</calibrationMode>
      </parallelImaging>
   </encoding>
   <sequenceParameters>
      <TR>2750</TR>
      <TE>27</TE>
      <TI>100</TI>
   </sequenceParameters>
</ismrmrdHeader>
"""


@pytest.fixture
def fastmri_xml() -> Callable[..., str]:
    def make(encoded=(640, 368, 1), recon=(320, 320, 1), center=184, maximum=367, channels=15,
             encoded_fov=(280.0, 140.0, 4.5), recon_fov=(140.0, 140.0, 4.5)) -> str:
        return _FASTMRI_XML.format(
            ex=encoded[0], ey=encoded[1], ez=encoded[2], rx=recon[0], ry=recon[1], rz=recon[2],
            efx=encoded_fov[0], efy=encoded_fov[1], efz=encoded_fov[2],
            rfx=recon_fov[0], rfy=recon_fov[1], rfz=recon_fov[2],
            center=center, maximum=maximum, channels=channels,
        )

    return make


@pytest.fixture
def edited_sample(tmp_path: Path) -> Callable[[str, Callable[[h5py.File], Any]], Path]:
    import shutil

    from recon.data import sample_path

    def edit_copy(name: str, edit: Callable[[h5py.File], Any]) -> Path:
        path = tmp_path / name
        shutil.copy(sample_path(), path)
        with h5py.File(path, "r+") as f:
            edit(f)
        return path

    return edit_copy


@pytest.fixture(scope="module")
def tiny_prior_weights(tmp_path_factory) -> Path:
    import torch

    from recon.solvers.diffusion.prior import DenoiserPrior

    torch.manual_seed(0)
    prior = DenoiserPrior(chans=(8, 16), emb_dim=16)
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    torch.save({"config": prior.config, "state_dict": prior.state_dict()}, path)
    return path


@pytest.fixture
def mrd_file(tmp_path: Path) -> Callable[..., Path]:
    ismrmrd = pytest.importorskip("ismrmrd")

    def make(name: str, encoded: tuple[int, int] = (64, 32), recon: tuple[int, int] | None = None,
             xml_edit: Callable[[str], str] | None = None, edit: Callable[[h5py.File], Any] | None = None) -> Path:
        h, w = encoded
        rx, ry = recon if recon is not None else (h // 2, w)
        xml = ('<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
               "<acquisitionSystemInformation><receiverChannels>2</receiverChannels></acquisitionSystemInformation>"
               "<experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz>"
               f"</experimentalConditions><encoding><encodedSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z>"
               f"</matrixSize><fieldOfView_mm><x>{2.0 * h}</x><y>{2.0 * w}</y><z>5</z></fieldOfView_mm>"
               f"</encodedSpace><reconSpace><matrixSize><x>{rx}</x><y>{ry}</y><z>1</z></matrixSize>"
               f"<fieldOfView_mm><x>{2.0 * rx}</x><y>{2.0 * ry}</y><z>5</z></fieldOfView_mm></reconSpace>"
               "<encodingLimits/><trajectory>cartesian</trajectory></encoding></ismrmrdHeader>")
        if xml_edit is not None:
            xml = xml_edit(xml)
        g = np.random.default_rng(7)
        path = tmp_path / name
        with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as ds:
            ds.write_xml_header(xml.encode())
            for step in range(w):
                line = (g.standard_normal((2, h)) + 1j * g.standard_normal((2, h))).astype(np.complex64)
                acq = ismrmrd.Acquisition.from_array(line)
                acq.center_sample = h // 2
                acq.idx.kspace_encode_step_1 = step
                ds.append_acquisition(acq)
        if edit is not None:
            with h5py.File(path, "r+") as f:
                edit(f)
        return path

    return make


@pytest.fixture(scope="module")
def cal_folder(tmp_path_factory) -> Path:
    """A calibration folder (``recon calibrate``): two simulated fastMRI files of 6 small (48 x 40) fully sampled
    slices each, with references (test_conformal, test_ensemble)."""
    from recon.simulate import load_colin27, write_dataset

    images = load_colin27(list(range(70, 82)), shape=(160, 144))[:, 8:152:3, 12:132:3]
    folder = tmp_path_factory.mktemp("cal") / "cal"
    write_dataset(folder, images, slices_per_file=6, num_coils=4, snr=30.0, seed=3)
    return folder
