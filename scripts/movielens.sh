#!/usr/bin/env bash
# Reproduces experiments/movielens.md on MovieLens latest-small under the refit protocol (tune on
# validation, refit on train+val, score test): the classical-baseline sweep
# (conf/experiment/movielens_baselines.yaml: popularity, PureSVD, item-kNN, EASE^R x seeds 0-4) and
# the two-tower sweep (conf/experiment/movielens.yaml: MLP, MaskNet, DHEN at CPU widths x seeds 0-4),
# on both cores (joblib launcher), then ebr-report on each and on both together (baseline EASE^R,
# then PureSVD). Re-running resumes: jobs whose metrics.json exists are skipped. About 35 minutes
# on 2 shared cores.
#
# Usage: bash scripts/movielens.sh [--jobs N]
#   --jobs N   parallel jobs per sweep (default 2, one per core)
# The data folder is $EBR_MOVIELENS_PATH, default ../shared/datasets/ml-latest-small (from the repo root).
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=2
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs)
      [ $# -ge 2 ] || { echo "movielens.sh: --jobs needs a number" >&2; exit 2; }
      jobs="$2"
      shift 2
      ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "movielens.sh: unknown option '$1' (expected --jobs N)" >&2; exit 2 ;;
  esac
done
case "$jobs" in
  ''|*[!0-9]*|0) echo "movielens.sh: --jobs must be a positive integer, got '$jobs'" >&2; exit 2 ;;
esac

data="${EBR_MOVIELENS_PATH:-../shared/datasets/ml-latest-small}"
[ -d "$data" ] || {
  echo "movielens.sh: data folder $data not found (set EBR_MOVIELENS_PATH to a MovieLens folder)" >&2
  exit 1
}

export WANDB_MODE="${WANDB_MODE:-offline}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"

root=multirun/movielens
for exp in movielens_baselines movielens; do
  sweep_dir="$root/$exp"
  echo "movielens.sh: $exp -> $sweep_dir ($(date -u +%FT%TZ))"
  .venv/bin/ebr-train -m "experiment=$exp" hydra/launcher=joblib "hydra.launcher.n_jobs=$jobs" \
    "hydra.sweep.dir=$sweep_dir"
  .venv/bin/ebr-report "$sweep_dir"
done
# Both sweeps in one report each against EASE^R and PureSVD (the two strongest baselines): a folder of
# links to every job of both sweeps, so the two-tower arms are paired with the baseline by seed number.
for baseline in ease puresvd; do
  combined="$root/combined_$baseline"
  rm -rf "$combined"
  mkdir -p "$combined"
  i=0
  for exp in movielens_baselines movielens; do
    for job in $(find "$root/$exp" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*' | sort -V); do
      ln -s "$PWD/$job" "$combined/$i"
      i=$((i + 1))
    done
  done
  .venv/bin/ebr-report "$combined" --baseline "model=$baseline"
done
echo "movielens.sh: done; reports in $root/{movielens_baselines,movielens,combined_ease,combined_puresvd}/report.md"
