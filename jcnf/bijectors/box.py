"""A box onto the real line: u = logit((value - lower) / (upper - lower)), elementwise.

A posterior over parameters with a uniform (box) prior has no mass outside
the box. A flow fitted to u = logit(...) and mapped back through the sigmoid
puts all of its mass inside, with an exact density; rejecting samples that
fall outside would change the density by an unknown normalizer and waste
draws.
"""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp
from jax import Array


class BoxLogit(distrax.Bijector):
    """value in (lower, upper)^D -> u in R^D (forward); the inverse is lower + (upper - lower) sigmoid(u).

    log|du/dvalue| = -sum_i log((upper_i - lower_i) s_i (1 - s_i)), s = sigmoid(u).
    """

    def __init__(self, lower: Array, upper: Array):
        """Args: lower, upper: the box's corners, [D] each, lower < upper."""
        super().__init__(event_ndims_in=1)
        self.lower = jnp.asarray(lower)
        self.upper = jnp.asarray(upper)

    def _log_det_from_u(self, u: Array) -> Array:
        # log(s (1 - s)) = -softplus(-u) - softplus(u): finite for any u, unlike log(s) + log(1 - s) in float32.
        log_width = jnp.log(self.upper - self.lower)
        terms = log_width.reshape((1,) * (u.ndim - 1) + log_width.shape) - jax.nn.softplus(-u) - jax.nn.softplus(u)
        return -jnp.sum(terms, axis=-1)

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        """Maps value (inside the box) to u; returns (u, log|du/dvalue| [...])."""
        lower = self.lower.reshape((1,) * (x.ndim - 1) + self.lower.shape)
        upper = self.upper.reshape((1,) * (x.ndim - 1) + self.upper.shape)
        unit = (x - lower) / (upper - lower)
        u = jnp.log(unit) - jnp.log1p(-unit)
        return u, self._log_det_from_u(u)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        """Maps u to a value inside the box; returns (value, log|dvalue/du| [...])."""
        lower = self.lower.reshape((1,) * (y.ndim - 1) + self.lower.shape)
        upper = self.upper.reshape((1,) * (y.ndim - 1) + self.upper.shape)
        return lower + (upper - lower) * jax.nn.sigmoid(y), -self._log_det_from_u(y)
