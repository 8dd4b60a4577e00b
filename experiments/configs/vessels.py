"""Configs of experiments.vessels: retinal vessel segmentation, conditional Glow vs a factorized Bernoulli.

default  structured synthetic fundus images (several annotators per image whose labels differ by whole faint
         capillaries and per-segment widths), on a CPU in minutes; data.source "synthetic" is the control
         whose only label noise is independent per pixel
paper    DRIVE (data.source "drive"; set data.drive_dir to the folder holding DRIVE.zip),
128-pixel crops, 3 levels of 8 blocks, hidden 128, 100 samples per image (a GPU)
smoke    seconds long, for the tests
"""

from __future__ import annotations

import ml_collections


def get_config(name: str = "default") -> ml_collections.ConfigDict:
    """The config called `name`: "default", "paper" or "smoke"."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = ml_collections.ConfigDict({
        "source": "structured",  # or "synthetic" (independent pixel noise only) or "drive"
        "drive_dir": "",  # manual directory holding DRIVE.zip
        "tfds_dir": "",  # tfds data_dir of the built DRIVE dataset
        "size": 64,  # synthetic image size
        "annotators": 3,  # structured: annotations per image (the test's first two: truth, second annotator)
        "capillaries": 6,  # structured: faint capillaries per image
        "train_images": 256, "test_images": 8,
        "crop": 32,  # training crop size, divisible by 2^levels
        "crops": 2048})  # training crops drawn from the training images
    config.model = ml_collections.ConfigDict({
        # The flow's first level also sees the full-resolution context features, as the per-pixel baseline
        # does: 5 x 8 channels there (8 features, 4 of them per pixel), which keeps the flow at 92k parameters.
        "levels": 2, "blocks": 4, "hidden": 32, "context_features": 8, "encoder_blocks": 2,
        "full_resolution_context": True,
        "dequantizer_hidden": 16,
        "baseline_features": 32, "baseline_blocks": 4,  # 84k parameters, about the flow's
        "positive_weight": 1.0})  # the baseline's class weight of vessels
    config.train = ml_collections.ConfigDict({
        "steps": 1000, "batch": 16, "lr": 2e-3,
        "checkpoints": True})  # resumable training, checkpoints under <out>/checkpoints/<model>
    config.eval = ml_collections.ConfigDict({
        "samples": 32,  # samples per test image
        "retina_size": 192})  # 0 skips the real-retina figure
    if name == "paper":
        config.data.source, config.data.crop, config.train.steps = "drive", 128, 20000
        config.model.levels, config.model.blocks, config.model.hidden = 3, 8, 128
        config.eval.samples = 100
    elif name == "smoke":
        # 48 pixels: the smallest size whose faint capillaries keep cores of 3+ pixels to score.
        config.data.size, config.data.train_images, config.data.test_images = 48, 8, 4  # 4: one image per device
        config.data.crop, config.data.crops, config.train.steps, config.train.batch = 16, 64, 30, 8
        config.model.levels, config.model.blocks, config.model.hidden = 1, 1, 8
        config.model.context_features, config.model.encoder_blocks, config.model.dequantizer_hidden = 4, 1, 4
        config.model.baseline_features, config.model.baseline_blocks = 8, 1
        config.eval.samples, config.eval.retina_size = 4, 48  # the test images' size: one sampler compile
    elif name != "default":
        raise ValueError(f"`name` must be 'default', 'paper' or 'smoke'; got {name!r}.")
    return config
