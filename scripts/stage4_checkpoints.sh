#!/usr/bin/env bash
# Write the stage-4 checkpoints (the controllers shipped before the robust-flight recipe) into a folder, from
# this repository's history, so that `STAGE4_FROM=<folder> make reproduce` runs stage 5 alone: the
# comparison between cores retrains every core's stage 5 from the same starting points as the shipped CfC-NCP.
#
#   scripts/stage4_checkpoints.sh build/stage4
#   STAGE4_FROM=build/stage4 TRAIN_SEEDS="0 1 2" MODELS="cfc-ncp cfc lstm cnn" make reproduce
#
# Needs the git history (a shallow clone lacks it: `git fetch --unshallow`).
set -euo pipefail

if [ $# -ne 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
out=$1
mkdir -p "$out"
# core file -> the commit that shipped its stage-4 checkpoint (docs/experiments.md, "A new core on the trained encoder")
while read -r name commit; do
  if ! git cat-file -e "$commit:models/$name.safetensors" 2>/dev/null; then
    echo "stage4_checkpoints: $commit:models/$name.safetensors is not in this clone's history (git fetch --unshallow)" >&2
    exit 1
  fi
  git show "$commit:models/$name.safetensors" > "$out/$name.safetensors"
  echo "$out/$name.safetensors  <- $commit"
done <<'TABLE'
cfc_ncp 7f34ac1
cfc f38c7b9
ltc 340f56f
lstm 8d6658b
gru 8d6658b
cnn 3c56ba4
TABLE
