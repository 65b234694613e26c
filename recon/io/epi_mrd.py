"""EPI correction of MRD/ISMRMRD acquisitions: ramp regridding and navigator ghost correction per readout.

Specification: ``data_specs/epi.md`` ("MRD"). Used by :func:`recon.io.mrd.open_mrd` when the encoding's
``trajectory`` is ``epi``. The protocol is read as Gadgetron's ``EPIReconXGadget`` reads it: the
``trajectoryDescription`` with identifier ``ConventionalEPI``, ``userParameterLong`` ``rampUpTime``,
``rampDownTime``, ``flatTopTime``, ``acqDelayTime`` (us), ``numSamples`` (acquired samples per readout) and
``userParameterDouble`` ``dwellTime`` (us). The corrections are those of :mod:`recon.io.epi` (the twix path):

* each readout ``(coils, n)`` is reversed (plain reversal, ``ACQ_IS_REVERSE``) and, when ramp sampled,
  regridded onto the ``H = encodedSpace.matrixSize.x`` uniform samples with :func:`recon.io.epi.regrid_matrix`;
* ``ACQ_IS_PHASECORR_DATA`` navigators of each ``idx.slice`` are processed the same way, averaged per
  polarity and fitted by :func:`recon.io.epi.fit_odd_even_phase`; every image readout of that slice is
  multiplied in x-space by ``exp(+-i phi(x) / 2)`` by its polarity.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from recon.io.epi import EpiCorrection, RampSpec, fit_odd_even_phase, ghost_correction, ramp_trajectory, \
    regrid, regrid_matrix, to_k, to_x

__all__ = ["ramp_from_mrd", "MrdEpi"]


def ramp_from_mrd(enc: Any, n_out: int) -> tuple[RampSpec | None, int | None, dict[str, Any]]:
    """``(spec or None, numSamples or None, the parameters found)`` from ``encoding.trajectoryDescription``.

    None when the description is missing, not ``ConventionalEPI``, or describes no ramps (ramp times 0 or
    ``flatTopTime`` 0, Gadgetron's "ramp sampling off").
    """
    desc = getattr(enc, "trajectoryDescription", None)
    if desc is None:
        return None, None, {}
    params: dict[str, Any] = {"identifier": str(desc.identifier)}
    params.update({p.name: int(p.value) for p in (desc.userParameterLong or [])})
    params.update({p.name: float(p.value) for p in (desc.userParameterDouble or [])})
    if params["identifier"] != "ConventionalEPI":
        return None, None, params
    up, down, top = (float(params.get(k, 0)) for k in ("rampUpTime", "rampDownTime", "flatTopTime"))
    n, dwell = int(params.get("numSamples", 0)), float(params.get("dwellTime", 0.0))
    if top <= 0 or (up <= 0 and down <= 0) or n <= 0 or dwell <= 0:
        return None, n or None, params
    spec = RampSpec(2, up, top, down, float(params.get("acqDelayTime", 0)), dwell * n, n_out)
    return spec, n, params


class MrdEpi:
    """Per-readout EPI processing of one MRD file.

    ``spec``: the ramp (None: no regridding); ``n_samples``: acquired samples a ramp readout must have.
    :meth:`readout` turns a stored readout ``(coils, n)`` into ``(coils, H)`` k-space (reversed, regridded),
    :meth:`add_navigator` collects navigators, :meth:`fit` fits each slice, :meth:`correct` applies it.
    """

    def __init__(self, spec: RampSpec | None, n_samples: int | None, H: int) -> None:
        self.spec, self.n_samples, self.H = spec, n_samples, H
        self.matrix = None
        if spec is not None and n_samples:
            self.matrix = regrid_matrix(ramp_trajectory(spec, n_samples), spec.n_out)
        self.navs: dict[int, dict[bool, list[np.ndarray]]] = {}
        self.fits: dict[int, tuple[float, float]] = {}

    def readout(self, data: np.ndarray, reverse: bool) -> np.ndarray | None:
        """``(coils, H)`` regridded readout, or None when it has not the ramp's sample count (placed as
        a Cartesian readout by the caller)."""
        if self.matrix is None or data.shape[-1] != self.n_samples:
            return None
        return regrid(data[:, ::-1] if reverse else data, self.matrix)

    def add_navigator(self, line: np.ndarray, reverse: bool, slice_: int) -> None:
        """Keep a navigator already turned into ``(coils, H)`` k-space."""
        self.navs.setdefault(slice_, {}).setdefault(reverse, []).append(line)

    def fit(self) -> None:
        for sli, by_pol in sorted(self.navs.items()):
            if True in by_pol and False in by_pol:
                pos, neg = (np.mean(by_pol[p], axis=0) for p in (False, True))
                self.fits[sli] = fit_odd_even_phase(to_x(pos), to_x(neg))

    def correct(self, line: np.ndarray, reverse: bool, slice_: int) -> np.ndarray:
        """Ghost-correct one ``(coils, H)`` readout of slice ``slice_`` (unchanged without a fit)."""
        if slice_ not in self.fits:
            return line
        cpos, cneg = ghost_correction(*self.fits[slice_], line.shape[-1])
        return to_k(to_x(line) * (cneg if reverse else cpos)).astype(np.complex64)

    def info(self) -> EpiCorrection:
        n_nav = sum(len(v) for p in self.navs.values() for v in p.values())
        return EpiCorrection(ramp=self.spec.as_dict() if self.matrix is not None else None,
                             ghost={s: list(ab) for s, ab in self.fits.items()}, navigators=n_nav)
