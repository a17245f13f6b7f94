#!/usr/bin/env bash
# Regenerate the shipped controllers from nothing: expert demonstrations ->
# rosbag2 -> dataset -> behaviour cloning -> DAgger -> models/*.safetensors,
# then the closed-loop success rates on held-out worlds.
#
#   make reproduce                  # everything, into build/reproduce (CfC-NCP only)
#   MODELS="cfc-ncp lstm gru" make reproduce
#
# Fixed seeds throughout (worlds, noise, training). On the 2-core CPU build
# machine the CfC-NCP pipeline takes about 45 minutes (see the README).
set -euo pipefail

OUT=${OUT:-build/reproduce}
MODELS=${MODELS:-cfc-ncp}
EPISODES=${EPISODES:-160}        # demonstrations per world kind
EPOCHS=${EPOCHS:-15}             # behaviour cloning
DAGGER_ROUNDS=${DAGGER_ROUNDS:-2}
DAGGER_EPISODES=${DAGGER_EPISODES:-"80 40"}  # forest urban
DAGGER_EPOCHS=${DAGGER_EPOCHS:-4}
EVAL_EPISODES=${EVAL_EPISODES:-100}
LNN=${LNN:-.venv/bin/lnn-nav}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST

mkdir -p "$OUT"
for world in forest urban; do
  if [ ! -f "$OUT/demos/$world/collect.json" ]; then
    $LNN collect --world "$world" --episodes "$EPISODES" --workers 2 --envs 8 --out "$OUT/demos/$world"
  fi
done
if [ ! -f "$OUT/ds/demos/meta.json" ]; then
  $LNN dataset "$OUT/demos/forest" "$OUT/demos/urban" --out "$OUT/ds/demos"
fi
for model in $MODELS; do
  name=${model//-/_}
  $LNN train --data "$OUT/ds/demos" --model "$model" --out "$OUT/runs/$name/bc" \
    --epochs "$EPOCHS" --batch-size 8 --threads 2 --seed 0
  final="$OUT/runs/$name/bc/best.safetensors"
  if [ "$DAGGER_ROUNDS" -gt 0 ]; then
    $LNN dagger --init "$final" --data "$OUT/ds/demos" --out "$OUT/runs/$name/dagger" \
      --rounds "$DAGGER_ROUNDS" --episodes $DAGGER_EPISODES --epochs "$DAGGER_EPOCHS" \
      --train-options '{"threads": 2, "batch_size": 8, "lr": 1e-3}'
    final="$OUT/runs/$name/dagger/round_${DAGGER_ROUNDS}/run/best.safetensors"
  fi
  mkdir -p "$OUT/models"
  cp "$final" "$OUT/models/$name.safetensors"
  $LNN eval --model "$OUT/models/$name.safetensors" --world forest urban --episodes "$EVAL_EPISODES" \
    --out "$OUT/eval/$name.json"
done
echo "controllers in $OUT/models (copy them to models/ to ship them)"
