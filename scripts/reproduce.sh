#!/usr/bin/env bash
# Reproduces every paper ablation that exists, conditional retrieval included. For each experiment
# NAME below and its knob-off control NAME_control (conf/experiment/NAME{,_control}.yaml), on both
# cores (joblib launcher):
#   1. the sweep over worlds into multirun/reproduce/NAME_worlds: only the arms of the experiment's
#      paper claims (report.claims: each claim's arm and baseline, listed in CLAIM_ARMS below;
#      tests/test_experiment_pages.py checks that they cover every claim) over worlds
#      data.config.seed=0,1,2 x training seeds seed=0,1,2, then ebr-report (paired within (world,
#      seed), pooled over worlds: docs/statistics.md);
#   2. once every sweep over worlds is done, experiments/README.md (python -m ebr.report.suite): one
#      row per (technique, paper claim), the verdict word from ebr/report/verdict.py;
#   3. then the experiment's own sweep (every arm, its seeds, the default world data.config.seed=0)
#      into multirun/reproduce/NAME, then ebr-report: the per-arm detail the technique's page reads.
# The ID ablations (id_dropout, snapshot_overlap) first get one snapshot set per world from
# scripts/id_ablations.sh --pretrain-only --worlds 0,1,2.
#
# Resuming: re-running skips every finished job whose recorded config and code (run.json: the git
# commit, a hash of the uncommitted changes outside experiments/, the library versions) equal the
# requested ones (the README this script writes between its phases is no code change), so an
# interrupted run resumes where it stopped at the same code; a job run by other code is refused
# (the sweep exits non-zero naming both commits), never silently reused: after changing the code,
# pass --force (or remove multirun/reproduce/). ebr-report refuses a sweep whose jobs ran different
# code.
#
# Size and wall time (2 cores, 2 jobs at a time), measured 2026-12-06 at commit 1411ba9: the
# pre-training (6 snapshot sets, ~15 s each) and the 18 sweeps over worlds, 468 jobs (crossing and
# crossing_isolated 27 per sweep, id_dropout and snapshot_overlap 18, corpus 36, conditional 54,
# conditional_source/fusion/cost 18), took 2 h 9 min to experiments/README.md including 15 min 52 s
# paused and CPU shared with two test-suite runs: about 1 h 53 min of running; per sweep from 1.5
# min (conditional_source) to 19 min (crossing_isolated_control, shared). The one-world sweeps
# after them: 360 jobs (crossing 20 + 20, crossing_isolated 20 + 20, id_dropout 40 + 40,
# snapshot_overlap 10 + 10, corpus 50 + 50, conditional 40 + 40), 1 h 59 min summed over their
# sweeps including 7 min 52 s paused (about 1 h 51 min running; from 2 min 50 s for
# snapshot_overlap_control to about 20 min for crossing_isolated_control). The whole run: 828 jobs,
# about 3 h 44 min of running.
# --quick (tiny world, 2 worlds x 2 seeds, 104 jobs): 25 min 8 s on 2 cores shared with other
# work (load average about 17), 2026-12-06.
#
# Usage: bash scripts/reproduce.sh [--quick] [--force]
#   --quick   the sweeps over worlds only, on the tiny world (data=synthetic_tiny), 2 worlds x 2
#             seeds (data.config.seed=0,1 seed=0,1), then the suite table: checks the machinery
#             (world pooling, claims, verdicts, README) in minutes. Its sweeps and README go under
#             multirun/reproduce_quick/ so the committed README keeps the full numbers. It leaves out
#             the ID ablations (no pre-training window on that world) and crossing_isolated
#             (crossing's machinery at 10 epochs).
#   --force   re-run every job, finished or not (force=true): needed after a code change.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each ablation joins by adding its name here (it needs conf/experiment/NAME{,_control}.yaml with
# report.claims) and its claims' arms to CLAIM_ARMS.
EXPERIMENTS=(crossing crossing_isolated id_dropout snapshot_overlap corpus conditional conditional_source conditional_fusion conditional_cost)
# Those that read pre-trained ID snapshots of data=synthetic_long; --quick leaves them out: the tiny
# world's 30 days hold no 14-day pre-training window before its training window.
NEEDS_SNAPSHOTS=(id_dropout snapshot_overlap)
# --quick leaves these out too: the same machinery as another entry, at several times its cost
# (crossing_isolated is crossing's sweep with 10 epochs)
QUICK_SKIP=(crossing_isolated conditional_source conditional_fusion conditional_cost)
# Those whose own grid is already their claims' arms over worlds x seeds (the page's sweep is the
# sweep over worlds): step 1 is left out
WORLDS_ONLY=(conditional_source conditional_fusion conditional_cost)
# The overrides that restrict an experiment's sweep to the arms of its claims (each claim's arm and
# baseline). Hydra sweeps a product, so corpus also runs decay without remapping and remapping
# without decay; conditional's unconditional arms come from SECOND_CALL.
declare -A CLAIM_ARMS=(
  [crossing]="model/crossing=mlp,masknet,dhen_cpu"
  [crossing_isolated]="model/crossing=mlp,masknet,dhen_cpu"
  [id_dropout]="model/id_embedding=finetuned,frozen_p05"
  [snapshot_overlap]="model.id_embedding.snapshot_policy=latest,latest_no_overlap"
  [corpus]="corpus=sum,time_decay corpus.remap_image_signature=false,true"
  [conditional]="serving.interest_filter=none,pre serving.interest_budget=equal,proportional"
  [conditional_source]="model.conditioning.source=item_interest,source_interest"
  [conditional_fusion]="model/conditioning=early_fusion,late_fusion"
  [conditional_cost]="model/conditioning=none,early_fusion"
)
# A second grid into the same sweep folder (job folders u0, u1, ...): arms the first grid cannot
# hold. Conditional: the unconditional model, without filter and with the union filter.
declare -A SECOND_CALL=(
  [conditional]="model/conditioning=none serving.interest_filter=none,union serving.interest_budget=equal"
)
WORLDS=0,1,2
WORLD_SEEDS=0,1,2

quick=0
tiny=()
force=()
root=multirun/reproduce
readme=experiments/README.md
for arg in "$@"; do
  case "$arg" in
    --quick)
      quick=1
      tiny=(data=synthetic_tiny)
      WORLDS=0,1
      WORLD_SEEDS=0,1
      for skip in "${NEEDS_SNAPSHOTS[@]}" "${QUICK_SKIP[@]}"; do
        EXPERIMENTS=("${EXPERIMENTS[@]/$skip}")
      done
      root=multirun/reproduce_quick
      readme=$root/README.md
      ;;
    --force) force=(force=true) ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
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
  [ -n "${CLAIM_ARMS[$name]+set}" ] || { echo "reproduce.sh: no CLAIM_ARMS entry for $name" >&2; exit 1; }
done

for name in "${EXPERIMENTS[@]}"; do
  if [[ " ${NEEDS_SNAPSHOTS[*]} " == *" $name "* ]]; then
    bash scripts/id_ablations.sh --pretrain-only --worlds "$WORLDS" ${force[@]+--force}
    break
  fi
done

# sweep NAME EXP DIR ARMS [OVERRIDES...]: the experiment's grid (restricted by ARMS, a string of
# overrides; empty: every arm) and its SECOND_CALL grid, with OVERRIDES, into DIR; then its report
sweep() {
  local name=$1 exp=$2 dir=$3 arms=$4
  shift 4
  echo "reproduce.sh: $exp -> $dir ($(date -u +%FT%TZ))"
  # shellcheck disable=SC2086
  .venv/bin/ebr-train -m "experiment=$exp" $arms hydra/launcher=joblib hydra.launcher.n_jobs=2 \
    "hydra.sweep.dir=$dir" "$@" ${tiny[@]+"${tiny[@]}"} ${force[@]+"${force[@]}"}
  if [ -n "${SECOND_CALL[$name]+set}" ]; then
    # the second call overwrites multirun.yaml: keep the first grid's record (ebr.report.grid)
    mv "$dir/multirun.yaml" "$dir/multirun.first.yaml"
    # shellcheck disable=SC2016,SC2086
    .venv/bin/ebr-train -m "experiment=$exp" ${SECOND_CALL[$name]} hydra/launcher=joblib \
      hydra.launcher.n_jobs=2 "hydra.sweep.dir=$dir" 'hydra.sweep.subdir=u${hydra.job.num}' "$@" \
      ${tiny[@]+"${tiny[@]}"} ${force[@]+"${force[@]}"}
  fi
  .venv/bin/ebr-report "$dir"
}

# The sweeps over worlds first: experiments/README.md needs only them, so an interrupted run has
# its table as early as possible; the one-world sweeps (each page's per-arm detail) follow.
world_sweeps=()
for name in "${EXPERIMENTS[@]}"; do
  [ -n "$name" ] || continue
  for exp in "$name" "${name}_control"; do
    sweep "$name" "$exp" "$root/${exp}_worlds" "${CLAIM_ARMS[$name]}" "data.config.seed=$WORLDS" \
      "seed=$WORLD_SEEDS"
    world_sweeps+=("$root/${exp}_worlds")
  done
done
.venv/bin/python -m ebr.report.suite --out "$readme" "${world_sweeps[@]}"
echo "reproduce.sh: wrote $readme ($(date -u +%FT%TZ))"

if [ "$quick" = 0 ]; then
  for name in "${EXPERIMENTS[@]}"; do
    [ -n "$name" ] || continue
    [[ " ${WORLDS_ONLY[*]} " != *" $name "* ]] || continue
    for exp in "$name" "${name}_control"; do
      sweep "$name" "$exp" "$root/$exp" ""
    done
  done
fi
echo "reproduce.sh: done; see $readme"
