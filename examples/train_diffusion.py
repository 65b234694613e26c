"""How the bundled diffusion prior (``recon/weights/diffusion_sim.pt``) was made and measured (MODEL_CARD.md).

    python examples/train_make_data.py WORK                    # the same simulated folders as VarNet/MoDL
    python examples/train_diffusion.py WORK                    # train (resumable; 1 CPU thread)
    python examples/train_diffusion.py WORK --export           # copy the weights into recon/weights/
    python examples/train_diffusion.py WORK --evaluate [WEIGHTS]  # validation + bundled-sample denoising PSNR

The training command (run here with ``OMP_NUM_THREADS=1`` on a shared 2-core CPU):

    recon train WORK/diffusion_ckpt.pt --model diffusion --train WORK/train --val WORK/val --epochs 12 \\
        --steps-per-epoch 400 --batch-size 8 --patch-size 64 --levels 16 32 48 64 --lr 5e-4 --seed 0 --resume

then resumed at a lower learning rate for 4 more epochs (the stored run settings are kept):

    recon train WORK/diffusion_ckpt.pt --model diffusion --train WORK/train --val WORK/val --epochs 16 \
        --lr 1.5e-4 --resume

Training data: ESPIRiT-combined complex images of the training slabs only (Colin 27 slices 10-71 and
106-165, as is and mirrored); validation: the held-out slab 76-101. The evaluation prints, for sigma in
0.05 / 0.1 / 0.2 / 0.5 (normalised images, per real component), the PSNR of the noisy and of the denoised
image (complex, peak = max |x0|), on the validation folder and on the bundled sample's 3 slices.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

TRAIN = ["--model", "diffusion", "--epochs", "12", "--steps-per-epoch", "400", "--batch-size", "8",
         "--patch-size", "64", "--levels", "16", "32", "48", "64", "--lr", "5e-4", "--seed", "0", "--resume"]
SIGMAS = (0.05, 0.1, 0.2, 0.5)


def evaluate(work: Path, weights: Path | None) -> dict:
    """Denoising PSNR (dB) of the prior on the validation folder and on the bundled sample."""
    from recon.data import sample_path
    from recon.io import read_raw
    from recon.solvers.diffusion import load_prior, normalise_scale
    from recon.training.diffusion import combined_image, evaluate_denoiser, load_images

    prior = load_prior(weights)
    val = load_images(work / "val")
    raw = read_raw(sample_path())
    sample = []
    for s in range(raw.kspace.shape[0]):
        x0 = combined_image(raw.kspace[s])
        sample.append(x0 / normalise_scale(x0.abs()))
    return {"validation": evaluate_denoiser(prior, val, SIGMAS, seed=0),
            "sample": evaluate_denoiser(prior, sample, SIGMAS, seed=0),
            "parameters": sum(p.numel() for p in prior.parameters())}


def main(work: Path, argv: list[str]) -> None:
    torch.set_num_threads(1)
    weights_dir = Path(__file__).resolve().parents[1] / "recon" / "weights"
    if "--export" in argv:
        from recon.training import export_weights

        export_weights(work / "diffusion_ckpt.pt", weights_dir / "diffusion_sim.pt", overwrite=True,
                       metadata={"data": "Colin 27 T1 simulated multi-coil, ESPIRiT-combined complex images "
                                         "(examples/train_make_data.py, training slabs only)",
                                 "licence_of_data": "BSD-3-Clause (recon/data/LICENSE-colin27)"})
        return
    if "--evaluate" in argv:
        rest = argv[argv.index("--evaluate") + 1:]
        print(json.dumps(evaluate(work, Path(rest[0]) if rest else None), indent=2))
        return
    if not (work / "train").is_dir():
        subprocess.run([sys.executable, str(Path(__file__).with_name("train_make_data.py")), str(work)], check=True)
    subprocess.run([sys.executable, "-m", "recon", "train", str(work / "diffusion_ckpt.pt"), "--train",
                    str(work / "train"), "--val", str(work / "val"), *TRAIN], check=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/train_data"), sys.argv[2:])
