#!/usr/bin/env bash
# Second stage of the shipped model: 6 epochs on whole images (mosaic off) at a low learning rate,
# from the GPU run's checkpoint, on this machine's CPU (~230 s/epoch on 2 cores).
#   recipes/shipped_model/finetune.sh DATA CHECKPOINT OUT_DIR
# DATA: the dataset train.sh prepares (data/shipped: real + synthetic, val = the committed real
# split). Trains on all real training images and every third synthetic one (2,560 images).
# HYP: another hyper-parameter file (hyp_finetune_robust.yaml adds the camera corruptions).
# EPOCHS: fewer epochs (default 6) where an epoch is slower than this schedule allows; the cosine
# learning rate is fitted to the count.
# CHECKPOINT may be the shipped ONNX brought back by `edge-train import-onnx`: its BatchNorms are
# folded into the convolutions (identity statistics), so the run then keeps them frozen
# (--freeze-bn); in training mode they would renormalise every layer with batch statistics.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
data=$(cd "${1:?usage: finetune.sh DATA CHECKPOINT OUT_DIR}" && pwd)
checkpoint=${2:?usage: finetune.sh DATA CHECKPOINT OUT_DIR}
out=${3:?usage: finetune.sh DATA CHECKPOINT OUT_DIR}
bin=${VENV_BIN:-$root/.venv/bin}
(grep -v '^images/synth' "$data/train.txt"; grep '^images/synth' "$data/train.txt" | awk 'NR % 3 == 1') > "$data/ft_train.txt"
freeze_bn=()
if grep -qs '"imported_from_onnx"' "$checkpoint/spec.json"; then
  freeze_bn=(--freeze-bn)
fi
printf 'path: .\ntrain: ft_train.txt\nval: val.txt\nnc: 1\nnames:\n- stop_sign\n' > "$data/ft.yaml"
exec "$bin/edge-train" train --data "$data/ft.yaml" --weights "$checkpoint" --cfg '' --img 416 --batch 32 --epochs "${EPOCHS:-6}" \
  --cos-lr --hyp "${HYP:-$here/hyp_finetune.yaml}" --cache ram --workers 2 --seed 1 --patience 0 --device "${DEVICE:-cpu}" \
  "${freeze_bn[@]}" \
  --project "$out" --name ft --exist-ok
