"""The factorized Bernoulli baseline of binary segmentation.

p(y | x) = prod_i Bernoulli(y_i; sigmoid(logit_i(x))): every pixel's label is
independent given the context, its logit predicted by a convolutional
encoder (the `ResidualBlock` stack the conditional flows' `ContextEncoder`
uses). Trained by maximum likelihood it is the per-pixel cross-entropy model;
with `positive_weight` > 1 it is the class-weighted cross-entropy that
segmentation networks use for thin structures (then the loss is no longer a
likelihood, and its bits per pixel are not comparable to a flow's bound).

Its soft image is sigmoid(logits); a sample draws every pixel independently
from it, which is what Winkler et al. (2019) contrast with the conditional
flow's samples: independent pixels cannot draw connected, calibrated vessels.

The module has the flow's training interface (`__call__` and `log_prob` of
(value, context) in nats per item), so `jcnf.train.mle_step` and `fit` train it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array

from jcnf import _checks
from jcnf.flows.registry import register
from jcnf.nets.encoder import ResidualBlock

_IMAGE = "[batch, height, width, channels]"


def bernoulli_log_prob(value: Array, logits: Array, positive_weight: float = 1.0) -> Array:
    """sum_i w_i log Bernoulli(value_i; sigmoid(logits_i)) per item, w = positive_weight on positives.

    Args:
      value: labels in {0, 1}, [B, ...].
      logits: same shape.
      positive_weight: weight of the positive pixels' terms (1 gives the log-likelihood).

    Returns:
      [B], in nats.
    """
    # log sigmoid(l) for y = 1 and log sigmoid(-l) for y = 0, without log(0).
    per_pixel = jnp.where(value > 0.5, positive_weight * jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits))
    return jnp.sum(per_pixel, axis=tuple(range(1, value.ndim)))


@register
class FactorizedBernoulli(nn.Module):
    """p(y | x) = prod_i Bernoulli(y_i; sigmoid(f(x)_i)) for binary images y [B, H, W, C].

    The context is an image at the value's resolution [B, H, W, c].

    Attributes:
      features: channels of the encoder.
      blocks: residual blocks of the encoder.
      hidden: channels of the 3x3 head before the 1x1 logit layer.
      out_channels: label channels C.
      positive_weight: class weight of positive pixels in `log_prob` (1: the likelihood).
    """

    features: int = 32
    blocks: int = 2
    hidden: int = 32
    out_channels: int = 1
    positive_weight: float = 1.0

    @nn.compact
    def logits(self, context: Array) -> Array:
        """Per-pixel logits [B, H, W, out_channels] of the context image [B, H, W, c]."""
        _checks.check_float_array("context", context, _IMAGE, (4,))
        h = nn.Conv(self.features, (3, 3))(context)
        for _ in range(self.blocks):
            h = ResidualBlock(self.features)(h)
        h = nn.relu(nn.Conv(self.hidden, (3, 3))(h))
        return nn.Conv(self.out_channels, (1, 1))(h)

    def probabilities(self, context: Array) -> Array:
        """The soft image sigmoid(logits), [B, H, W, out_channels]."""
        return jax.nn.sigmoid(self.logits(context))

    def log_prob(self, value: Array, context: Array) -> Array:
        """(Weighted) log-likelihood of binary `value` [B, H, W, C] per item, [B] nats."""
        _checks.check_float_array("value", value, _IMAGE, (4,))
        _checks.check_same_batch("value", value, "context", context)
        logits = self.logits(context)
        if logits.shape != value.shape:
            raise ValueError(f"`value` must have shape {tuple(logits.shape)} (the context's height and width, "
                             f"{self.out_channels} channel(s)); got {_checks.describe(value)}.")
        return bernoulli_log_prob(value, logits, self.positive_weight)

    def __call__(self, value: Array, context: Array) -> Array:
        """Log p(value | context), shape [batch] (what `init` runs)."""
        return self.log_prob(value, context)

    def sample(self, rng: Array, context: Array) -> Array:
        """One binary image per context row, every pixel drawn independently, [B, H, W, C] float."""
        probs = self.probabilities(context)
        return (jax.random.uniform(rng, probs.shape) < probs).astype(probs.dtype)
