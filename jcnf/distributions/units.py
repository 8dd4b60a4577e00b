"""Units of a log-likelihood: nats per example to bits per dimension, and the dequantization offset.

jax.numpy where arrays are involved; every function runs under `jax.jit` with
`num_dims` (and `num_bins`) static, so training steps report bits per
dimension without a host round-trip.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jcnf._checks import check_int


def nats_to_bits_per_dim(nll_nats: ArrayLike, num_dims: int) -> Array:
    """Converts a negative log-likelihood in nats per example to bits per dimension.

    jax.numpy; runs under `jax.jit` with `num_dims` static.

    Args:
      nll_nats: negative log-likelihood of whole examples in nats, any shape
        (usually [batch] or a scalar mean).
      num_dims: dimensions per example D, e.g. height * width * channels.

    Returns:
      nll_nats / (D * ln 2), same shape as `nll_nats`.
    """
    check_int("num_dims", num_dims)
    return jnp.asarray(nll_nats) / (num_dims * math.log(2.0))


def bits_per_dim(log_prob_nats: ArrayLike, num_dims: int) -> Array:
    """Bits per dimension of a log-likelihood in nats: -log_prob / (D * ln 2).

    jax.numpy; runs under `jax.jit` with `num_dims` static. For 8-bit images
    the log-likelihood must be the discrete one: add
    `dequantization_offset(num_dims)` to a continuous log-density of data
    scaled to [0, 1) first.

    Args:
      log_prob_nats: log-likelihood of whole examples in nats, any shape.
      num_dims: dimensions per example D.

    Returns:
      Bits per dimension, same shape as `log_prob_nats`.
    """
    return nats_to_bits_per_dim(-jnp.asarray(log_prob_nats), num_dims)


def dequantization_offset(num_dims: int, num_bins: int = 256) -> float:
    """The term -D * log(num_bins) that turns a density on [0, 1)^D into a discrete log-likelihood.

    Data with `num_bins` levels per dimension, scaled to [0, 1), puts each
    level in a bin of width 1 / num_bins; with uniform dequantization the
    probability of a bin is at least the density times the bin volume
    num_bins^-D, which is this offset in log space. A model scored this way
    reports the bits/dim quoted in the flow literature (8 for a uniform model
    of 8-bit data).

    Args:
      num_dims: dimensions per example D.
      num_bins: quantization levels per dimension (256 for 8-bit data).

    Returns:
      -num_dims * log(num_bins) in nats, a Python float.
    """
    check_int("num_dims", num_dims)
    # One bin is no quantization at all, so the offset would silently be 0.
    check_int("num_bins", num_bins, minimum=2)
    return -num_dims * math.log(num_bins)
