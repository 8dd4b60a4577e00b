"""The dequantizer protocol: turn discrete data into continuous values a flow can model.

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

from typing import Any, Callable, Mapping, Union

import flax.linen as nn
import jax
from jax import Array

DequantizeFn = Callable[[Array, Array, Mapping[str, Array]], tuple[Array, Array]]
Dequantizer = Union[DequantizeFn, nn.Module]


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
