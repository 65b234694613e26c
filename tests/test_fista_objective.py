"""FISTA's objective tracking: skipping it (the default with random wavelet shifts) leaves the image unchanged."""
from __future__ import annotations

import pytest
import torch

from recon.errors import UsageError
from recon.solvers.fista import fista
from recon.solvers.regularizers import L1Wavelet
from recon.solvers.sense import cartesian_problem


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(2, 4, 32, 32, dtype=torch.complex64, generator=g)
    maps = torch.randn(2, 4, 32, 32, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().square().sum(dim=1, keepdim=True).sqrt()
    mask = (torch.rand(32, generator=g) < 0.4).float().reshape(1, 1, 1, 32)
    problem, _ = cartesian_problem(k, maps, mask)
    return problem


def test_untracked_objective_gives_the_same_image_and_end_value() -> None:
    problem = _problem()
    runs = {}
    for track in (True, False):
        reg = L1Wavelet((32, 32), "db2", 2, random_shift=True, seed=3)
        runs[track] = fista(problem, reg, 0.05, iterations=15, track_objective=track)
    assert torch.equal(runs[True].image, runs[False].image)
    assert runs[True].restarts == runs[False].restarts
    assert len(runs[True].history) == 16 and len(runs[False].history) == 2
    assert runs[False].history[0] == runs[True].history[0]
    assert runs[False].history[-1] == pytest.approx(runs[True].history[-1], rel=1e-6)
    # default with random shifts: untracked
    reg = L1Wavelet((32, 32), "db2", 2, random_shift=True, seed=3)
    assert len(fista(problem, reg, 0.05, iterations=15).history) == 2


def test_monotone_restart_tracks_and_refuses_untracked() -> None:
    problem = _problem(1)
    reg = L1Wavelet((32, 32), "db2", 2)
    assert len(fista(problem, reg, 0.05, iterations=5).history) == 6
    with pytest.raises(UsageError):
        fista(problem, reg, 0.05, iterations=5, track_objective=False)
