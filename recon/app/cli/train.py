"""``recon train OUT.pt --model varnet|modl|diffusion --train DIR --val DIR``: train a learned solver or the
diffusion prior (``recon.training.diffusion``).

Checkpoints (model, optimizer, RNG states, epoch, history) go to ``OUT.pt`` after every epoch; ``--resume``
continues from it. A progress bar and one line of validation NMSE/PSNR/SSIM per epoch go to stderr.
"""
from __future__ import annotations

import argparse
import json
from recon.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an unrolled network (varnet, modl) or the diffusion prior "
                                     "on fastMRI-layout folders")
    p.add_argument("output", metavar="OUT.pt", help="checkpoint file (written after every epoch)")
    p.add_argument("--model", default="varnet", choices=["varnet", "modl", "diffusion", "fastmri-varnet"],
                   help="network (default: varnet; fastmri-varnet: fastMRI's E2E-VarNet architecture, "
                        "leaderboard size unless --cascades/--chans/--pools/--sens-chans)")
    p.add_argument("--train", required=True, metavar="DIR",
                   help="folder of fully sampled training files (--loss ssdu: undersampled files, fastMRI test "
                        "layout kspace + mask, or fully sampled ones undersampled once per slice)")
    p.add_argument("--val", required=True, metavar="DIR",
                   help="folder of validation files (fully sampled; --loss ssdu: as --train, references optional)")
    p.add_argument("--mask-type", default="random", help="mask type (default: random; see recon run --help)")
    p.add_argument("--accelerations", type=float, nargs="+", default=[4, 8], metavar="R")
    p.add_argument("--center-fractions", type=float, nargs="+", default=[0.08, 0.04], metavar="F")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--loss", default="ssim", choices=["ssim", "l1", "ssdu"],
                   help="ssim (default) or l1 against the reference; ssdu: self-supervised from the undersampled "
                        "k-space alone (varnet, modl; Yaman et al. 2020), no reference needed")
    p.add_argument("--batch-size", type=int, default=None,
                   help="slices (diffusion: patches) per optimizer step (default: 1; diffusion 8)")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (default: 1e-3; with --resume: a new rate from the next epoch on)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT.pt if it exists")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if OUT.pt exists")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    g = p.add_argument_group("model size")
    g.add_argument("--cascades", type=int, default=None, help="VarNet cascades / MoDL iterations (default 6)")
    g.add_argument("--chans", type=int, default=None, help="U-Net channels (default 8 VarNet, 12 MoDL)")
    g.add_argument("--pools", type=int, default=None, help="U-Net pooling levels (default 3)")
    g.add_argument("--sens-chans", type=int, default=None, help="sensitivity U-Net channels (default 4)")
    g.add_argument("--cg-iterations", type=int, default=None, help="MoDL CG steps per iteration (default 6)")
    d = p.add_argument_group("diffusion prior (--model diffusion)")
    d.add_argument("--levels", type=int, nargs="+", default=None, metavar="C",
                   help="U-Net channels per level (default 16 32 48 64)")
    d.add_argument("--steps-per-epoch", type=int, default=200, help="optimizer steps per epoch (default 200)")
    d.add_argument("--patch-size", type=int, default=64, help="training patch size (default 64)")
    p.add_argument("--max-train-slices", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--max-val-slices", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the history as JSON at the end")
    p.set_defaults(handler=main)


def model_options(args: argparse.Namespace) -> dict:
    """Constructor options of the model from the size arguments (only those given)."""
    opts = {}
    if args.cascades is not None:
        opts["num_cascades" if args.model in ("varnet", "fastmri-varnet") else "num_iterations"] = args.cascades
    for arg, key in (("chans", "chans"), ("pools", "num_pools"), ("sens_chans", "sens_chans")):
        if getattr(args, arg) is not None:
            opts[key] = getattr(args, arg)
    if args.cg_iterations is not None:
        if args.model != "modl":
            raise UsageError("--cg-iterations is a MoDL option")
        opts["cg_iterations"] = args.cg_iterations
    if args.model == "fastmri-varnet" and "num_pools" in opts:
        opts["pools"] = opts.pop("num_pools")  # fastmri.models.VarNet's name
    for key, value in opts.items():
        if value < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
    return opts


def main(args: argparse.Namespace) -> int:
    # deferred: loads torch, which importing recon.app.cli.train does not
    import torch

    # deferred: loads recon.training, torch, tqdm, which importing recon.app.cli.train does not
    from recon.training import TrainConfig, train

    try:
        torch.device(args.device)
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available")
    except RuntimeError as exc:
        raise UsageError(f"device {args.device!r} is not available: {exc}") from None
    config = TrainConfig(  # batch size and learning rate: None = the model's default (1 / 1e-3; diffusion 8 / 5e-4)
        model=args.model, model_options=_diffusion_options(args) if args.model == "diffusion" else model_options(args),
        mask_type=args.mask_type, accelerations=tuple(args.accelerations),
        center_fractions=tuple(args.center_fractions), epochs=args.epochs, loss=args.loss,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, steps_per_epoch=args.steps_per_epoch,
        patch=args.patch_size, max_train_slices=args.max_train_slices, max_val_slices=args.max_val_slices,
    )
    history = train(args.output, args.train, args.val, config, resume=args.resume, overwrite=args.overwrite,
                    device=args.device, lr=args.lr if args.resume else None)
    if args.json:
        print(json.dumps(history, indent=2))
    elif history:
        print(_summary(args, history[-1]))
    return 0


def _diffusion_options(args: argparse.Namespace) -> dict:
    """Constructor options of the diffusion prior (``--levels``)."""
    opts = {}
    if args.levels is not None:
        if min(args.levels) < 1:
            raise UsageError(f"--levels must be >= 1, got {args.levels}")
        opts["chans"] = list(args.levels)
    return opts


def _summary(args: argparse.Namespace, last: dict) -> str:
    """The line printed after training: the last epoch's validation."""
    if args.model == "diffusion":
        return (f"{args.output}: diffusion prior after {last['epoch']} epochs: val loss {last['val_loss']:.4f}, "
                f"denoised PSNR at sigma 0.1 {last.get('psnr_0.1', float('nan')):.2f} dB")
    # deferred: loads recon.training, torch, tqdm, which importing recon.app.cli.train does not
    from recon.training.supervised import describe_validation

    return f"{args.output}: {args.model} after {last['epoch']} epochs: {describe_validation(last)}"
