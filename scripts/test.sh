#!/usr/bin/env bash
# The whole test suite: lint, format check, then pytest. Run `bash scripts/setup.sh` first.
set -euo pipefail
cd "$(dirname "$0")/.."
export WANDB_MODE="${WANDB_MODE:-offline}"
export WANDB_SILENT=true
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest --durations=15 "$@"
