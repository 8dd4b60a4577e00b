"""The Gaussian log-likelihood of an observation under a forward operator."""

from __future__ import annotations

from typing import Callable, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jcnf._checks import describe
from jcnf.inverse.linear_operator import LinearOperator


def gaussian_log_likelihood(operator: Union[LinearOperator, Callable[[Array], Array]], x: Array,
                            y_obs: Array, noise_std: Union[float, Array],
                            include_normalizer: bool = False) -> Array:
    """Log N(y_obs; F(x), noise_std^2 I) for each x of a batch.

    By default the constant -m/2 log(2 pi noise_std^2) is dropped, leaving
    -||F(x) - y_obs||^2 / (2 noise_std^2): the data term of the reverse-KL
    loss, whose gradient is all that training uses. Pass
    `include_normalizer=True` for the normalized density (needed when
    comparing evidences or noise levels).

    Args:
      operator: a `LinearOperator`, or any function mapping x [B, ...] to
        predictions [B, *observation_shape] (a nonlinear forward model).
      x: unknowns, shape [batch, *input_shape].
      y_obs: the observation, shape [*output_shape] (one observation shared by
        the batch) or [batch, *output_shape].
      noise_std: noise standard deviation sigma > 0, a scalar.
      include_normalizer: add -m/2 log(2 pi sigma^2), m the observation size.

    Returns:
      Log-likelihoods, shape [batch].
    """
    # A concrete sigma is checked here; a traced one (inside jit) is the caller's to check.
    if not isinstance(noise_std, jax.core.Tracer) and not np.all(np.asarray(noise_std) > 0):
        raise ValueError(f"`noise_std` must be > 0; got {noise_std}.")
    predicted = operator.apply(x) if isinstance(operator, LinearOperator) else operator(x)
    y_obs = jnp.asarray(y_obs)
    item_shape = tuple(predicted.shape[1:])
    if tuple(y_obs.shape) not in (item_shape, tuple(predicted.shape)):
        raise ValueError(f"`y_obs` must have shape {list(item_shape)} or [batch, {', '.join(map(str, item_shape))}] "
                         f"to match the operator's output; got {describe(y_obs)}.")
    # One observation shared by the batch gets its batch axis written out.
    y_obs = y_obs[None] if y_obs.ndim < predicted.ndim else y_obs
    residual = (predicted - y_obs).reshape(predicted.shape[0], -1)
    log_likelihood = -0.5 * jnp.sum(residual ** 2, axis=1) / noise_std ** 2
    if include_normalizer:
        num_observed = residual.shape[1]
        log_likelihood = log_likelihood - 0.5 * num_observed * jnp.log(2 * jnp.pi * noise_std ** 2)
    return log_likelihood
