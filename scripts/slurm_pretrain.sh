#!/usr/bin/env bash
# Pretrain on several GPU nodes under SLURM: one torchrun agent per node, one training process per GPU.
#
#   PRESET=msm-mae-base-80x208p16x16 DATA=/shared/audioset_store OUT=/shared/runs/msm-base sbatch scripts/slurm_pretrain.sh
#
# DATA (a `hear-maeast features` store, an M2D .npy folder or CSV, or a fairseq .tsv) and OUT must be on a file
# system every node sees: every rank reads the data and, on --resume, OUT/train_state.pt; rank 0 writes OUT and
# holds its lock (OUT/.lock) for the whole job. Submitting the same script again continues the run (--resume is added
# when OUT holds a training state). Before the time limit SLURM sends SIGTERM (--signal below): torchrun passes it to
# every process, which agree at the next --log-every boundary to write a checkpoint and exit 143; torchrun waits about
# 30 s before it kills them, so keep --log-every x the step time well under that.
#SBATCH --job-name=hear-maeast-pretrain
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=96
#SBATCH --time=48:00:00
#SBATCH --signal=TERM@180
#SBATCH --output=%x-%j.out
set -euo pipefail

PRESET=${PRESET:-msm-mae-base-80x208p16x16}
DATA=${DATA:?set DATA to the training data (a feature store, M2D folder or CSV, or fairseq .tsv)}
OUT=${OUT:-runs/$PRESET}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
EPOCHS=${EPOCHS:-300}
BATCH=${BATCH:-256}  # clips per GPU per step; the global batch is BATCH x GPUs (MSM-MAE scales the lr with it)

RESUME=()
if [ -f "$OUT/train_state.pt" ]; then RESUME=(--resume); fi
HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)

srun --kill-on-bad-exit=1 torchrun \
    --nnodes "$SLURM_NNODES" --nproc-per-node "$GPUS_PER_NODE" \
    --rdzv-backend c10d --rdzv-endpoint "$HEAD_NODE:29500" --rdzv-id "$SLURM_JOB_ID" \
    -m pretrain --preset "$PRESET" --data "$DATA" --out "$OUT" --epochs "$EPOCHS" --batch-size "$BATCH" \
    --device cuda --precision bf16 --compile --num-workers 10 --save-every 1000 --log-every 50 --tensorboard \
    "${RESUME[@]}"
