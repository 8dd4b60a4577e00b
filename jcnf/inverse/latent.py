"""Latent correction: keep the amortized flow frozen, learn an affine map of its latent.

Siahkoohi et al. (2022) correct an amortized posterior q_theta(x | y) for one
observation by training only z' = shift + exp(log_scale) * z in front of the
frozen flow, x = T_theta(z'; y_obs). It trains 2 * dim(x) numbers instead of
the whole network: cheaper per step and much less memory for optimizer
state, at the price of a less flexible correction than `precondition`.

`LatentCorrectedFlow` has the methods of a jcnf flow that the reverse-KL
step and samplers call (`apply(variables, ..., method=...)`), so it plugs into
`fit_reverse_kl` like any flow. Its parameters are
{"frozen": the amortized flow's params, "shift": [*event], "log_scale": [*event]};
`fit_reverse_kl` does not train the subtree "frozen" (see `trainable_mask`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array

from jcnf.distributions.normal import standard_normal_log_prob
from jcnf.flows.base import trained_event_shape
from jcnf.flows.registry import register

FROZEN = "frozen"


@register
@dataclasses.dataclass(frozen=True)
class LatentCorrectedFlow:
    """x = T_theta(shift + exp(log_scale) * z; context) with T_theta frozen.

    Attributes:
      flow: the amortized flow module (its params live in variables["params"]["frozen"]).
    """

    flow: nn.Module

    def apply(self, variables: dict, *args: Any, method: str = "log_prob", **kwargs: Any) -> Any:
        """Calls one of the flow methods below, like `flax.linen.Module.apply`."""
        if method not in ("log_prob", "forward_and_log_det", "inverse_and_log_det", "inverse",
                          "sample_and_log_prob", "sample"):
            raise ValueError(f"`method` must name a flow method; got {method!r}.")
        return getattr(self, "_" + method)(variables["params"], *args, **kwargs)

    def init(self, rng: Array, value: Array, context: Array) -> dict:
        """Variables of a fresh flow with the identity correction, {"params": {"frozen", "shift", "log_scale"}}.

        Args:
          rng: the flow's init key.
          value: an example value [batch, *event].
          context: its context [batch, ...].
        """
        flow_params = self.flow.init(rng, value, context)["params"]
        return {"params": {FROZEN: flow_params, "shift": jnp.zeros(value.shape[1:], jnp.float32),
                           "log_scale": jnp.zeros(value.shape[1:], jnp.float32)}}

    def _frozen(self, params: dict) -> dict:
        return {"params": jax.lax.stop_gradient(params[FROZEN])}

    def _inverse_and_log_det(self, params: dict, z: Array, context: Array) -> tuple[Array, Array]:
        _check_latent(z, params["shift"].shape)
        corrected = params["shift"][None] + jnp.exp(params["log_scale"])[None] * z
        value, log_det = self.flow.apply(self._frozen(params), corrected, context, method="inverse_and_log_det")
        return value, log_det + jnp.sum(params["log_scale"])

    def _inverse(self, params: dict, z: Array, context: Array) -> Array:
        return self._inverse_and_log_det(params, z, context)[0]

    def _forward_and_log_det(self, params: dict, value: Array, context: Array) -> tuple[Array, Array]:
        corrected, log_det = self.flow.apply(self._frozen(params), value, context, method="forward_and_log_det")
        z = (corrected - params["shift"][None]) * jnp.exp(-params["log_scale"])[None]
        return z, log_det - jnp.sum(params["log_scale"])

    def _log_prob(self, params: dict, value: Array, context: Array) -> Array:
        z, log_det = self._forward_and_log_det(params, value, context)
        return standard_normal_log_prob(z, z.ndim - 1) + log_det

    def _sample_and_log_prob(self, params: dict, rng: Array, context: Array,
                             temperature: float = 1.0) -> tuple[Array, Array]:
        event_shape = params["shift"].shape
        z = temperature * jax.random.normal(rng, (context.shape[0],) + event_shape)
        value, log_det = self._inverse_and_log_det(params, z, context)
        return value, standard_normal_log_prob(z, len(event_shape)) - log_det

    def _sample(self, params: dict, rng: Array, context: Array, temperature: float = 1.0) -> Array:
        return self._sample_and_log_prob(params, rng, context, temperature)[0]


def _check_latent(z: Array, event_shape: tuple[int, ...]) -> None:
    if z.ndim != len(event_shape) + 1 or tuple(z.shape[1:]) != tuple(event_shape):
        raise ValueError(f"`z` must have shape [batch, {', '.join(map(str, event_shape))}]; "
                         f"got shape {tuple(z.shape)}.")


def latent_correction(model: nn.Module, amortized_params: Any) -> tuple[LatentCorrectedFlow, dict]:
    """Wraps a trained amortized flow for latent correction, starting at the identity map.

    Args:
      model: the amortized flow (a jcnf flow initialized with `init`).
      amortized_params: its parameters (the tree under "params").

    Returns:
      (corrected_model, params): train `params` with `fit_reverse_kl(corrected_model, params, ...)`;
      at the start corrected_model's density equals the amortized one.
    """
    event_shape = trained_event_shape(amortized_params, "amortized_params")
    params = {FROZEN: amortized_params, "shift": jnp.zeros(event_shape, jnp.float32),
              "log_scale": jnp.zeros(event_shape, jnp.float32)}
    return LatentCorrectedFlow(model), params


def trainable_mask(params: Any) -> Any:
    """A tree of bools like `params`: False under a top-level "frozen" key, True elsewhere."""
    if isinstance(params, dict) and FROZEN in params:
        return {key: jax.tree.map(lambda _, key=key: key != FROZEN, value) for key, value in params.items()}
    return jax.tree.map(lambda _: True, params)
