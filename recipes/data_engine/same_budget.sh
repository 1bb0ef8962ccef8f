#!/usr/bin/env bash
# The same-budget experiment of docs/data_engine.md, on the CPU: fine-tune the shipped model with N
# mined frames, and separately with N random frames of the same drives, both pre-labelled by the
# detector with tiles and taken as labels with NO human review; then compare them (and the shipped
# model) on the far-sign validation set without tiles and on the real validation split.
#   recipes/data_engine/same_budget.sh REAL FAR_VAL OUT      (REAL: data/real as train.sh prepares it)
# Knobs: N (100), DRIVES (8 far-approach drives on the training share of the car frames, from
# 100 m), REAL_N (60 real training photos beside the N frames, the same for both arms), EPOCHS (2),
# IMG (416), THREADS (1 per arm; the arms train side by side).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
real=$(cd "${1:?usage: same_budget.sh REAL FAR_VAL OUT}" && pwd)
far_val=$(cd "${2:?usage: same_budget.sh REAL FAR_VAL OUT}" && pwd)
out=${3:?usage: same_budget.sh REAL FAR_VAL OUT}
mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=${VENV_BIN:-$root/.venv/bin}
N=${N:-100}
DRIVES=${DRIVES:-8}
REAL_N=${REAL_N:-60}
EPOCHS=${EPOCHS:-2}
IMG=${IMG:-416}
THREADS=${THREADS:-1}

# 1. Drives to mine: far approaches composited into car frames of the TRAINING share (never the
#    backgrounds of FAR_VAL), from 100 m.
[ -d "$out/drives" ] || "$bin/edge-data" far-drives "$real" --out "$out/drives" --n "$DRIVES" --start-m 100 \
  --part train --seed 5
# 2. The two arms, labelled by the same detector with tiles (proposals at 0.8 x the operating threshold).
#    `edge-data mine` is shard 0/1 + the merge; run as the two steps so the merge can be redone alone.
#    A dedup window of 0.2 s instead of 1 s: each drive is one photo slowly zoomed, so its frames
#    hash alike for its whole length (a real drive's scene changes within a second).
[ -f "$out/mined/shards/0/candidates.jsonl" ] || "$bin/edge-data" mine "$out"/drives/* --shard 0/1 \
  --out "$out/mined/shards/0" --threads "$THREADS" --no-progress
[ -f "$out/mined/mined.jsonl" ] || "$bin/edge-data" mine-merge "$out/mined/shards/0" --budget "$N" \
  --dedup-window 0.2 --out "$out/mined" --no-progress
[ -f "$out/random/mined.jsonl" ] || "$bin/python" "$here/random_frames.py" "$out"/drives/* --n "$N" --seed 0 \
  --out "$out/random" --threads "$THREADS"
# 3. Proposals as labels, unreviewed (the CVAT COCO 1.0 export imported as if it came back from CVAT).
[ -f "$out/shipped_ckpt/spec.json" ] || "$bin/edge-train" import-onnx "$root/edge/assets/stopsign.onnx" \
  --out "$out/shipped_ckpt"
for arm in mined random; do
  [ -d "$out/ds_$arm" ] || "$bin/edge-data" import --format cvat-coco "$out/$arm/cvat_coco_1.0.zip" \
    --task "$out/$arm" --out "$out/ds_$arm" --name "$arm"
  if [ ! -f "$out/ft_$arm/data.yaml" ]; then
    "$bin/edge-data" merge "$real" "$out/ds_$arm" --out "$out/ft_$arm"
    # The same REAL_N real training photos in both arms (seeded), plus the arm's N frames;
    # validation stays the committed real split.
    (cd "$out/ft_$arm" && grep -v "^images/${arm}_" train.txt | shuf -n "$REAL_N" --random-source=<(yes) \
      > train.real && grep "^images/${arm}_" train.txt >> train.real && mv train.real train.txt)
  fi
done
# The two arms train side by side (the same flags, seed and schedule), each on THREADS threads.
pids=()
for arm in mined random; do
  [ -f "$out/runs/$arm/weights/last/spec.json" ] && [ -f "$out/runs/$arm/done" ] && continue
  OMP_NUM_THREADS=$THREADS "$bin/edge-train" train --data "$out/ft_$arm" --weights "$out/shipped_ckpt" --cfg '' \
    --img "$IMG" --batch 16 --epochs "$EPOCHS" --cos-lr --hyp "$root/recipes/shipped_model/hyp_finetune_far.yaml" \
    --freeze-bn --workers 0 --seed 1 --patience 0 --device cpu --project "$out/runs" --name "$arm" --exist-ok \
    > "$out/train_$arm.log" 2>&1 && touch "$out/runs/$arm/done" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for arm in mined random; do
  # The last epoch, not the best on the validation split: that split is the test here.
  [ -f "$out/$arm.onnx" ] || "$bin/edge-export" onnx --weights "$out/runs/$arm/weights/last" --dynamic \
    --out "$out/$arm.onnx"
done
# 4. Evaluation: far-sign set without tiles, real split without tiles, at the operating threshold 0.5.
for model in shipped mined random; do
  onnx="$out/$model.onnx"
  [ "$model" = shipped ] && onnx="$root/edge/assets/stopsign.onnx"
  for set in far real; do
    data="$far_val"; [ "$set" = real ] && data="$real"
    [ -f "$out/eval_${model}_$set.json" ] || "$bin/python" "$root/bench/far_signs.py" --model "$onnx" \
      --data "$data" --tiles none --threshold 0.5 --threads "$THREADS" --json "$out/eval_${model}_$set.json" \
      --markdown "$out/eval_${model}_$set.md"
  done
done
"$bin/python" "$here/compare.py" "$out"
"$bin/python" "$here/label_quality.py" "$out/mined" "$out/random" | tee "$out/label_quality.md"
