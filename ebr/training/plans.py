"""The training options the config names, torch-free, so the config schema and the checks before
work read them without loading torch or Lightning: the torchrec sharding plans by name and the
default (ebr.training.distributed maps each name to torchrec's ShardingType), and the epoch
selections (ebr.training.selection)."""

from __future__ import annotations

# every plan ebr can ask torchrec for; the row-wise ones need GPUs
SHARDING_PLANS = ("table_wise", "column_wise", "data_parallel", "row_wise", "table_row_wise")
# the plans a CPU (gloo) process group runs
CPU_SHARDING = ("table_wise", "column_wise", "data_parallel")
# the plan of the ID tables of both trainings (train.sharding, pretrain.sharding): one table per
# rank, the plan every device runs
DEFAULT_SHARDING = "table_wise"
# `train.select_epoch`: which epoch's weights a training exports (ebr.training.selection)
SELECTIONS = ("last", "best_val_loss")
