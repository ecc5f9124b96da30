#!/bin/bash
# The GPU check, for the day a CUDA device is available (README "Run on Colab"); under 8 minutes on a T4.
#   1. make bench's CUDA path: ResNet-18 at 224 px, batch 64, the pipeline (fit on a uint8 cache, gather thread,
#      pinned memory) vs the bare model step, in amp=auto (fp16 on a T4, bf16 on Ampere+) and the bare step in
#      fp32; prints images/s, the ratio (goal >= 0.9), the fp16/bf16 gain and the peak GPU memory.
#   2. the cache-read benchmark through the CUDA gather thread (pages dropped before each epoch).
#   3. notebook 03 with the colab profile's settings for one epoch on a small slice (offline: the synthetic
#      FairFace, no ImageNet download, no dlib), executed by papermill into build/gpu-check/, with its wall time.
# Usage: bash scripts/gpu_check.sh [--dry-run]      (PY=<python> to choose the interpreter; default python3)
# Without CUDA it stops at once with exit status 2; --dry-run prints the steps and runs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
LIMIT=${GPU_CHECK_LIMIT:-2000}  # images per split for notebook 03
OUT=build/gpu-check

steps=(
    "$PY scripts/bench_pipeline.py --device cuda --model resnet18 --size 224 --batch-size 64 --amp auto --rounds 4 --batches 8"
    "$PY scripts/bench_cache_reads.py --device cuda --images 2000 --rounds 2"
    "$PY scripts/gpu_check.sh::notebook03 (papermill, colab profile, epochs=1, limit=$LIMIT, into $OUT/)"
)
if [ "${1:-}" = --dry-run ]; then
    echo "gpu_check: would run, in order:"
    printf '  %s\n' "${steps[@]}"
    exit 0
fi
if [ "${1:-}" = --notebook-only ]; then  # step 3 alone (tests run it on a CPU with GPU_CHECK_DEVICE=cpu)
    only_notebook=1
    shift
fi
[ $# -eq 0 ] || { echo "usage: bash scripts/gpu_check.sh [--dry-run]" >&2; exit 64; }

if [ "${GPU_CHECK_DEVICE:-cuda}" = cuda ] && ! "$PY" - <<'PY'
import sys
import torch
if not torch.cuda.is_available():
    from lib.training import cuda_unavailable_reason
    print(f"gpu_check: no CUDA GPU: {cuda_unavailable_reason()}", file=sys.stderr)
    sys.exit(2)
name = torch.cuda.get_device_name(0)
major, minor = torch.cuda.get_device_capability(0)
print(f"gpu_check: {name} (compute capability {major}.{minor}), torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
then
    echo "gpu_check: stopped; run it on a machine with an NVIDIA GPU and a CUDA build of torch" >&2
    exit 2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" FACE_PROGRESS=plain
started=$(date +%s)

if [ -z "${only_notebook:-}" ]; then
    echo "== 1. pipeline vs bare model step (ResNet-18, 224 px, batch 64)"
    ${steps[0]} || echo "gpu_check: the pipeline is below 0.9 of the bare step (see the ratio above)"
    echo "== 2. image-cache gather from disk through the CUDA gather thread"
    ${steps[1]}
fi
echo "== 3. notebook 03, colab profile, 1 epoch, $LIMIT images per split"
mkdir -p "$OUT"
# Checkpoints, caches and results of this check go to $OUT/storage, not into the checkout's data/.
FACE_STORAGE=${GPU_CHECK_STORAGE:-$PWD/$OUT/storage} "$PY" - "$LIMIT" "$OUT" <<'PY'
import sys
import time

import papermill

from lib import notebooks, paths

import os

limit, out = int(sys.argv[1]), sys.argv[2]
device = os.environ.get("GPU_CHECK_DEVICE", "cuda")  # cpu only to test this step's parameters without a GPU
stem = "03_cosrelu_vs_softmax"
parameters = notebooks.notebook_parameters("colab", stem)
parameters.update(profile="gpu-check", fairface_source="synthetic", weights=None, epochs=1, limit=limit,
                  pretrained_encoder=None, seeds=[0], device=device, allow_cpu=device == "cpu")
if "GPU_CHECK_IMAGE_SIZE" in os.environ:  # the same, smaller, for that test
    parameters["image_size"] = int(os.environ["GPU_CHECK_IMAGE_SIZE"])
started = time.perf_counter()
with notebooks.kernel_environment():
    papermill.execute_notebook(str(paths.NOTEBOOKS / f"{stem}.ipynb"), f"{out}/{stem}.ipynb", parameters=parameters,
                               cwd=str(paths.NOTEBOOKS), kernel_name="python3", progress_bar=False,
                               stdout_file=sys.stdout, stderr_file=sys.stderr)
print(f"gpu_check: notebook 03 (the colab profile's heads x 1 epoch x {limit} images at "
      f"{parameters['image_size']} px on {device}) done in "
      f"{time.perf_counter() - started:.0f} s; executed copy: {out}/{stem}.ipynb")
PY
echo "gpu_check: all steps done in $(( $(date +%s) - started )) s"
