"""Contrastive pre-training of user and pin ID tables, written as snapshots (`ebr-pretrain`).

- `selection.py`: pure rules, no torch: the snapshot windows a job trains, and `select_snapshot`
  (policies `latest`, `latest_no_overlap`) the retrieval side uses;
- `snapshots.py`: the snapshot format, its atomic save and its load;
- `model.py`: the two ID tables (torchrec, sharded with a fused optimizer), the pair batches and the
  LightningModule;
- `job.py`: one `ebr-pretrain` job.

docs/pretraining.md describes the config keys, the format and the rules.
"""
