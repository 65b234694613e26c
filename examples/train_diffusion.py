"""How the bundled diffusion prior (``recon/weights/diffusion_sim.pt``) was made and measured (MODEL_CARD.md).

    python examples/train_make_data.py WORK                    # the same simulated folders as VarNet/MoDL
    python examples/train_diffusion.py WORK                    # train on 64 x 64 patches (resumable; 1 CPU thread)
    python examples/train_diffusion.py WORK --finetune         # then fine-tune on 128 x 128 patches and whole slices
    python examples/train_diffusion.py WORK --export           # copy the weights into recon/weights/
    python examples/train_diffusion.py WORK --evaluate [WEIGHTS]  # validation + bundled-sample denoising PSNR

The training command (run here with ``OMP_NUM_THREADS=1`` on a shared 2-core CPU):

    recon train WORK/diffusion_ckpt.pt --model diffusion --train WORK/train --val WORK/val --epochs 12 \\
        --steps-per-epoch 400 --batch-size 8 --patch-size 64 --levels 16 32 48 64 --lr 5e-4 --seed 0 --resume

then resumed at a lower learning rate for 4 more epochs (the stored run settings are kept):

    recon train WORK/diffusion_ckpt.pt --model diffusion --train WORK/train --val WORK/val --epochs 16 \
        --lr 1.5e-4 --resume

Fine-tuning (``--finetune``, the shipped weights): a copy of that checkpoint (``WORK/diffusion_ft.pt``) is
resumed with its stored run settings changed, learning rate 1.5e-4, EMA decay 0.998: 3 epochs x 150 steps of
batch 4 on 128 x 128 patches, then 15 epochs x 100 steps of batch 2 on 224 x 224 "patches", i.e. whole slices
(224 x 192 zero-padded, 232 x 200 cropped by 4 background rows), so that the U-Net (receptive field ~150 px,
GroupNorm statistics over the whole input) sees whole-slice anatomy and statistics as the samplers use it.

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
#: fine-tuning phases: (patch, batch size, steps per epoch, epochs)
FINETUNE = ((128, 4, 150, 3), (224, 2, 100, 15))


def finetune(work: Path) -> Path:
    """Fine-tune a copy of ``WORK/diffusion_ckpt.pt`` into ``WORK/diffusion_ft.pt`` (see the module doc);
    resumable: phases already done by the copy are skipped."""
    import shutil

    from recon.io.atomic import atomic_path
    from recon.training import TrainConfig, train

    src, out = work / "diffusion_ckpt.pt", work / "diffusion_ft.pt"
    if not out.exists():
        shutil.copyfile(src, out)
    base = int(torch.load(src, map_location="cpu", weights_only=True)["epoch"])
    end = base
    for patch, batch, steps, epochs in FINETUNE:
        end += epochs
        blob = torch.load(out, map_location="cpu", weights_only=True)
        if int(blob["epoch"]) >= end:
            continue
        blob["train_config"].update(patch=patch, batch_size=batch, steps_per_epoch=steps, ema_decay=0.998)
        with atomic_path(out, overwrite=True) as tmp:
            torch.save(blob, tmp)
        train(out, work / "train", work / "val", TrainConfig(model="diffusion", epochs=end), resume=True, lr=1.5e-4)
    return out


def evaluate(work: Path, weights: Path | None) -> dict:
    """Denoising PSNR (dB) of the prior on the validation folder and on the bundled sample."""
    from recon.data import sample_path
    from recon.io import read_raw
    from recon.solvers.diffusion import load_prior, normalize_scale
    from recon.training.diffusion import combined_image, evaluate_denoiser, load_images

    prior = load_prior(weights)
    val = load_images(work / "val")
    raw = read_raw(sample_path())
    sample = []
    for s in range(raw.kspace.shape[0]):
        x0 = combined_image(raw.kspace[s])
        sample.append(x0 / normalize_scale(x0.abs()))
    return {"validation": evaluate_denoiser(prior, val, SIGMAS, seed=0),
            "sample": evaluate_denoiser(prior, sample, SIGMAS, seed=0),
            "parameters": sum(p.numel() for p in prior.parameters())}


def main(work: Path, argv: list[str]) -> None:
    torch.set_num_threads(1)
    weights_dir = Path(__file__).resolve().parents[1] / "recon" / "weights"
    if "--export" in argv:
        from recon.training import export_weights

        ckpt = work / "diffusion_ft.pt" if (work / "diffusion_ft.pt").exists() else work / "diffusion_ckpt.pt"
        export_weights(ckpt, weights_dir / "diffusion_sim.pt", overwrite=True,
                       metadata={"data": "Colin 27 T1 simulated multi-coil, ESPIRiT-combined complex images "
                                         "(examples/train_make_data.py, training slabs only)",
                                 "licence_of_data": "BSD-3-Clause (recon/data/LICENSE-colin27)"})
        return
    if "--finetune" in argv:
        finetune(work)
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
