"""The factorized discretized-logistic baseline of conditional super-resolution.

p(value | context) = prod_i P(value_i | context): every sub-pixel is an
independent mixture of logistics discretized to the data's bins, its
parameters predicted from the context by the same `ContextEncoder` the
conditional flows use (Winkler et al. 2019 compare their CNF against exactly
this kind of model). Given the context, the sub-pixels are independent: the
model cannot express that the four high-resolution pixels of a block must
average to their low-resolution pixel, which is what a conditional flow can.

Bins follow the data convention of `jcnf.dequantize.uniform_dequantization`: the
value k / num_bins, k in {0, ..., num_bins - 1}, stands for the interval
[k / num_bins, (k + 1) / num_bins); the first and last bins take the tails,
so the probabilities of the num_bins bins sum to one.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array

from jcnf import _checks
from jcnf.bijectors.squeeze import unsqueeze2x2
from jcnf.flows.base import make_shape_marker
from jcnf.nets.context import SKIPS, upsample_context
from jcnf.nets.encoder import ResidualBlock
from jcnf.nets.rrdb import make_encoder

# A logistic narrower than e^-7 (~1/1100 of the unit range, a quarter of an
# 8-bit bin) cannot gain likelihood and only makes the gradients stiff; the
# upper bound keeps exp(log_scale) far from overflow.
_MIN_LOG_SCALE = -7.0
_MAX_LOG_SCALE = 3.0
# A fresh head outputs small numbers; offsetting the log-scale starts every
# logistic at a width of ~5 bins of 8-bit data (e^-4 of the unit range), the
# order of a natural image's residual after upsampling, instead of the whole
# range, so the first steps are not spent shrinking the scales.
_INITIAL_LOG_SCALE = -4.0


def discretized_logistic_log_prob(value: Array, mean: Array, log_scale: Array, num_bins: int = 256) -> Array:
    """Log P(bin of `value`) under a logistic(mean, exp(log_scale)) discretized to `num_bins` bins.

    Elementwise; broadcasts its arguments. The mass of the bin
    [k/n, (k+1)/n) is sigma(b) - sigma(a) with a, b the standardized bin
    edges, computed as log sigma(b) + log sigma(-a) + log(1 - e^(a-b)),
    which is exact and free of cancellation even far in the tails. The
    first bin takes (-inf, 1/n) and the last [(n-1)/n, inf).

    Args:
      value: data k / num_bins, any shape (float).
      mean: location of the logistic, broadcastable to `value`.
      log_scale: log of the logistic's scale, broadcastable to `value`.
      num_bins: number of discrete levels n.

    Returns:
      Log-probabilities (nats), the broadcast shape.
    """
    _checks.check_int("num_bins", num_bins, 2)
    # Rounding recovers the integer level even after float arithmetic on value.
    level = jnp.clip(jnp.round(value * num_bins), 0, num_bins - 1)
    inv_scale = jnp.exp(-log_scale)
    lower = (level / num_bins - mean) * inv_scale
    upper = ((level + 1) / num_bins - mean) * inv_scale
    interior = (jax.nn.log_sigmoid(upper) + jax.nn.log_sigmoid(-lower)
                + jnp.log(-jnp.expm1(lower - upper)))
    # Selects, not infinite edges: the unused branches stay finite, so the
    # gradients through jnp.where stay finite too.
    return jnp.where(level == 0, jax.nn.log_sigmoid(upper),
                     jnp.where(level == num_bins - 1, jax.nn.log_sigmoid(-lower), interior))


def mixture_log_prob(value: Array, logits: Array, means: Array, log_scales: Array, num_bins: int = 256) -> Array:
    """Log P(bin of `value`) under a mixture of discretized logistics.

    Args:
      value: data k / num_bins, shape [...].
      logits: mixture logits, shape [..., M].
      means: component means, shape [..., M].
      log_scales: component log-scales, shape [..., M].
      num_bins: number of discrete levels.

    Returns:
      Log-probabilities, shape [...].
    """
    components = discretized_logistic_log_prob(value[..., None], means, log_scales, num_bins)
    return jax.nn.logsumexp(jax.nn.log_softmax(logits, axis=-1) + components, axis=-1)


def mixture_mode(logits: Array, means: Array, log_scales: Array, num_bins: int = 256) -> Array:
    """The most probable bin k / num_bins of each mixture, shape [...] (components on the last axis).

    Exact: every bin is scored, one at a time, so memory stays that of one
    evaluation rather than num_bins of them.
    """
    shape = logits.shape[:-1]

    def score_bin(level: int, best: tuple[Array, Array]) -> tuple[Array, Array]:
        best_log_prob, best_value = best
        value = jnp.full(shape, level / num_bins, means.dtype)
        log_prob = mixture_log_prob(value, logits, means, log_scales, num_bins)
        better = log_prob > best_log_prob
        return jnp.where(better, log_prob, best_log_prob), jnp.where(better, value, best_value)

    start = (jnp.full(shape, -jnp.inf, means.dtype), jnp.zeros(shape, means.dtype))
    return jax.lax.fori_loop(0, num_bins, score_bin, start)[1]


def mixture_sample(rng: Array, logits: Array, means: Array, log_scales: Array, temperature: Array,
                   num_bins: int = 256) -> Array:
    """Draws a bin k / num_bins from each mixture, the logistic's scale multiplied by `temperature`.

    A component is drawn from the (untempered) mixture weights, then
    x = mean + temperature * scale * logit(u), u ~ U(0, 1), and x is floored
    to its bin (clipped to the first and last bins).

    Returns:
      Values on the grid k / num_bins, shape [...].
    """
    _checks.check_int("num_bins", num_bins, 2)
    component_rng, noise_rng = jax.random.split(rng)
    component = jax.random.categorical(component_rng, logits, axis=-1)
    pick = lambda x: jnp.take_along_axis(x, component[..., None], axis=-1)[..., 0]  # noqa: E731
    u = jax.random.uniform(noise_rng, component.shape, means.dtype, 1e-6, 1.0 - 1e-6)
    x = pick(means) + temperature * jnp.exp(pick(log_scales)) * (jnp.log(u) - jnp.log1p(-u))
    return jnp.clip(jnp.floor(x * num_bins), 0, num_bins - 1) / num_bins


class DiscretizedLogisticBaseline(nn.Module):
    """Factorized p(value | context): a mixture of discretized logistics per sub-pixel.

    The context goes through `ContextEncoder` (the one of `ConditionalGlow`)
    to features at half the value's resolution (the resolution of the flow's
    first level); a convolutional head of `head_blocks` residual blocks of
    width `hidden` predicts the parameters of the four sub-pixels of each
    2x2 block, which a depth-to-space puts at full resolution. With
    `context_skip`, the means are offsets from the context upsampled to full
    resolution by `skip` (that of `jcnf.SuperResolutionGlow`), so a fresh
    model already predicts that upsampling.

    Methods follow the flows': `log_prob(value, context)` [B] in nats (of the
    discrete value; no dequantization, no correction), `sample(rng, context,
    temperature)` (temperature 0 gives `mode`), `mode(context)`. Train it
    with `jcnf.train.mle_step(baseline)` and the default
    `no_dequantization`: its `bits_per_dim` is then the discrete likelihood's.

    Attributes:
      hidden: width of the head.
      head_blocks: residual blocks of the head.
      num_mixtures: logistic components per sub-pixel.
      context_features: channels of the encoder's features.
      encoder_blocks: residual blocks of the encoder.
      encoder: "residual" (`jcnf.nets.ContextEncoder`) or "rrdb" (`jcnf.nets.RRDBEncoder`), as in
        `ConditionalGlow`.
      num_bins: discrete levels of the data (256 for 8-bit).
      context_skip: add the upsampled context to the means (needs as many
        context channels as value channels).
      skip: the upsampling of `context_skip`, "backprojected" (bicubic,
        block means corrected; `jcnf.nets.backprojected_upsample`) or
        "nearest".
      dtype: computation dtype of the networks.
    """

    hidden: int = 64
    head_blocks: int = 2
    num_mixtures: int = 5
    context_features: int = 64
    encoder_blocks: int = 2
    encoder: str = "residual"
    num_bins: int = 256
    context_skip: bool = True
    skip: str = "backprojected"
    dtype: Optional[jnp.dtype] = None

    def _check(self, value: Optional[Array], context: Array, event_shape: tuple[int, ...]) -> None:
        _checks.check_float_array("context", context, "[batch, height/r, width/r, channels]", (4,))
        if value is not None:
            _checks.check_float_array("value", value, "[batch, height, width, channels]", (4,))
            _checks.check_same_batch("value", value, "context", context)
        height, width, channels = event_shape
        if height % 2 or width % 2:
            raise ValueError(f"`value` height and width must be even; got event shape {tuple(event_shape)}.")
        ch, cw = context.shape[1:3]
        if height % ch or width % cw or height // ch != width // cw:
            raise ValueError(f"`context` must be the value's resolution {height}x{width} divided by one integer "
                             f"factor; got {_checks.describe(context)}.")
        if self.skip not in SKIPS:
            raise ValueError(f"`skip` must be one of {SKIPS}; got {self.skip!r}.")
        if self.context_skip and context.shape[-1] != channels:
            raise ValueError(f"`context_skip=True` needs a context with the value's {channels} channels; got "
                             f"{_checks.describe(context)}. Use `context_skip=False`.")

    @nn.compact
    def mixture_params(self, context: Array, value: Optional[Array] = None) -> tuple[Array, Array, Array]:
        """The per-sub-pixel mixture (logits, means, log_scales), each [B, H, W, C, M].

        Args:
          context: [B, H/r, W/r, c].
          value: [B, H, W, C], needed at initialization (it fixes the event
            shape, remembered for `sample` and `mode`); otherwise optional.
        """
        if self.num_mixtures < 1 or self.num_bins < 2:
            raise ValueError(f"Need `num_mixtures` >= 1 and `num_bins` >= 2; got {self.num_mixtures}, "
                             f"{self.num_bins}.")
        # Ranks and dtypes first: the shape marker below would otherwise fail
        # with a Flax shape error on a value of the wrong rank.
        _checks.check_float_array("context", context, "[batch, height/r, width/r, channels]", (4,))
        if value is not None:
            _checks.check_float_array("value", value, "[batch, height, width, channels]", (4,))
        # Only the value's shape is read: it is remembered in the parameters.
        event_shape = make_shape_marker()(None if value is None else tuple(value.shape[1:]))
        self._check(value, context, event_shape)
        height, width, channels = event_shape
        outputs = 2 if self.num_mixtures == 1 else 3 * self.num_mixtures
        features = make_encoder(self.encoder, self.context_features, self.encoder_blocks, dtype=self.dtype)(
            context, (height, width), 1)[0]
        h = nn.relu(nn.Conv(self.hidden, (3, 3), dtype=self.dtype)(features))
        for _ in range(self.head_blocks):
            h = ResidualBlock(self.hidden, dtype=self.dtype)(h)
        # One output per parameter of each of the four sub-pixels of a 2x2 block.
        # A small output layer starts the means near the skip (the upsampled
        # context), yet not at zero: identical mixture components would
        # receive identical gradients and never separate.
        out = nn.Conv(4 * channels * outputs, (3, 3), dtype=self.dtype,
                      kernel_init=nn.initializers.variance_scaling(0.01, "fan_in", "truncated_normal"))(h)
        out = unsqueeze2x2(out.astype(jnp.float32))
        out = out.reshape(*out.shape[:3], channels, outputs)
        if self.num_mixtures == 1:
            means, raw_scales = out[..., :1], out[..., 1:]
            logits = jnp.zeros_like(means)
        else:
            logits, means, raw_scales = jnp.split(out, 3, axis=-1)
        if self.context_skip:
            upsampled = upsample_context(context, (context.shape[0], height, width), self.skip)
            means = means + upsampled[..., None].astype(means.dtype)
        log_scales = jnp.clip(raw_scales + _INITIAL_LOG_SCALE, _MIN_LOG_SCALE, _MAX_LOG_SCALE)
        return logits, means, log_scales

    def __call__(self, value: Array, context: Array) -> Array:
        """Log p(value | context), shape [batch] (what `init` runs)."""
        return self.log_prob(value, context)

    def log_prob(self, value: Array, context: Array) -> Array:
        """Log P(value | context) of discrete values k / num_bins, summed per image: [B] nats.

        Args:
          value: [B, H, W, C] on the grid k / num_bins, in [0, 1).
          context: [B, H/r, W/r, c].
        """
        logits, means, log_scales = self.mixture_params(context, value)
        per_entry = mixture_log_prob(value.astype(jnp.float32), logits, means, log_scales, self.num_bins)
        return jnp.sum(per_entry, axis=(1, 2, 3))

    def mode(self, context: Array) -> Array:
        """The most probable value of each sub-pixel, [B, H, W, C] on the grid k / num_bins."""
        return mixture_mode(*self.mixture_params(context), self.num_bins)

    def sample(self, rng: Array, context: Array, temperature: float = 1.0) -> Array:
        """One value per context row, [B, H, W, C] on the grid; temperature 0 gives `mode`.

        The temperature may be traced (one compilation for all of them).
        """
        params = self.mixture_params(context)
        temperature = jnp.asarray(temperature, jnp.float32)
        return jax.lax.cond(temperature > 0,
                            lambda: mixture_sample(rng, *params, temperature, self.num_bins),
                            lambda: mixture_mode(*params, self.num_bins))
