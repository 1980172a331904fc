#!/usr/bin/env bash
# The whole test suite: lint, format check, then pytest. Run `bash scripts/setup.sh` first.
# pytest runs on EBR_TEST_WORKERS processes (default 2, the CI machine's cores; 0 = in this process);
# `--dist loadfile` keeps each file's tests, and so its module fixtures, in one worker.
set -euo pipefail
cd "$(dirname "$0")/.."
export WANDB_MODE="${WANDB_MODE:-offline}"
export WANDB_SILENT=true
.venv/bin/ruff check .
.venv/bin/ruff format --check .
workers="${EBR_TEST_WORKERS:-2}"
parallel=()
if [ "$workers" != "0" ]; then
  parallel=(-n "$workers" --dist loadfile)
fi
.venv/bin/python -m pytest "${parallel[@]}" --durations=15 "$@"
