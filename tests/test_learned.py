"""Learned solvers (E2E-VarNet, MoDL): shapes for odd sizes and coil counts, 1D/2D masks, gradients, exact data
consistency at the hard-constraint limit, scale equivariance, given maps, CG, weights files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recon.errors import CorruptFileError, DataError, InputError, UsageError
from recon.operators.fft import fft2c, ifft2c
from recon.solvers.learned import ComplexUNet, MoDL, VarNet, build_model, load_model
from recon.solvers.cg import conjugate_gradient
from recon.sampling import SamplingMask
from recon.operators.sense import Sense
from recon.solvers.learned.common import calibration_mask, robust_scale, scaled_inputs

as_mask = SamplingMask.for_network


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Give the zero-initialised output layers random weights, as training does."""
    for module in model.modules():
        if isinstance(module, ComplexUNet):
            torch.nn.init.normal_(module.unet.out.weight, std=0.3)
            torch.nn.init.normal_(module.unet.out.bias, std=0.1)
    return model


def tiny_varnet() -> VarNet:
    torch.manual_seed(0)
    return trained_like(VarNet(num_cascades=2, chans=4, num_pools=2, sens_chans=2, sens_pools=2))


def tiny_modl() -> MoDL:
    torch.manual_seed(0)
    return trained_like(MoDL(num_iterations=2, chans=4, num_pools=2, cg_iterations=3, sens_chans=2, sens_pools=2))


def kspace_of(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Smooth-ish test k-space: FFT of a random blob image times random coil phases."""
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    obj = ((xx ** 2 + yy ** 2) < 0.6).to(torch.complex64) * (1 + 0.3 * torch.rand(h, w, generator=g))
    coils = torch.randn(b, c, 1, 1, generator=g, dtype=torch.complex64) * (1 + 0.5 * xx + 0.3j * yy)
    return fft2c(coils * obj)


def column_mask(w: int, step: int = 3) -> torch.Tensor:
    m = torch.zeros(w, dtype=torch.bool)
    m[::step] = True
    m[w // 2 - 2:w // 2 + 3] = True
    return m


@pytest.mark.parametrize("factory", [tiny_varnet, tiny_modl], ids=["varnet", "modl"])
@pytest.mark.parametrize("shape,mask_kind", [((1, 3, 37, 29), "column"), ((2, 5, 30, 41), "2d"),
                                             ((1, 1, 33, 20), "per-example")])
def test_forward_backward_shapes(factory, shape, mask_kind):
    model = factory()
    b, c, h, w = shape
    k = kspace_of(shape)
    if mask_kind == "column":
        mask = column_mask(w)
    elif mask_kind == "2d":
        g = torch.Generator().manual_seed(1)
        mask = torch.rand(h, w, generator=g) < 0.4
        mask[h // 2 - 3:h // 2 + 3, w // 2 - 3:w // 2 + 3] = True
    else:
        mask = column_mask(w)[None].expand(b, h, w)
    out = model(k, mask)
    assert out.shape == (b, h, w) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and (out >= 0).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_varnet_hard_data_consistency_reproduces_samples():
    model = tiny_varnet()
    k = kspace_of((1, 4, 36, 28))
    mask = column_mask(28)
    with torch.no_grad():
        for cascade in model.cascades:
            cascade.dc_weight.fill_(1.0)
        _, out_k = model(k, mask, return_kspace=True)
        sampled = out_k[..., mask]
        ref = k[..., mask]
        assert float((sampled - ref).abs().max() / ref.abs().max()) < 1e-5
        # unsampled lines are the network's, not zeros and not the input
        assert float(out_k[..., ~mask].abs().mean()) > 1e-3 * float(ref.abs().mean())
        for cascade in model.cascades:  # the test can fail: a soft weight leaves the samples changed
            cascade.dc_weight.fill_(0.3)
        _, soft_k = model(k, mask, return_kspace=True)
        assert float((soft_k[..., mask] - ref).abs().max() / ref.abs().max()) > 1e-3


@pytest.mark.parametrize("factory", [tiny_varnet, tiny_modl], ids=["varnet", "modl"])
def test_output_on_the_data_scale(factory):
    model = factory().eval()
    k = kspace_of((1, 3, 32, 24))
    mask = column_mask(24)
    with torch.no_grad():
        a = model(k, mask)
        b = model(k * 1000.0, mask)
    np.testing.assert_allclose(b.numpy(), 1000.0 * a.numpy(), rtol=2e-4, atol=1e-4 * float(b.max()))
    # and the zero-filled RSS is of the same order as the output (normalisation undone)
    zf = torch.sqrt((torch.fft.ifft2(k * mask, norm="ortho").abs() ** 2).sum(1))
    assert 0.1 < float(a.max() / zf.max()) < 10


def test_varnet_given_maps_skip_the_sensitivity_network():
    model = tiny_varnet()
    k = kspace_of((1, 3, 32, 24))
    maps = torch.ones(1, 3, 32, 24, dtype=torch.complex64) / np.sqrt(3)
    out = model(k, column_mask(24), maps=maps)
    out.mean().backward()
    assert all(p.grad is None for p in model.sens_net.parameters())
    assert all(p.grad is not None for p in model.cascades.parameters())


@pytest.mark.parametrize("factory", [tiny_varnet, tiny_modl], ids=["varnet", "modl"])
def test_given_maps_phase_convention_does_not_matter(factory):
    """Given maps are phase-aligned to the low-resolution image (align_map_phase): maps times any per-pixel
    unit phase (ESPIRiT's reference-coil convention vs another) give the same output."""
    model = factory().eval()
    k = kspace_of((1, 3, 32, 24))
    g = torch.Generator().manual_seed(1)
    maps = torch.randn(1, 3, 32, 24, generator=g, dtype=torch.complex64)
    maps = maps / torch.sqrt((maps.abs() ** 2).sum(1, keepdim=True))
    phase = torch.exp(2j * np.pi * torch.rand(1, 1, 32, 24, generator=g)).to(torch.complex64)
    with torch.no_grad():
        a = model(k, column_mask(24), maps=maps)
        b = model(k, column_mask(24), maps=maps * phase)
        c = model(k, column_mask(24), maps=maps * phase.conj() ** 3)
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-4 * float(a.max()))
    np.testing.assert_allclose(c.numpy(), a.numpy(), rtol=1e-4, atol=1e-4 * float(a.max()))


def test_calibration_mask_column_and_2d():
    k = torch.zeros(1, 1, 10, 16, dtype=torch.complex64)
    m = as_mask(column_mask(16), k)
    cal = calibration_mask(m)
    cols = torch.nonzero(cal[0, 0, 0]).flatten().tolist()
    assert cols == [6, 7, 8, 9, 10] and bool(cal[0, 0, :, 6:11].all()) and float(cal.sum()) == 50
    m2 = torch.zeros(10, 16)
    m2[3:8, 5:12] = 1
    m2[0, 8] = 1  # an isolated sample on the centre column outside the box is not calibration
    cal2 = calibration_mask(as_mask(m2, k))
    assert float(cal2.sum()) == 35 and bool(cal2[0, 0, 3:8, 5:12].all())


def test_as_mask_rejects_bad_shapes():
    k = torch.zeros(2, 3, 10, 16, dtype=torch.complex64)
    with pytest.raises(UsageError, match="does not fit k-space"):
        as_mask(torch.ones(15), k)
    with pytest.raises(UsageError, match="complex with shape"):
        as_mask(None, torch.zeros(3, 10, 16))


def test_robust_scale_is_the_rss_quantile():
    img = torch.zeros(1, 2, 10, 10, dtype=torch.complex64)
    img[0, 0] = torch.arange(100, dtype=torch.float32).reshape(10, 10)
    assert float(robust_scale(img)) == pytest.approx(float(np.quantile(np.arange(100), 0.99)), rel=1e-6)
    assert float(robust_scale(torch.zeros_like(img))) == 1.0


def test_differentiable_conjugate_gradient_solves_and_differentiates():
    """MoDL's CG (recon.solvers.cg, differentiable=True): batched solve of (N + lam I) x = b equal to a direct
    solve, a zero right-hand side stays zero (no NaN), the same iterates as the classical mode, and
    d x / d lam = -(N + lam I)^-1 x through the unrolled steps."""
    g = torch.Generator().manual_seed(0)
    n = 6
    mats = []
    for _ in range(2):
        a = torch.randn(n * n, n * n, generator=g, dtype=torch.complex128)
        mats.append(a.conj().T @ a + 5 * torch.eye(n * n, dtype=torch.complex128))
    hpd = torch.stack(mats)  # (2, 36, 36): two independent systems

    def normal(v):
        return (hpd @ v.reshape(2, -1, 1)).reshape(v.shape)

    rhs = torch.randn(2, n, n, generator=g, dtype=torch.complex128)
    rhs[1] = 0
    lam = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    res = conjugate_gradient(normal, rhs, torch.zeros_like(rhs), lam=lam, max_iter=60, differentiable=True)
    assert res.iterations == 60 and res.history == [] and res.converged is None
    x = res.image
    eye = torch.eye(n * n, dtype=torch.complex128)
    direct = torch.linalg.solve(hpd + 0.7 * eye, rhs.reshape(2, -1, 1)).reshape(2, n, n)
    assert float((x - direct).abs().max()) < 1e-8 and not x[1].abs().any()
    classical = conjugate_gradient(normal, rhs, torch.zeros_like(rhs), lam=0.7, max_iter=5, tol=0.0).image
    five = conjugate_gradient(normal, rhs, torch.zeros_like(rhs), lam=lam, max_iter=5, differentiable=True).image
    assert float((five - classical).abs().max()) < 1e-12
    (grad,) = torch.autograd.grad((x.conj() * x).real.sum(), lam)
    dx = -torch.linalg.solve(hpd + 0.7 * eye, direct.reshape(2, -1, 1)).reshape(2, n, n)
    assert float(grad) == pytest.approx(float(2 * (direct.conj() * dx).real.sum()), rel=1e-6)


def test_weights_file_round_trip_and_errors(tmp_path):
    model = tiny_varnet()
    path = tmp_path / "w.pt"
    torch.save({"config": model.config, "state_dict": model.state_dict()}, path)
    loaded = load_model(path, expect="varnet")
    k = kspace_of((1, 2, 24, 20))
    with torch.no_grad():
        np.testing.assert_array_equal(loaded(k, column_mask(20)).numpy(), model.eval()(k, column_mask(20)).numpy())
    with pytest.raises(DataError, match="weights are for model 'varnet', not 'modl'"):
        load_model(path, expect="modl")
    with pytest.raises(InputError, match="weights file does not exist"):
        load_model(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(CorruptFileError, match="not a readable PyTorch weights file") as err:
        load_model(garbage)
    assert err.value.path == garbage
    bad = tmp_path / "bad.pt"
    torch.save({"config": {**model.config, "chans": 6}, "state_dict": model.state_dict()}, bad)
    with pytest.raises(DataError, match="weights do not fit the model config"):
        load_model(bad)
    with pytest.raises(UsageError, match="unknown model 'unet'"):
        build_model({"model": "unet"})


def test_untrained_varnet_is_the_zero_filled_rss():
    """Zero-initialised corrections: an untrained VarNet is data consistency only, i.e. zero-filled RSS."""
    torch.manual_seed(0)
    model = VarNet(num_cascades=2, chans=4, num_pools=2, sens_chans=2, sens_pools=2)
    k = kspace_of((1, 4, 36, 28))
    mask = column_mask(28)
    with torch.no_grad():
        out = model(k, mask)
    zf = torch.sqrt((ifft2c(k * mask).abs() ** 2).sum(1))
    assert float((out - zf).abs().max() / zf.max()) < 1e-5


def test_untrained_sensitivity_net_gives_acs_maps():
    """At initialisation the maps are the classical low-resolution ACS coil images over their RSS."""
    from recon.solvers.learned import SensitivityNet

    torch.manual_seed(0)
    net = SensitivityNet(2, 2)
    k = kspace_of((1, 3, 32, 24))
    m = as_mask(column_mask(24), k)
    with torch.no_grad():
        maps = net(k * m, m)
    acs = ifft2c(k * calibration_mask(m))
    ref = acs / torch.sqrt((acs.abs() ** 2).sum(1, keepdim=True))
    centre = (slice(None), slice(None), slice(12, 20), slice(8, 16))  # inside the object, away from ringing
    np.testing.assert_allclose(((maps[centre].abs() ** 2).sum(1)).numpy(), 1.0, rtol=1e-4)
    assert float((maps[centre] - ref[centre]).abs().max()) < 0.05


def test_build_model_checks_options_against_the_constructor_and_keeps_its_bugs(monkeypatch) -> None:
    """Unknown model options are a UsageError; a TypeError raised inside a constructor is a bug and stays one
    (issue 13: no TypeError catch around the call)."""
    from torch import nn

    from recon.solvers.learned import registry

    with pytest.raises(UsageError, match="bad options for model 'varnet'.*bogus"):
        registry.build_model({"model": "varnet", "bogus": 1})

    class Broken(nn.Module):
        def __init__(self, width: int = 4) -> None:
            super().__init__()
            raise TypeError("a bug inside the constructor")

    monkeypatch.setattr(registry, "model_classes", lambda: {"broken": Broken})
    with pytest.raises(TypeError, match="a bug inside the constructor"):
        registry.build_model({"model": "broken", "width": 3})


def test_varnet_training_path_is_bit_identical_to_the_sense_cascades():
    """While autograd records, VarNet runs its cascades in ModulatedSense's domain (k * p, p = +-1): the
    k-space and image equal, bit for bit, the same cascades run with Sense in its autograd path."""
    model = tiny_varnet()
    k = kspace_of((1, 4, 36, 28))
    mask = column_mask(28)
    image, kspace = model(k, mask, return_kspace=True)
    assert image.requires_grad
    y, m, scale, maps = scaled_inputs(k, mask, None, model.sens_net)
    sense, ref = Sense(maps), y
    for cascade in model.cascades:
        ref = cascade(ref, y, m, sense)
    assert torch.equal(kspace, ref * scale)
