"""Training: the LightningModule, torchrec sharding with fused optimizers, loggers, export."""
