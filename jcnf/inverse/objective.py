"""The posterior objective of variational inference for one observation.

For y_obs = F(x) + eps, eps ~ N(0, noise_std^2 I), the unnormalized log
posterior is

    log p(x | y_obs) = -||F(x) - y_obs||^2 / (2 noise_std^2) + log p_prior(x) + const,

and a flow T (latent z -> value x) is trained by minimizing the reverse KL

    L = E_z[ ||F(T(z)) - y_obs||^2 / (2 noise_std^2) - log p_prior(T(z)) - log|det dT/dz| ],

which is KL(q || p(. | y_obs)) up to constants (the entropy of N(0, I) and
log p(y_obs)). `jcnf.train.reverse_kl_step` computes E_z[log q(T(z)) -
log_density(T(z))] with `log_density = posterior_log_density(...)`; the two
differ only by E_z[log N(z; 0, I)], a constant of the parameters.

The prior is analytic (e.g. `rosenbrock_log_prob`, `gaussian_log_prob`) or the
frozen amortized flow itself, p_prior(x) = q_theta(x | y_obs) (`flow_log_prior`).
"""

from __future__ import annotations

from typing import Any, Callable, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array

from jcnf._checks import describe
from jcnf.inverse.likelihood import gaussian_log_likelihood
from jcnf.inverse.linear_operator import LinearOperator

LogDensity = Callable[[Array], Array]


def posterior_log_density(forward_op: Union[LinearOperator, Callable[[Array], Array]], y_obs: Array,
                          noise_std: float, log_prior: LogDensity) -> LogDensity:
    """The unnormalized log posterior x -> log N(y_obs; F(x), noise_std^2 I) + log_prior(x).

    The likelihood's constant -m/2 log(2 pi noise_std^2) is dropped (it does
    not change any gradient).

    Args:
      forward_op: a `LinearOperator`, or any jittable function mapping
        x [B, *input_shape] to predictions [B, *observation_shape].
      y_obs: the one observation, shape [*observation_shape].
      noise_std: noise standard deviation, > 0.
      log_prior: maps x [B, *input_shape] to log p_prior(x) [B]; jittable.

    Returns:
      A jittable function x [B, *input_shape] -> [B].
    """
    y_obs = check_posterior_inputs(forward_op, y_obs, noise_std, log_prior)
    log_density = observation_log_density(forward_op, noise_std, log_prior)

    def log_posterior(x: Array) -> Array:
        return log_density(x, y_obs)

    return log_posterior


def observation_log_density(forward_op: Union[LinearOperator, Callable[[Array], Array]], noise_std: float,
                            log_prior: LogDensity) -> Callable[[Array, Array], Array]:
    """`posterior_log_density` with the observation as an argument: (x, y_obs) -> [B].

    A function jitted over it takes y_obs as an input, not a constant, so one
    compilation serves every observation of a shape. Its inputs are not
    checked here: pass them through `check_posterior_inputs` first.

    Args:
      forward_op: as in `posterior_log_density`.
      noise_std: as in `posterior_log_density`.
      log_prior: as in `posterior_log_density`.

    Returns:
      A jittable function (x [B, *input_shape], y_obs [*observation_shape]) -> [B].
    """

    def log_density(x: Array, y_obs: Array) -> Array:
        return gaussian_log_likelihood(forward_op, x, y_obs, noise_std) + log_prior(x)

    return log_density


def check_posterior_inputs(forward_op: Union[LinearOperator, Callable[[Array], Array]], y_obs: Array,
                           noise_std: float, log_prior: LogDensity) -> Array:
    """Checks the arguments of `posterior_log_density` and returns y_obs as an array."""
    check_noise_and_prior(noise_std, log_prior)
    y_obs = jnp.asarray(y_obs)
    if isinstance(forward_op, LinearOperator) and tuple(y_obs.shape) != forward_op.output_shape:
        raise ValueError(f"`y_obs` must have the operator's output shape {list(forward_op.output_shape)} "
                         f"(one observation, no batch axis); got {describe(y_obs)}.")
    return y_obs


def check_noise_and_prior(noise_std: float, log_prior: LogDensity) -> None:
    """Raises ValueError unless noise_std > 0 and log_prior is callable."""
    if not noise_std > 0:
        raise ValueError(f"`noise_std` must be > 0; got {noise_std}.")
    if not callable(log_prior):
        raise ValueError(f"`log_prior` must be a function x [B, ...] -> [B]; got {type(log_prior).__name__}.")


def flow_log_prior(model: nn.Module, params: Any, context: Array) -> LogDensity:
    """The frozen amortized flow as a prior: x -> log q_theta(x | context).

    Gradients do not flow into `params`: the prior stays what the low-fidelity
    training made it while a copy of the same parameters is trained.

    Args:
      model: the amortized flow.
      params: its parameters (the tree under "params" of its variables).
      context: the context of the one observation, shape [1, ...] (one row,
        broadcast over the batch of x).

    Returns:
      A jittable function x [B, *event_shape] -> [B].
    """
    context = jnp.asarray(context)
    if context.ndim < 2 or context.shape[0] != 1:
        raise ValueError(f"`context` must be one row with a leading batch axis of 1, [1, ...]; "
                         f"got {describe(context)}.")
    frozen = jax.lax.stop_gradient(params)

    def log_prior(x: Array) -> Array:
        # Under jit the frozen params and context are constants; the barrier stops XLA from
        # constant-folding the context encoder through them, which costs seconds of compile
        # time per convolution and gains nothing measurable.
        params, rows = jax.lax.optimization_barrier((frozen, context))
        rows = jnp.broadcast_to(rows, (x.shape[0],) + context.shape[1:])
        return model.apply({"params": params}, x, rows, method="log_prob")

    return log_prior
