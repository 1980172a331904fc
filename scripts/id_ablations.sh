#!/usr/bin/env bash
# The pre-trained ID ablations (SPEC rows 3-5): pre-train the snapshot sets, run the sweeps, report.
#
#   1. ebr-pretrain on data=synthetic_long (and on its idiosyncrasy-0 control world), for each world
#      seed of --worlds (data.config.seed; default 0, the default world), into a fixed directory,
#      snapshots/id_ablations/synthetic_long_idiosyncrasy<knob>_world<seed>/ (the experiments'
#      snapshot_dir, which names both): 14-day windows every 7 days ending at the
#      retrieval training window's start, plus one newest window ending where training ends
#      (pretrain.snapshot.end=train_end: the overlapping snapshot of experiment=snapshot_overlap);
#      max_snapshots=2 keeps exactly the two the experiments read (the latest non-overlapping and the
#      overlapping one). Table width 32 = model.embedding_dim (a mismatch is refused).
#      The world is fixed by data.config.seed, which the training `seed` does not change, so one
#      snapshot set per world (pre-trained with seed 0) serves every training seed of a sweep; a
#      sweep over worlds (scripts/reproduce.sh) reads each world's own set.
#   2. the sweeps id_dropout, id_dropout_control, snapshot_overlap, snapshot_overlap_control
#      (joblib, 2 jobs) on the default world, each followed by ebr-report.
#
# Usage: bash scripts/id_ablations.sh [--pretrain-only] [--worlds LIST] [--force]
#   --pretrain-only  write the snapshot sets and stop
#   --worlds LIST    the world seeds to pre-train for, comma-separated (default 0)
#   --force          re-run finished jobs and pre-training too (needed after a code change)
set -euo pipefail
cd "$(dirname "$0")/.."

pretrain_only=0
force=()
worlds=0
while [ $# -gt 0 ]; do
  case "$1" in
    --pretrain-only) pretrain_only=1 ;;
    --force) force=(force=true) ;;
    --worlds)
      [ $# -ge 2 ] || { echo "id_ablations.sh: --worlds needs a list, e.g. 0,1,2" >&2; exit 2; }
      worlds=$2
      shift
      ;;
    -h|--help) sed -n 2,21p "$0"; exit 0 ;;
    *) echo "id_ablations.sh: unknown option '$1' (expected --pretrain-only, --worlds or --force)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$worlds" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "id_ablations.sh: --worlds '$worlds' is not a list of seeds" >&2; exit 2; }

export WANDB_MODE="${WANDB_MODE:-offline}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
PY=.venv/bin/python
ROOT=snapshots/id_ablations
SNAPSHOT=(pretrain.snapshot.every_days=7 pretrain.snapshot.window_days=14 pretrain.snapshot.end=train_end
  pretrain.snapshot.max_snapshots=2 pretrain.embedding_dim=32 seed=0 logger=csv)

# world name -> its data overrides (must match the experiments' data config exactly: the snapshot's
# data_source is the world config's hash)
declare -A KNOBS=(
  [synthetic_long_idiosyncrasy1.0]="data=synthetic_long"
  [synthetic_long_idiosyncrasy0.0]="data=synthetic_long data.config.idiosyncrasy=0.0"
)
for knob in synthetic_long_idiosyncrasy1.0 synthetic_long_idiosyncrasy0.0; do
  for seed in ${worlds//,/ }; do
    world="${knob}_world$seed"
    echo "id_ablations.sh: pretrain $world -> $ROOT/$world ($(date -u +%FT%TZ))"
    # shellcheck disable=SC2086
    $PY -m ebr.pretrain ${KNOBS[$knob]} "data.config.seed=$seed" "${SNAPSHOT[@]}" \
      "pretrain.snapshot.dir=$ROOT/$world" "hydra.run.dir=outputs/id_ablations_pretrain/$world" \
      ${force[@]+"${force[@]}"}
  done
done
[ "$pretrain_only" = 1 ] && exit 0

for exp in id_dropout id_dropout_control snapshot_overlap snapshot_overlap_control; do
  sweep_dir="multirun/id_ablations/$exp"
  echo "id_ablations.sh: $exp -> $sweep_dir ($(date -u +%FT%TZ))"
  $PY -m ebr.train -m "experiment=$exp" hydra/launcher=joblib hydra.launcher.n_jobs=2 \
    "hydra.sweep.dir=$sweep_dir" ${force[@]+"${force[@]}"}
  .venv/bin/ebr-report "$sweep_dir"
done
