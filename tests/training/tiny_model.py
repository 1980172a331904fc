"""The small two-tower model config the training tests build."""


def tiny_model_config(hidden: int, embedding_dim: int, output_dim: int) -> dict:
    """A `model` config node (a partial TwoTowerModel with an MLP crossing of one hidden layer)."""
    return {
        "_target_": "ebr.models.two_tower.TwoTowerModel",
        "_partial_": True,
        "crossing": {
            "_target_": "ebr.models.crossing.mlp.MLPCrossing",
            "_partial_": True,
            "hidden": [hidden],
        },
        "embedding_dim": embedding_dim,
        "output_dim": output_dim,
    }
