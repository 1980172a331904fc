"""ebr's Hydra plugins: Hydra instantiates a sweeper only from the `hydra_plugins` namespace.

The code lives in `ebr.search` (typed, tested, under the layering rule); Hydra registers a plugin
under the module that defines it, so the class is re-declared here, empty. Hydra imports every
`hydra_plugins` module when an app starts, so this one stays light: optuna is imported when a
search runs.
"""

from ebr.search import OptunaSearchSweeper


class ResumableOptunaSweeper(OptunaSearchSweeper):
    """`ebr.search.OptunaSearchSweeper` where Hydra finds it (`hydra.sweeper._target_`)."""


__all__ = ["ResumableOptunaSweeper"]
