"""Conditioner networks of the couplings: they see half the value and the context."""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp
from jax import Array

from jcnf.nets.conv import Conv2D


class ConvCouplingNet(nn.Module):
    """concat(x_half, h) -> conv3x3 -> ReLU -> conv1x1 -> ReLU -> zero conv3x3.

    The last convolution starts at zero so that a fresh coupling is the
    identity and a fresh flow is a stack of ActNorms and rotations.

    Attributes:
      out_channels: conditioner outputs per position.
      hidden: width of the hidden convolutions.
      dtype: computation dtype (e.g. bfloat16); parameters stay float32.
    """

    out_channels: int
    hidden: int = 512
    dtype: Optional[jnp.dtype] = None

    @nn.compact
    def __call__(self, x_half: Array, features: Optional[Array]) -> Array:
        """Args: x_half [B, H, W, C1]; features [B, H, W, F] or None. Returns [B, H, W, out]."""
        inputs = x_half if features is None else jnp.concatenate([x_half, features.astype(x_half.dtype)], -1)
        # Conv2D rather than nn.Conv: these nets run inside the flow's scan over
        # blocks, where only Conv2D's gradient stays fast on CPU (jcnf.nets.conv).
        h = nn.relu(Conv2D(self.hidden, (3, 3), dtype=self.dtype, name="conv_in")(inputs))
        h = nn.relu(Conv2D(self.hidden, (1, 1), dtype=self.dtype, name="conv_hidden")(h))
        out = Conv2D(self.out_channels, (3, 3), kernel_init=nn.initializers.zeros, dtype=self.dtype,
                     name="conv_out")(h)
        return out.astype(x_half.dtype)


class MLPCouplingNet(nn.Module):
    """concat(x_half, context) -> Dense -> ReLU -> Dense -> ReLU -> zero Dense.

    Attributes:
      out_features: conditioner outputs.
      hidden: width of the hidden layers.
      depth: number of hidden layers.
    """

    out_features: int
    hidden: int = 64
    depth: int = 2

    @nn.compact
    def __call__(self, x_half: Array, context: Optional[Array]) -> Array:
        """Args: x_half [B, D1]; context [B, F] or None. Returns [B, out_features]."""
        h = x_half if context is None else jnp.concatenate([x_half, context], -1)
        for layer in range(self.depth):
            h = nn.relu(nn.Dense(self.hidden, name=f"hidden_{layer}")(h))
        return nn.Dense(self.out_features, kernel_init=nn.initializers.zeros, name="output")(h)
