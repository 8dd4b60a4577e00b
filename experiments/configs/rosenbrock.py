"""Configs of experiments.rosenbrock: preconditioned vs from-scratch VI on the 2D Rosenbrock problem.

default  the paper's problem and budgets (Siahkoohi et al. 2021, section 2) plus the
annealed budget sweep, on a CPU in minutes
paper    the paper's settings alone: 5000 pairs, batch 64, 25 epochs at lr 1e-3 x0.9 per
epoch, 80 preconditioned vs 400 from-scratch iterations (no longer scratch run, no sweep)
smoke    seconds long, for the tests
"""

from __future__ import annotations

import ml_collections


def get_config(name: str = "default") -> ml_collections.ConfigDict:
    """The config called `name`: "default", "paper" or "smoke"."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = ml_collections.ConfigDict({"noise_std": 0.4, "pairs": 5000})
    config.model = ml_collections.ConfigDict({"blocks": 8, "hidden": 64})
    # Low-fidelity maximum likelihood by fit_amortized: at most `epochs`, stopping `patience` epochs after the
    # best validation loss at a constant rate (`reductions` 0, the protocol of the committed results; a positive
    # value gives fit_amortized's rate reductions).
    config.train = ml_collections.ConfigDict({"epochs": 25, "batch": 64, "lr": 1e-3, "patience": 5,
                                              "reductions": 0})
    # Reverse-KL fits of the one high-fidelity posterior.
    config.vi = ml_collections.ConfigDict({
        "latents": 1000,  # fixed latents of reverse-KL training
        "preconditioned_steps": 80,
        "scratch_steps": 400,  # the paper's from-scratch budget
        "scratch_max_steps": 2000,  # measures the steps scratch needs to match the preconditioned objective
        "lr": 1e-3,
        "eval_every": 5,
        "eval_samples": 4096,
        "smooth": 3,  # evaluations averaged before comparing objectives (speed-up)
    })
    # Runs annealed to lr 0 over each budget; empty budgets skip the sweep.
    config.sweep = ml_collections.ConfigDict({"preconditioned": (10, 20, 40, 80), "scratch": (20, 40, 80, 160, 400),
                                              "seeds": 2, "kl_latents": 65536})
    config.eval = ml_collections.ConfigDict({"samples": 20000, "grid": 512})
    if name == "paper":
        config.vi.scratch_max_steps = 400
        config.sweep.preconditioned, config.sweep.scratch = (), ()
    elif name == "smoke":
        config.data.pairs, config.train.epochs, config.model.blocks, config.model.hidden = 512, 2, 1, 8
        config.vi.preconditioned_steps, config.vi.scratch_steps, config.vi.scratch_max_steps = 10, 50, 50
        config.vi.latents, config.vi.eval_samples, config.eval.samples, config.eval.grid = 256, 256, 2000, 128
        config.sweep.preconditioned, config.sweep.scratch, config.sweep.seeds = (5,), (5, 10), 1
        config.sweep.kl_latents = 4096
    elif name != "default":
        raise ValueError(f"`name` must be 'default', 'paper' or 'smoke'; got {name!r}.")
    return config
