#!/usr/bin/env bash
# Third stage of the shipped model: fine-tune on the errors of the previous stage, on the CPU.
#   recipes/shipped_model/finetune_hard.sh DATA CHECKPOINT OUT_DIR
# DATA: the dataset train.sh prepares (data/shipped). CHECKPOINT: the stage-2 checkpoint folder.
# 1. mine_hard.py lists the real training images the checkpoint's ONNX export gets wrong (false
#    positives, misses); only train.txt is read, never the validation split.
# 2. DISTRACTOR_N (2,000) new synthetic images (seed 11) with every confuser kind, including the red street
#    objects the model fired on (hydrants, traffic lights, red foliage, red boxes).
# 3. 5 epochs, mosaic off, low learning rate, on: every real training image, the hard ones
#    HARD_REPEAT (3) more times, the new synthetic set and every sixth image of the first synthetic set.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
usage="usage: finetune_hard.sh DATA CHECKPOINT OUT_DIR"
data=$(cd "${1:?$usage}" && pwd)
checkpoint=$(cd "${2:?$usage}" && pwd)
out=${3:?$usage}
mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=${VENV_BIN:-$root/.venv/bin}
EPOCHS=${EPOCHS:-5}
HARD_REPEAT=${HARD_REPEAT:-3}  # extra copies of each hard image
DISTRACTOR_N=${DISTRACTOR_N:-2000}  # new synthetic images
CONFUSERS=${CONFUSERS:-all}  # their confuser kinds (edge-data synth --confusers)
HYP=${HYP:-$here/hyp_finetune.yaml}

"$bin/edge-export" onnx --weights "$checkpoint" --out "$out/stage2.onnx"
"$bin/python" "$here/mine_hard.py" "$data" "$out/stage2.onnx" --out "$out/hard.txt"
synth="$data/../synth_distractors_${DISTRACTOR_N}_$(echo "$CONFUSERS" | cksum | cut -c1-8)"
if [ ! -f "$synth/train.txt" ]; then
  rm -rf "$synth"
  "$bin/edge-data" synth --out "$synth" --n "$DISTRACTOR_N" --seed 11 --size 416 --backgrounds "$data" --workers 2 --val 0 \
    --confusers "$CONFUSERS"
fi
{
  grep -v '^images/synth' "$data/train.txt"
  for _ in $(seq "$HARD_REPEAT"); do cat "$out/hard.txt"; done
  sed "s|^|../$(basename "$synth")/|" "$synth/train.txt"
  grep '^images/synth' "$data/train.txt" | awk 'NR % 6 == 1'
} > "$data/hard_train.txt"
printf 'path: .\ntrain: hard_train.txt\nval: val.txt\nnc: 1\nnames:\n- stop_sign\n' > "$data/hard.yaml"
exec "$bin/edge-train" train --data "$data/hard.yaml" --weights "$checkpoint" --cfg '' --img 416 --batch 32 \
  --epochs "$EPOCHS" --cos-lr --hyp "$HYP" --cache ram --workers 2 --seed 2 --patience 0 \
  --device "${DEVICE:-cpu}" --project "$out" --name hard --exist-ok
