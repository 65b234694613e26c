"""Scan-specific self-supervised adaptation of varnet/modl (issue 12, item 1; recon/solvers/learned/adapt.py).

The splits: the self-validation set and each step's DC/loss sets are disjoint and cover the acquired samples,
the calibration region is always in the DC set, the validation set is never in the loss set. Adaptation with
zero steps is exactly the unadapted output; a few steps on a tiny problem lower the self-validation loss;
same seed, same result; the weights file on disk and the cached model are unchanged; ``recon run --adapt`` on
a fastMRI-layout file and the real twix file records the adaptation; ``--adapt`` with sense is exit 2.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from recon.io.fastmri import write_fastmri_kspace
from recon.io.types import RawData
from recon.sampling import apply_mask, mask_from_options
from recon.simulate import load_colin27, simulate_multicoil
from recon.solvers.learned import adapt as ad
from recon.solvers.learned.method import get_model, modl_method, varnet_method
from recon.solvers.learned.registry import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
TWIX = ROOT / "tests" / "data" / "twix" / "gre.dat"
TINY_VARNET = {"model": "varnet", "num_cascades": 2, "chans": 4, "num_pools": 2, "sens_chans": 2, "sens_pools": 2}


def colin_slice(shape=(64, 64), coils=4, seed=0, slices=(90,)) -> RawData:
    """Fully sampled Colin 27 slice(s) (centre-cropped to ``shape``) on simulated coils."""
    return simulate_multicoil(load_colin27(list(slices), shape=shape), num_coils=coils, snr=30.0, seed=seed).raw


def undersampled(raw: RawData, accel=4, seed=1, mask_type="random") -> RawData:
    mask, _ = mask_from_options(mask_type, raw.kspace.shape[-2:], [accel], [0.08], seed)
    kspace, used = apply_mask(raw.kspace, mask, raw.header)
    return RawData(kspace, raw.header, used, raw.reference)


@pytest.mark.parametrize("mask_type", ["random", "poisson"])
def test_splits_disjoint_covering_calibration_in_dc(mask_type):
    raw = undersampled(colin_slice(shape=(96, 80)), mask_type=mask_type)
    grid = ad.sample_grid(raw.mask if raw.mask.ndim <= 2 else raw.mask[0])
    assert grid.shape[0] == (1 if mask_type == "random" else 96)
    rng = np.random.default_rng(3)
    split = ad.make_split(grid, rng)
    acq, cal, val = split.acquired, split.calibration, split.validation
    assert cal.any() and (cal <= acq).all()
    assert not (val & cal).any() and (val <= acq).all()
    outside = int((acq & ~cal).sum())
    assert abs(int(val.sum()) - 0.2 * outside) <= 1
    for _ in range(5):
        dc, loss = ad.draw_dc_loss(split, rng)
        assert not (dc & loss).any()
        assert ((dc | loss | val) == acq).all()  # the three sets cover the acquired samples
        assert not (dc & val).any() and not (loss & val).any()  # validation never in DC or loss
        assert (cal <= dc).all() and loss.any()
        assert abs(int(loss.sum()) - 0.4 * int((split.train & ~cal).sum())) <= 1


def test_fully_sampled_mask_is_refused():
    from recon.errors import UsageError

    with pytest.raises(UsageError, match="calibration"):
        ad.make_split(np.ones(32, dtype=bool), np.random.default_rng(0))


@pytest.mark.parametrize("method", [varnet_method, modl_method])
def test_zero_steps_is_exactly_unadapted(method):
    raw = undersampled(colin_slice())
    plain = method(raw)
    result = method(raw, adapt=True, adapt_steps=0)
    assert np.array_equal(result["reconstruction"], plain)
    assert result["adapt_chosen_step"].tolist() == [0]
    assert result["adapt_validation"].shape == (1, 1)


def _tiny_problem():
    torch.manual_seed(0)
    model = build_model(TINY_VARNET).eval()
    raw = undersampled(colin_slice(shape=(48, 48), coils=2))
    k = torch.from_numpy(raw.kspace[:1])
    return model, k, raw.mask


def test_a_few_steps_lower_the_validation_loss_and_keep_the_best():
    # the bundled VarNet on a small 2-coil slice (a randomly initialised tiny one predicts ~0 at the held-out
    # lines, validation loss 1.0, and a few steps do not move it): measured 0.998 -> 0.933 at step 2
    model = get_model("varnet")
    raw = undersampled(colin_slice(shape=(64, 64), coils=2))
    k, mask = torch.from_numpy(raw.kspace[:1]), raw.mask
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    adapted = ad.adapt_model(model, k, mask, steps=4, lr=1e-3, seed=0)
    curve = adapted.record["validation_curve"]
    assert len(curve) == 5 and adapted.record["steps"] == 4 and adapted.record["adapted"] is True
    assert min(curve[1:]) < curve[0] - 0.03, curve
    assert adapted.record["chosen_step"] == int(np.argmin(curve))
    # the chosen state is the one whose validation loss is recorded
    split = ad.make_split(mask, np.random.default_rng(0))
    g = lambda a: torch.from_numpy(a.astype(np.float32))[None, None]
    with torch.no_grad():
        _, kk = adapted.model(k * g(split.train), g(split.train), return_kspace=True)
        again = float(ad.kspace_loss(kk, k, g(split.validation)))
    assert again == pytest.approx(min(curve), rel=1e-5)
    for n, p in model.state_dict().items():  # the given model is untouched
        assert torch.equal(p, before[n]), n


def test_same_seed_same_result_other_seed_other_split():
    model, k, mask = _tiny_problem()
    a, rec_a = ad.adapted_reconstruction(model, k, mask, steps=3, lr=1e-2, seed=5)
    b, rec_b = ad.adapted_reconstruction(model, k, mask, steps=3, lr=1e-2, seed=5)
    _, rec_c = ad.adapted_reconstruction(model, k, mask, steps=3, lr=1e-2, seed=6)
    assert torch.equal(a, b) and rec_a == rec_b
    assert rec_a["validation_curve"] != rec_c["validation_curve"]


def test_default_steps_depend_on_the_acceleration(monkeypatch):
    assert ad.mask_acceleration(np.r_[np.ones(8), np.zeros(56)].astype(bool)) == 8.0
    assert ad.mask_acceleration(np.ones((4, 16), dtype=bool)) == 1.0
    assert ad.default_steps("varnet") == 40 and ad.default_steps("varnet", 4.0) == 40
    assert ad.default_steps("varnet", 6.0) == 70 and ad.default_steps("varnet", 8.0) == 70
    assert ad.default_steps("modl", 8.0) == 20 and ad.default_steps("other", 8.0) == ad.DEFAULT_STEPS
    assert ad.default_runs("varnet") == 1 and ad.default_runs("varnet", 4.0) == 1
    assert ad.default_runs("varnet", 6.0) == 2 and ad.default_runs("modl", 8.0) == 1
    assert ad.default_lr("varnet", 4.0) == ad.DEFAULT_LR == 1e-3 and ad.default_lr("varnet", 8.0) == 2e-3
    assert ad.default_lr("modl", 8.0) == 1e-3 and ad.default_lr("varnet") == 1e-3
    asked, original = [], ad.adapt_model

    def spy(model, k, mask, **opts):  # records the steps/runs the method resolved, adapts 0 steps (fast)
        asked.append((opts["steps"], opts["runs"], opts["lr"]))
        return original(model, k, mask, **{**opts, "steps": 0})

    monkeypatch.setattr(ad, "adapt_model", spy)
    for accel in (4, 8):
        raw = undersampled(colin_slice(shape=(64, 64), coils=2), accel=accel)
        assert (ad.mask_acceleration(raw.mask) >= 6) == (accel == 8)
        varnet_method(raw, adapt=True)
        varnet_method(raw, adapt=True, adapt_steps=3, adapt_lr=5e-4)
    assert asked == [(40, 1, 1e-3), (3, 1, 5e-4), (70, 2, 2e-3), (3, 2, 5e-4)]


def test_runs_average_independent_adaptations():
    model, k, mask = _tiny_problem()
    two = ad.adapt_model(model, k, mask, steps=3, lr=1e-2, seed=4, runs=2)
    runs = [ad.adapt_model(model, k, mask, steps=3, lr=1e-2, seed=s) for s in (4, 5)]
    rec = two.record
    assert rec["runs"] == 2 and rec["steps"] == 3
    # run r is the single adaptation with split seed seed + r, each keeping its own best state
    assert rec["chosen_step"] == [r.record["chosen_step"] for r in runs]
    assert rec["validation_curve"] == [r.record["validation_curve"] for r in runs]
    with torch.no_grad():
        outs = [r.model(k, torch.from_numpy(mask)) for r in runs]
        got = two.model(k, torch.from_numpy(mask))
    if any(rec["chosen_step"]):
        assert isinstance(two.model, ad.AveragedModel)
        assert torch.allclose(got, (outs[0] + outs[1]) / 2, rtol=1e-5, atol=1e-6 * float(got.abs().max()))
    else:
        assert torch.equal(got, outs[0])
    # zero steps: every run keeps the given weights, and the given model's copy alone is returned
    zero = ad.adapt_model(model, k, mask, steps=0, seed=4, runs=2)
    assert zero.record["chosen_step"] == [0, 0] and not isinstance(zero.model, ad.AveragedModel)
    with torch.no_grad():
        assert torch.equal(zero.model(k, torch.from_numpy(mask)), model(k, torch.from_numpy(mask)))
    again = ad.adapt_model(model, k, mask, steps=3, lr=1e-2, seed=4, runs=2)
    assert again.record == rec
    from recon.errors import UsageError

    with pytest.raises(UsageError, match="runs"):
        ad.adapt_model(model, k, mask, steps=1, runs=0)


def test_runs_side_by_side_on_threads_give_the_one_thread_result_bit_for_bit(monkeypatch):
    """With 2 torch threads two runs go side by side on Python threads of one torch thread each: the same
    records and output, bit for bit, as with 1 thread; the thread count and the caller's torch RNG stream are
    restored; with a callback (benchmarks) they stay sequential."""
    model, k, mask = _tiny_problem()
    one = ad.adapt_model(model, k, mask, steps=3, lr=1e-2, seed=4, runs=2)
    pools = []
    original_pool = ad.ThreadPoolExecutor

    def counting_pool(*args, **kwargs):
        pools.append(kwargs.get("max_workers"))
        return original_pool(*args, **kwargs)

    monkeypatch.setattr(ad, "ThreadPoolExecutor", counting_pool)
    torch.set_num_threads(2)
    try:
        torch.manual_seed(123)
        two = ad.adapt_model(model, k, mask, steps=3, lr=1e-2, seed=4, runs=2)
        after = torch.rand(3)
        assert torch.get_num_threads() == 2 and pools == [2]
        ad.adapt_model(model, k, mask, steps=1, lr=1e-2, seed=4, runs=2, callback=lambda *a: None)
        assert pools == [2]
    finally:
        torch.set_num_threads(1)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))
    assert two.record == one.record and any(one.record["chosen_step"])
    mt = torch.from_numpy(mask)
    with torch.no_grad():
        assert torch.equal(two.model(k, mt), one.model(k, mt))


def test_8x_default_records_two_runs_and_zero_steps_stays_exact():
    raw = undersampled(colin_slice(shape=(64, 64), coils=2), accel=8)
    plain = varnet_method(raw)
    result = varnet_method(raw, adapt=True, adapt_steps=0)
    assert np.array_equal(result["reconstruction"], plain)
    assert result["adapt_chosen_step"].tolist() == [[0, 0]]
    assert result["adapt_validation"].shape == (1, 2, 1)
    summary = ad.adaptation_summary(result, {})["adaptation"]
    assert summary["runs"] == 2 and summary["steps"] == 0 and summary["chosen_step"] == [[0, 0]]


def test_no_sens_freezes_the_sensitivity_network_only():
    model, k, mask = _tiny_problem()
    adapted = ad.adapt_model(model, k, mask, steps=3, lr=1e-2, seed=0, train="no-sens")
    given, tuned = model.state_dict(), adapted.model.state_dict()
    sens = [n for n in given if n.startswith("sens_net.")]
    assert sens and all(torch.equal(given[n], tuned[n]) for n in sens)
    if adapted.record["chosen_step"] > 0:  # a later state was chosen: the cascades moved
        assert any(not torch.equal(given[n], tuned[n]) for n in given if n.startswith("cascades."))
    from recon.errors import UsageError

    with pytest.raises(UsageError, match="train"):
        ad.adapt_model(model, k, mask, steps=1, train="sens-only")


def test_masks_per_step_averages_splits_and_callback_sees_every_step():
    model, k, mask = _tiny_problem()
    calls = []
    adapted = ad.adapt_model(model, k, mask, steps=3, lr=1e-2, seed=0, masks_per_step=2,
                             callback=lambda step, net, best: calls.append((step, best)))
    curve = adapted.record["validation_curve"]
    assert [s for s, _ in calls] == [0, 1, 2, 3] and calls[0][1] is True
    assert [b for _, b in calls[1:]] == [curve[i] < min(curve[:i]) for i in range(1, 4)]
    one = ad.adapt_model(model, k, mask, steps=3, lr=1e-2, seed=0)
    assert curve[0] == one.record["validation_curve"][0] and curve[1:] != one.record["validation_curve"][1:]
    again = ad.adapt_model(model, k, mask, steps=3, lr=1e-2, seed=0, masks_per_step=2)
    assert again.record == adapted.record


def test_gaussian_selection_favours_the_centre_and_keeps_the_split_rules():
    grid = np.zeros((1, 128), dtype=bool)
    grid[0, ::2] = True  # 64 lines, every other one
    grid[0, 60:68] = True  # an 8-line centre
    rng = np.random.default_rng(0)
    dist = {"uniform": [], "gaussian": []}
    for selection in dist:
        for _ in range(200):
            split = ad.make_split(grid, rng, 0.2, selection)
            assert not (split.validation & split.calibration).any()
            dc, loss = ad.draw_dc_loss(split, rng, 0.4, selection)
            assert not (dc & loss).any() and ((dc | loss | split.validation) == grid).all()
            assert (split.calibration <= dc).all()
            dist[selection] += np.abs(np.flatnonzero(split.validation[0]) - 64).tolist()
    # measured: mean distance of the validation lines from the centre 34.5 lines uniform, 26.9 gaussian
    assert np.mean(dist["gaussian"]) < np.mean(dist["uniform"]) - 5
    with pytest.raises(Exception, match="selection"):
        ad.make_split(grid, rng, 0.2, "poisson")


def test_ema_candidates_start_at_the_given_weights():
    model, k, mask = _tiny_problem()
    plain = ad.adapt_model(model, k, mask, steps=3, lr=1e-2, seed=0)
    ema = ad.adapt_model(model, k, mask, steps=3, lr=1e-2, seed=0, ema=0.5)
    assert ema.record["validation_curve"][0] == plain.record["validation_curve"][0]
    assert ema.record["validation_curve"][1:] != plain.record["validation_curve"][1:]
    zero = ad.adapt_model(model, k, mask, steps=0, seed=0, ema=0.5)
    for n, p in model.state_dict().items():
        assert torch.equal(zero.model.state_dict()[n], p), n


def test_per_volume_shares_one_model_per_slice_does_not(tmp_path):
    full = colin_slice(shape=(64, 64), slices=(80, 100))
    mask, _ = mask_from_options("random", full.kspace.shape[-2:], [4], [0.08], 2)
    kspace, used = apply_mask(full.kspace, mask, full.header)
    path = write_fastmri_kspace(tmp_path / "two.h5", RawData(kspace, full.header, used, full.reference))
    from recon.io import open_raw

    records = {}
    for per in ("slice", "volume"):
        with open_raw(path) as f:
            outs = [varnet_method(f.read_slices(i), adapt=True, adapt_steps=2, adapt_per=per, adapt_lr=1e-3)
                    for i in range(2)]
        records[per] = [o["adapt_validation"][0].tolist() for o in outs]
    assert records["volume"][0] == records["volume"][1]  # one adapted model (adapted on the first slice)
    assert records["slice"][0] != records["slice"][1]
    assert records["slice"][0] == records["volume"][0]


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cli(capsys, *args: str) -> tuple[int, str, str]:
    from recon.app.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("method", ["varnet", "modl"])
def test_cli_adapt_on_twix_keeps_weights_and_records(method, tmp_path, capsys):
    from recon.weights import bundled_weights

    weights = bundled_weights(method)
    digest = _sha(weights)
    cached = {n: p.detach().clone() for n, p in get_model(method).state_dict().items()}
    out = tmp_path / "gre.h5"
    code, text, err = cli(capsys, "run", str(TWIX), str(out), "--method", method, "--accel", "4", "--adapt",
                          "--adapt-steps", "2", "--adapt-lr", "1e-4", "--json", "--threads", "1")
    assert code == 0, err
    summary = json.loads(text)
    a = summary["adaptation"]
    assert a["adapted"] is True and a["steps"] == 2 and a["per"] == "slice"
    assert len(a["validation_curve"]) == 1 and len(a["validation_curve"][0]) == 3
    assert a["chosen_step"][0] == int(np.argmin(a["validation_curve"][0]))
    assert summary["parameters"]["adapt"] is True and summary["parameters"]["adapt_steps"] == 2
    with h5py.File(out) as f:
        assert json.loads(f.attrs["adaptation"]) == a
        assert json.loads(f.attrs["parameters"])["adapt_lr"] == 1e-4
        assert f["adapt_validation"].shape == (1, 3) and f["adapt_chosen_step"].shape == (1,)
        assert f["reconstruction"].shape == (1, 160, 160)
    assert _sha(weights) == digest
    for n, p in get_model(method).state_dict().items():
        assert torch.equal(p, cached[n]), n


def test_cli_adapt_per_volume_on_fastmri_layout(tmp_path, capsys):
    full = colin_slice(shape=(64, 64), slices=(80, 100))
    path = write_fastmri_kspace(tmp_path / "vol.h5", full)
    out = tmp_path / "vol_rec.h5"
    code, text, err = cli(capsys, "run", str(path), str(out), "--method", "varnet", "--accel", "4", "--adapt",
                          "--adapt-steps", "2", "--adapt-per", "volume", "--json", "--threads", "1")
    assert code == 0, err
    a = json.loads(text)["adaptation"]
    assert a["per"] == "volume" and len(a["validation_curve"]) == 2
    assert a["validation_curve"][0] == a["validation_curve"][1]
    with h5py.File(out) as f:
        assert f["reconstruction"].shape == (2, 64, 64)


@pytest.mark.parametrize("args", [["--method", "sense", "--adapt"], ["--method", "l1-wavelet", "--adapt"],
                                  ["--method", "varnet", "--adapt-steps", "3"]])
def test_cli_adapt_usage_errors(args, tmp_path, capsys):
    out = tmp_path / "x.h5"
    code, _, err = cli(capsys, "run", str(TWIX), str(out), "--accel", "4", *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "adapt" in err, err
    assert not out.exists()


def test_records_of_slices_adapted_differently_stack_padded() -> None:
    from recon.solvers.learned.method import stack_records

    same = stack_records([[1, 2], [3, 4]], 0, -1, np.int64)  # two slices, two runs each: as they are
    assert same.shape == (2, 2) and same.tolist() == [[1, 2], [3, 4]]
    chosen = stack_records([5, [1, 2]], 0, -1, np.int64)  # a 4x slice (one run) beside an 8x slice (two)
    assert chosen.tolist() == [[5, -1], [1, 2]]
    curves = stack_records([[0.9, 0.8, 0.7], [[1.0, 0.5], [1.0, 0.6]]], 1, np.nan, np.float32)
    assert curves.shape == (2, 2, 3)
    assert np.allclose(curves[0, 0], [0.9, 0.8, 0.7]) and np.isnan(curves[0, 1]).all()
    assert np.allclose(curves[1, :, :2], [[1.0, 0.5], [1.0, 0.6]]) and np.isnan(curves[1, :, 2]).all()
    from recon.solvers.learned.adapt import adaptation_summary

    summary = adaptation_summary({"adapt_chosen_step": chosen, "adapt_validation": curves}, {})["adaptation"]
    assert summary["runs"] == 2 and summary["validation_curve"][0][1] == [None, None, None]
    json.dumps(summary, allow_nan=False)  # valid JSON

