"""Which features each tower reads, and the tower input specs they give on a data set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ebr.data.schema import FeatureTable, InteractionData
from ebr.models.tower import TowerSpec

FEATURE_KEYS = ("user_sparse", "user_dense", "pin_sparse", "pin_dense")
# the entity-ID feature of each side: every loader names them so (ebr.data)
ID_FEATURES = {"user": "user_id", "pin": "pin_id"}


def resolve_features(
    chosen: Mapping[str, Sequence[str] | None], data: InteractionData
) -> dict[str, list[str]]:
    """Feature names per tower: the chosen lists, or every feature of the table where a list is None.

    Args:
        chosen: the `features` config node (its keys `user_sparse`, `user_dense`, `pin_sparse`,
            `pin_dense`; others are ignored).
        data: the data set whose tables supply the defaults.
    """
    defaults = {
        "user_sparse": list(data.users.categorical),
        "user_dense": list(data.users.dense),
        "pin_sparse": list(data.pins.categorical),
        "pin_dense": list(data.pins.dense),
    }
    return {
        key: list(defaults[key] if chosen.get(key) is None else chosen[key])  # type: ignore[arg-type]
        for key in FEATURE_KEYS
    }


def tower_specs(data: InteractionData, features: Mapping[str, Sequence[str]]) -> tuple[TowerSpec, TowerSpec]:
    """The user and pin towers' input specs for the chosen features.

    Raises:
        KeyError: naming `features.<tower>_sparse` and the table's features, for an unknown feature.
    """

    def spec(name: str, table: FeatureTable, sparse: Sequence[str], dense: Sequence[str]) -> TowerSpec:
        missing = [f for f in sparse if f not in table.categorical]
        if missing:
            raise KeyError(
                f"features.{name}_sparse: unknown feature(s) {missing}; "
                f"{data.name} {name}s have {sorted(table.categorical)}"
            )
        width = table.dense_matrix(list(dense)).shape[1] if dense else 0
        return TowerSpec(name, {f: table.categorical[f].cardinality for f in sparse}, width)

    return (
        spec("user", data.users, features["user_sparse"], features["user_dense"]),
        spec("pin", data.pins, features["pin_sparse"], features["pin_dense"]),
    )
