#!/usr/bin/env bash
# Issue #16's GPU check (GPT-2 small, JAX, bf16, context 1024: MFU), prepared as one device call of about
# 8 minutes, so that a session lent a GPU spends its device time measuring, not setting up:
#   1. the variants not yet measured on a GPU, each a whole process (bench_gpu.py --variants): the engine as
#      it is; `model.bias = false` (GPT-2 small as nanoGPT trains it: no bias gradients, no LayerNorm
#      offsets); with it, XLA's cuDNN LayerNorm, JAX's fused Pallas LayerNorm kernels, the fused loss
#      kernels of bench/gpu_kernels.py, and both (about 65 s each);
#   2. where the time of the first variant's step goes (gpu_profile.py over its device trace).
# Before the call, here: `../shared/tools/gpu-wheels.sh` (keras and keras-hub wheels into .whl), then
#   run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=600)
# or a shorter list as the first argument: bash bench/gpu_check.sh no-bias,no-bias-pallas-both
# What comes back under $OUT: gpu_variants.json (every variant's figures) and profile.json.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
out=${OUT:-/tmp/gpu-check}; mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__, jax.devices())"
date -u
variants=${1:-no-bias,engine,no-bias-cudnn-layer-norm,no-bias-pallas-layer-norm,no-bias-pallas-loss,no-bias-pallas-both}
python3 bench/bench_gpu.py --variants "$variants" \
  --batches 16 --windows 3 --variant-timeout 100 --profile-dir /tmp/prof --out "$out/gpu_variants.json"
date -u
python3 bench/gpu_profile.py /tmp/prof --top 30 --json "$out/profile.json" | head -60
