"""The synthetic world generator: ebr's embedded default data set (see docs/world.md).

`generate_world` (pure) builds an `InteractionData` whose `truth` is the world's `SyntheticTruth`;
`WorldConfig` holds the sizes and the knobs. The modules follow the generation order: `config`,
`entities` (observable users and pins), `truth` (the hidden taste and engagement model), `drift`
(the users' interest drift over time, off by default), `events`
(the simulated logs), `generate` (the feature tables and the whole world).

`load_world`, the cached loader, lives with the other loaders in `ebr.data.loaders.synthetic`
(which imports this package, so this package does not import it back).
"""

from ebr.data.world.config import WorldConfig
from ebr.data.world.generate import generate_world
from ebr.data.world.truth import SyntheticTruth

__all__ = ["SyntheticTruth", "WorldConfig", "generate_world"]
