"""Shape arithmetic shared by the per-channel bijectors (ActNorm, the 1x1 convolution)."""

from __future__ import annotations

from jax import Array


def num_positions(x: Array, event_ndims: int) -> int:
    """Number of positions sharing one channel parameter inside an event."""
    count = 1
    for size in x.shape[x.ndim - event_ndims:-1]:
        count *= size
    return count


def per_channel(param: Array, x: Array) -> Array:
    """A per-channel parameter [C] reshaped to [1, ..., 1, C], to broadcast against `x` explicitly."""
    return param.reshape((1,) * (x.ndim - 1) + param.shape[-1:])
