"""Configs of experiments.superres: x2 super-resolution, conditional Glow vs a factorized logistic baseline.

default  patches of the embedded sample photographs, a small Glow, on a CPU in minutes
paper    Winkler et al. (2019): ImageNet32 from tfds, 3 levels of 8 blocks, hidden 512,
context features 128, 16 encoder blocks, batch 64, lr 2e-4 (accelerators)
smoke    seconds long, for the tests
"""

from __future__ import annotations

import ml_collections


def get_config(name: str = "default") -> ml_collections.ConfigDict:
    """The config called `name`: "default", "paper" or "smoke"."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = ml_collections.ConfigDict({
        "source": "photos",  # "photos" (embedded), "folder" (train_folder, test_folder) or "tfds" (tfds_name)
        "train_folder": "", "test_folder": "",
        "tfds_name": "downsampled_imagenet/32x32", "tfds_dir": "",  # where the tfds dataset was prepared
        "patch": 32,  # high-resolution patch side
        "factor": 2,  # downsampling factor (2 or 4)
        "train_patches": 4096, "test_patches": 128})
    config.model = ml_collections.ConfigDict({
        "levels": 2, "blocks": 4, "hidden": 64, "context_features": 32, "encoder_blocks": 2,
        # Both models predict the residual from the upsampled context: "backprojected" (bicubic, then
        # one back-projection step, so each block's mean is its low-res pixel) or "nearest".
        "context_skip": True, "skip": "backprojected",
        # The context encoder of both models: "residual" blocks or the paper's "rrdb".
        "encoder": "residual",
        "mixtures": 5,  # logistic components of the baseline
        "dequantization": "uniform"})  # or "variational"
    # checkpoint_every: steps between checkpoints in <out>/checkpoints/<model>; a rerun resumes from the newest.
    config.train = ml_collections.ConfigDict({"steps": 250, "batch": 16, "lr": 2e-3, "checkpoint_every": 100})
    config.eval = ml_collections.ConfigDict({"figure_examples": 4})
    if name == "paper":
        config.data.source, config.data.train_patches, config.data.test_patches = "tfds", 1_281_167, 50_000
        config.model.levels, config.model.blocks, config.model.hidden = 3, 8, 512
        config.model.context_features, config.model.encoder_blocks = 128, 16
        config.model.encoder = "rrdb"  # the authors' code: 16 RRDBs of 128 channels, for both models
        config.train.steps, config.train.batch, config.train.lr = 200_000, 64, 2e-4
        config.train.checkpoint_every = 5000
    elif name == "smoke":
        config.data.patch, config.data.train_patches, config.data.test_patches = 16, 64, 8
        config.train.steps, config.train.batch, config.train.checkpoint_every = 4, 4, 2
        config.model.levels, config.model.blocks, config.model.hidden = 1, 1, 8
        config.model.context_features, config.model.encoder_blocks = 8, 1
        config.model.mixtures, config.eval.figure_examples = 2, 2
    elif name != "default":
        raise ValueError(f"`name` must be 'default', 'paper' or 'smoke'; got {name!r}.")
    return config
