#!/usr/bin/env bash
# The whole GPU run in one command, for a bare machine with a CUDA GPU and no network:
#
#   bash bench/gpu/run.sh            (or: make bench-gpu)
#
# Installs nothing. Uses the first Python on this machine whose torch sees a CUDA GPU
# ($PYTHON, python3, /opt/torch/.venv/bin/python3, python), with this repo on PYTHONPATH (no
# virtual environment of the repo's). Optional inputs staged beforehand by
# `python -m bench.gpu.carry` into .cache/gpu-carry (ImageNet weight files that exist
# offline, real photos); without them every model runs with seeded random weights and the
# agreement step uses scikit-image's photos, as the tables say.
#
# Stages, each under its own time limit inside one overall budget (GPU_BUDGET_S, default
# 540 s), so the run ends in time and keeps what it measured:
#   1. inventory: one line of what is importable (torch/CUDA/GPU, ONNX Runtime providers,
#      TensorFlow GPUs, TensorRT) and which bench runtimes can run here, which not and why
#   2. latency (BUDGET_MAIN_S=290): `python -m bench --device cuda`, the 16 models (most
#      cited first: a run cut short keeps whole models) x the GPU runtimes x batch
#      1,8,32,128 (a batch after an out-of-memory one is not tried), one process per
#      (model, runtime), short timing (>= 0.2 s and >= 10 calls per batch size, 3 s at most),
#      the GEMM peak per precision before and after; runtimes that cannot run here (no
#      onnxruntime-gpu, no TensorFlow) are left out with their reason
#   3. agreement (BUDGET_AGREEMENT_S=60): GPU fp32/TF32/fp16/bf16 vs CPU fp32 logits on real
#      photos; ONNX Runtime CUDA vs CPU where the EP exists
#   4. the CUDA tests (BUDGET_TESTS_S=90): pytest -m gpu
#   5. torch.compile (BUDGET_COMPILE_S=75, what is left): two models at batch 1
# A stage cut short by its limit keeps its records (latency: <name>.interrupted.jsonl, and
# tables rebuilt from it). Everything goes to $WORK (default /tmp/modelzoo-gpu); at the end
# at most 8 files are copied to $GPU_OUT, else $OUT, else runs/gpu: gpu-results.tar.gz
# (every table, plot, raw record and log), run.log, inventory.txt, tests.log and the
# Markdown tables.
# DEVICE=cpu runs the same stages on the CPU (a dry run of this script; tiny MODELS advised).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${WORK:-/tmp/modelzoo-gpu}
OUT=${GPU_OUT:-${OUT:-$REPO/runs/gpu}}  # the device tool's $OUT when run there
RESULTS=$WORK/results
CARRY=${CARRY:-$REPO/.cache/gpu-carry}
START=$(date +%s)
BUDGET=${GPU_BUDGET_S:-540}
# The 16 curated models, the most cited on GPUs first (a run cut short keeps whole models)
MODELS=${MODELS:-"resnet50 mobilenet_v2 efficientnet_b0 convnext_tiny vgg16 resnet18 \
inception_v3 densenet121 mobilenet_v3_large mobilenet_v3_small shufflenet_v2_x1_0 mnasnet1_0 \
regnet_y_400mf squeezenet1_0 squeezenet1_1 alexnet"}
# Those that cannot run here are left out with their reason (no onnxruntime-gpu: the ONNX
# Runtime rows; no TensorFlow: tf_savedmodel)
RUNTIMES=${RUNTIMES:-"pytorch pytorch_cl pytorch_tf32 pytorch_fp16 pytorch_bf16 pytorch_graph \
pytorch_fp16_graph onnxruntime onnxruntime_fp16 onnxruntime_trt onnxruntime_trt_fp16 \
tf_savedmodel"}
BATCHES=${BATCHES:-1,8,32,128}
COMPILE_MODELS=${COMPILE_MODELS:-"resnet50 mobilenet_v2"}
TIMING=(--repeats 1 --min-time 0.2 --min-runs 10 --warmup 3 --warmup-time 0.1 --max-time 3)

DEVICE=${DEVICE:-cuda}
rm -rf "$RESULTS" "$WORK/run.log" "$WORK/tests.log" && mkdir -p "$RESULTS" "$OUT" || exit 2
LOG=$WORK/run.log
exec > >(tee -a "$LOG") 2>&1

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 /opt/torch/.venv/bin/python3 python; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys, torch
sys.exit(0 if sys.argv[1] == "cpu" or torch.cuda.is_available() else 1)' "$DEVICE" \
            >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# stage NAME SECONDS RESERVE CMD...: run CMD for at most SECONDS, and never into the RESERVE
# seconds that the later stages and the packing need; SIGTERM first, SIGKILL 15 s later.
stage() {
    local name=$1 want=$2 reserve=$3; shift 3
    local limit=$(( $(left) - reserve ))
    (( limit > want )) && limit=$want
    if (( limit < 10 )); then
        echo "=== $name: skipped, the budget is spent ($(left) s left)"
        return 124
    fi
    echo "=== $name: up to ${limit} s ($(left) s of the budget left)"
    local t0=$(date +%s) rc
    timeout -k 15 "$limit" "$@"
    rc=$?
    echo "=== $name: exit $rc after $(( $(date +%s) - t0 )) s"
    return $rc
}

PY=$(find_python) || {
    echo "error: no Python here has torch with a CUDA GPU (tried: ${PYTHON:-} python3" \
         "/opt/torch/.venv/bin/python3 python)"
    exit 2
}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 \
       MODELZOO_OFFLINE=1 MODELZOO_PEAK_CACHE=$WORK/peak-cache
[ -d "$CARRY/torch/hub/checkpoints" ] && export TORCH_HOME=$CARRY/torch
[ -d "$CARRY/data/imagenet-sample" ] && photos=$CARRY/data || photos=$WORK/no-photos
cd "$REPO" || exit 2
echo "python: $PY; device: $DEVICE; repo: $REPO; work: $WORK; out: $OUT; budget: $BUDGET s"
echo "weights: ${TORCH_HOME:+ImageNet files in $TORCH_HOME/hub/checkpoints where present, }" \
     "seeded random weights for the rest"

# 1. inventory
"$PY" -m bench.gpu.inventory | tee "$WORK/inventory.txt"
"$PY" -m bench --list-runtimes --device "$DEVICE" | tee -a "$WORK/inventory.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.draw \
    --format=csv >>"$WORK/inventory.txt" 2>&1

# 2. latency: every runtime, the batch sweep; the later stages' time is reserved.
# shellcheck disable=SC2086  # the lists are space-separated names, split on purpose
stage latency "${BUDGET_MAIN_S:-290}" 160 \
    "$PY" -m bench --device "$DEVICE" --models $MODELS --runtimes $RUNTIMES \
    --batch-sizes "$BATCHES" "${TIMING[@]}" --jobs 8 --job-timeout 120 --weights auto \
    --artifacts "$WORK/artifacts" --results "$RESULTS"

# 3. agreement on real photos (the staged imagenet-sample photos, else scikit-image's)
# shellcheck disable=SC2086
stage agreement "${BUDGET_AGREEMENT_S:-60}" 100 \
    env MODELZOO_DATA="$photos" "$PY" -m bench.gpu.agreement --device "$DEVICE" \
    --models $MODELS --weights auto --artifacts "$WORK/artifacts" --results "$RESULTS"

# 4. the CUDA tests (they skip, with the reason, where there is no GPU)
stage tests "${BUDGET_TESTS_S:-90}" 10 \
    "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/bench/test_gpu.py \
    tests/bench/test_latency.py tests/converters/test_torch_runner.py 2>&1 | tee "$WORK/tests.log"

# 5. torch.compile on a few models at batch 1, in what is left (compilation is warm-up)
# shellcheck disable=SC2086
stage torch.compile "${BUDGET_COMPILE_S:-75}" 10 \
    "$PY" -m bench --device "$DEVICE" --models $COMPILE_MODELS --runtimes torch_compile \
    --batch-sizes 1 "${TIMING[@]}" --job-timeout 120 --weights auto --name compile \
    --artifacts "$WORK/artifacts" --results "$RESULTS"

# Tables of a stage cut short, from the records it kept
for raw in "$RESULTS"/raw/*.interrupted.jsonl; do
    [ -e "$raw" ] && "$PY" -m bench report "$raw" --out "$RESULTS" >/dev/null
done

# Pack: at most 8 files come back.
echo "=== summary ($(( $(date +%s) - START )) s in all)"
"$PY" -m bench.gpu.summary "$RESULTS"
cp "$LOG" "$WORK/run.log.copy"
tar -czf "$OUT/gpu-results.tar.gz" -C "$WORK" results inventory.txt run.log.copy \
    $( [ -f "$WORK/tests.log" ] && echo tests.log )
cp "$WORK/inventory.txt" "$OUT/"
[ -f "$WORK/tests.log" ] && cp "$WORK/tests.log" "$OUT/"
for md in "$RESULTS"/latency-*.md "$RESULTS"/agreement-*.md; do
    [ -e "$md" ] && [ "$(ls "$OUT" | wc -l)" -lt 7 ] && cp "$md" "$OUT/"
done
cp "$LOG" "$OUT/run.log"
ls -l "$OUT"
