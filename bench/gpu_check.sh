#!/usr/bin/env bash
# On a CUDA machine: the attribution, batching and load benchmarks on the GPU, images/s by batch size.
# Never needed by the tests; run it whenever a GPU is at hand and put the numbers in bench/README.md.
#   bench/gpu_check.sh            (after scripts/install)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device: this check is for a GPU machine"
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "== several pictures in one request and engine batches (saliency, images/s by batch size)"
$PY bench/bench_several_pictures.py --device cuda --pictures 64 --batches 1,4,8,16,32,64 --repeat 3 2>/dev/null
echo "== attribution methods against Captum and pytorch-grad-cam"
$PY bench/bench_attribution.py --device cuda --repeats 5 2>/dev/null
echo "== load: 16 clients of inline saliency, without and with dynamic batching"
CONVLENS_DEVICE=cuda $PY bench/bench_load.py --duration 30 --jobs 0 2>/dev/null | grep -v '"level"'
