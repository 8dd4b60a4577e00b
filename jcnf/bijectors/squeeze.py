"""Squeeze: space-to-depth by a factor of 2, a volume-preserving reshape."""

from __future__ import annotations

import distrax
import jax.numpy as jnp
from jax import Array


def squeeze2x2(x: Array) -> Array:
    """[..., H, W, C] -> [..., H/2, W/2, 4C], each 2x2 block moved to channels."""
    *lead, h, w, c = x.shape
    x = x.reshape(*lead, h // 2, 2, w // 2, 2, c)
    x = jnp.swapaxes(x, -4, -3)  # [..., H/2, W/2, 2 (rows), 2 (cols), C]
    return x.reshape(*lead, h // 2, w // 2, 4 * c)


def unsqueeze2x2(x: Array) -> Array:
    """Inverse of `squeeze2x2`: [..., H, W, 4C] -> [..., 2H, 2W, C]."""
    *lead, h, w, c4 = x.shape
    c = c4 // 4
    x = x.reshape(*lead, h, w, 2, 2, c)
    x = jnp.swapaxes(x, -4, -3)  # [..., H, 2 (rows), W, 2 (cols), C]
    return x.reshape(*lead, 2 * h, 2 * w, c)


class Squeeze(distrax.Bijector):
    """Space-to-depth 2x2 on NHWC events; the log-det is zero."""

    def __init__(self):
        super().__init__(event_ndims_in=3, is_constant_jacobian=True)

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        """Maps x forward; returns (y, log|det dy/dx|) with the batch shape."""
        if x.shape[-3] % 2 or x.shape[-2] % 2:
            raise ValueError(f"Squeeze needs even height and width; got input shape {x.shape}.")
        return squeeze2x2(x), jnp.zeros(x.shape[:-3], x.dtype)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        """Maps y back; returns (x, log|det dx/dy|) with the batch shape."""
        if y.shape[-1] % 4:
            raise ValueError(f"Squeeze's inverse needs channels divisible by 4; got input shape {y.shape}.")
        return unsqueeze2x2(y), jnp.zeros(y.shape[:-3], y.dtype)
