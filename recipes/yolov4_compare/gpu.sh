#!/usr/bin/env bash
# YOLOv4-tiny against YOLOv5n on the same data, input size and training budget (issue #21), sized
# for a lent GPU machine that has torch but not this project's .venv (as train_gpu.sh).
#   recipes/yolov4_compare/gpu.sh PACK OUT
# PACK: the real dataset packed by recipes/shipped_model/pack.py (data/real resized: images,
#       labels, train.txt, val.txt): the same 1,226 training and 306 validation photos for both.
# OUT:  comparison.md + comparison.json (summarize.py) and each model's training log: 4 files.
# Both train from random initialisation with this trainer, seed 0, the same BUDGET_MIN minutes of
# training each (the schedule is fitted to the epochs that fit), then each best checkpoint is
# exported and evaluated through the runtime's own path (bench/far_signs.py: mAP@0.5, recall per
# sign size, confusers firing), and timed model-only on the GPU with edge-bench (torch backend,
# FP16, CUDA graph). CPU latency is measured on the car's CPU, not here (docs/yolov4.md).
# Knobs: IMG (416), BATCH (64), BUDGET_MIN (3 per model), EPOCHS (the cap, 300), WORKERS, DEVICE
# (empty: CUDA when present), MODELS ("yolov4-tiny.cfg yolov5n").
set -uo pipefail
pack=$(cd "${1:?usage: gpu.sh PACK OUT}" && pwd)
out=${2:?usage: gpu.sh PACK OUT}
mkdir -p "$out"
out=$(cd "$out" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
IMG=${IMG:-416}
BATCH=${BATCH:-64}
BUDGET_MIN=${BUDGET_MIN:-3}
EPOCHS=${EPOCHS:-300}
WORKERS=${WORKERS:-$(($(nproc) - 2))}
DEVICE=${DEVICE:-}
MODELS=${MODELS:-yolov4-tiny.cfg yolov5n}
work=${WORK:-/tmp/stopsign_cmp}
export PYTHONUNBUFFERED=1

# shellcheck source=recipes/lib/namespace.sh
. "$root/recipes/lib/namespace.sh"
stopsign_namespace "$root" "$work"
py=${PYTHON:-python3}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1

mkdir -p "$work/runs"
device="cpu ($(nproc) cores)"
if [ "${DEVICE:-}" != cpu ] && command -v nvidia-smi >/dev/null; then
  device=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
fi
echo "$device" > "$work/runs/device.txt"  # the latency row names what it was measured on

status=0
for cfg in $MODELS; do
  name=$(basename "$cfg" .cfg)
  run="$work/runs/cmp_$name"
  rm -rf "$run"
  started=$(date +%s)
  $py -m stopsign.train.cli train --data "$pack" --cfg "$cfg" --weights '' --img "$IMG" --batch "$BATCH" \
    --epochs "$EPOCHS" --time-budget "$BUDGET_MIN" --cos-lr --cache ram --workers "$WORKERS" --seed 0 \
    --patience 0 --project "$work/runs" --name "cmp_$name" --exist-ok ${DEVICE:+--device "$DEVICE"} 2>&1 \
    | tr '\r' '\n' | grep -v -E '^\s*(epoch|val|caching)[^:]*:\s+[0-9]+%' > "$out/train_$name.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "$name: training failed (train_$name.log)"; tail -n 5 "$out/train_$name.log"; status=1; continue; }
  echo $(($(date +%s) - started)) > "$run/train_seconds"
  best="$run/weights/best"
  $py -m stopsign.export.cli onnx --weights "$best" --img "$IMG" --out "$run/model.onnx" > /dev/null || { status=1; continue; }
  $py "$root/bench/far_signs.py" --model "$run/model.onnx" --data "$pack" --tiles none --json "$run/far.json" \
    2>/dev/null > /dev/null || { echo "$name: far_signs failed"; status=1; }
  $py -m stopsign.edge.cli.bench --model "$best" --backend torch --mode model --frames 300 --warmup 50 \
    --json "$run/gpu_bench.json" > /dev/null 2>&1 || { echo "$name: edge-bench failed"; status=1; }
  echo "$name done after $(($(date +%s) - started)) s"
done
$py "$root/recipes/yolov4_compare/summarize.py" "$work/runs" --budget-min "$BUDGET_MIN" --img "$IMG" \
  --markdown "$out/comparison.md" --json "$out/comparison.json" || status=1
cat "$out/comparison.md" 2>/dev/null
exit "$status"
