#!/usr/bin/env bash
# `lnn-nav train` on a GPU machine without network, beside its CPU: the same
# small dataset and recipe, trained on CUDA (fused CfC kernels, then the
# reference path), through torchrun with NCCL, as a fine-tune from a shipped
# checkpoint, and on the machine's CPU; prints seconds per epoch side by side
# and writes logs and the CUDA-trained checkpoint under $OUT.
#
#   DATA=<dataset folder> OUT=<dir> bash benchmarks/device_train_check.sh
#
# DATA is a folder written by `lnn-nav dataset` (small: it travels to the
# machine). Needs a Python with a CUDA build of torch (PYTHON=..., default
# python3) and the packages lnn_nav.data imports (rosbags, opencv).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-reports/device_train_check}
PY=${PYTHON:-python3}
DATA=${DATA:?DATA=<dataset folder>}
EPOCHS=${EPOCHS:-6}
mkdir -p "$OUT"
source benchmarks/device_env.sh
RUNS=$(mktemp -d)
summary() { echo "$*" | tee -a "$OUT/summary.txt"; }

summary "== $(date +%T) build extensions (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)"
timeout 200 "$PY" -m lnn_nav.kernels.build --cuda > "$OUT/build.txt" 2>&1
summary "build exit $?"

# name, then the environment and command of one run (its --out is $RUNS/<name>)
train() {
  local name=$1; shift
  local started=$SECONDS
  env "$@" > "$OUT/train_$name.txt" 2>&1
  local rc=$?
  # metrics.csv: cumulative seconds per epoch; the first epoch (warm-up, cuDNN
  # and kernel loading) is left out where there are more.
  local per_epoch
  per_epoch=$(awk -F, 'NR > 1 { n++; s[n] = $6 } END {
      if (n > 1) printf "%.2f", (s[n] - s[1]) / (n - 1); else if (n == 1) printf "%.2f", s[1] }' \
    "$RUNS/$name/metrics.csv" 2>/dev/null)
  summary "$(printf '%-24s exit %s  %7s s/epoch  (%s s wall)  %s' "$name" "$rc" "${per_epoch:--}" \
    "$((SECONDS - started))" "$(grep -m1 'process(es) on' "$OUT/train_$name.txt" | sed 's/.*; //')")"
}

COMMON=(--data "$DATA" --epochs "$EPOCHS" --batch-size 8 --train-seed 0 --no-progress)
summary "== $(date +%T) training, $EPOCHS epochs each"
train cuda_cfc_ncp_fused "$PY" -m lnn_nav.cli train "${COMMON[@]}" --core cfc-ncp --out "$RUNS/cuda_cfc_ncp_fused"
train cuda_cfc_ncp_reference LNN_NAV_REFERENCE=1 "$PY" -m lnn_nav.cli train "${COMMON[@]}" --core cfc-ncp \
  --out "$RUNS/cuda_cfc_ncp_reference"
train cuda_lstm "$PY" -m lnn_nav.cli train "${COMMON[@]}" --core lstm --out "$RUNS/cuda_lstm"
train cuda_finetune_shipped "$PY" -m lnn_nav.cli train "${COMMON[@]}" --core cfc-ncp \
  --init models/cfc_ncp.safetensors --lr 1e-3 --steer-weight 6 --out "$RUNS/cuda_finetune_shipped"
train torchrun_nccl_1gpu "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m lnn_nav.cli train \
  "${COMMON[@]}" --core cfc-ncp --out "$RUNS/torchrun_nccl_1gpu"
train cpu_cfc_ncp_2threads CUDA_VISIBLE_DEVICES= "$PY" -m lnn_nav.cli train "${COMMON[@]}" --core cfc-ncp \
  --threads 2 --out "$RUNS/cpu_cfc_ncp_2threads"
train cpu_cfc_ncp_all_threads CUDA_VISIBLE_DEVICES= "$PY" -m lnn_nav.cli train "${COMMON[@]}" --core cfc-ncp \
  --threads "$(nproc)" --out "$RUNS/cpu_cfc_ncp_all_threads"
cp "$RUNS/cuda_finetune_shipped/best.safetensors" "$OUT/cuda_finetuned.safetensors" 2>/dev/null
summary "== $(date +%T) done"
