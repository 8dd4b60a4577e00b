"""Half-infinite variational dequantization of binary images (Winkler et al. 2019, vessels).

A continuous flow cannot put mass on {0, 1}. The binary value y is instead
lifted to a continuous v on the half-line that y selects,

    v = 0.5 + sign(y - 0.5) * softplus(n),     n ~ q(n | y, x),

so y = 1 maps into (0.5, inf) and y = 0 into (-inf, 0.5), and y = [v > 0.5]
recovers the label from any v. Since the two half-lines partition R, the
probability of y is P(y | x) = integral over its half-line of p_flow(v | x),
and for any density q(v | y, x) on that half-line Jensen's inequality gives

    log P(y | x) >= E_q[ log p_flow(v | x) - log q(v | y, x) ],

which `mle_step` maximizes with this module's `log_correction = -log q(v | y, x)`.
Its `bits_per_dim` is then the negative ELBO in bits per pixel.

q(n | y, x) is a diagonal Gaussian whose mean and scale come from a small
convolutional network on (y, context). Changing variables from n to v,

    log q(v | y, x) = log N(n; mu, sigma^2) - log |dv/dn|,   |dv/dn| = sigmoid(n),

summed over pixels: the softplus Jacobian is what makes q a density on v.
"""

from __future__ import annotations

from typing import Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array

from jcnf import _checks
from jcnf.distributions.gaussian import standardizer
from jcnf.distributions.normal import standard_normal_log_prob
from jcnf.distributions.units import bits_per_dim
from jcnf.nets.context import resize_context

# softplus(n) underflows to 0 for n below about -104 (and 0.5 + x rounds to
# 0.5 in float32 for x < 2^-25), which would put v on the boundary 0.5 and make
# [v > 0.5] wrong for y = 1. The offset from 0.5 is therefore floored at 2^-21,
# a few float32 steps away from 0.5 on either side; q puts mass below ~1e-60
# there (n < -14 standard deviations for a fresh q), so the density is unaffected.
_MIN_OFFSET = 2.0 ** -21
# The Gaussian's log-scale is squashed into (-_LOG_SCALE_BOUND, _LOG_SCALE_BOUND)
# by a tanh: a q narrower than e^-4 gains nothing on binary data and makes
# -log q explode early in training, a wider one than e^4 wastes samples on
# |v| >> 1 where the flow has seen no data.
_LOG_SCALE_BOUND = 4.0

_VALUE_SHAPE = "[batch, height, width, channels]"


def half_infinite_map(n: Array, value: Array) -> tuple[Array, Array]:
    """V = 0.5 + sign(value - 0.5) * softplus(n), elementwise, with log|dv/dn| summed per item.

    Args:
      n: unconstrained noise [B, ...].
      value: binary labels (0 or 1) of the same shape.

    Returns:
      v of n's shape (in (0.5, inf) where value is 1, in (-inf, 0.5) where it
      is 0), and log|dv/dn| = sum log sigmoid(n) over all non-batch axes, [B].
    """
    sign = jnp.where(value > 0.5, 1.0, -1.0).astype(n.dtype)
    offset = jnp.maximum(jax.nn.softplus(n), _MIN_OFFSET)
    log_det = jnp.sum(jax.nn.log_sigmoid(n), axis=tuple(range(1, n.ndim)))
    return 0.5 + sign * offset, log_det


def half_infinite_inverse(v: Array) -> tuple[Array, Array]:
    """Inverse of `half_infinite_map`: (value in {0, 1}, n) from v, elementwise.

    n = softplus^-1(|v - 0.5|) = log(expm1(|v - 0.5|)), exact away from the
    floor at 2^-21 that `half_infinite_map` applies.
    """
    offset = jnp.maximum(jnp.abs(v - 0.5), _MIN_OFFSET)
    # log(expm1(x)) = x + log(1 - e^-x): no overflow for large offsets.
    n = offset + jnp.log(-jnp.expm1(-offset))
    return binarize(v), n


def binarize(v: Array) -> Array:
    """The label of a dequantized value: 1.0 where v > 0.5, else 0.0 (same shape and dtype)."""
    return (v > 0.5).astype(v.dtype)


def soft_image(samples: Array) -> Array:
    """Per-pixel frequency of label 1 over samples: the mean of `binarize(samples)` over axis 0.

    Args:
      samples: dequantized samples v, [num_samples, B, H, W, C].

    Returns:
      The soft image in [0, 1], [B, H, W, C].
    """
    _checks.check_float_array("samples", samples, "[num_samples, batch, height, width, channels]", (5,))
    return jnp.mean(binarize(samples), axis=0)


class BinaryDequantizer(nn.Module):
    """q(v | value, context) on the half-line of each binary label; a `jcnf.train` dequantizer.

    `(rng, value, batch) -> (v, -log q(v | value, context) [B])` with value in
    {0, 1} of shape [B, H, W, C] (float). Pass the same instance to
    `create_state(..., dequantizer=dq)` and `mle_step(model, dequantizer=dq)`;
    its parameters live in `state.params["dequantizer"]`.

    Attributes:
      hidden: channels of the convolutional network that maps (value, context)
        to the Gaussian's mean and log-scale.
      layers: hidden 3x3 convolutions of that network.
      use_context: condition q on `batch["context"]` as well as on the value.
    """

    hidden: int = 16
    layers: int = 2
    use_context: bool = True

    @nn.compact
    def gaussian_params(self, value: Array, context: Optional[Array] = None) -> tuple[Array, Array]:
        """Mean and log-scale of q(n | value, context), each of the value's shape [B, H, W, C]."""
        _checks.check_float_array("value", value, _VALUE_SHAPE, (4,))
        # Labels as -1 / +1 keep a fresh network's inputs centred.
        parts = [2.0 * value - 1.0]
        if self.use_context and context is not None:
            _checks.check_float_array("context", context, "[batch, h, w, c] or [batch, features]", (2, 4))
            parts.append(resize_context(context, value.shape).astype(value.dtype))
        h = jnp.concatenate(parts, axis=-1)
        for _ in range(self.layers):
            h = nn.relu(nn.Conv(self.hidden, (3, 3))(h))
        # Zero init: a fresh q is N(0, 1) on n, the same for every pixel.
        out = nn.Conv(2 * value.shape[-1], (3, 3), kernel_init=nn.initializers.zeros)(h)
        mean, raw_log_scale = jnp.split(out, 2, axis=-1)
        return mean, _LOG_SCALE_BOUND * jnp.tanh(raw_log_scale / _LOG_SCALE_BOUND)

    def noise_and_log_density(self, eps: Array, value: Array, context: Optional[Array] = None
                              ) -> tuple[Array, Array]:
        """Maps standard-normal `eps` to v and its log-density log q(v | value, context).

        Args:
          eps: [B, H, W, C], standard normal.
          value: [B, H, W, C], labels in {0, 1}.
          context: [B, h, w, c] image or [B, d] vector, or None.

        Returns:
          v [B, H, W, C] on each label's half-line, and log q(v | value, context) [B].
        """
        if eps.shape != value.shape:
            raise ValueError(f"`eps` must have the value's shape {tuple(value.shape)}; got {_checks.describe(eps)}.")
        mean, log_scale = self.gaussian_params(value, context)
        n, scale_log_det = standardizer(mean, log_scale, 3).inverse_and_log_det(eps)
        v, log_det = half_infinite_map(n, value)
        log_q_n = standard_normal_log_prob(eps, 3) - scale_log_det
        return v, log_q_n - log_det

    def log_density(self, v: Array, context: Optional[Array] = None) -> Array:
        """Log q(v | [v > 0.5], context) of given dequantized values v [B, H, W, C]; returns [B].

        The inverse route of `noise_and_log_density` (v -> n -> eps), for
        checking that q is a normalized density on each half-line.
        """
        _checks.check_float_array("v", v, _VALUE_SHAPE, (4,))
        value, n = half_infinite_inverse(v)
        mean, log_scale = self.gaussian_params(value, context)
        eps, scale_log_det = standardizer(mean, log_scale, 3).forward_and_log_det(n)
        log_det = jnp.sum(jax.nn.log_sigmoid(n), axis=(1, 2, 3))
        return standard_normal_log_prob(eps, 3) + scale_log_det - log_det

    def __call__(self, rng: Array, value: Array, batch: Mapping[str, Array]) -> tuple[Array, Array]:
        """Dequantizes binary `value` [B, H, W, C]; returns (v, -log q(v | value, context) [B])."""
        _checks.check_float_array("value", value, _VALUE_SHAPE, (4,))
        context = batch.get("context") if self.use_context else None
        eps = jax.random.normal(rng, value.shape, value.dtype)
        v, log_q = self.noise_and_log_density(eps, value, context)
        return v, -log_q


def elbo_bits_per_pixel(log_prob_flow: Array, log_correction: Array, num_pixels: int) -> Array:
    """Negative ELBO in bits per pixel: -(log p_flow(v | x) - log q(v | y, x)) / (D ln 2), per item.

    Args:
      log_prob_flow: log p_flow(v | x) in nats, [B].
      log_correction: -log q(v | y, x) from the dequantizer, [B].
      num_pixels: D, label entries per item (H * W * C).

    Returns:
      [B]; an upper bound on -log2 P(y | x) / D.
    """
    _checks.check_int("num_pixels", num_pixels)
    return bits_per_dim(log_prob_flow + log_correction, num_pixels)
