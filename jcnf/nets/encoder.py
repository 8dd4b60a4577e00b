"""Context encoders: features of the context at every level's resolution."""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp
from jax import Array

from jcnf.nets.context import resize_context


class ResidualBlock(nn.Module):
    """x + conv3x3(ReLU(conv3x3(x))) * residual_scale.

    Scaling the residual branch (0.2, as ESRGAN's RRDB does) keeps a deep
    stack close to the identity at initialization.
    """

    features: int
    residual_scale: float = 0.2
    dtype: Optional[jnp.dtype] = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """X + conv(relu(conv(x))), x [B, H, W, features]."""
        h = nn.relu(nn.Conv(self.features, (3, 3), dtype=self.dtype)(x))
        h = nn.Conv(self.features, (3, 3), dtype=self.dtype)(h)
        return x + self.residual_scale * h


class ContextEncoder(nn.Module):
    """Maps the context to one feature map per flow level.

    An image context of shape [B, H/r, W/r, c] (r = 1 for segmentation, the
    super-resolution factor otherwise) is resized to the value's resolution,
    passed through a stack of residual blocks (`trunk`), and brought to each
    level's resolution H / 2^(l+1) by stride-2 convolutions. A vector context
    [B, d] goes through an MLP and is broadcast over each level's positions.
    Subclasses change the stack by overriding `trunk` (`jcnf.nets.RRDBEncoder`).

    Attributes:
      features: channels of every feature map.
      blocks: residual blocks at full resolution.
      dtype: computation dtype.
      full_resolution: also hand the first level the full-resolution features
        themselves, space-to-depth (each 2x2 block's four feature vectors side
        by side), so its map has 5 * features channels and every pixel of the
        value sees its own features, as a per-pixel model does.
    """

    features: int = 64
    blocks: int = 2
    dtype: Optional[jnp.dtype] = None
    full_resolution: bool = False

    @nn.compact
    def __call__(self, context: Array, value_spatial: tuple[int, int], levels: int) -> list[Array]:
        """Returns a list of `levels` arrays [B, H/2^(l+1), W/2^(l+1), features]."""
        height, width = value_spatial
        if context.ndim == 2:
            h = nn.relu(nn.Dense(self.features, name="stem")(context))
            h = nn.Dense(self.features, name="project")(h)
            return [jnp.broadcast_to(h[:, None, None, :], (h.shape[0], height >> (level + 1), width >> (level + 1),
                                                               self.features)) for level in range(levels)]
        context = resize_context(context, (context.shape[0], height, width))
        h = self.trunk(nn.Conv(self.features, (3, 3), dtype=self.dtype, name="stem")(context))
        full = h
        outputs = []
        for _ in range(levels):
            h = nn.relu(nn.Conv(self.features, (3, 3), strides=(2, 2), dtype=self.dtype)(h))
            outputs.append(h)
        if self.full_resolution:
            batch, height, width, channels = full.shape
            blocks = full.reshape(batch, height // 2, 2, width // 2, 2, channels).transpose(0, 1, 3, 2, 4, 5)
            outputs[0] = jnp.concatenate([outputs[0], blocks.reshape(batch, height // 2, width // 2, 4 * channels)],
                                         axis=-1)
        return outputs

    def trunk(self, h: Array) -> Array:
        """The full-resolution stack: [B, H, W, features] -> [B, H, W, features]."""
        for _ in range(self.blocks):
            h = ResidualBlock(self.features, dtype=self.dtype)(h)
        return h
