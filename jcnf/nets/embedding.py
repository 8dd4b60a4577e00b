"""Embedding (summary) networks: context [B, ...] -> features [B, features], trained with the flow.

A vector flow's `embedding` field takes any of them; the flow's conditioners
then see the embedded features instead of the raw context:

  * `MLPEmbedding`: a vector context [B, F];
  * `DeepSetEmbedding`: a set of N exchangeable items [B, N, F] (e.g. iid
    observations), invariant to their order by construction (mean pooling);
  * `CNNEmbedding`: an image context [B, H, W, C].
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from jax import Array

from jcnf import _checks


def _mlp(x: Array, hidden: int, depth: int, out: int, prefix: str) -> Array:
    for index in range(depth):
        x = nn.relu(nn.Dense(hidden, name=f"{prefix}_{index}")(x))
    return nn.Dense(out, name=f"{prefix}_out")(x)


class MLPEmbedding(nn.Module):
    """[B, F] -> Dense -> ReLU (depth times) -> Dense -> [B, features].

    Attributes:
      features: size of the summary.
      hidden: width of the hidden layers.
      depth: number of hidden layers.
    """

    features: int = 16
    hidden: int = 64
    depth: int = 2

    @nn.compact
    def __call__(self, context: Array) -> Array:
        """Args: context [B, F]. Returns [B, features]."""
        _checks.check_float_array("context", context, "[batch, context_features] for MLPEmbedding", (2,))
        return _mlp(context, self.hidden, self.depth, self.features, "dense")


class DeepSetEmbedding(nn.Module):
    """rho(mean_n phi(item_n)): a permutation-invariant summary of a set [B, N, F] -> [B, features].

    Mean pooling (rather than a sum) keeps the summary's scale independent of
    the set size, so a model trained on N items also reads sets of other sizes.

    Attributes:
      features: size of the summary.
      hidden: width of phi's and rho's hidden layers.
      depth: hidden layers of phi and of rho each.
    """

    features: int = 16
    hidden: int = 64
    depth: int = 2

    @nn.compact
    def __call__(self, context: Array) -> Array:
        """Args: context [B, N, F] (N items of F features). Returns [B, features]."""
        _checks.check_float_array("context", context, "[batch, items, item_features] for DeepSetEmbedding", (3,))
        items = _mlp(context, self.hidden, self.depth, self.hidden, "phi")
        return _mlp(jnp.mean(items, axis=1), self.hidden, self.depth, self.features, "rho")


class CNNEmbedding(nn.Module):
    """[B, H, W, C] -> stride-2 3x3 convolutions with ReLU -> global mean -> Dense -> [B, features].

    Attributes:
      features: size of the summary.
      channels: output channels of each convolution (each halves H and W).
    """

    features: int = 16
    channels: tuple[int, ...] = (16, 32)

    @nn.compact
    def __call__(self, context: Array) -> Array:
        """Args: context [B, H, W, C]. Returns [B, features]."""
        _checks.check_float_array("context", context, "[batch, height, width, channels] for CNNEmbedding", (4,))
        h = context
        for index, width in enumerate(self.channels):
            h = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2), name=f"conv_{index}")(h))
        return nn.Dense(self.features, name="dense_out")(jnp.mean(h, axis=(1, 2)))
