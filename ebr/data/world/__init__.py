"""The synthetic world generator: ebr's embedded default data set (see docs/world.md).

`generate_world` (pure) builds an `InteractionData` whose `truth` is the world's `SyntheticTruth`;
`WorldConfig` holds the sizes and the knobs. The modules follow the generation order: `config`,
`entities` (observable users and pins), `truth` (the hidden taste and engagement model), `events`
(the simulated logs), `generate` (the feature tables and the whole world).

`load_world`, the cached loader, lives with the other loaders in `ebr.data.loaders.synthetic`; it is
also reachable here as `ebr.data.world.load_world`.
"""

from typing import Any

from ebr.data.world.config import WorldConfig
from ebr.data.world.generate import generate_world
from ebr.data.world.truth import SyntheticTruth

__all__ = ["SyntheticTruth", "WorldConfig", "generate_world", "load_world"]


def __getattr__(name: str) -> Any:
    # the loader imports this package, so it is looked up on first use instead of at import time
    if name == "load_world":
        from ebr.data.loaders.synthetic import load_world

        return load_world
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
