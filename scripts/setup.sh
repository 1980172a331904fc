#!/usr/bin/env bash
# Creates .venv/ and installs ebr with every dependency pinned. Idempotent: re-running
# only installs what is missing. Fails loudly on any error.
#
# Usage: bash scripts/setup.sh [--cuda]
#   --cuda   install the CUDA torch build and the CUDA fbgemm-gpu instead of the CPU ones
set -euo pipefail

cd "$(dirname "$0")/.."
variant=cpu
for arg in "$@"; do
  case "$arg" in
    --cuda) variant=cuda ;;
    -h|--help) sed -n 2,7p "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (expected --cuda)" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || { echo "setup.sh: $PYTHON not found; ebr needs Python 3.11" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check)
# Every later install is held to these pins, so no package can drag in another torch.
constraints=scripts/constraints.txt

"${pip[@]}" -q --upgrade "pip>=24" wheel
if [ "$variant" = cuda ]; then
  "${pip[@]}" -c "$constraints" --index-url https://download.pytorch.org/whl/cu126 torch==2.13.0
  "${pip[@]}" -c "$constraints" fbgemm-gpu==1.8.0
else
  "${pip[@]}" -c "$constraints" torch==2.13.0
  "${pip[@]}" -c "$constraints" fbgemm-gpu-cpu==1.8.0
fi
# torchrec's metadata asks for the CUDA fbgemm-gpu: install it alone, then its real needs.
"${pip[@]}" -c "$constraints" --no-deps torchrec==1.8.0
"${pip[@]}" -c "$constraints" -r scripts/requirements.txt
"${pip[@]}" -c "$constraints" --no-deps -e .

.venv/bin/python - <<'PY'
import importlib

names = [
    "torch", "fbgemm_gpu", "torchrec", "tensordict", "torchmetrics", "pytorch_lightning",
    "hydra", "hydra_plugins.hydra_joblib_launcher", "hydra_plugins.hydra_submitit_launcher",
    "optuna", "sqlalchemy", "hydra_plugins.hydra_optuna_sweeper", "hydra_plugins.ebr_search",
    "wandb", "wandb_workspaces", "faiss", "sklearn", "pyarrow", "numpy", "pandas", "scipy", "matplotlib",
    "pytest", "ebr",
]
for name in names:
    module = importlib.import_module(name)
    print(f"{name:40s} {getattr(module, '__version__', '-')}")
import torchrec.distributed  # noqa: F401  (loads the fbgemm kernels: fails on an ABI mismatch)
print("setup.sh: environment ready in .venv/")
PY
.venv/bin/ruff --version
