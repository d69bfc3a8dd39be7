"""audioret.train_heads: train projection heads on cached store features (see run.py, config.py).

Public: ``run(config, splits=None) -> list[RunResult]``, ``TrainHeadsConfig``, ``Splits``,
``FeatureSplit`` (in-memory split), ``synthetic_split`` (learnable features for tests/demos).
"""
