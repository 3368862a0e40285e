#!/usr/bin/env bash
# The bench/train.py recipe on a GPU machine, on a larger base model, through accelerate.
#
#   BASE_MODEL=/models/Llama-3.2-1B-Instruct bash bench/device_train.sh
#
# BASE_MODEL: a Hugging Face model folder or a llama-family GGUF file already on the machine
# (nothing is downloaded). GPUS: processes for accelerate (default: every visible GPU).
# STEPS, BATCH, MAXLEN: the run's size. Prints bench/train.py's JSON line; with a GGUF base the
# trained models can also be exported (drop --no-export in bench/train.py's command).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BASE_MODEL:?set BASE_MODEL to a model folder or GGUF file on this machine}"
GPUS="${GPUS:-$(python -c 'import torch; print(max(1, torch.cuda.device_count()))')}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >&2 || true
python bench/train.py \
    --base-model "$BASE_MODEL" \
    --steps "${STEPS:-60}" --batch-size "${BATCH:-8}" --max-length "${MAXLEN:-1024}" \
    --train-pairs "${PAIRS:-400}" --held-out "${HELD_OUT:-100}" \
    --launcher "accelerate launch --num_processes ${GPUS} -m"
