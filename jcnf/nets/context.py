"""The context at the value's resolution: one resize shared by encoders, flows and dequantizers.

Also the upsamplings a super-resolution model subtracts from (or adds to)
its value: nearest neighbour, and the sharper back-projected bicubic one.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from jax import Array

from jcnf import _checks


def resize_context(context: Array, value_shape: Sequence[int], name: str = "context") -> Array:
    """The context at the value's height and width, [batch, height, width, c].

    An image context [batch, h, w, c] is resized by nearest neighbour, which
    keeps every low-resolution pixel's value intact (the convolutions that
    follow learn any interpolation); one already at height x width is
    returned unchanged. A vector context [batch, c] is broadcast to every
    position. The batch size is checked first: `jax.image.resize` would
    otherwise silently stretch a context of another batch size over the
    values.

    Args:
      context: [batch, h, w, c] or [batch, c].
      value_shape: the value's shape (batch, height, width, ...); only its
        first three entries are read.
      name: the argument's name in error messages.

    Returns:
      The context [batch, height, width, c], in the context's dtype.
    """
    batch, height, width = (int(size) for size in value_shape[:3])
    expected = f"[{batch}, h, w, c] or [{batch}, c] (the value's batch size {batch})"
    if getattr(context, "ndim", None) not in (2, 4) or context.shape[0] != batch:
        raise ValueError(f"`{name}` must have shape {expected}; got {_checks.describe(context)}.")
    channels = context.shape[-1]
    if context.ndim == 2:
        return jnp.broadcast_to(context[:, None, None, :], (batch, height, width, channels))
    if context.shape[1:3] == (height, width):
        return context
    return jax.image.resize(context, (batch, height, width, channels), "nearest")


SKIPS = ("backprojected", "nearest")


def _check_low_res(context: Array, value_shape: Sequence[int], name: str) -> int:
    """The integer factor r from `context` [batch, height/r, width/r, c] to the value's resolution."""
    batch, height, width = (int(size) for size in value_shape[:3])
    expected = f"[{batch}, {height}/r, {width}/r, c] for one integer factor r"
    if getattr(context, "ndim", None) != 4 or context.shape[0] != batch or 0 in context.shape[1:3]:
        raise ValueError(f"`{name}` must have shape {expected}; got {_checks.describe(context)}.")
    factor = height // context.shape[1]
    if context.shape[1] * factor != height or context.shape[2] * factor != width:
        raise ValueError(f"`{name}` must have shape {expected}; got {_checks.describe(context)}.")
    return factor


def _block_means(image: Array, factor: int) -> Array:
    # Area downsampling (`jcnf.data.area_downsample`), here in the image's own
    # dtype and without importing the data layer into the networks.
    batch, height, width, channels = image.shape
    return image.reshape(batch, height // factor, factor, width // factor, factor, channels).mean(axis=(2, 4))


def backprojected_upsample(context: Array, value_shape: Sequence[int], name: str = "context") -> Array:
    """Bicubic upsampling corrected so that every r x r block averages to its low-resolution pixel.

    up = bicubic(low); result = up + nearest(low - area_down(up)). One
    back-projection step: the bicubic image is smooth but its block means
    differ slightly from the low-resolution pixels; adding each block's
    error back uniformly over the block makes the block means exact (they
    equal `context` up to float rounding) while keeping the bicubic detail.
    For area-downsampled data the residual value - result therefore has
    zero block means, like the nearest-neighbour residual, but is smaller
    where the image is smooth.

    Args:
      context: the low-resolution image [batch, height/r, width/r, c], r an
        integer.
      value_shape: the value's shape (batch, height, width, ...); only its
        first three entries are read.
      name: the argument's name in error messages.

    Returns:
      [batch, height, width, c] in the context's dtype; `context` itself when
      it is already at the value's resolution.
    """
    factor = _check_low_res(context, value_shape, name)
    if factor == 1:
        return context
    batch, height, width = (int(size) for size in value_shape[:3])
    up = jax.image.resize(context, (batch, height, width, context.shape[-1]), "bicubic").astype(context.dtype)
    error = context - _block_means(up, factor)
    return up + jnp.repeat(jnp.repeat(error, factor, axis=1), factor, axis=2)


def upsample_context(context: Array, value_shape: Sequence[int], skip: str = "backprojected",
                     name: str = "context") -> Array:
    """The low-resolution `context` at the value's resolution, by the `skip` method.

    Args:
      context: [batch, height/r, width/r, c], r an integer.
      value_shape: the value's shape (batch, height, width, ...).
      skip: "backprojected" (`backprojected_upsample`) or "nearest" (each
        pixel copied over its block).
      name: the argument's name in error messages.

    Returns:
      [batch, height, width, c]; either way every block's mean is its
      low-resolution pixel.
    """
    if skip not in SKIPS:
        raise ValueError(f"`skip` must be one of {SKIPS}; got {skip!r}.")
    if skip == "nearest":
        _check_low_res(context, value_shape, name)
        return resize_context(context, value_shape, name)
    return backprojected_upsample(context, value_shape, name)
