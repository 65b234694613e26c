"""``recon.sampling.SamplingMask``: the one owner of mask conversions (issue 13 item 2).

The reference functions below are the bodies of the helpers it replaced (``expand_mask``, ``acquired_mask``,
``is_2d_mask``, the two ``as_mask``, ``as_weight``, ``slice_mask(s)``), kept here so that the class is checked
against what they returned, not against itself.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from recon.errors import DataError, UsageError
from recon.io.types import Header, RawData
from recon.sampling import SamplingMask, mask_from_options

S, C, H, W = 2, 3, 8, 12
KSHAPE = (S, C, H, W)


# -- the old helpers' bodies (references) ------------------------------------------------------------------
def old_expand(mask):
    if mask.ndim == 1:
        return mask.reshape(1, 1, 1, -1)
    if mask.ndim == 2:
        return mask[None, None]
    if mask.ndim == 3:
        return mask[:, None]
    return mask


def old_acquired(mask, header, width=None):
    out = np.array(mask, dtype=bool, copy=True)
    if header is None or header.acquired_pe is None:
        return out
    start, end = (int(v) for v in header.acquired_pe)
    out[..., :start] = False
    out[..., end:] = False
    return out


def old_is_2d(mask):
    if mask is None:
        return False
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.ndim < 2 or m.shape[-2] < 2:
        return False
    m = m.reshape(-1, m.shape[-2], m.shape[-1]) != 0
    return bool((m != m[:, :1, :]).any())


def old_sense_mask(mask, device=None):
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).to(torch.float32)
    if m.ndim == 3:
        m = m[:, None]
    return m.to(device) if device is not None else m


def old_weight(mask, like=torch.complex64):
    mask = torch.as_tensor(mask)
    double = like in (torch.complex128, torch.float64)
    if mask.is_complex():
        return mask.to(torch.complex128 if double else torch.complex64)
    return mask.to(torch.float64 if double else torch.float32)


def header(acquired_pe=None):
    return Header(encoded_matrix=(H, W, 1), recon_matrix=(H, W, 1), num_coils=C, acquired_pe=acquired_pe)


def raw_with(mask, acquired_pe=None):
    k = (np.random.default_rng(0).standard_normal(KSHAPE) + 1j).astype(np.complex64)
    return RawData(k, header(acquired_pe), mask)


column = mask_from_options("equispaced_fraction", W, 2, 0.34, seed=1)[0]
poisson = mask_from_options("poisson", (1, C, H, W), 2, 0.3, seed=0)[0]
per_slice = np.stack([np.broadcast_to(column, (H, W)), poisson])
MASKS = {"column": column, "2d": poisson, "per-slice": per_slice, "4d": column.reshape(1, 1, 1, W),
         "weights": np.linspace(0, 1, W, dtype=np.float32)}


# -- construction and round trips --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MASKS))
def test_round_trips_keep_the_array(name):
    m = MASKS[name]
    sm = SamplingMask(m)
    assert sm.array is m and not sm.is_torch and sm.shape == m.shape and sm.ndim == m.ndim
    assert SamplingMask(sm).array is m and SamplingMask.from_any(sm) is sm
    np.testing.assert_array_equal(sm.numpy(), m)
    t = sm.to()
    assert isinstance(t, torch.Tensor) and t.dtype == torch.from_numpy(np.asarray(m)).dtype
    back = SamplingMask(t)
    assert back.is_torch and back.array is t
    np.testing.assert_array_equal(back.numpy(), m)
    assert SamplingMask.from_any(None) is None
    assert SamplingMask([True, False]).shape == (2,)


def test_frozen():
    sm = SamplingMask(column)
    with pytest.raises(AttributeError):
        sm.array = poisson  # type: ignore[misc]


# -- 1D vs 2D ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [column, poisson, per_slice, np.broadcast_to(column, (H, W)), column.reshape(1, 1, 1, W),
                               np.ones((H, W)), poisson[None, None], np.stack([np.ones((H, W)), poisson])])
def test_is_2d_matches_the_old_helper(m):
    assert SamplingMask(m).is_2d == old_is_2d(m)
    assert SamplingMask(torch.from_numpy(np.ascontiguousarray(m))).is_2d == old_is_2d(m)


def test_is_2d_detects_2d_masks():
    assert SamplingMask(poisson).is_2d and SamplingMask(per_slice).is_2d
    assert not SamplingMask(column).is_2d and not SamplingMask(np.broadcast_to(column, (H, W))).is_2d


# -- shapes against k-space --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MASKS))
def test_for_kspace_broadcasts_like_expand_mask(name):
    m = MASKS[name]
    out = SamplingMask.from_any(m, KSHAPE).for_kspace(KSHAPE).array
    ref = old_expand(m)
    assert out.shape == ref.shape and out.ndim == 4
    np.testing.assert_array_equal(out, ref)
    assert np.broadcast_shapes(out.shape, KSHAPE) == KSHAPE
    t = SamplingMask(torch.from_numpy(m)).for_kspace(KSHAPE).array
    assert isinstance(t, torch.Tensor) and tuple(t.shape) == ref.shape


def test_for_kspace_rejects_masks_that_do_not_fit():
    for bad in (np.ones(W + 1, bool), np.ones((H + 1, W), bool), np.ones((S + 1, H, W), bool)):
        with pytest.raises(UsageError, match="does not fit k-space of shape"):
            SamplingMask.from_any(bad, KSHAPE)
    coil = np.ones((S, C, H, W), bool)
    assert SamplingMask(coil).for_kspace(KSHAPE, per_coil=True).shape == KSHAPE
    with pytest.raises(UsageError, match="does not fit k-space"):
        SamplingMask(np.ones((S, C + 1, H, W), bool)).for_kspace(KSHAPE, per_coil=True)


def test_per_example_is_the_learned_mask():
    k = torch.zeros(KSHAPE, dtype=torch.complex64)
    for m in (column, poisson, per_slice, column.reshape(1, 1, 1, W)):
        out = SamplingMask.for_network(m, k)
        ref = torch.as_tensor(old_expand(m)).to(torch.float32)
        assert out.dtype == torch.float32 and tuple(out.shape) == (ref.shape[0], 1, H, W)
        assert torch.equal(out, ref.expand(ref.shape[0], 1, H, W))
    assert torch.equal(SamplingMask.for_network(None, k), torch.ones(1, 1, H, W))
    with pytest.raises(UsageError, match="does not fit k-space"):
        SamplingMask.for_network(np.ones((S, C, H, W)), k)
    with pytest.raises(UsageError, match="complex with shape"):
        SamplingMask.for_network(None, torch.zeros(C, H, W))


# -- tensors and devices -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MASKS))
def test_real_weight_and_weight_match_the_old_helpers(name):
    m = MASKS[name]
    for got, ref in ((SamplingMask(m).real_weight(), old_sense_mask(m)),
                     (SamplingMask(m).weight(), old_weight(torch.as_tensor(m))),
                     (SamplingMask(m).weight(torch.float64), old_weight(torch.as_tensor(m), torch.float64))):
        assert got.dtype == ref.dtype and got.shape == ref.shape and torch.equal(got, ref)
    z = torch.as_tensor(m).to(torch.complex64)
    assert SamplingMask(z).weight(torch.complex128).dtype == torch.complex128
    with pytest.raises(UsageError, match="real"):
        SamplingMask(z).real_weight()


def test_device_is_preserved_on_cpu():
    t = torch.from_numpy(poisson)
    sm = SamplingMask(t)
    assert sm.device == t.device and sm.to() is t and sm.for_kspace().array.device == t.device
    assert sm.weight().device == t.device and sm.bool_tensor().device == t.device
    assert SamplingMask(poisson).device == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_masks_stay_on_the_gpu():
    t = torch.from_numpy(poisson).cuda()
    sm = SamplingMask(t)
    assert sm.to("cuda") is t
    for out in (sm.for_kspace(KSHAPE).array, sm.real_weight(), sm.weight(), sm.bool_tensor(), sm.as_bool().array,
                sm.acquired(header((2, 10))).array, SamplingMask.for_network(t, torch.zeros(KSHAPE, dtype=torch.complex64,
                                                                                        device="cuda"))):
        assert out.is_cuda
    assert sm.is_2d


def test_fastmri_tensor_and_bool_tensor():
    t = SamplingMask(column).fastmri_tensor(4)
    assert t.dtype == torch.float32 and tuple(t.shape) == (1, 1, W, 1)
    assert torch.equal(t.flatten(), torch.from_numpy(column.astype(np.float32)))
    assert SamplingMask(torch.from_numpy(column)).fastmri_tensor(3).shape == (1, W, 1)
    b = SamplingMask(per_slice).bool_tensor()
    assert b.dtype == torch.bool and tuple(b.shape) == (S, 1, H, W)
    with pytest.raises(UsageError, match="column mask"):
        SamplingMask(poisson).fastmri_tensor()
    with pytest.raises(UsageError, match="1 to 3 axes"):
        SamplingMask(column.reshape(1, 1, 1, W)).bool_tensor()


# -- acquired lines per the header -------------------------------------------------------------------------
@pytest.mark.parametrize("pe", [None, (2, 10), (0, W), (3, -2)])
@pytest.mark.parametrize("name", ["column", "2d", "per-slice", "4d"])
def test_acquired_matches_the_old_helper(pe, name):
    m = MASKS[name]
    if pe is not None and pe[1] < 0:
        with pytest.raises(DataError, match="acquired_pe"):
            SamplingMask(m).acquired(header(pe), W)
        return
    out = SamplingMask(m).acquired(header(pe), W).array
    ref = old_acquired(m, header(pe), W)
    assert out.dtype == bool and out.shape == ref.shape and out is not m
    np.testing.assert_array_equal(out, ref)
    t = SamplingMask(torch.from_numpy(m)).acquired(header(pe), W).array
    assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), ref)
    assert SamplingMask(m).acquired(None).array.dtype == bool


def test_acquired_rejects_a_range_outside_the_width():
    with pytest.raises(DataError, match="acquired_pe"):
        SamplingMask(column).acquired(header((2, W + 1)), W)


# -- per file ----------------------------------------------------------------------------------------------
def test_of_raw_first_slice_and_per_slice():
    raw = raw_with(None, (2, 10))
    np.testing.assert_array_equal(SamplingMask.of_raw(raw).array, np.ones((1, 1, 1, W), bool))
    np.testing.assert_array_equal(SamplingMask.first_slice(raw).array, old_acquired(np.ones(W, bool), raw.header))
    np.testing.assert_array_equal(SamplingMask.per_slice(raw).array,
                                  old_acquired(np.ones((1, 1, W), bool), raw.header))
    for m, first, every in ((column, column, column[None, None]), (poisson, poisson, poisson[None]),
                            (per_slice, per_slice[0], per_slice), (column.reshape(1, 1, 1, W), column.reshape(1, 1, 1, W),
                                                                   column.reshape(1, 1, W))):
        raw = raw_with(m)
        np.testing.assert_array_equal(SamplingMask.of_raw(raw).array, old_expand(m))
        assert SamplingMask.first_slice(raw).shape == first.shape
        np.testing.assert_array_equal(SamplingMask.first_slice(raw).array, first)
        assert SamplingMask.per_slice(raw).shape == every.shape
        np.testing.assert_array_equal(SamplingMask.per_slice(raw).array, every)


# -- deprecation aliases -----------------------------------------------------------------------------------
def _warns(fn, *args):
    with pytest.warns(DeprecationWarning, match="deprecated"):
        return fn(*args)


def test_deprecated_aliases_warn_and_return_identical_arrays():
    from recon.io.types import expand_mask
    from recon.sampling import acquired_mask, to_fastmri_tensor, to_torch_mask
    from recon.solvers.cs import is_2d_mask
    from recon.solvers.learned.common import as_mask as learned_as_mask
    from recon.solvers.learned.masks import slice_mask, slice_masks
    from recon.solvers.learned.method import slice_mask as method_slice_mask
    from recon.solvers.sense import as_mask as sense_as_mask

    hdr = header((2, 10))
    for m in (column, poisson, per_slice):
        np.testing.assert_array_equal(_warns(expand_mask, m), SamplingMask(m).for_kspace().array)
        np.testing.assert_array_equal(_warns(acquired_mask, m, hdr, W), SamplingMask(m).acquired(hdr, W).array)
        np.testing.assert_array_equal(_warns(acquired_mask, m, hdr, W), old_acquired(m, hdr, W))
        assert torch.equal(_warns(to_torch_mask, m), SamplingMask(m).bool_tensor())
        assert _warns(is_2d_mask, m) == SamplingMask(m).is_2d == old_is_2d(m)
        assert torch.equal(_warns(sense_as_mask, m), old_sense_mask(m))
        k = torch.zeros(KSHAPE, dtype=torch.complex64)
        assert torch.equal(_warns(learned_as_mask, m, k), SamplingMask.for_network(m, k))
    assert torch.equal(_warns(to_fastmri_tensor, column, 4), SamplingMask(column).fastmri_tensor(4))
    assert _warns(is_2d_mask, None) is False and _warns(sense_as_mask, None) is None
    for m in (None, column, per_slice):
        raw = raw_with(m, (2, 10))
        np.testing.assert_array_equal(_warns(raw.sample_mask), SamplingMask.of_raw(raw).array)
        np.testing.assert_array_equal(_warns(slice_mask, raw), SamplingMask.first_slice(raw).array)
        np.testing.assert_array_equal(_warns(method_slice_mask, raw), SamplingMask.first_slice(raw).array)
        np.testing.assert_array_equal(_warns(slice_masks, raw), SamplingMask.per_slice(raw).array)


def test_library_code_never_calls_the_deprecated_aliases():
    """A zero-filled and a SENSE reconstruction of a RawData, and apply_mask, raise no DeprecationWarning."""
    from recon.sampling import apply_mask
    from recon.solvers.reconstruct import reconstruct

    raw = raw_with(column, (1, 11))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        apply_mask(raw.kspace, column, raw.header)
        reconstruct(raw, "zero-filled")
        reconstruct(raw, "sense", maps=np.ones((C, H, W), np.complex64) / np.sqrt(C), iterations=2)
