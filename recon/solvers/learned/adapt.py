"""Scan-specific self-supervised adaptation of a learned reconstruction (ZS-SSL style; issue 12, item 1).

Yaman et al., ICLR 2022 (zero-shot self-supervised learning) and Darestani et al., ICML 2022 (test-time
training): fine-tune the unrolled network on the scan's own measured k-space, with a held-back
self-validation set that picks when to stop, so adaptation cannot make the result worse by that measure.

Sample units: the acquired phase-encode *lines* for a column mask (``(1, W)``: each acquired line is a whole
readout), the acquired *points* for a 2D mask (``(H, W)``). The acquired samples are split into

* a **self-validation** set, fixed for the whole adaptation: ``validation_fraction`` of the acquired samples
  outside the calibration region (the fully sampled centre, :func:`~recon.solvers.learned.common.calibration_mask`);
* per step, from the remaining samples, a **loss** set (``loss_fraction`` of those outside the calibration
  region) and a **DC** set (all the rest, the calibration region always included); disjoint, re-drawn each step.

Each step feeds the network the DC-set k-space and mask and takes an Adam step on the normalised k-space loss
(``0.5 ||a-b||_2/||b||_2 + 0.5 ||a-b||_1/||b||_1``, as ZS-SSL) between the network's k-space and the measured
k-space on the loss set. The self-validation loss (network given every non-validation sample, loss on the
validation samples) is measured before the first step (step 0) and after each step; the state with the lowest
one (step 0 included, the earliest on ties) gives the final reconstruction from *all* acquired samples.

With ``runs=R > 1`` (:func:`adapt_model`) that is done R times independently, run ``r`` with split seed
``seed + r`` (another self-validation set, other DC/loss draws), each run keeping its own best state, and the
reconstruction is the mean of the R runs' outputs. At high acceleration the self-validation set is a few lines
and which state one run keeps is partly chance; averaging runs with other validation sets evens that out. The
default number of runs depends on the mask's acceleration (:func:`default_runs`: VarNet 2 runs of 70 steps at
8x, with the learning rate :func:`default_lr`).

Options measured on ``benchmarks/shift.py`` at 8x (``benchmarks/adapt_sweep.py``, README "Tuning adaptation at 8x")
and left off by default: ``masks_per_step`` (several DC/loss splits per step), Gaussian
``validation_selection``/``loss_selection`` (SSDU) and ``ema`` (the validated candidates are a moving average of
the weights); ``train="no-sens"`` freezes the sensitivity network. The default step count depends on the mask's
acceleration (:func:`default_steps`). Other selection rules (smoothing the validation curve, averaging the
lowest-loss states, a significance test against step 0) were measured offline (``benchmarks/adapt_rules.py``)
and not adopted.

The model passed in is never modified (a deep copy is fine-tuned) and no weights file is written. Randomness:
the splits come from ``numpy.random.default_rng(seed)``; torch's global RNG is seeded inside
:func:`torch.random.fork_rng` (so the caller's stream is untouched): same inputs + seed -> same result. Several
runs on a multi-threaded CPU go side by side on one torch thread each (:func:`_all_runs`), bit for bit the
result of one thread.
"""
from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from recon.errors import UsageError
from recon.solvers.learned.common import calibration_mask

#: defaults of ``recon run --adapt`` (``--adapt-steps``, ``--adapt-lr``); steps per model: :func:`default_steps`
DEFAULT_STEPS = 20
#: adaptation steps per model. VarNet: 40, because on ``benchmarks/shift.py``'s 8 out-of-distribution cases the
#: self-validation curve was still falling at step 20 on most of them (the best step was 21-40 on 12 of 16
#: case/accelerations) and 40 steps raised the mean adapted PSNR by 0.54 dB at 4x and 0.34 dB at 8x (no case
#: lower by more than 0.09 dB); MoDL keeps 20 (not re-measured; its adaptation already hurt 3 cases).
MODEL_STEPS = {"varnet": 40, "modl": 20}
#: steps per model (of each run, :data:`MODEL_RUNS_HIGH`) for masks accelerated :data:`HIGH_ACCELERATION` times or
#: more (fastMRI's 8x): VarNet 2 runs of 70 steps at lr 2e-3 (:data:`MODEL_LR_HIGH`), their outputs averaged. On
#: ``benchmarks/shift.py``'s 8 cases at 8x (README "Tuning adaptation at 8x"; ``benchmarks/adapt_sweep.py`` and
#: ``adapt_rules.py``) the self-validation set is 1-4 lines and the state one run keeps is partly chance: the
#: earlier default, one run of 80 steps at lr 1e-3, gave a mean of 22.50 / 22.19 / 22.54 / 22.85 dB with split
#: seeds 0-3 and on t1-coronal 1.27 dB *below* the unadapted VarNet with seed 1. Two averaged runs at lr 2e-3 with
#: split seeds (0, 1) / (1, 2) / (2, 3) gave 22.81 / 22.87 / 22.96 after 40 steps each, 23.02 / 23.09 / 23.13 after
#: 60 and 23.18 / 23.21 / 23.23 after 80 (L1-wavelet 22.01; every case 0.45 dB or more above the unadapted
#: VarNet). Measured with the benchmark's split seed: 50 steps 23.00 dB, 70 steps 23.16, 80 steps 23.23. 70 steps
#: keep a 256 x 256 8-coil slice under a minute with 2 threads with room to spare (49.5 s from a cold start; 80
#: steps 52.6 s warm), since the two runs go side by side on one thread each (:func:`_all_runs`). 4x keeps one run
#: of 40 steps at lr 1e-3 (its target is met)
MODEL_STEPS_HIGH = {"varnet": 70}
#: independent adaptations (split seeds ``seed``, ``seed + 1``, ...; :func:`adapt_model`) whose outputs are
#: averaged, per model, for masks accelerated :data:`HIGH_ACCELERATION` times or more (see :data:`MODEL_STEPS_HIGH`)
MODEL_RUNS_HIGH = {"varnet": 2}
#: Adam learning rate per model for masks accelerated :data:`HIGH_ACCELERATION` times or more (else :data:`DEFAULT_LR`)
MODEL_LR_HIGH = {"varnet": 2e-3}
HIGH_ACCELERATION = 6.0
DEFAULT_LR = 1e-3
VALIDATION_FRACTION = 0.2
LOSS_FRACTION = 0.4
#: DC/loss splits averaged per Adam step (ZS-SSL's batch of masks)
MASKS_PER_STEP = 1
#: which parameters adapt: all, or all but the sensitivity network (:func:`_trainable`)
TRAIN = "all"
TRAIN_CHOICES = ("all", "no-sens")
#: how the validation and loss sets are drawn (:func:`_pick`)
SELECTIONS = ("uniform", "gaussian")
VALIDATION_SELECTION = "uniform"
LOSS_SELECTION = "uniform"
#: decay of the moving average of the weights that is validated and chosen (0: the Adam iterates themselves)
EMA = 0.0


def default_steps(model: str, acceleration: float | None = None) -> int:
    """The default number of adaptation steps of ``model`` for a mask accelerated ``acceleration`` times
    (:func:`mask_acceleration`; None: unknown): :data:`MODEL_STEPS_HIGH` from :data:`HIGH_ACCELERATION` on, else
    :data:`MODEL_STEPS`, else :data:`DEFAULT_STEPS`."""
    if acceleration is not None and acceleration >= HIGH_ACCELERATION and model in MODEL_STEPS_HIGH:
        return MODEL_STEPS_HIGH[model]
    return MODEL_STEPS.get(model, DEFAULT_STEPS)


def default_lr(model: str, acceleration: float | None = None) -> float:
    """The default Adam learning rate of ``model``'s adaptation for a mask accelerated ``acceleration`` times:
    :data:`MODEL_LR_HIGH` from :data:`HIGH_ACCELERATION` on, else :data:`DEFAULT_LR`."""
    if acceleration is not None and acceleration >= HIGH_ACCELERATION:
        return MODEL_LR_HIGH.get(model, DEFAULT_LR)
    return DEFAULT_LR


def default_runs(model: str, acceleration: float | None = None) -> int:
    """The default number of averaged adaptation runs of ``model`` (:func:`adapt_model`'s ``runs``) for a mask
    accelerated ``acceleration`` times: :data:`MODEL_RUNS_HIGH` from :data:`HIGH_ACCELERATION` on, else 1."""
    if acceleration is not None and acceleration >= HIGH_ACCELERATION:
        return MODEL_RUNS_HIGH.get(model, 1)
    return 1


def mask_acceleration(mask: np.ndarray) -> float:
    """Samples / acquired samples of a slice mask on its sample grid (:func:`sample_grid`; inf when empty)."""
    grid = sample_grid(mask)
    return float(grid.size / grid.sum()) if grid.any() else float("inf")


def sample_grid(mask: np.ndarray) -> np.ndarray:
    """A slice mask (``(W,)``, ``(1, W)`` or ``(H, W)``) as the ``(Hm, W)`` bool grid of sample units: ``Hm = 1``
    (lines) when the mask is constant along H, else ``H`` (points)."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 1:
        m = m[None]
    if m.ndim != 2:
        raise UsageError(f"adaptation needs a (W,) or (H, W) slice mask, got shape {m.shape}")
    if m.shape[0] > 1 and (m == m[:1]).all():
        m = m[:1]
    return m


@dataclass
class Split:
    """The fixed part of a split, all ``(Hm, W)`` bool (:func:`sample_grid`): ``acquired``, its ``calibration``
    region, the ``validation`` set (acquired, outside the calibration region) and ``train`` = acquired minus
    validation (what the DC and loss sets are drawn from)."""

    acquired: np.ndarray
    calibration: np.ndarray
    validation: np.ndarray
    train: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.train = self.acquired & ~self.validation


def calibration_region(grid: np.ndarray) -> np.ndarray:
    """The fully sampled centre of an ``(Hm, W)`` sample grid, ``(Hm, W)`` bool."""
    t = torch.from_numpy(grid.astype(np.float32))[None, None]
    return calibration_mask(t)[0, 0].numpy() > 0


def _gaussian_weights(shape: tuple[int, int]) -> np.ndarray:
    """SSDU's Gaussian selection density on an ``(Hm, W)`` sample grid: ``exp(-d^2 / 2)`` with ``d`` the
    distance from the k-space centre (index ``n // 2``) in units of a quarter of the grid along each axis
    (a line grid, ``Hm = 1``, is weighted along W only)."""
    out = np.ones(shape)
    for axis, n in enumerate(shape):
        if n > 1:
            d = (np.arange(n) - n // 2) / (n / 4)
            out = out * np.exp(-0.5 * d ** 2).reshape([-1 if a == axis else 1 for a in range(2)])
    return out


def _pick(candidates: np.ndarray, fraction: float, rng: np.random.Generator, selection: str = "uniform"
          ) -> np.ndarray:
    """A random ``round(fraction * n)`` of the True entries of ``candidates`` (at least 1 when there are any and
    the fraction is positive), as a mask of the same shape: uniformly, or ``selection="gaussian"`` with
    probabilities from :func:`_gaussian_weights` (SSDU, Yaman et al. 2020: more of the set near the centre)."""
    if selection not in SELECTIONS:
        raise UsageError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    idx = np.flatnonzero(candidates)
    n = round(fraction * idx.size)
    if fraction > 0 and idx.size > 1:
        n = min(max(n, 1), idx.size - 1)
    out = np.zeros(candidates.size, dtype=bool)
    if selection == "uniform":
        out[rng.choice(idx, size=n, replace=False)] = True
    else:
        w = _gaussian_weights(candidates.shape).reshape(-1)[idx]
        out[rng.choice(idx, size=n, replace=False, p=w / w.sum())] = True
    return out.reshape(candidates.shape)


def make_split(mask: np.ndarray, rng: np.random.Generator,
               validation_fraction: float = VALIDATION_FRACTION, selection: str = "uniform") -> Split:
    """The fixed self-validation split of a slice mask (see the module docstring; ``selection``: :func:`_pick`)."""
    acquired = sample_grid(mask)
    calib = calibration_region(acquired) & acquired
    outside = acquired & ~calib
    if outside.sum() < 3:
        raise UsageError("adaptation needs acquired samples outside the calibration region (the mask is "
                         f"fully sampled or has only {int(outside.sum())} such samples)")
    return Split(acquired, calib, _pick(outside, validation_fraction, rng, selection))


def draw_dc_loss(split: Split, rng: np.random.Generator, loss_fraction: float = LOSS_FRACTION,
                 selection: str = "uniform") -> tuple[np.ndarray, np.ndarray]:
    """One step's disjoint ``(dc, loss)`` sets, ``(Hm, W)`` bool, covering ``split.train``; the calibration
    region is always in ``dc`` (``selection``: :func:`_pick`)."""
    loss = _pick(split.train & ~split.calibration, loss_fraction, rng, selection)
    return split.train & ~loss, loss


def kspace_loss(pred: torch.Tensor, target: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Normalised k-space loss ``0.5 ||a-b||_2/||b||_2 + 0.5 ||a-b||_1/||b||_1`` over the samples ``where``
    (``(1, 1, Hm, W)`` 0/1 float, broadcast over coils and H; a ``(B, 1, Hm, W)`` one masks each item) of
    ``pred``, ``target`` ``(B, C, H, W)``. A single set is gathered first (the acquired lines or points, a few %
    of the k-space at 4x-8x), not the whole k-space masked: 26 -> ~3 ms forward and backward for a 256 x 256
    8-coil slice on one thread."""
    if where.numel() != where.shape[-2] * where.shape[-1]:  # one set per batch item: mask the whole k-space
        a, b = pred * where, target * where
    else:
        sel = where.reshape(where.shape[-2:]) > 0
        a, b = (pred[..., sel[0]], target[..., sel[0]]) if sel.shape[0] == 1 else (pred[..., sel], target[..., sel])
    diff = a - b
    l2 = torch.linalg.vector_norm(diff) / torch.linalg.vector_norm(b).clamp_min(1e-30)
    l1 = diff.abs().sum() / b.abs().sum().clamp_min(1e-30)
    return 0.5 * l2 + 0.5 * l1


def _forward_kspace(model: nn.Module, kspace: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The network's ``(1, C, H, W)`` k-space from the samples ``grid`` ``(1, 1, Hm, W)`` of ``kspace``."""
    _, k = model(kspace * grid, grid, return_kspace=True)
    return k


@dataclass
class Adapted:
    """What :func:`adapt_model` returns: the fine-tuned ``model`` (a copy, with the chosen state, eval mode,
    no gradients) and the ``record``: ``{"adapted": True, "steps", "chosen_step", "validation_curve"}``
    (``steps + 1`` self-validation losses, step 0 first)."""

    model: nn.Module
    record: dict[str, Any]


def _trainable(model: nn.Module, train: str) -> list[nn.Parameter]:
    """The parameters that adaptation updates (the others keep their given values): ``"all"``, or
    ``"no-sens"`` (the sensitivity network ``sens_net`` frozen: only the unrolled blocks adapt)."""
    if train not in TRAIN_CHOICES:
        raise UsageError(f"adapt train must be one of {', '.join(TRAIN_CHOICES)}, got {train!r}")
    params = []
    for name, p in model.named_parameters():
        use = train == "all" or not name.startswith("sens_net.")
        p.requires_grad_(use)
        if use:
            params.append(p)
    return params


def _step_loss(model: nn.Module, kspace: torch.Tensor, split: Split, rng: np.random.Generator,
               loss_fraction: float, masks_per_step: int, grid: Callable[[np.ndarray], torch.Tensor],
               selection: str = "uniform") -> torch.Tensor:
    """One step's loss: the mean over ``masks_per_step`` freshly drawn DC/loss splits (ZS-SSL's mask batch)."""
    total = torch.zeros((), device=kspace.device)
    for _ in range(masks_per_step):
        dc, loss_set = draw_dc_loss(split, rng, loss_fraction, selection)
        total = total + kspace_loss(_forward_kspace(model, kspace, grid(dc)), kspace, grid(loss_set))
    return total / masks_per_step


def _ema_update(avg: nn.Module, model: nn.Module, decay: float) -> None:
    """``avg <- decay * avg + (1 - decay) * model``, parameter by parameter (Polyak/EMA weight averaging)."""
    with torch.no_grad():
        for pa, p in zip(avg.parameters(), model.parameters()):
            pa.mul_(decay).add_(p, alpha=1.0 - decay)


class AveragedModel(nn.Module):
    """The mean of the ``members``' outputs (their magnitude images; with ``return_kspace`` also their k-spaces):
    what :func:`adapt_model` returns for ``runs > 1``. Called like a member (same arguments)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        outs = [m(*args, **kwargs) for m in self.members]
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(parts).mean(0) for parts in zip(*outs))
        return torch.stack(outs).mean(0)


def adapt_model(model: nn.Module, kspace: torch.Tensor, mask: np.ndarray, *, steps: int = DEFAULT_STEPS,
                lr: float = DEFAULT_LR, seed: int = 0, runs: int = 1, **options: Any) -> Adapted:
    """Fine-tune a copy of ``model`` on one slice's ``kspace`` ``(1, C, H, W)`` complex sampled by ``mask``
    (``(W,)``/``(1, W)`` column or ``(H, W)``); see the module docstring. ``model`` is left unchanged.

    ``runs > 1``: that many independent adaptations of ``steps`` steps each, run ``r`` with split seed
    ``seed + r`` (its own self-validation set and DC/loss draws), each keeping its own best state (step 0
    included); the returned model is their :class:`AveragedModel` (the mean of their outputs), and the record
    has ``"runs"`` and per-run lists ``chosen_step`` and ``validation_curve``. With ``steps=0`` every run keeps
    the given weights and the given model's copy is returned alone (the unadapted output exactly).
    ``options``: the keywords of :func:`_adapt_run`."""
    if steps < 0:
        raise UsageError(f"adapt_steps must be >= 0, got {steps}")
    if not lr > 0:
        raise UsageError(f"adapt_lr must be > 0, got {lr}")
    if runs < 1:
        raise UsageError(f"adapt runs must be >= 1, got {runs}")
    done = _all_runs(model, kspace, mask, steps=steps, lr=lr, seed=seed, runs=runs, **options)
    for tuned, _, _ in done:
        for p in tuned.parameters():
            p.requires_grad_(False)
    if runs == 1:
        tuned, best, curve = done[0]
        return Adapted(tuned, {"adapted": True, "steps": int(steps), "chosen_step": int(best),
                               "validation_curve": curve})
    chosen = [int(best) for _, best, _ in done]
    net = done[0][0] if not any(chosen) else AveragedModel([tuned for tuned, _, _ in done]).eval()
    return Adapted(net, {"adapted": True, "steps": int(steps), "runs": int(runs), "chosen_step": chosen,
                         "validation_curve": [curve for _, _, curve in done]})


#: held while :func:`_all_runs` has torch at one thread for its side-by-side runs
_SIDE_BY_SIDE = threading.Lock()


def _all_runs(model: nn.Module, kspace: torch.Tensor, mask: np.ndarray, *, seed: int, runs: int, **options: Any
              ) -> list[tuple[nn.Module, int, list[float]]]:
    """:func:`_adapt_run` with split seeds ``seed .. seed + runs - 1``, in that order. On the CPU with ``n`` torch
    threads, ``1 < n <= runs`` and no ``callback``, the runs go ``n`` at a time on Python threads of one torch
    thread each (torch's kernels release the GIL): the small convolutions of one run use two cores at 81 %
    (a 256 x 256 8-coil VarNet step), two runs side by side nearly 100 %, 20 % less wall time for VarNet's two
    runs at 8x. Each run's arithmetic is then that of one thread, whatever the scheduling, so the result is bit
    for bit the same as with ``torch.set_num_threads(1)`` (reproducible; the thread count is restored after; one
    such section per process at a time, a concurrent call runs its runs one after the other).
    torch's global RNG (unused by the eval-mode models, kept for safety) is seeded once with ``seed`` inside
    :func:`torch.random.fork_rng`, so the caller's stream is untouched."""
    dev = kspace.device
    threads = torch.get_num_threads()
    parallel = dev.type == "cpu" and 1 < threads <= runs and options.get("callback") is None
    # one side-by-side section per process at a time: two would save and restore each other's thread count
    parallel = parallel and _SIDE_BY_SIDE.acquire(blocking=False)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        if not parallel:
            return [_adapt_run(model, kspace, mask, seed=seed + r, **options) for r in range(runs)]
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="recon-adapt") as pool:
                return list(pool.map(lambda r: _adapt_run(model, kspace, mask, seed=seed + r, **options),
                                     range(runs)))
        finally:
            torch.set_num_threads(threads)
            _SIDE_BY_SIDE.release()


def _adapt_run(model: nn.Module, kspace: torch.Tensor, mask: np.ndarray, *, steps: int, lr: float, seed: int,
               validation_fraction: float = VALIDATION_FRACTION, loss_fraction: float = LOSS_FRACTION,
               masks_per_step: int = MASKS_PER_STEP, train: str = TRAIN,
               validation_selection: str = VALIDATION_SELECTION, loss_selection: str = LOSS_SELECTION,
               ema: float = EMA, callback: Callable[[int, nn.Module, bool], None] | None = None
               ) -> tuple[nn.Module, int, list[float]]:
    """One adaptation of a copy of ``model``: ``(the copy with its best state, eval mode; the chosen step;
    the self-validation curve, steps + 1 losses)``. ``masks_per_step``: DC/loss splits averaged per Adam step;
    ``train``: which parameters adapt (:func:`_trainable`); ``validation_selection``/``loss_selection``: how
    those sets are drawn (:func:`_pick`); ``ema``: when > 0, the candidates (validated, chosen) are an
    exponential moving average of the Adam iterates with this decay (step 0: the given weights);
    ``callback(step, candidate, is_best)`` is called after the validation of every step (step 0 included; for
    monitoring, e.g. benchmarks: it must not change the model)."""
    if masks_per_step < 1 or not 0 <= ema < 1:
        raise UsageError(f"masks_per_step must be >= 1 and ema in [0, 1), got {masks_per_step}, {ema}")
    dev = kspace.device
    rng = np.random.default_rng(seed)
    split = make_split(mask, rng, validation_fraction, validation_selection)

    def grid(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32))[None, None].to(dev)

    train_g, val_g = grid(split.train), grid(split.validation)
    tuned = copy.deepcopy(model).eval()
    params = _trainable(tuned, train)
    candidate = copy.deepcopy(tuned) if ema > 0 else tuned
    curve: list[float] = []

    def validation() -> float:
        with torch.no_grad():
            return float(kspace_loss(_forward_kspace(candidate, kspace, train_g), kspace, val_g))

    curve.append(validation())
    best, best_state = 0, copy.deepcopy(candidate.state_dict())
    if callback is not None:
        callback(0, candidate, True)
    opt = torch.optim.Adam(params, lr=lr) if steps > 0 else None
    for step in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        _step_loss(tuned, kspace, split, rng, loss_fraction, masks_per_step, grid, loss_selection).backward()
        opt.step()
        if ema > 0:
            _ema_update(candidate, tuned, ema)
        curve.append(validation())
        improved = curve[-1] < curve[best]
        if improved:
            best, best_state = step, copy.deepcopy(candidate.state_dict())
        if callback is not None:
            callback(step, candidate, improved)
    tuned.load_state_dict(best_state)
    return tuned, best, curve


def adapted_reconstruction(model: nn.Module, kspace: torch.Tensor, mask: Any, **options: Any
                           ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Adapt a copy of ``model`` to one slice (:func:`adapt_model`, ``options`` its keywords) and reconstruct
    it from all its samples: ``((1, H, W) magnitude, record)``. ``mask`` is passed to the network as given
    (so the chosen step 0 reproduces the unadapted output exactly)."""
    m = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    adapted = adapt_model(model, kspace, m, **options)
    with torch.no_grad():
        image = adapted.model(kspace, mask)
    return image, adapted.record


def adaptation_summary(datasets: dict[str, np.ndarray], options: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's record of an adaptation that ran (``{"adaptation": {...}}``; ``{}`` when none did):
    steps, per slice/volume, the chosen step per slice and the self-validation curves, from the datasets
    ``adapt_chosen_step`` ``(S,)`` and ``adapt_validation`` ``(S, steps + 1)`` the method returned (with
    several runs, :func:`adapt_model`: ``(S, runs)`` and ``(S, runs, steps + 1)``, and ``"runs"``)."""
    if "adapt_chosen_step" not in datasets:
        return {}
    curves = datasets["adapt_validation"]
    runs = {"runs": int(curves.shape[1])} if curves.ndim == 3 else {}
    return {"adaptation": {"adapted": True, "steps": int(curves.shape[-1] - 1), **runs,
                           "per": options.get("adapt_per") or "slice",
                           "chosen_step": datasets["adapt_chosen_step"].tolist(),
                           "validation_curve": _json_safe(curves)}}


def _json_safe(a: np.ndarray) -> list:
    """``a.tolist()`` with NaN (the padding of :func:`recon.solvers.learned.method.stack_records`) as None."""
    out = a.astype(object)
    out[np.isnan(a)] = None
    return out.tolist()
