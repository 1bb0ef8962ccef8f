#!/usr/bin/env bash
# Far-sign stage: fine-tune the shipped model on real photos + far signs composited into real car
# frames + a few procedural signs, on this machine's CPU, from the shipped ONNX itself (its training
# checkpoint is not in the repository: `edge-train import-onnx` recovers it, BatchNorm folded, so the
# run uses --freeze-bn).
#   recipes/shipped_model/finetune_far.sh REAL OUT_DIR     (REAL: data/real as train.sh prepares it)
# Knobs: IMG (416), EPOCHS (4), PER_FRAME (3 composites per car frame), SYNTH_N (600), HYP.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
real=$(cd "${1:?usage: finetune_far.sh REAL OUT_DIR}" && pwd)
out=${2:?usage: finetune_far.sh REAL OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=${VENV_BIN:-$root/.venv/bin}
IMG=${IMG:-416}
EPOCHS=${EPOCHS:-4}
PER_FRAME=${PER_FRAME:-3}
SYNTH_N=${SYNTH_N:-600}
HYP=${HYP:-$here/hyp_finetune.yaml}

[ -f "$out/shipped_ckpt/spec.json" ] || "$bin/edge-train" import-onnx "$root/edge/assets/stopsign.onnx" --out "$out/shipped_ckpt"
data="$out/ft_far"
if [ ! -f "$data/data.yaml" ]; then
  "$bin/edge-data" far-signs "$real" --out "$out/far_train" --part train --per-frame "$PER_FRAME" --seed 1
  "$bin/edge-data" synth --out "$out/synth_ft" --n "$SYNTH_N" --seed 21 --size 416 --backgrounds "$real" \
    --workers 2 --confusers signs
  "$bin/edge-data" merge "$real" "$out/far_train" "$out/synth_ft" --out "$data"
  # Validation stays the committed real split; every synthetic image trains.
  (cd "$data" && grep -v '^images/synth' val.txt > val.real && grep '^images/synth' val.txt >> train.txt \
    && mv val.real val.txt)
fi
exec "$bin/edge-train" train --data "$data" --weights "$out/shipped_ckpt" --cfg '' --img "$IMG" --batch 32 \
  --epochs "$EPOCHS" --cos-lr --hyp "$HYP" --freeze-bn --cache ram --workers 2 --seed 1 --patience 0 \
  --device "${DEVICE:-cpu}" --project "$out/runs" --name far --exist-ok
