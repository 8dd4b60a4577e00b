"""Configs of experiments.seismic: preconditioned VI for seismic compressed sensing with a conditional Glow.

default  32x32 sections, a small Glow, on a CPU in minutes
paper    Siahkoohi et al. (2021): 256x256 sections, a conditional flow of depth 12
(4 levels x 3 steps) and hidden width 64, longer training (a GPU)
smoke    seconds long, for the tests
"""

from __future__ import annotations

import ml_collections


def get_config(name: str = "default") -> ml_collections.ConfigDict:
    """The config called `name`: "default", "paper" or "smoke"."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = ml_collections.ConfigDict({
        "size": 32,  # image height = width
        "keep": 0.5,  # fraction of random-convolution samples kept
        "noise_low": 0.02, "noise_high": 0.1, "train_images": 512})
    config.model = ml_collections.ConfigDict({"levels": 2, "flow_steps": 4, "hidden": 32, "context_features": 16})
    config.train = ml_collections.ConfigDict({"steps": 400, "batch": 16, "lr": 1e-3})  # low-fidelity MLE
    config.vi = ml_collections.ConfigDict({
        "lr": 1e-3,
        "latent_lr": 1e-2,  # latent correction trains only 2 * H * W numbers
        "smooth": 2,  # evaluations averaged before comparing objectives (speed-up)
        "samples": 8,  # latents per reverse-KL step
        "preconditioned_steps": 60, "scratch_max_steps": 300, "eval_every": 10, "eval_samples": 32})
    config.sweep = ml_collections.ConfigDict({"preconditioned": (15, 30, 60), "scratch": (30, 60, 120, 300),
                                              "seeds": 1,
                                              "final_eval_samples": 256})  # latents of each run's final objective
    config.eval = ml_collections.ConfigDict({"posterior_samples": 128})
    if name == "paper":
        config.data.size, config.data.train_images, config.train.steps, config.train.batch = 256, 2048, 5000, 4
        config.model.levels, config.model.flow_steps, config.model.hidden = 4, 3, 64
        config.model.context_features = 32
        config.vi.preconditioned_steps, config.vi.scratch_max_steps = 500, 5000
        config.train.lr, config.vi.lr = 1e-4, 1e-4
        config.vi.eval_every, config.eval.posterior_samples = 50, 256
        config.sweep.preconditioned, config.sweep.scratch = (125, 250, 500), (250, 500, 1000, 2500, 5000)
    elif name == "smoke":
        config.data.size, config.data.train_images, config.train.steps, config.train.batch = 8, 16, 5, 8
        config.model.levels, config.model.flow_steps, config.model.hidden, config.model.context_features = 1, 1, 4, 4
        config.vi.samples, config.vi.preconditioned_steps, config.vi.scratch_max_steps = 4, 4, 12
        config.vi.eval_every, config.vi.eval_samples, config.eval.posterior_samples = 4, 8, 16
        config.sweep.preconditioned, config.sweep.scratch, config.sweep.seeds = (2,), (2, 4), 1
        config.sweep.final_eval_samples = 8
    elif name != "default":
        raise ValueError(f"`name` must be 'default', 'paper' or 'smoke'; got {name!r}.")
    return config
