#!/usr/bin/env bash
# Reproduces every paper ablation that exists: for each experiment NAME below, runs the sweep of
# conf/experiment/NAME.yaml and of its knob-off control conf/experiment/NAME_control.yaml on both cores
# (joblib launcher), writes each sweep's report (ebr-report), then experiments/README.md (the suite).
# The ID ablations (id_dropout, snapshot_overlap) first get their snapshot sets from
# scripts/id_ablations.sh --pretrain-only.
# Re-running resumes: a finished job whose recorded config and code (run.json: the git commit, a
# hash of the uncommitted changes, the library versions) equal the requested ones is skipped; one
# with another config or run by other code is refused (the sweep then exits non-zero, naming the
# keys or both commits), never silently reused. After changing the code, pass --force to re-run
# those jobs (or remove multirun/reproduce/). ebr-report refuses a sweep whose jobs ran different
# code.
#
# Usage: bash scripts/reproduce.sh [--quick] [--force]
#   --quick   2 seeds on the tiny world (data=synthetic_tiny seed=0,1), to check the machinery; its
#             sweeps and README go under multirun/reproduce_quick/ so the committed README keeps the
#             full numbers. It leaves out the ID ablations (no snapshot window on that world).
#   --force   re-run every job, finished or not (force=true): needed after a code change.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each ablation joins by adding its name here (it needs conf/experiment/NAME{,_control}.yaml).
EXPERIMENTS=(crossing crossing_isolated id_dropout snapshot_overlap corpus)
# Those that read pre-trained ID snapshots of data=synthetic_long (scripts/id_ablations.sh
# --pretrain-only writes them first); --quick leaves them out: the tiny world's 30 days hold no
# 14-day pre-training window before its training window.
NEEDS_SNAPSHOTS=(id_dropout snapshot_overlap)

quick=()
force=()
root=multirun/reproduce
readme=experiments/README.md
for arg in "$@"; do
  case "$arg" in
    --quick)
      quick=(data=synthetic_tiny seed=0,1)
      for skip in "${NEEDS_SNAPSHOTS[@]}"; do
        EXPERIMENTS=("${EXPERIMENTS[@]/$skip}")
      done
      root=multirun/reproduce_quick
      readme=$root/README.md
      ;;
    --force) force=(force=true) ;;
    -h|--help) sed -n 2,16p "$0"; exit 0 ;;
    *) echo "reproduce.sh: unknown option '$arg' (expected --quick or --force)" >&2; exit 2 ;;
  esac
done

export WANDB_MODE="${WANDB_MODE:-offline}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"

# Check every config first so a typo fails before hours of training.
for name in "${EXPERIMENTS[@]}"; do
  [ -n "$name" ] || continue
  for exp in "$name" "${name}_control"; do
    [ -f "conf/experiment/$exp.yaml" ] || { echo "reproduce.sh: conf/experiment/$exp.yaml not found" >&2; exit 1; }
  done
done

for name in "${EXPERIMENTS[@]}"; do
  if [[ " ${NEEDS_SNAPSHOTS[*]} " == *" $name "* ]]; then
    bash scripts/id_ablations.sh --pretrain-only ${force[@]+--force}
    break
  fi
done

sweeps=()
for name in "${EXPERIMENTS[@]}"; do
  [ -n "$name" ] || continue
  for exp in "$name" "${name}_control"; do
    sweep_dir="$root/$exp"
    echo "reproduce.sh: $exp -> $sweep_dir ($(date -u +%FT%TZ))"
    .venv/bin/ebr-train -m "experiment=$exp" hydra/launcher=joblib hydra.launcher.n_jobs=2 \
      "hydra.sweep.dir=$sweep_dir" ${quick[@]+"${quick[@]}"} ${force[@]+"${force[@]}"}
    .venv/bin/ebr-report "$sweep_dir"
    sweeps+=("$sweep_dir")
  done
done

.venv/bin/python -m ebr.report.suite --out "$readme" "${sweeps[@]}"
echo "reproduce.sh: done; see $readme"
