"""The context at the value's resolution: one resize shared by encoders, flows and dequantizers."""

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
