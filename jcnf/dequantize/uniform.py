"""The fixed dequantizers: uniform noise for discrete data, none for continuous data.

Both follow the protocol of `jcnf.dequantize.base`:
`dequantize(rng, value, batch) -> (dequantized_value, log_correction)`.
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp
from jax import Array

from jcnf._checks import check_int
from jcnf.dequantize.base import DequantizeFn
from jcnf.distributions.units import dequantization_offset


def no_dequantization(rng: Array, value: Array, batch: Mapping[str, Array]) -> tuple[Array, Array]:
    """For continuous data: returns `value` unchanged and a zero correction of shape [batch]."""
    del rng, batch
    return value, jnp.zeros(value.shape[:1], value.dtype)


def uniform_dequantization(num_bins: int = 256) -> DequantizeFn:
    """Uniform dequantization of data stored as `k / num_bins`, k in {0, ..., num_bins - 1}.

    Adds noise u ~ U(0, 1/num_bins) to every entry. The flow's density on
    [0, 1)^D integrates over a bin of volume num_bins^-D to the probability of
    the discrete value, hence the correction -D log(num_bins) per item; with
    it the loss is, in expectation, an upper bound on the negative
    log-likelihood of the discrete data and `bits_per_dim` the standard
    figure quoted for 8-bit images.

    Args:
      num_bins: number of discrete levels (256 for 8-bit data, 32 for 5-bit).

    Returns:
      A dequantizer `(rng, value, batch) -> (value + u, log_correction [batch])`.
    """
    check_int("num_bins", num_bins, 2)

    def dequantize(rng: Array, value: Array, batch: Mapping[str, Array]) -> tuple[Array, Array]:
        del batch
        noise = jax.random.uniform(rng, value.shape, value.dtype, 0.0, 1.0 / num_bins)
        dims = math.prod(value.shape[1:])
        return value + noise, jnp.full(value.shape[:1], dequantization_offset(dims, num_bins), value.dtype)

    return dequantize
