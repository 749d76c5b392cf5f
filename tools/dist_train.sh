#!/usr/bin/env bash
# Distributed training with torchrun, OpenMMLab style:
#   tools/dist_train.sh CONFIG GPUS [tools/train.py arguments]
# One process per GPU (per CPU process group with gloo when there is no
# CUDA). Several nodes: run it on every node with
#   NNODES=2 NODE_RANK=0|1 MASTER_ADDR=<node 0 address> PORT=29500
# Exit status: torchrun's (0 when every process finished; 1 when one failed
# or torchrun itself was signalled -- see docs/reliability.md).
set -euo pipefail

CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}" \
exec python -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$HERE/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
