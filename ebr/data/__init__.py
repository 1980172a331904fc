"""Data: the synthetic world, real-data loaders, the canonical schema, splits and batches.

Nothing in this package knows about models, training or serving.
"""
