#!/usr/bin/env bash
# Regenerate the shipped controllers from nothing, by the recipe that made them (by default the shipped CfC-NCP;
# the shipped dense CfC, LSTM and CNN: STAGE5_URBAN_NOISE=0.5 TRAIN_SEEDS=0 in another OUT; LTC, GRU: STAGE5=0):
#
#   1. expert demonstrations at 3 m/s -> rosbag2 -> dataset -> behaviour cloning
#      (CfC-NCP: then DAgger rounds with the expert labelling the learner's flights);
#   2. expert demonstrations at 2 m/s (the speed the learners fly well) -> dataset ->
#      fine-tune every model from step 1 on them;
#   3. expert demonstrations at 2 m/s with the wider 0.8 m plan margin (the
#      demonstrating expert's default since 2026-11-29; stages 1-2 keep the 0.6 m
#      they were flown with) and, in urban, the street-centred plan (the default since
#      2026-11-30; stages 1-2 keep the light clearance cost, --expert-clearance 1 0.8)
#      -> dataset -> fine-tune every model from step 2 with the steer-weighted loss
#      (`--steer-weight`, docs/experiments.md "Training the steering back in");
#   4. urban demonstrations whose heading looks 6 m ahead (`yaw_lookahead`: the camera swings
#      into the side street before the turn) on the stage-3 urban seeds and 160 more -> dataset
#      -> every model's stage-3 camera encoder with a new core (the CfC-NCP 48 neurons wide
#      instead of 19), trained 10 epochs on the stage-3 forest demonstrations plus those
#      (`--init-encoder`, docs/experiments.md "A new core on the trained encoder");
#   5. the robust-flight recipe: demonstrations under the wide randomisation profile (summer-to-fall
#      palettes, morning-to-afternoon sun, light haze, more wind and camera artefacts; `collect
#      --randomize wide`) on the stage-3 forest seeds and the stage-4 urban ones (heading 6 m ahead; the
#      urban ones with stronger DART noise, `collect --noise 1.0`: lateral recovery the expert labels)
#      -> dataset -> every model's stage-4 camera encoder with a new core, 10 epochs with per-sequence
#      photometric augmentation, strong on half the sequences (`train --augment mixed`), once per training seed
#      (TRAIN_SEEDS; the first is shipped, the others are for the comparison between cores; the shipped
#      CfC-NCP is training seed 1, chosen over seed 0 on calibration worlds);
#   6. closed-loop success on held-out worlds (seeds 1000+).
#
#   make reproduce                      # CfC-NCP and the LSTM baseline, into build/reproduce
#   MODELS="cfc-ncp lstm gru" make reproduce
#   STAGE2=0 STAGE3=0 make reproduce    # stop after step 1 (the older 3 m/s recipe)
#   STAGE3=0 make reproduce             # stop after step 2 (the 0.6 m margin recipe)
#   STAGE4=0 make reproduce             # stop after step 3 (the checkpoints shipped before 2026-11-30 evening)
#   STAGE5=0 make reproduce             # stop after step 4 (the checkpoints shipped before the robust recipe)
#   TRAIN_SEEDS="1 0 2" MODELS="cfc-ncp cfc lstm cnn" make reproduce   # stage 5 three times per core,
#                                       # each training seed flown in and out of distribution (held out)
#   scripts/stage4_checkpoints.sh build/stage4 && STAGE4_FROM=build/stage4 TRAIN_SEEDS="1 0 2" make reproduce
#                                       # stage 5 alone, from the stage-4 checkpoints shipped before it (git history)
#   COMPARE=1 TRAIN_SEEDS=1 MODELS=lstm STAGE4_FROM=build/stage4 make reproduce   # one more seed of one core, flown
#   mkdir -p build/reproduce/eval/seeds && cp models/eval/seeds/*.json build/reproduce/eval/seeds/
#                                       # then the comparison's command goes on where the committed results end
#   STEER_WEIGHT=0 make reproduce       # stage 3 with the plain loss (the checkpoints before 2026-11-29 evening)
#   STAGE5_URBAN_NOISE=0.5 STAGE4_FROM=build/stage4 TRAIN_SEEDS=0 make reproduce   # stage 5 with collect's
#                                       # default DART noise in urban (the CfC-NCP shipped before 2026-12-08)
#   SIZE="128 96" HFOV=120 OUT=build/r128 make reproduce   # another input size / camera, trained from
#                                       # stage 1 (not by fine-tune: docs/experiments.md "Training at a finer resolution");
#                                       # use a new OUT: finished stages in an old one are reused as they are
#
# Fixed seeds throughout (worlds, noise, training). Finished stages are skipped on a
# re-run (the collect/dataset/eval outputs; the training runs resume). Stage times measured
# on the 2-core CPU build machine are in docs/training.md; the whole chain for
# CfC-NCP + LSTM takes about 3.5 hours there (stage 4: two urban collections of ~5 min and a
# 10-epoch training of ~13 min per model). The shipped files came out of this chain
# run stage by stage over several sessions while the code evolved (the DAgger labels
# were velocity-anchored then), so a re-run gives comparable, not bit-identical, models.
set -euo pipefail

OUT=${OUT:-build/reproduce}
MODELS=${MODELS:-"cfc-ncp lstm"}
EPISODES=${EPISODES:-160}        # demonstrations per world kind and speed
EPOCHS=${EPOCHS:-14}             # behaviour cloning
DAGGER_ROUNDS=${DAGGER_ROUNDS:-2}              # CfC-NCP only (the baselines are BC)
DAGGER_EPISODES=${DAGGER_EPISODES:-"80 40"}    # forest urban
DAGGER_EPOCHS=${DAGGER_EPOCHS:-4}
STAGE2=${STAGE2:-1}
STAGE3=${STAGE3:-1}
STAGE4=${STAGE4:-1}
STAGE4_EPOCHS=${STAGE4_EPOCHS:-10}
STAGE4_NCP_UNITS=${STAGE4_NCP_UNITS:-48}   # the stage-4 CfC-NCP's neurons (19 before)
STAGE4_LTC_LR=${STAGE4_LTC_LR:-5e-3}       # the LTC's fresh core barely learns at 1e-3 in 10 epochs (docs/experiments.md)
STAGE5=${STAGE5:-1}
STAGE5_EPOCHS=${STAGE5_EPOCHS:-10}
STAGE5_AUGMENT=${STAGE5_AUGMENT:-mixed}        # train --augment (strong: the CfC-NCP shipped before 2026-12-07)
STAGE5_INPUT_NORM=${STAGE5_INPUT_NORM:-fixed}  # train --input-norm
# collect --noise for the stage-5 urban demonstrations (1.0: the stronger lateral recovery of docs/experiments.md
# "DART noise in the urban demonstrations only", the shipped recipe; 0.5: collect's default, the recipe before)
STAGE5_URBAN_NOISE=${STAGE5_URBAN_NOISE:-1.0}
if [ "$STAGE5_URBAN_NOISE" = "0.5" ]; then
  WIDE_URBAN=wide_urban URBAN_DEMOS=demos_wide
else
  WIDE_URBAN="wide_urban_noise$STAGE5_URBAN_NOISE" URBAN_DEMOS="demos_wide_noise$STAGE5_URBAN_NOISE"
fi
TRAIN_SEEDS=${TRAIN_SEEDS:-1}                  # stage 5's training seeds; the first one's controller ships
STAGE4_FROM=${STAGE4_FROM:-}                   # a folder of stage-4 checkpoints (<core>.safetensors): skip stages 1-4
COMPARE=${COMPARE:-}                           # 1: fly each training seed held out (default: when several)
OOD_EPISODES=${OOD_EPISODES:-25}               # per out-of-distribution cell, for each training seed's evaluation
OOD_PRESETS="fall winter dusk fog dense_forest gusty_wind camera_noise"   # 7 forest cells, 6 urban (no dense_forest)
FT_EPOCHS=${FT_EPOCHS:-6}
STEER_WEIGHT=${STEER_WEIGHT:-6}  # stage 3: frames that turn count 1 + B*(|vy|/s_vy + |yaw rate|/s_yaw)
EVAL_EPISODES=${EVAL_EPISODES:-100}
SIZE=${SIZE:-"64 48"}            # image size the datasets store and the encoder takes (W H)
THREADS=${THREADS:-2}            # torch threads per training (1 when two reproductions share 2 cores)
HFOV=${HFOV:-90}                 # camera horizontal field of view (deg); the checkpoints record it
LNN=${LNN:-.venv/bin/lnn-nav}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST

# A misspelt core would otherwise fail at its first training, after the data collection (tens of minutes).
for model in $MODELS; do
  case $model in
    cfc-ncp | cfc | ltc | lstm | gru | cnn) ;;
    *)
      echo "reproduce: unknown core '$model' in MODELS (cores: cfc-ncp cfc ltc lstm gru cnn)" >&2
      exit 2
      ;;
  esac
done

# The light clearance cost (weight, fall-off in m) every expert planned with before the
# street-centred urban one.
LIGHT_WEIGHT=1.0
LIGHT_SCALE=0.8

collect() {  # speed, plan margin, folder, then any more collect options
  local speed=$1 margin=$2 folder=$3
  shift 3
  for world in forest urban; do
    if [ ! -f "$OUT/$folder/$world/collect.json" ]; then
      $LNN collect --world "$world" --episodes "$EPISODES" --workers 2 --envs 8 --expert-speed "$speed" \
        --expert-margin "$margin" --camera-hfov "$HFOV" "$@" --out "$OUT/$folder/$world"
    fi
  done
  if [ ! -f "$OUT/ds/$folder/meta.json" ]; then
    $LNN dataset "$OUT/$folder/forest" "$OUT/$folder/urban" --size $SIZE --out "$OUT/ds/$folder"
  fi
}

stage4_data() {  # the stage-3 forest bags alone, and urban worlds flown with the heading 6 m ahead
  local folder seed
  if [ ! -f "$OUT/ds/m08_forest/meta.json" ]; then
    $LNN dataset "$OUT/demos_2ms_m08_street/forest" --size $SIZE --out "$OUT/ds/m08_forest"
  fi
  for seed in 200000 200160; do
    folder="$OUT/demos_2ms_heading6/urban_$seed"
    if [ ! -f "$folder/collect.json" ]; then
      $LNN collect --world urban --episodes "$EPISODES" --first-seed "$seed" --workers 2 --envs 8 --expert-speed 2.0 \
        --expert-margin 0.8 --camera-hfov "$HFOV" --expert-options '{"yaw_lookahead": 6.0}' --out "$folder"
    fi
  done
  if [ ! -f "$OUT/ds/heading6_urban/meta.json" ]; then
    $LNN dataset "$OUT/demos_2ms_heading6/urban_200000" "$OUT/demos_2ms_heading6/urban_200160" --size $SIZE \
      --out "$OUT/ds/heading6_urban"
  fi
}

stage5_data() {  # the stage-3 forest seeds and the stage-4 urban ones, flown under the wide randomisation
  local folder seed
  if [ ! -f "$OUT/demos_wide/forest/collect.json" ]; then
    $LNN collect --world forest --episodes "$EPISODES" --workers 2 --envs 8 --expert-speed 2.0 --expert-margin 0.8 \
      --camera-hfov "$HFOV" --randomize wide --out "$OUT/demos_wide/forest"
  fi
  for seed in 200000 200160; do
    folder="$OUT/$URBAN_DEMOS/urban_$seed"
    if [ ! -f "$folder/collect.json" ]; then
      $LNN collect --world urban --episodes "$EPISODES" --first-seed "$seed" --workers 2 --envs 8 --expert-speed 2.0 \
        --expert-margin 0.8 --camera-hfov "$HFOV" --randomize wide --expert-options '{"yaw_lookahead": 6.0}' \
        --noise "$STAGE5_URBAN_NOISE" --out "$folder"
    fi
  done
  if [ ! -f "$OUT/ds/wide_forest/meta.json" ]; then
    $LNN dataset "$OUT/demos_wide/forest" --size $SIZE --out "$OUT/ds/wide_forest"
  fi
  if [ ! -f "$OUT/ds/$WIDE_URBAN/meta.json" ]; then
    $LNN dataset "$OUT/$URBAN_DEMOS/urban_200000" "$OUT/$URBAN_DEMOS/urban_200160" --size $SIZE \
      --out "$OUT/ds/$WIDE_URBAN"
  fi
}

eval_seed() {  # checkpoint: in distribution (EVAL_EPISODES) and the 13 OOD cells (OOD_EPISODES), held out;
  # without tracks, so the files can go to models/eval/seeds/ as they are
  local ckpt=$1 name
  name=$(basename "$ckpt" .safetensors)
  mkdir -p "$OUT/eval/seeds"
  if [ ! -f "$OUT/eval/seeds/$name.json" ]; then
    $LNN eval --model "$ckpt" --world forest urban --episodes "$EVAL_EPISODES" --no-tracks \
      --out "$OUT/eval/seeds/$name.json"
  fi
  if [ ! -f "$OUT/eval/seeds/${name}_ood.json" ]; then
    # shellcheck disable=SC2086  # OOD_PRESETS is a list of words
    $LNN eval --model "$ckpt" --world forest urban --preset $OOD_PRESETS --episodes "$OOD_EPISODES" --no-tracks \
      --out "$OUT/eval/seeds/${name}_ood.json"
  fi
}

mkdir -p "$OUT/models"
# Stage 5's runs and evaluations are named by core and training seed only, and finished ones are reused: one OUT
# holds one STAGE5_URBAN_NOISE (an OUT with stage-5 runs from before this stamp was written holds 0.5).
noise_stamp="$OUT/stage5_urban_noise"
if [ -f "$noise_stamp" ]; then
  made_with=$(cat "$noise_stamp")
elif compgen -G "$OUT/runs/*/robust_s*" > /dev/null; then
  made_with=0.5
else
  made_with=$STAGE5_URBAN_NOISE
fi
if [ "$made_with" != "$STAGE5_URBAN_NOISE" ]; then
  echo "reproduce: $OUT holds stage-5 runs made with STAGE5_URBAN_NOISE=$made_with, not $STAGE5_URBAN_NOISE: use another OUT" >&2
  exit 2
fi
echo "$STAGE5_URBAN_NOISE" > "$noise_stamp"
if [ -n "$STAGE4_FROM" ]; then
  STAGE5=1
  stage5_data
else
  collect 3.0 0.6 demos_3ms --expert-clearance $LIGHT_WEIGHT $LIGHT_SCALE
  [ "$STAGE2" = 1 ] && collect 2.0 0.6 demos_2ms --expert-clearance $LIGHT_WEIGHT $LIGHT_SCALE
  [ "$STAGE3" = 1 ] && collect 2.0 0.8 demos_2ms_m08_street
  [ "$STAGE3" = 1 ] && [ "$STAGE4" = 1 ] && stage4_data
  [ "$STAGE3" = 1 ] && [ "$STAGE4" = 1 ] && [ "$STAGE5" = 1 ] && stage5_data
fi
if [ -z "$COMPARE" ]; then
  COMPARE=0
  [ "$(echo $TRAIN_SEEDS | wc -w)" -gt 1 ] && COMPARE=1
fi
for model in $MODELS; do
  name=${model//-/_}
  core_options='{}'
  [ "$model" = cfc-ncp ] && core_options="{\"units\": $STAGE4_NCP_UNITS}"
  lr=1e-3
  [ "$model" = ltc ] && lr=$STAGE4_LTC_LR
  if [ -n "$STAGE4_FROM" ]; then
    final="$STAGE4_FROM/$name.safetensors"
    if [ ! -f "$final" ]; then
      echo "reproduce: no stage-4 checkpoint $final (scripts/stage4_checkpoints.sh $STAGE4_FROM makes them)" >&2
      exit 2
    fi
  else
    $LNN train --data "$OUT/ds/demos_3ms" --core "$model" --out "$OUT/runs/$name/bc" \
      --epochs "$EPOCHS" --batch-size 8 --threads "$THREADS" --train-seed 0
    final="$OUT/runs/$name/bc/best.safetensors"
    if [ "$model" = cfc-ncp ] && [ "$DAGGER_ROUNDS" -gt 0 ]; then
      $LNN dagger --init "$final" --data "$OUT/ds/demos_3ms" --out "$OUT/runs/$name/dagger" \
        --rounds "$DAGGER_ROUNDS" --episodes $DAGGER_EPISODES --epochs "$DAGGER_EPOCHS" \
        --expert-options "{\"clearance_weight\": $LIGHT_WEIGHT, \"clearance_scale\": $LIGHT_SCALE}" \
        --train-options '{"threads": '"$THREADS"', "batch_size": 8, "lr": 1e-3}'
      final="$OUT/runs/$name/dagger/round_${DAGGER_ROUNDS}/run/best.safetensors"
    fi
    if [ "$STAGE2" = 1 ]; then
      $LNN train --data "$OUT/ds/demos_2ms" --core "$model" --init "$final" --out "$OUT/runs/$name/ft_2ms" \
        --epochs "$FT_EPOCHS" --lr 1e-3 --batch-size 8 --threads "$THREADS" --train-seed 0
      final="$OUT/runs/$name/ft_2ms/best.safetensors"
    fi
    if [ "$STAGE3" = 1 ]; then
      $LNN train --data "$OUT/ds/demos_2ms_m08_street" --core "$model" --init "$final" --out "$OUT/runs/$name/ft_m08_street" \
        --epochs "$FT_EPOCHS" --lr 1e-3 --batch-size 8 --threads "$THREADS" --train-seed 0 --steer-weight "$STEER_WEIGHT"
      final="$OUT/runs/$name/ft_m08_street/best.safetensors"
    fi
    if [ "$STAGE3" = 1 ] && [ "$STAGE4" = 1 ]; then
      $LNN train --data "$OUT/ds/m08_forest" "$OUT/ds/heading6_urban" --core "$model" --core-options "$core_options" \
        --init-encoder "$final" --out "$OUT/runs/$name/heading6_new_core" --epochs "$STAGE4_EPOCHS" --lr "$lr" \
        --batch-size 8 --threads "$THREADS" --train-seed 0 --steer-weight "$STEER_WEIGHT"
      final="$OUT/runs/$name/heading6_new_core/best.safetensors"
    fi
  fi
  if [ "$STAGE5" = 1 ] && { [ -n "$STAGE4_FROM" ] || { [ "$STAGE3" = 1 ] && [ "$STAGE4" = 1 ]; }; }; then
    encoder=$final
    for seed in $TRAIN_SEEDS; do
      flown="$OUT/eval/seeds/${name}_s$seed"
      if [ "$COMPARE" = 1 ] && [ -f "$flown.json" ] && [ -f "${flown}_ood.json" ] \
        && [ ! -f "$OUT/runs/$name/robust_s$seed/best.safetensors" ]; then
        # Results of an earlier machine (models/eval/seeds/ copied in): that run is done.
        echo "reproduce: ${name}_s$seed was flown already ($flown*.json): not trained again"
        continue
      fi
      $LNN train --data "$OUT/ds/wide_forest" "$OUT/ds/$WIDE_URBAN" --core "$model" --core-options "$core_options" \
        --init-encoder "$encoder" --out "$OUT/runs/$name/robust_s$seed" --epochs "$STAGE5_EPOCHS" --lr "$lr" \
        --batch-size 8 --threads "$THREADS" --train-seed "$seed" --steer-weight "$STEER_WEIGHT" --augment "$STAGE5_AUGMENT" \
        --input-norm "$STAGE5_INPUT_NORM"
      mkdir -p "$OUT/models/seeds"
      cp "$OUT/runs/$name/robust_s$seed/best.safetensors" "$OUT/models/seeds/${name}_s$seed.safetensors"
      # Several training seeds are a comparison between cores: each one is flown, in and out of distribution.
      [ "$COMPARE" = 1 ] && eval_seed "$OUT/models/seeds/${name}_s$seed.safetensors"
    done
    first=${TRAIN_SEEDS%% *}
    final="$OUT/runs/$name/robust_s$first/best.safetensors"
  fi
  # (a comparison continued from earlier results may not have retrained the first seed here)
  [ -f "$final" ] && cp "$final" "$OUT/models/$name.safetensors"
  # In a comparison the shipped one (the first seed) was flown above, as ${name}_s<first>.
  if [ "$COMPARE" != 1 ] && [ ! -f "$OUT/eval/$name.json" ]; then
    $LNN eval --model "$OUT/models/$name.safetensors" --world forest urban --episodes "$EVAL_EPISODES" \
      --out "$OUT/eval/$name.json"
  fi
done
echo "controllers in $OUT/models (copy them to models/ to ship them)"
if [ "$COMPARE" = 1 ]; then
  echo "each training seed's results in $OUT/eval/seeds: lnn-nav report $OUT/eval/seeds/*.json --out $OUT/compare"
fi
