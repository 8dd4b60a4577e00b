"""Latents through a trained flow: values and their log-density in one pass."""

from __future__ import annotations

import flax.linen as nn
from jax import Array

from jcnf.distributions.normal import standard_normal_log_prob


def push_latents(model: nn.Module, variables: dict, z: Array, context: Array) -> tuple[Array, Array]:
    """Values x = T(z; context) of given latents and their log-density log q(x | context).

    Args:
      model: the flow (anything with `inverse_and_log_det(z, context)`).
      variables: its variables, {"params": ...}.
      z: latents, [num_samples, *event_shape].
      context: one row per latent, [num_samples, ...].

    Returns:
      x [num_samples, *event_shape] and log q(x | context) [num_samples]:
      log N(z; 0, I) - log|det dx/dz|.
    """
    value, inverse_log_det = model.apply(variables, z, context, method="inverse_and_log_det")
    return value, standard_normal_log_prob(z, z.ndim - 1) - inverse_log_det
