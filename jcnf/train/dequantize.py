"""Dequantizers: turn discrete data into continuous values a flow can model.

A dequantizer is any callable

    dequantize(rng, value, batch) -> (dequantized_value, log_correction)

with `value` of shape [batch, *event_shape], `batch` the whole batch dict (so
a dequantizer may read the context) and `log_correction` of shape [batch],
such that `log p_flow(dequantized_value | context) + log_correction` is, in
expectation over the noise, a lower bound on the log-probability of the
discrete `value` (Jensen's inequality; equal only for a density constant on
each bin). `mle_step` minimizes the negative mean of that sum.

A dequantizer with learnable parameters (variational dequantization) is a
`flax.linen.Module` with that same `__call__(rng, value, batch)` signature.
`create_state(..., dequantizer=module)` initializes it, its parameters live in
`state.params["dequantizer"]` beside the flow's `state.params["flow"]`, and
one optimizer trains both jointly.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array

from jcnf._checks import check_int
from jcnf.distributions.units import dequantization_offset

DequantizeFn = Callable[[Array, Array, Mapping[str, Array]], tuple[Array, Array]]
Dequantizer = Union[DequantizeFn, nn.Module]


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


def init_dequantizer(dequantizer: Dequantizer, rng: Array, value: Array, batch: Mapping[str, Array]) -> Any:
    """Parameters of a module dequantizer (None for a plain function)."""
    if not isinstance(dequantizer, nn.Module):
        return None
    init_rng, noise_rng = jax.random.split(rng)
    variables = dequantizer.init({"params": init_rng}, noise_rng, value, batch)
    return variables["params"]


def apply_dequantizer(dequantizer: Dequantizer, params: Mapping[str, Any], rng: Array, value: Array,
                      batch: Mapping[str, Array]) -> tuple[Array, Array]:
    """Runs `dequantizer` with its parameters from `params["dequantizer"]` when it is a module."""
    if isinstance(dequantizer, nn.Module):
        if "dequantizer" not in params:
            raise ValueError("The dequantizer is a Flax module but the state has no `params['dequantizer']`; "
                             "pass the same `dequantizer=` to `create_state`.")
        return dequantizer.apply({"params": params["dequantizer"]}, rng, value, batch)
    return dequantizer(rng, value, batch)
