"""Configs of experiments.demo: a ConditionalRealNVP on the bimodal ring.

default  the main job's run on a CPU (1500 steps, about a minute)
smoke    400 steps: enough to beat the Gaussian baseline, seconds long
"""

from __future__ import annotations

import ml_collections


def get_config(name: str = "default") -> ml_collections.ConfigDict:
    """The config called `name` ("default" or "smoke"; the demo follows no paper)."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = ml_collections.ConfigDict({"train_pairs": 20000, "test_pairs": 4000})
    config.model = ml_collections.ConfigDict({"blocks": 8, "hidden": 64})
    config.train = ml_collections.ConfigDict({"steps": 1500, "batch": 256, "lr": 3e-3, "clip_norm": 10.0})
    if name == "smoke":
        config.train.steps = 150
    elif name != "default":
        raise ValueError(f"`name` must be 'default' or 'smoke' for the demo; got {name!r}.")
    return config
