"""Data: the synthetic world, real-data loaders, the canonical schema, splits and batches.

A newcomer's map, in data-flow order:

- `schema.py`: the canonical `InteractionData` every loader returns (events, user and pin
  `FeatureTable`s of `CategoricalFeature`s) and `Split`;
- `loaders/`: every way to get one (`load_world`, `load_movielens`, `load_events_file`);
- `world/`: the synthetic world's generator, with its hidden truth (`world/truth.py`);
- `splits.py`: the global and the per-user temporal split;
- `history.py`: the user feature built from the training window;
- `csr.py`: the ragged-array type behind categorical features and per-user id lists;
- `batching.py`, `datamodule.py`: training batches for the two towers.

Nothing in this package knows about models, training or serving.
"""
