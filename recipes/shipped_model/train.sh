#!/usr/bin/env bash
# Train the stop-sign model from random initialisation on this machine (CPU or GPU), resumably.
#   recipes/shipped_model/train.sh OUT_DIR [extra edge-train flags]
# The defaults (320 px, 12 epochs) are the 2-core-CPU schedule; the shipped model came from
# train_gpu.sh on a lent GPU (416 px, docs/model.md); IMG=416 EPOCHS=50 BATCH=64 SYNTH_N=6000 is the
# same recipe for a GPU on this machine.
# Needs ../shared/data (the real photos) and the project's .venv. Re-running it resumes the run in
# OUT_DIR/runs/shipped from its last checkpoint. The validation split is the committed
# val_real.txt (seed 0): it is never trained on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: train.sh OUT_DIR [edge-train flags]}
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
real=${REAL_DATA:-$root/../shared/data/real}
bin=${VENV_BIN:-$root/.venv/bin}
IMG=${IMG:-320}
EPOCHS=${EPOCHS:-12}
BATCH=${BATCH:-32}
CFG=${CFG:-yolov5n}
DEVICE=${DEVICE:-}
SYNTH_N=${SYNTH_N:-4000}

data="$out/data"
if [ ! -f "$data/shipped/data.yaml" ]; then
  "$bin/edge-data" import --format yolo "$real/roboflow-stop-signs" --out "$data/rf" --map Sign=stop_sign --drop Pole
  "$bin/edge-data" import --format gtsdb "$real/gtsdb" --out "$data/gtsdb"
  "$bin/edge-data" import --format voc "$real/road-signs-voc" --out "$data/voc"
  "$bin/edge-data" import --format yolo "$real/roboflow-stop-sign-uthm" --out "$data/uthm"
  "$bin/edge-data" merge "$data/rf" "$data/gtsdb" "$data/voc" "$data/uthm" --out "$data/real-merged"
  "$bin/edge-data" check "$data/real-merged" --fix "$data/real" || true  # --fix drops the 2 byte-duplicates
  # The committed split, not a fresh one: the validation images are fixed before any training.
  cp "$here/train_real.txt" "$data/real/train.txt"
  cp "$here/val_real.txt" "$data/real/val.txt"
  "$bin/edge-data" check "$data/real"
  "$bin/edge-data" synth --out "$data/synth" --n "$SYNTH_N" --seed 7 --size 416 --backgrounds "$data/real" --workers 2
  "$bin/edge-data" merge "$data/real" "$data/synth" --out "$data/shipped"
  # Every synthetic image trains; validation is real photos only.
  (cd "$data/shipped" && grep -v '^images/synth' val.txt > val.real && grep '^images/synth' val.txt >> train.txt \
    && mv val.real val.txt)
fi

run="$out/runs/shipped"
if [ -f "$run/weights/last/spec.json" ]; then
  exec "$bin/edge-train" train --resume "$run/weights/last" "$@"
fi
exec "$bin/edge-train" train --data "$data/shipped" --cfg "$CFG" --weights '' --img "$IMG" --batch "$BATCH" \
  --epochs "$EPOCHS" --cos-lr --cache ram --workers 2 --seed 0 --project "$out/runs" --name shipped --exist-ok \
  ${DEVICE:+--device "$DEVICE"} "$@"
