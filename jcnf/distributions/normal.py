"""The standard-normal log-density that every flow's latent is scored with, and the dtype of log-densities."""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def log_density_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """The dtype of log-densities and log-dets for values of `dtype`: float32, or float64 for float64 values.

    Networks may compute in bfloat16, whose 8-bit mantissa rounds a sum of a
    few thousand per-pixel terms by whole nats; the flows' log-dets, base
    log-densities and losses are therefore accumulated in at least float32.
    (Chosen explicitly rather than by `jnp.promote_types`, which strict dtype
    promotion forbids between bfloat16 and float32.)
    """
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.float64 else jnp.dtype(jnp.float32)


def standard_normal_log_prob(z: Array, event_ndims: int) -> Array:
    """Log N(z; 0, I) summed over the last `event_ndims` axes, in `log_density_dtype(z.dtype)`."""
    axes = tuple(range(z.ndim - event_ndims, z.ndim))
    z = z.astype(log_density_dtype(z.dtype))
    return jnp.sum(-0.5 * jnp.square(z) - _HALF_LOG_2PI, axis=axes)
