#!/usr/bin/env bash
# Submit deploy/slurm/train.sbatch with the cluster shape chosen by variables (override by exporting);
# they replace the #SBATCH shape lines of train.sbatch for this submission.
#   DATA=/data/stopsign NODES=2 GPUS_PER_NODE=4 PARTITION=gpu deploy/slurm/submit.sh
set -euo pipefail
NODES=${NODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-2}        # 0 = CPU-only ranks (gloo)
LAUNCHER=${LAUNCHER:-srun}               # srun: one task per GPU; torchrun: one task per node
if [ "$LAUNCHER" = torchrun ]; then
  TASKS_PER_NODE=${TASKS_PER_NODE:-1}
  export NPROC_PER_NODE=${NPROC_PER_NODE:-$GPUS_PER_NODE}
else
  TASKS_PER_NODE=${TASKS_PER_NODE:-$GPUS_PER_NODE}
fi
CPUS_PER_TASK=${CPUS_PER_TASK:-4}
TIME=${TIME:-12:00:00}
PARTITION=${PARTITION:-}
export LAUNCHER

here=$(cd "$(dirname "$0")" && pwd)
args=(--nodes="$NODES" --ntasks-per-node="$TASKS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --time="$TIME"
  --gpus-per-node="$GPUS_PER_NODE")
[ -n "$PARTITION" ] && args+=(--partition="$PARTITION")
[ "$GPUS_PER_NODE" -gt 0 ] || export DEVICE=cpu
exec sbatch "${args[@]}" --export=ALL "$here/train.sbatch"
