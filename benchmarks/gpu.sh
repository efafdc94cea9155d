#!/usr/bin/env bash
# GPU figures (issue #18), in one go, on a machine with an NVIDIA GPU: the full-data
# VGG16 configuration at 224 px (trained from scratch: no ImageNet weights offline) and
# batch inference with that backbone, on the accelerator. Writes
# benchmarks/results/gpu_full_data_vgg16_224.json and gpu_batch_inference.json, and the
# device in gpu_device.txt. A few minutes on a data-centre GPU (EPOCHS=10 by default).
#
# usage: benchmarks/gpu.sh [DATA_DIR]      (default ../shared/data/chest_xray_224/train)
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/chest_xray_224/train}"
results=benchmarks/results
[[ -d "$data" ]] || { echo "no data folder $data (the Kaggle train split, class folders)" >&2; exit 2; }
if ! nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    > "$results/gpu_device.txt"; then
    echo "no NVIDIA GPU visible (nvidia-smi failed): run this on the GPU machine" >&2
    exit 2
fi
cat "$results/gpu_device.txt"
gpu_ready() {
    .venv/bin/python -c "import sys, tensorflow as tf; sys.exit(not tf.config.list_physical_devices('GPU'))" 2>/dev/null
}
if [[ ! -x .venv/bin/python ]] || ! gpu_ready; then
    uv="$(command -v uv || echo .tools/bin/uv)"
    [[ -x "$uv" ]] || make .tools/bin/uv
    "$uv" sync --frozen --extra gpu   # TensorFlow's CUDA wheels (pyproject: the gpu extra)
    gpu_ready || { echo "TensorFlow sees no GPU after installing the gpu extra" >&2; exit 1; }
fi
start=$(date +%s)
.venv/bin/python benchmarks/full_data.py "$data" --name gpu_full_data_vgg16_224 \
    --train backbone=vgg16 --train image_size=224 --train weights=none \
    --train batch_size=64 --train "epochs=${EPOCHS:-10}" --train learning_rate=0.0001
XRAY_BENCH_BACKBONE=vgg16 XRAY_BENCH_IMAGE_SIZE=224 .venv/bin/python \
    benchmarks/batch_inference.py "$data" --rounds 1 --shards 1 --images 10000 \
    --name gpu_batch_inference
echo "GPU benchmarks done in $(( $(date +%s) - start )) s: $results/gpu_*.json"
