"""Variational dequantization (Flow++, Ho et al. 2019) with a conditional noise flow.

Uniform dequantization fills each bin of the data with a flat density, which
a smooth flow cannot match at the bin edges and so wastes likelihood. A
variational dequantizer instead draws the noise u in [0, 1/n)^D from a
learned q(u | value, context) and trains it jointly with the flow on

    log P(value | context) >= E_q[ log p_flow(value + u | context) - log q(u | value, context) ],

so the dequantizer's `log_correction` is -log q(u | value, context). With q
uniform this is exactly `uniform_dequantization`'s -D log n; any other q
gives a lower correction in expectation (its entropy is smaller), which the
flow must earn back by a better fit.

The noise is u = sigmoid(v) / n with v drawn from a small `ConditionalGlow`
whose context is the value itself, concatenated with the (resized) context
image: the noise may depend on the value, as Flow++'s does, and on what the
main flow is conditioned on.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jcnf import _checks
from jcnf.distributions.normal import standard_normal_log_prob
from jcnf.flows.glow import ConditionalGlow
from jcnf.nets.context import resize_context

# sigmoid(v) rounds to exactly 1.0 in float32 for v > ~17; the noise must stay
# inside its bin [0, 1/n), so the fraction is capped at the largest float32 < 1.
_LARGEST_BELOW_ONE = float(np.nextafter(np.float32(1.0), np.float32(0.0)))


def _noise_context(value: Array, context: Optional[Array]) -> Array:
    """concat(value - 1/2, context at the value's resolution) [B, H, W, C + c], the noise flow's context."""
    # Centring the value keeps the features of a fresh encoder near zero.
    parts = [value - 0.5]
    if context is not None:
        _checks.check_float_array("context", context, "[batch, h, w, c] or [batch, features]", (2, 4))
        parts.append(resize_context(context, value.shape).astype(value.dtype))
    return jnp.concatenate(parts, axis=-1)


class VariationalDequantizer(nn.Module):
    """Learned dequantization noise q(u | value, context), u in [0, 1/num_bins)^D.

    A `jcnf.train` dequantizer: `(rng, value, batch) -> (value + u,
    log_correction [B])` with log_correction = -log q(u | value, context).
    Pass it to both `create_state(..., dequantizer=dq)` and
    `mle_step(model, dequantizer=dq)`; its parameters live in
    `state.params["dequantizer"]` and train jointly with the flow.

    Attributes:
      num_bins: discrete levels n of the data (value = k / n).
      levels: levels of the noise flow (the value's height and width must be
        divisible by 2^levels).
      blocks: flow blocks per level of the noise flow.
      hidden: width of the noise flow's coupling networks.
      context_features: channels of the noise flow's context encoder.
      encoder_blocks: residual blocks of that encoder.
      use_context: condition q on `batch["context"]` as well as on the value.
    """

    num_bins: int = 256
    levels: int = 1
    blocks: int = 2
    hidden: int = 32
    context_features: int = 16
    encoder_blocks: int = 1
    use_context: bool = True

    def setup(self):
        """Checks the attributes and builds the noise flow."""
        if self.num_bins < 2:
            raise ValueError(f"`num_bins` must be >= 2; got {self.num_bins}.")
        self.noise_flow = ConditionalGlow(levels=self.levels, blocks=self.blocks, hidden=self.hidden,
                                          context_features=self.context_features,
                                          encoder_blocks=self.encoder_blocks)

    def noise_and_log_density(self, eps: Array, value: Array, context: Optional[Array] = None) -> tuple[Array, Array]:
        """Maps standard-normal `eps` to noise u and its density log q(u | value, context).

        Deterministic given `eps`: the map eps -> u is a bijection onto
        [0, 1/n)^D (up to float32 rounding at the edges), which the tests
        check against a Jacobian computed by `jax.jacrev`.

        Args:
          eps: [B, H, W, C], standard normal.
          value: [B, H, W, C], the data k / n being dequantized.
          context: [B, h, w, c] image or [B, d] vector, or None.

        Returns:
          The noise u [B, H, W, C] in [0, 1/n), and log q(u | value, context) [B].
        """
        flow_context = _noise_context(value, context if self.use_context else None)
        if self.is_initializing():
            # Creates the noise flow's parameters (ActNorm initializes on eps,
            # i.e. close to the identity) before it is run in reverse.
            self.noise_flow(eps, flow_context)
        v, inverse_log_det = self.noise_flow.inverse_and_log_det(eps, flow_context)
        log_q_v = standard_normal_log_prob(eps, 3) - inverse_log_det
        # s = sigmoid(v): log|ds/dv| = log sigmoid(v) + log sigmoid(-v); u = s / n.
        log_det_sigmoid = jnp.sum(jax.nn.log_sigmoid(v) + jax.nn.log_sigmoid(-v), axis=(1, 2, 3))
        dims = math.prod(value.shape[1:])
        log_q_u = log_q_v - log_det_sigmoid + dims * math.log(self.num_bins)
        fraction = jnp.minimum(jax.nn.sigmoid(v), _LARGEST_BELOW_ONE)
        return fraction / self.num_bins, log_q_u

    def __call__(self, rng: Array, value: Array, batch: Mapping[str, Array]) -> tuple[Array, Array]:
        """Dequantizes `value` [B, H, W, C]; returns (value + u, -log q(u | value, context) [B])."""
        _checks.check_float_array("value", value, "[batch, height, width, channels]", (4,))
        context = batch.get("context") if self.use_context else None
        eps = jax.random.normal(rng, value.shape, value.dtype)
        noise, log_q = self.noise_and_log_density(eps, value, context)
        return value + noise, -log_q
