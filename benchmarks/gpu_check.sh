#!/usr/bin/env bash
# One prepared GPU check (a lent CUDA machine with PyTorch, Triton and pytest, no network):
# the CUDA correctness tests, then benchmarks/layers.py, profile_layer.py and models.py on the GPU.
# Results (JSON and logs) go to $OUT, else benchmarks/results/cuda.
#
#   bash benchmarks/gpu_check.sh
#
# Packages the machine lacks (pydantic and its needs) can sit as wheels in .whl/.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="$(realpath -m "${OUT:-benchmarks/results/cuda}")"
DEVICE="${DEVICE:-cuda}"  # DEVICE=cpu with LAYER_ARGS / MODEL_ARGS: a dry run of this script on a CPU
# COMPILE=--compile adds the torch.compile rows to the layer table (two more minutes)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
stage() { echo "=== $1 ($(date +%T))"; }

stage environment
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv || true
python3 -c "import torch, onnxruntime as o; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(), '| onnxruntime', o.__version__, o.get_available_providers())"

stage tests
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log" | tail -15

stage layers
(cd benchmarks && timeout 200 python3 layers.py --device "$DEVICE" ${COMPILE:-} --repeats 10 ${LAYER_ARGS:-} --out "$OUT/layers_cuda.json") 2>&1 \
    | grep -v "^W1\|^  warnings" | tee "$OUT/layers_cuda.log"

stage profile
for shape in 8,64,112,112 8,512,14,14; do  # file names without commas: the device tool returns only plain names
    (cd benchmarks && timeout 60 python3 profile_layer.py --device "$DEVICE" --shape $shape --out "$OUT/profile_${shape//,/x}.json") \
        > "$OUT/profile_${shape//,/x}.log" 2>&1
    grep "^==" "$OUT/profile_${shape//,/x}.log"
done

stage models
(cd benchmarks && timeout 140 python3 models.py --device "$DEVICE" --repeats 10 ${MODEL_ARGS:-} --out "$OUT/models_cuda.json") 2>&1 \
    | tee "$OUT/models_cuda.log" | tail -5
stage done
