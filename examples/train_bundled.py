"""How the bundled weights were made (recon/weights/MODEL_CARD.md): data, two ``recon train`` runs, export.

    python examples/train_bundled.py WORK_DIR            # simulate + train both (hours on 1 CPU thread)
    python examples/train_bundled.py WORK_DIR --export   # copy the checkpoints' weights into recon/weights/

The training commands (run here with ``OMP_NUM_THREADS=1 nice -n 5``, in parallel, on a shared 2-core CPU):

    recon train WORK/varnet_ckpt.pt --model varnet --train WORK/train --val WORK/val --epochs 14 \\
        --cascades 6 --chans 8 --pools 3 --sens-chans 8 --loss ssim --lr 1e-3 --seed 0 --resume
    recon train WORK/modl_ckpt.pt --model modl --train WORK/train --val WORK/val --epochs 8 \\
        --cascades 5 --chans 12 --pools 3 --cg-iterations 5 --sens-chans 8 --loss ssim --lr 1e-3 --seed 0 --resume

then, when the validation PSNR stopped improving, each run was resumed at a lower learning rate
(``recon train WORK/varnet_ckpt.pt --train ... --val ... --epochs 14 --lr 2e-4 --resume``; MoDL likewise),
and stopped at the time budget after the last completed epoch (the model card says which). ``--resume``
continues a run reproducibly; the per-epoch history (with the rate used) is stored in the weights file.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VARNET = ["--model", "varnet", "--epochs", "14", "--cascades", "6", "--chans", "8", "--pools", "3",
          "--sens-chans", "8", "--loss", "ssim", "--lr", "1e-3", "--seed", "0", "--resume"]
MODL = ["--model", "modl", "--epochs", "8", "--cascades", "5", "--chans", "12", "--pools", "3",
        "--cg-iterations", "5", "--sens-chans", "8", "--loss", "ssim", "--lr", "1e-3", "--seed", "0", "--resume"]


def main(work: Path, export: bool) -> None:
    weights = Path(__file__).resolve().parents[1] / "recon" / "weights"
    if export:
        from recon.training import export_weights

        for name in ("varnet", "modl"):
            export_weights(work / f"{name}_ckpt.pt", weights / f"{name}_sim.pt", overwrite=True,
                           metadata={"data": "Colin 27 T1 simulated multi-coil (examples/train_make_data.py)",
                                     "licence_of_data": "BSD-3-Clause (recon/data/LICENSE-colin27)"})
        return
    if not (work / "train").is_dir():
        subprocess.run([sys.executable, str(Path(__file__).with_name("train_make_data.py")), str(work)], check=True)
    for name, opts in (("varnet", VARNET), ("modl", MODL)):
        subprocess.run([sys.executable, "-m", "recon", "train", str(work / f"{name}_ckpt.pt"), "--train",
                        str(work / "train"), "--val", str(work / "val"), *opts], check=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/train_data"), "--export" in sys.argv)
