"""The synthetic world: ebr's embedded default data set (see docs/world.md).

`load_world` (cached) and `generate_world` (pure) build an `InteractionData` whose `truth` is the
world's `SyntheticTruth`; `WorldConfig` holds the sizes and the knobs.
"""

from ebr.data.world.cache import load_world
from ebr.data.world.config import WorldConfig
from ebr.data.world.generate import generate_world
from ebr.data.world.latent import SyntheticTruth

__all__ = ["SyntheticTruth", "WorldConfig", "generate_world", "load_world"]
