"""ActNorm: a per-channel affine map with data-dependent initialization (Glow)."""

from __future__ import annotations

import distrax
import jax.numpy as jnp
from jax import Array

from jcnf.bijectors._shape import num_positions, per_channel


class ActNorm(distrax.Bijector):
    """y = (x + loc) * exp(log_scale), per channel (the last axis).

    The forward direction maps value towards latent. Parameters are shared over
    every non-channel axis of the event, so the log-det is the sum of
    `log_scale` times the number of positions (height * width for images).
    """

    def __init__(self, loc: Array, log_scale: Array, event_ndims: int = 3):
        """Initializes the bijector.

        Args:
          loc: per-channel shift, shape [channels].
          log_scale: per-channel log scale, shape [channels].
          event_ndims: rank of one event (3 for HWC images, 1 for vectors).
        """
        super().__init__(event_ndims_in=event_ndims)
        self.loc = loc
        self.log_scale = log_scale

    def _log_det(self, x: Array) -> Array:
        log_det = num_positions(x, self.event_ndims_in) * jnp.sum(self.log_scale)
        return jnp.broadcast_to(log_det, x.shape[:x.ndim - self.event_ndims_in])

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        """Maps x forward; returns (y, log|det dy/dx|) with the batch shape."""
        return (x + per_channel(self.loc, x)) * jnp.exp(per_channel(self.log_scale, x)), self._log_det(x)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        """Maps y back; returns (x, log|det dx/dy|) with the batch shape."""
        return y * jnp.exp(-per_channel(self.log_scale, y)) - per_channel(self.loc, y), -self._log_det(y)


def actnorm_initial_params(x: Array, eps: float = 1e-6) -> tuple[Array, Array]:
    """Data-dependent init: the first batch leaves ActNorm zero-mean, unit-variance.

    Args:
      x: a batch of inputs, channels last.
      eps: keeps the log-scale finite for a channel that is constant in the batch.

    Returns:
      (loc, log_scale), each of shape [channels].
    """
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    std = jnp.std(x, axis=axes)
    return -mean, -jnp.log(std + eps)
