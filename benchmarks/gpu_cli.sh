#!/usr/bin/env bash
# recon's command line on a GPU against the CPU (issue 17), on the bundled sample (3 slices, fastMRI random 4x):
# `recon run` with every method family on the CPU and on the GPU, the PSNR of each and the relative difference of
# the two reconstructions, whole-process wall times; then `recon batch` on the GPU.
#   PY=.venv/bin/python bash benchmarks/gpu_cli.sh          (PY: the Python with recon; GPU=cuda; TH: CPU threads)
#   METHODS="l1-wavelet,varnet --adapt" bash benchmarks/gpu_cli.sh
set -u
PY=${PY:-python3}; GPU=${GPU:-cuda}; TH=${TH:-16}
S=recon/data/sample_brain.h5
rm -rf /tmp/o /tmp/b /tmp/bo; mkdir -p /tmp/o
if [ -n "${METHODS:-}" ]; then IFS=',' read -ra MS <<< "$METHODS"; else
  MS=("zero-filled" "sense" "l1-wavelet" "varnet" "modl" "varnet --adapt --adapt-steps 10" "diffusion --samples 2"); fi
for m in "${MS[@]}"; do
  tag=$(echo $m | tr ' ' '_' | tr -d '-')
  for d in cpu gpu; do dev=cpu; [ $d = gpu ] && dev=$GPU
    /usr/bin/time -f "%e s wall" $PY -m recon run $S /tmp/o/${tag}_$d.h5 --method $m --accel 4 --device $dev --threads $TH --json > /tmp/o/${tag}_$d.json 2> /tmp/o/${tag}_$d.err || { echo "FAIL $m $d"; tail -3 /tmp/o/${tag}_$d.err; }
  done
  $PY - "$tag" <<'PY'
import json, re, sys, h5py, numpy as np
t = sys.argv[1]
def load(d):
    with h5py.File(f"/tmp/o/{t}_{d}.h5") as f:
        return open(f"/tmp/o/{t}_{d}.json").read(), f["reconstruction"][()]
try:
    (jc, c), (jg, g) = load("cpu"), load("gpu")
    psnr = lambda s: (re.search(r'"psnr": ([0-9.]+)', s) or [None, "?"])[1]
    rel = float(np.linalg.norm(g - c) / np.linalg.norm(c))
    w = [open(f"/tmp/o/{t}_{d}.err").read().strip().splitlines()[-1] for d in ("cpu", "gpu")]
    print(f"{t:<26} PSNR cpu {psnr(jc)} gpu {psnr(jg)}  rel.diff {rel:.1e}  {w[0]} / {w[1]}", flush=True)
except Exception as e:
    print(t, "compare failed:", e)
PY
done
mkdir -p /tmp/b && cp $S /tmp/b/a.h5 && cp $S /tmp/b/b.h5
$PY -m recon batch /tmp/b /tmp/bo --method l1-wavelet --accel 4 --device $GPU --workers 1 > /tmp/o/batch.log 2>&1; echo "batch rc=$?"; tail -3 /tmp/o/batch.log
