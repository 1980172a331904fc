"""Models: feature crossing layers, towers, the two-tower retrieval model and its loss.

Models know the feature schema of a batch, nothing of how they are trained or served.
"""
