"""ebr: embedding-based retrieval research framework (two-tower candidate generation)."""

__version__ = "0.1.0"
