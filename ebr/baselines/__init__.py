"""Classical retrieval baselines on the same split, metrics and evaluation code as the two-tower model.

Each is a `Retriever`: `fit(split, n_users, n_pins)` on `split.train` (hyperparameters chosen on
`split.val` when `tune` is set), then `retrieve(task, k)`.
"""

from ebr.baselines.base import Retriever
from ebr.baselines.itemknn import ItemKNN
from ebr.baselines.popularity import Popularity
from ebr.baselines.puresvd import PureSVD

__all__ = ["ItemKNN", "Popularity", "PureSVD", "Retriever"]
