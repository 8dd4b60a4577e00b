"""Configs of experiments.seismic: preconditioned VI for seismic compressed sensing with a conditional Glow.

default  64x64 sections, a small Glow, on a 2-core CPU in about 5 minutes. Cut from the paper's
         setting to fit (the same cuts for preconditioned, scratch and every other run): 4096 unknowns
         instead of 65,536, a Glow of 2 levels x 3 blocks with hidden width 16 (paper: 4 x 3, 64), 512
         low-fidelity pairs and 300 MLE steps (paper: 2048, 5000), 40 preconditioned and 160 scratch
         reverse-KL steps of 8 samples (paper: 500, 5000), annealed budgets up to 40 / 160, one seed
paper    Siahkoohi et al. (2021): 256x256 sections, a conditional flow of depth 12
(4 levels x 3 blocks) and hidden width 64, longer training (a GPU)
smoke    seconds long, for the tests
"""

from __future__ import annotations

import ml_collections


def get_config(name: str = "default") -> ml_collections.ConfigDict:
    """The config called `name`: "default", "paper" or "smoke"."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = ml_collections.ConfigDict({
        "size": 64,  # image height = width
        "keep": 0.5,  # fraction of random-convolution samples kept
        "noise_low": 0.02, "noise_high": 0.1, "train_images": 512})
    config.model = ml_collections.ConfigDict({"levels": 2, "blocks": 3, "hidden": 16, "context_features": 8})
    # Low-fidelity MLE. A tenth of the pairs is held out: the held-out NLL is scored every `eval_every`
    # steps, the best parameters are kept and training stops after `patience` scores without improvement.
    config.train = ml_collections.ConfigDict({"steps": 300, "batch": 16, "lr": 1e-3, "validation_fraction": 0.1,
                                              "eval_every": 25, "patience": 4})
    config.vi = ml_collections.ConfigDict({
        "lr": 1e-3,
        "latent_lr": 1e-2,  # latent correction trains only 2 * H * W numbers
        # The remedy's forward-KL weight, set before any run: the anchor's NLL and the reverse KL are both sums
        # over pixels, and 0.1 lets the likelihood dominate while the anchor still penalizes missed mass.
        "anchor_weight": 0.1,
        "smooth": 2,  # evaluations averaged before comparing objectives (speed-up)
        "samples": 8,  # latents per reverse-KL step
        "preconditioned_steps": 40, "scratch_max_steps": 160, "eval_every": 10, "eval_samples": 32})
    # One compiled step per distinct budget: the budgets share values to keep compilations few.
    config.sweep = ml_collections.ConfigDict({"preconditioned": (10, 20, 40), "scratch": (20, 40, 80, 160),
                                              "seeds": 1,
                                              "final_eval_samples": 256})  # latents of each run's final objective
    config.eval = ml_collections.ConfigDict({"posterior_samples": 128})
    if name == "paper":
        config.data.size, config.data.train_images, config.train.steps, config.train.batch = 256, 2048, 5000, 4
        config.model.levels, config.model.blocks, config.model.hidden = 4, 3, 64
        config.model.context_features = 32
        config.vi.preconditioned_steps, config.vi.scratch_max_steps = 500, 5000
        config.train.lr, config.vi.lr = 1e-4, 1e-4
        config.vi.eval_every, config.eval.posterior_samples = 50, 256
        config.sweep.preconditioned, config.sweep.scratch = (125, 250, 500), (250, 500, 1000, 2500, 5000)
    elif name == "smoke":
        config.data.size, config.data.train_images, config.train.steps, config.train.batch = 8, 16, 5, 8
        config.train.validation_fraction = 0.25  # 4 held-out rows: at least one per device of the 2x2 smoke run
        config.model.levels, config.model.blocks, config.model.hidden, config.model.context_features = 1, 1, 4, 4
        config.vi.samples, config.vi.preconditioned_steps, config.vi.scratch_max_steps = 4, 4, 12
        config.vi.eval_every, config.vi.eval_samples, config.eval.posterior_samples = 4, 8, 16
        config.sweep.preconditioned, config.sweep.scratch, config.sweep.seeds = (2,), (2, 4), 1
        config.sweep.final_eval_samples = 8
    elif name != "default":
        raise ValueError(f"`name` must be 'default', 'paper' or 'smoke'; got {name!r}.")
    return config
