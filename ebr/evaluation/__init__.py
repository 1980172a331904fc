"""Evaluation: offline retrieval metrics over the full corpus, simulated online metrics, baselines.

Works on numpy embeddings and retrieved-id matrices only; it never imports models or training.
"""
