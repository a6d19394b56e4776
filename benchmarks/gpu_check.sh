#!/usr/bin/env bash
# One prepared GPU check (a lent CUDA machine with PyTorch, Triton and pytest, no network), in
# under 8 minutes: the goals table (benchmarks/gpu_goals.py -> goals.json), the CUDA correctness
# tests, profile_layer.py, then onnxruntime serving on CUDA (benchmarks/serving.py;
# onnxruntime-gpu from .whl/ pieces); FULL=1 adds the layer and model tables (layers.py,
# models.py) and COMPILE=1 the layer table's torch.compile rows. Stages run in that order.
# Results (JSON and logs) go to $OUT, else benchmarks/results/cuda. PACK=NAME.tar also packs them
# into $OUT/NAME.tar after every stage (the device tool returns at most 8 files; a run cut by its
# time limit still returns what the finished stages wrote).
#
#   bash benchmarks/gpu_check.sh
#
# Packages the machine lacks (pydantic and its needs) can sit as wheels in .whl/.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="$(realpath -m "${OUT:-benchmarks/results/cuda}")"
DEVICE="${DEVICE:-cuda}"  # DEVICE=cpu GOALS_ARGS=--quick (and LAYER_ARGS / MODEL_ARGS): a dry run on a CPU
RES="$OUT"
if [ -n "${PACK:-}" ]; then RES="$(mktemp -d)"; fi
mkdir -p "$OUT" "$RES"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
stage() {
    if [ -n "${PACK:-}" ]; then tar -C "$RES" -cf "$OUT/$PACK.part" . && mv "$OUT/$PACK.part" "$OUT/$PACK"; fi
    echo "=== $1 ($(date +%T))"
}

stage environment
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv || true
python3 -c "import torch, triton, onnxruntime as o; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(), '| triton', triton.__version__, '| onnxruntime', o.__version__, o.get_available_providers())"

stage goals
# The preserve sites' kernels (their max pool inside the lift's, about a minute's build each;
# inference, then training with the costs) build beside the layer rows, before the model rows
# need them: the same models and sizes.
(timeout 300 python3 -c "
import torch, warnings, liftswap
warnings.simplefilter('ignore')
for source in ('torchvision:resnet50', 'timm:vgg13_bn'):
    x = torch.randn(2, 3, 224, 224)
    m = liftswap.patch(liftswap.build_model(source).eval(), example_inputs=x).to('$DEVICE')
    with torch.autocast(torch.device('$DEVICE').type, dtype=torch.bfloat16):
        with torch.no_grad():
            m(x[:1].to('$DEVICE'))
        m.train()(x.to('$DEVICE')).float().sum().backward()
print('preserve kernels built')
" > "$RES/warm.log" 2>&1 &)
(cd benchmarks && timeout "${GOALS_LIMIT:-260}" python3 gpu_goals.py --device "$DEVICE" ${GOALS_ARGS:-} --out "$RES/goals.json") 2>&1 \
    | grep -v "^W1\|^  warnings" | tee "$RES/goals.log"

stage tests
timeout "${TEST_LIMIT:-90}" python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$RES/test_cuda.log" | tail -15

if [ -n "${FULL:-}" ]; then
    stage layers
    (cd benchmarks && timeout 150 python3 layers.py --device "$DEVICE" --repeats 10 ${LAYER_ARGS:-} --out "$RES/layers_cuda.json") 2>&1 \
        | grep -v "^W1\|^  warnings" | tee "$RES/layers_cuda.log"

    stage models
    (cd benchmarks && timeout 120 python3 models.py --device "$DEVICE" --repeats 10 ${MODEL_ARGS:-} --out "$RES/models_cuda.json") 2>&1 \
        | tee "$RES/models_cuda.log" | tail -5
fi

stage profile
for shape in 8,64,112,112; do  # file names without commas: the device tool returns only plain names
    (cd benchmarks && timeout 30 python3 profile_layer.py --device "$DEVICE" --shape $shape --out "$RES/profile_${shape//,/x}.json") \
        > "$RES/profile_${shape//,/x}.log" 2>&1
    grep "^==" "$RES/profile_${shape//,/x}.log"
done
# the same with every launch through Triton's JITFunction.run (ops/triton_launch.py's shortcut off),
# with every call through the dispatcher (ops/operators.py's direct callers off) and with the preserve
# site's max pool launched before the lift (not inside its kernel): before/after
for switch in LIFTSWAP_TRITON_FAST_LAUNCH LIFTSWAP_DIRECT_CALLS LIFTSWAP_TRITON_MAX_INSIDE; do
    name="profile_8x64x112x112_${switch,,}_0"
    (cd benchmarks && env "$switch=0" timeout 30 python3 profile_layer.py --device "$DEVICE" --shape 8,64,112,112 \
        --out "$RES/$name.json") > "$RES/$name.log" 2>&1
    grep "^==" "$RES/$name.log"
done

stage serving
# onnxruntime-gpu is larger than one device call carries: its wheel travels as .whl/NAME.whl.part-* pieces
for first in .whl/*.whl.part-aa; do
    [ -e "$first" ] || continue
    wheel="/tmp/$(basename "${first%.part-aa}")"
    cat "${first%aa}"* > "$wheel" && python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site "$wheel"
    export PYTHONPATH="/tmp/site:$PWD"
done
(cd benchmarks && timeout "${SERVING_LIMIT:-90}" python3 serving.py --provider "$DEVICE" --repeats 20 ${SERVING_ARGS:-} --out "$RES/serving_cuda.json") 2>&1 \
    | tee "$RES/serving_cuda.log" | tail -25

if [ -n "${COMPILE:-}" ]; then
    stage "layers, torch.compile"
    (cd benchmarks && timeout 150 python3 layers.py --device "$DEVICE" --compile --layers "(haar, gated)" --repeats 10 ${LAYER_ARGS:-} --out "$RES/layers_cuda_compiled.json") 2>&1 \
        | grep -v "^W1\|^  warnings" | grep "compiled\|MaxPool2d(3,2,1) " | tee "$RES/layers_cuda_compiled.log"
fi
stage done
