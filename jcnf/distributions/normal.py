"""The standard-normal log-density that every flow's latent is scored with."""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def standard_normal_log_prob(z: Array, event_ndims: int) -> Array:
    """Log N(z; 0, I) summed over the last `event_ndims` axes."""
    axes = tuple(range(z.ndim - event_ndims, z.ndim))
    return jnp.sum(-0.5 * jnp.square(z) - _HALF_LOG_2PI, axis=axes)
