"""Inverse problems: forward operators, priors, the posterior objective and preconditioned VI.

    lo = jcnf.train.fit(model, {"value": x, "context": y}, steps=2000, batch_size=64)
    hi = jcnf.inverse.fit_reverse_kl(model, jcnf.inverse.precondition(lo.params["flow"]), y_obs,
                                     forward_op, noise_std, jcnf.inverse.rosenbrock_log_prob, steps=80)
"""

from jcnf.inverse.budgets import budget_sweep, matched_budget_speedup, scratch_budget_to_reach
from jcnf.inverse.fit import (ReverseKLResult, clear_compile_cache, event_shape_of, fit_reverse_kl, objective_fn,
                              smooth_history, speedup, steps_to_reach)
from jcnf.inverse.latent import LatentCorrectedFlow, latent_correction, trainable_mask
from jcnf.inverse.objective import flow_log_prior, posterior_log_density
from jcnf.inverse.operators import (LinearOperator, blur_downsample, dense, gaussian_log_likelihood, identity,
                                    paper_toy_operator, random_convolution_subsample, rosenbrock_operator)
from jcnf.inverse.precondition import precondition
from jcnf.inverse.priors import (GridPosterior, gaussian_log_prob, grid_posterior, kl_from_samples_to_grid,
                                 linear_gaussian_posterior, rosenbrock_log_prob, rosenbrock_sample)

__all__ = ["GridPosterior", "LatentCorrectedFlow", "LinearOperator", "ReverseKLResult", "blur_downsample", "budget_sweep", "clear_compile_cache", "dense",
           "event_shape_of", "fit_reverse_kl", "flow_log_prior", "gaussian_log_likelihood", "gaussian_log_prob",
           "grid_posterior", "identity", "kl_from_samples_to_grid", "latent_correction",
           "linear_gaussian_posterior", "matched_budget_speedup", "objective_fn", "paper_toy_operator", "posterior_log_density",
           "precondition", "random_convolution_subsample", "rosenbrock_log_prob", "rosenbrock_operator",
           "rosenbrock_sample", "scratch_budget_to_reach", "smooth_history", "speedup", "steps_to_reach", "trainable_mask"]
