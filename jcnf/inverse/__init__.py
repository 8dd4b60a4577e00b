"""Inverse problems: forward operators, priors, the posterior objective and preconditioned VI.

    lo = jcnf.train.fit(model, {"value": x, "context": y}, steps=2000, batch_size=64)
    hi = jcnf.inverse.fit_reverse_kl(model, jcnf.inverse.precondition(lo.params), y_obs,
                                     forward_op, noise_std, jcnf.inverse.rosenbrock_log_prob, steps=80)

Simulation-based inference in one call (an amortized posterior from simulated pairs):

    posterior = jcnf.inverse.fit_amortized(theta, x, bounds=(lower, upper))
    samples = posterior.sample(rng, x_obs, num_samples=10_000)     # [10000, batch, d]

Fitting many observations with one compilation: build
`step = jcnf.inverse.posterior_step(model, forward_op, noise_std, log_prior)`
once and pass `step=step` to each `fit_reverse_kl`.
"""

from jcnf.inverse.amortized import default_posterior_flows, fit_amortized
from jcnf.inverse.blur import blur_downsample
from jcnf.inverse.fit import ReverseKLResult, fit_reverse_kl
from jcnf.inverse.gaussian_posterior import linear_gaussian_posterior
from jcnf.inverse.latent import LatentCorrectedFlow, latent_correction, trainable_mask
from jcnf.inverse.likelihood import gaussian_log_likelihood
from jcnf.inverse.linear_operator import LinearOperator, dense, identity
from jcnf.inverse.mixed_kl import mixed_kl_step
from jcnf.inverse.objective import flow_log_prior, posterior_log_density
from jcnf.inverse.posterior_step import PosteriorStep, posterior_step
from jcnf.inverse.precondition import precondition
from jcnf.inverse.priors import gaussian_log_prob, rosenbrock_log_prob, rosenbrock_sample
from jcnf.inverse.romberg import random_convolution_subsample

__all__ = ["LatentCorrectedFlow", "LinearOperator", "PosteriorStep", "ReverseKLResult", "blur_downsample", "dense",
           "default_posterior_flows", "fit_amortized", "fit_reverse_kl", "flow_log_prior", "gaussian_log_likelihood",
           "gaussian_log_prob", "identity", "latent_correction", "linear_gaussian_posterior", "mixed_kl_step",
           "posterior_log_density", "posterior_step", "precondition", "random_convolution_subsample",
           "rosenbrock_log_prob", "rosenbrock_sample", "trainable_mask"]
