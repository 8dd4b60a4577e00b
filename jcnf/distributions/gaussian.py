"""Conditional diagonal Gaussians: the top prior p(z | context) and split priors.

A flow uses a conditional Gaussian N(mean, exp(log_scale)^2) in two equivalent
ways: as a `distrax.Distribution` (`__call__`), or as the affine bijector
eps = (z - mean) * exp(-log_scale) that standardizes z (`standardizer`).
jcnf's models take the second view, so that the whole model is one bijection
onto a standard-normal latent and `sample` with temperature T is the
paper's z = mean + T * sigma * eps.
"""

from __future__ import annotations

from typing import Optional

import distrax
import flax.linen as nn
import jax.numpy as jnp
from jax import Array


def standardizer(mean: Array, log_scale: Array, event_ndims: int) -> distrax.Bijector:
    """Bijector z -> (z - mean) * exp(-log_scale), log-det -sum(log_scale)."""
    inner = distrax.ScalarAffine(shift=-mean * jnp.exp(-log_scale), log_scale=-log_scale)
    return distrax.Block(inner, event_ndims) if event_ndims else inner


def diag_gaussian(mean: Array, log_scale: Array, event_ndims: int) -> distrax.Distribution:
    """Independent Normal over the last `event_ndims` axes."""
    return distrax.Independent(distrax.Normal(mean, jnp.exp(log_scale)), event_ndims)


class ConditionalDiagGaussian(nn.Module):
    """p(z | features) = N(mean(features), exp(log_scale(features))^2), per element.

    The output layer starts at zero, so a fresh prior is the standard normal.
    Image features [B, H, W, F] are mapped by a 3x3 convolution; vector
    features [B, F] by a dense layer. With `features=None` the mean and
    log-scale are free parameters (an unconditional learned Gaussian).

    The event shape of z, e.g. (H, W, C) or (D,), is given at call time.
    """

    @nn.compact
    def __call__(self, features: Optional[Array], event_shape: tuple[int, ...],
                 batch: int) -> tuple[Array, Array]:
        """Returns (mean, log_scale), each [batch, *event_shape]."""
        return _gaussian_params(self, tuple(event_shape), features, batch)

    def distribution(self, features: Optional[Array], event_shape: tuple[int, ...],
                     batch: int = 1) -> distrax.Distribution:
        """The density itself, as a distrax Independent Normal."""
        return diag_gaussian(*self(features, event_shape, batch), len(event_shape))


class SplitPrior(nn.Module):
    """p(z_out | z_kept, h): a conditional Gaussian on concat(z_kept, h).

    Attributes:
      out_channels: channels of the factored-out half z_out; None means as many
        as z_kept has (an even split).
    """

    out_channels: Optional[int] = None

    @nn.compact
    def __call__(self, z_kept: Array, features: Optional[Array]) -> tuple[Array, Array]:
        """Args: z_kept [B, H, W, Ck]; features [B, H, W, F] or None. Returns mean, log_scale [B, H, W, out]."""
        inputs = z_kept if features is None else jnp.concatenate([z_kept, features.astype(z_kept.dtype)], -1)
        out_channels = self.out_channels or z_kept.shape[-1]
        return _gaussian_params(self, z_kept.shape[1:-1] + (out_channels,), inputs, z_kept.shape[0])

    def distribution(self, z_kept: Array, features: Optional[Array]) -> distrax.Distribution:
        """The density itself, as a distrax Independent Normal over [H, W, C]."""
        return diag_gaussian(*self(z_kept, features), 3)


_PRIOR_MEAN_BOUND = 16.0
_PRIOR_LOG_SCALE_BOUND = 6.0


def _gaussian_params(module: nn.Module, event_shape: tuple[int, ...], inputs: Optional[Array],
                     batch: int) -> tuple[Array, Array]:
    """Shared head: a zero-initialised conv or dense layer giving (mean, log_scale)."""
    if inputs is None:
        mean = module.param("mean", nn.initializers.zeros, event_shape)
        log_scale = module.param("log_scale", nn.initializers.zeros, event_shape)
        shape = (batch,) + tuple(event_shape)
        return jnp.broadcast_to(mean, shape), jnp.broadcast_to(log_scale, shape)
    if inputs.ndim == 4:
        if len(event_shape) != 3 or inputs.shape[1:3] != tuple(event_shape[:2]):
            raise ValueError(f"image features of shape {inputs.shape} do not match the event shape {event_shape}.")
        out = nn.Conv(2 * event_shape[-1], (3, 3), kernel_init=nn.initializers.zeros,
                      name="head")(inputs).astype(jnp.float32)
    else:
        size = 1
        for dim in event_shape:
            size *= dim
        out = nn.Dense(2 * size, kernel_init=nn.initializers.zeros, name="head")(inputs)
        out = jnp.broadcast_to(out, (batch, 2 * size)) if out.shape[0] != batch else out
        if len(event_shape) > 1:
            out = out.reshape(batch, *event_shape[:-1], 2 * event_shape[-1])
    mean, log_scale = jnp.split(out, 2, axis=-1)
    # Soft bounds, as the couplings' (`jcnf.bijectors.coupling`): sampling computes mean + exp(log_scale) * eps,
    # which an unseen context must not overflow. A prior scale within e^+-6 and a mean within +-16 cover
    # standardized latents with room to spare.
    return (_PRIOR_MEAN_BOUND * jnp.tanh(mean / _PRIOR_MEAN_BOUND),
            _PRIOR_LOG_SCALE_BOUND * jnp.tanh(log_scale / _PRIOR_LOG_SCALE_BOUND))
