#!/usr/bin/env bash
# Train the shipped model on a lent CUDA machine that has torch but not this project's .venv.
#   recipes/shipped_model/train_gpu.sh PACK OUT
# PACK: the real dataset as imported by train.sh (data/real: images, labels, sources.jsonl,
#       train.txt = train_real.txt, val.txt = val_real.txt), images resized to a longest side of
#       448 px so that it travels light (pack.sh makes it).
# OUT:  where the best checkpoint (weights.safetensors, model.yaml, spec.json), results.csv and
#       the training log are copied: at most 8 files.
# Synthetic data is generated on the machine (seeded, so the same as train.sh's at this count).
# Knobs: CFG (yolov5n), IMG (416), BATCH (64), EPOCHS (the cap, 300), BUDGET_MIN (minutes for the
# training run; the epoch count and cosine schedule are fitted to it), SYNTH_N (6000), WORKERS,
# CONFUSERS (edge-data synth --confusers: all; the first shipped model's stage 1 had 'signs'),
# FAR_PACK (a packed `edge-data far-signs --part train` folder: far signs in real car frames, trained on).
# HYP (stage-1 hyper-parameters: hyp_stage1.yaml, YOLOv5's defaults plus camera corruptions on 30%
# of the samples, docs/robustness.md), CORRUPT (overrides that probability; 0 = the recipe before issue 37).
set -uo pipefail
pack=$(cd "${1:?usage: train_gpu.sh PACK OUT}" && pwd)
out=${2:?usage: train_gpu.sh PACK OUT}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/../.." && pwd)
CFG=${CFG:-yolov5n}
IMG=${IMG:-416}
BATCH=${BATCH:-64}
EPOCHS=${EPOCHS:-300}
BUDGET_MIN=${BUDGET_MIN:-6.5}
SYNTH_N=${SYNTH_N:-6000}
WORKERS=${WORKERS:-$(($(nproc) - 2))}
DEVICE=${DEVICE:-}
work=${WORK:-/tmp/stopsign_gpu}
export PYTHONUNBUFFERED=1

# shellcheck source=recipes/lib/namespace.sh
. "$root/recipes/lib/namespace.sh"
stopsign_namespace "$root" "$work"
py=${PYTHON:-python3}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$py -c "import torch, cv2; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'cpus', __import__('os').cpu_count())" || exit 1
started=$(date +%s)

data="$work/data"
rm -rf "$data"
$py -m stopsign.train.data.cli synth --out "$data/synth" --n "$SYNTH_N" --seed 7 --size "$IMG" \
  --backgrounds "$pack" --workers "$WORKERS" --confusers "${CONFUSERS:-all}" 2>&1 | tail -n 1 || exit 1
$py -m stopsign.train.data.cli merge "$pack" "$data/synth" ${FAR_PACK:+"$FAR_PACK"} --out "$data/shipped" 2>&1 \
  | tail -n 1 || exit 1
# Every synthetic image trains; validation is real photos only (the committed split).
(cd "$data/shipped" && grep -v '^images/synth' val.txt > val.real && grep '^images/synth' val.txt >> train.txt \
  && mv val.real val.txt && wc -l train.txt val.txt) || exit 1
echo "data ready after $(($(date +%s) - started)) s"

run="$work/runs/shipped"
hyp=${HYP:-$root/recipes/shipped_model/hyp_stage1.yaml}
if [ -n "${CORRUPT:-}" ]; then
  sed "s/^corrupt: .*/corrupt: $CORRUPT/" "$hyp" > "$work/hyp.yaml" && hyp="$work/hyp.yaml"
fi
# If the machine is taken back mid-run, the newest best checkpoint has already been copied out.
(while sleep 30; do cp -f "$run/weights/best/"{weights.safetensors,model.yaml,spec.json} "$out/" 2>/dev/null; done) &
snapshots=$!
$py -m stopsign.train.cli train --data "$data/shipped" --cfg "$CFG" --weights '' --img "$IMG" --batch "$BATCH" \
  --epochs "$EPOCHS" --time-budget "$BUDGET_MIN" --cos-lr --cache ram --workers "$WORKERS" --seed 0 \
  --patience 0 --hyp "$hyp" --project "$work/runs" --name shipped --exist-ok ${DEVICE:+--device "$DEVICE"} 2>&1 \
  | tr '\r' '\n' | grep -v -E '^\s*(epoch|val|caching)[^:]*:\s+[0-9]+%' | tee "$out/train.log"
status=${PIPESTATUS[0]}
kill "$snapshots" 2>/dev/null
echo "training exit $status after $(($(date +%s) - started)) s"

best="$run/weights/best"
[ -d "$best" ] || best="$run/weights/last"
cp "$best/weights.safetensors" "$best/model.yaml" "$best/spec.json" "$out/" 2>/dev/null
cp "$run/results.csv" "$run/results.png" "$out/" 2>/dev/null
ls -la "$out"
exit "$status"
