"""The RRDB context encoder: residual-in-residual dense blocks (ESRGAN, Wang et al. 2018).

Winkler et al. (2019) condition their super-resolution flows on the features
of an RRDB network, the trunk of ESRGAN: 16 blocks of 128 channels in their
setting. Each residual-in-residual dense block (RRDB) chains three residual
dense blocks (RDB); in an RDB every convolution reads the concatenation of
the block's input and all earlier outputs ("dense"), and the block adds its
scaled output to its input:

    RDB(x)  = x + 0.2 * conv_5([x, y_1, ..., y_4]),
              y_i = LeakyReLU_0.2(conv_i([x, y_1, ..., y_{i-1}])) of `growth` channels,
    RRDB(x) = x + 0.2 * RDB_3(RDB_2(RDB_1(x))),
    trunk(h) = h + conv(RRDB_n(... RRDB_1(h))).
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp
from jax import Array

from jcnf.nets.encoder import ContextEncoder

# Residual branches are scaled by 0.2 and the dense convolutions start at a
# tenth of He initialization (variance 2/fan_in * 0.1^2), as in ESRGAN: each
# dense block then starts within a few percent of the identity and each RRDB
# near 1.2 times it, so a deep trunk starts as a nearly linear map of the
# context (features grow ~1.2^blocks) rather than the noise of a deep
# random network.
_RESIDUAL_SCALE = 0.2
_DENSE_INIT = nn.initializers.variance_scaling(0.02, "fan_in", "normal")


def _leaky_relu(x: Array) -> Array:
    return nn.leaky_relu(x, negative_slope=0.2)


class ResidualDenseBlock(nn.Module):
    """x + 0.2 * conv_5([x, y_1, ..., y_4]) with densely connected y_i of `growth` channels.

    Attributes:
      features: channels of the input and output.
      growth: channels each of the four inner convolutions adds.
      dtype: computation dtype.
    """

    features: int
    growth: int = 32
    dtype: Optional[jnp.dtype] = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Args: x [B, H, W, features]. Returns [B, H, W, features]."""
        dense = x
        for _ in range(4):
            y = _leaky_relu(nn.Conv(self.growth, (3, 3), kernel_init=_DENSE_INIT, dtype=self.dtype)(dense))
            dense = jnp.concatenate([dense, y], axis=-1)
        out = nn.Conv(self.features, (3, 3), kernel_init=_DENSE_INIT, dtype=self.dtype)(dense)
        return x + _RESIDUAL_SCALE * out


class RRDB(nn.Module):
    """x + 0.2 * RDB_3(RDB_2(RDB_1(x))): a residual-in-residual dense block.

    Attributes:
      features: channels of the input and output.
      growth: growth channels of each residual dense block.
      dtype: computation dtype.
    """

    features: int
    growth: int = 32
    dtype: Optional[jnp.dtype] = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Args: x [B, H, W, features]. Returns [B, H, W, features]."""
        h = x
        for _ in range(3):
            h = ResidualDenseBlock(self.features, self.growth, dtype=self.dtype)(h)
        return x + _RESIDUAL_SCALE * h


class RRDBEncoder(ContextEncoder):
    """A `ContextEncoder` whose full-resolution stack is `blocks` RRDBs with a long skip.

    Same interface and resizing as `ContextEncoder`: an image context
    [B, H/r, W/r, c] is resized to the value's resolution, a 3x3 convolution
    brings it to `features` channels, the RRDB trunk runs, and stride-2
    convolutions give the feature map of each level, [B, H/2^(l+1),
    W/2^(l+1), features]; a vector context goes through the same MLP. The
    setting of Winkler et al. is features=128, blocks=16, growth=32.

    Attributes:
      features: channels of every feature map.
      blocks: RRDBs at full resolution (>= 1).
      growth: growth channels of the dense blocks.
      dtype: computation dtype.
    """

    growth: int = 32

    def trunk(self, h: Array) -> Array:
        """Returns h + conv3x3(RRDB_n(... RRDB_1(h))): [B, H, W, features] -> [B, H, W, features]."""
        if self.blocks < 1 or self.growth < 1:
            raise ValueError(f"`blocks` and `growth` must be >= 1; got blocks={self.blocks}, growth={self.growth}.")
        body = h
        for _ in range(self.blocks):
            body = RRDB(self.features, self.growth, dtype=self.dtype)(body)
        return h + nn.Conv(self.features, (3, 3), dtype=self.dtype)(body)


# The context encoders a flow or baseline can be built with, by name.
ENCODERS = {"residual": ContextEncoder, "rrdb": RRDBEncoder}


def make_encoder(kind: str, features: int, blocks: int, dtype=None, **kwargs) -> ContextEncoder:
    """The context encoder of `kind` ("residual" or "rrdb"); a ValueError names `encoder` otherwise."""
    if kind not in ENCODERS:
        raise ValueError(f"`encoder` must be one of {tuple(ENCODERS)}; got {kind!r}.")
    return ENCODERS[kind](features, blocks, dtype=dtype, **kwargs)
