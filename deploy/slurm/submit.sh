#!/usr/bin/env bash
# Submit deploy/slurm/train.sbatch with the cluster shape set here (override by exporting).
#   DATA=/data/stopsign deploy/slurm/submit.sh
set -euo pipefail
NODES=${NODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-2}        # 0 = CPU-only tasks (gloo)
TASKS_PER_NODE=${TASKS_PER_NODE:-$GPUS_PER_NODE}
CPUS_PER_TASK=${CPUS_PER_TASK:-4}
TIME=${TIME:-12:00:00}
PARTITION=${PARTITION:-}

here=$(cd "$(dirname "$0")" && pwd)
args=(--nodes="$NODES" --ntasks-per-node="$TASKS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --time="$TIME")
[ -n "$PARTITION" ] && args+=(--partition="$PARTITION")
if [ "$GPUS_PER_NODE" -gt 0 ]; then
  args+=(--gpus-per-node="$GPUS_PER_NODE")
else
  export DEVICE=cpu
fi
exec sbatch "${args[@]}" --export=ALL "$here/train.sbatch"
