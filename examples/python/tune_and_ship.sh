#!/usr/bin/env bash
# Pack a model once, tune its kernels on this GPU, and ship both together.
#   bash tune_and_ship.sh HF_DIR OUT_DIR
# OUT_DIR then holds the packed checkpoint and samoyeds.sqlite (the tuned
# configs and compiled kernels of this GPU, driver and library version).
# On a machine with the same GPU:
#   SAMOYEDS_CACHE_DIR=OUT_DIR python3 sparsify_and_generate.py --model HF_DIR --packed OUT_DIR
set -euo pipefail
hf=$1 out=$2
samoyeds pack --model "$hf" --out "$out" --quiet
samoyeds tune --model "$hf/config.json" --cache "$out/samoyeds.sqlite" --buckets 1,16,64,256,1024
samoyeds cache ls --cache "$out/samoyeds.sqlite" | tail -5
