#!/usr/bin/env bash
# The GPU check: one script, under 8 minutes on one H100. Needs a CUDA device and the project installed.
#   bench/gpu_check.sh
# Environment: PYTHON (default python), CM_DATA (real Comic Mischief text; default ../shared/data/comic_mischief),
# ENCODER (default minilm: a local path works too), PROFILE=1 (then the top CUDA kernels of one epoch).
#  (a) the tests that need CUDA: resume exactness, mixed precision, batched per-task gradients, TAG affinity
#  (b) real data, 2 epochs: fp32 vs bf16, MiniLM frozen and fine-tuned: epoch time, peak memory
#  (c) smoke-sized trainings packed 1, 2 and 4 per GPU: throughput
#  (d) TAG measurement leaves training unchanged on CUDA and resume is exact there: part of (a)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DATA=${CM_DATA:-../shared/data/comic_mischief}
ENC=${ENCODER:-minilm}
export MTL_CACHE_DIR=${MTL_CACHE_DIR:-/tmp/mtl_gpu_check_cache} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
status=0
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('device:', torch.cuda.get_device_name(), '| torch', torch.__version__)" || exit 2
start=$(date +%s)
echo "== (a, d) CUDA tests"
$PY -m pytest -q -p no:cacheprovider -s tests/mtl_core/test_cuda.py tests/mtl_core/test_groups_affinity.py -k "cuda" || status=1
echo "== (b) real data: epoch time and peak memory"
$PY bench/gpu_epochs.py --data "$DATA" --encoder "$ENC" --epochs 2 ${PROFILE:+--profile} || status=1
echo "== (c) trials per GPU"
$PY bench/gpu_pack.py --epochs 4 || status=1
echo "== took $(( $(date +%s) - start )) s"
if [ $status -eq 0 ]; then echo "verdict: GPU check passed (targets above say met / NOT met)"; else echo "verdict: GPU check FAILED"; fi
exit $status
