"""distrax views of a bound conditional flow: a bijector and a distribution."""

from __future__ import annotations

import math
from typing import Any

import distrax
import jax.numpy as jnp
from jax import Array


class ValueToLatent(distrax.Bijector):
    """The flow's map value -> latent for one fixed context, as a distrax bijector.

    Extra leading axes (e.g. a sample shape from `distrax.Distribution.sample`)
    are folded into the batch, with the context repeated to match.
    """

    def __init__(self, flow: Any, context: Array, event_shape: tuple[int, ...]):
        """Args: flow, a bound jcnf flow module; context [B, ...]; the value's event shape."""
        super().__init__(event_ndims_in=len(event_shape))
        self.flow = flow
        self.context = context
        self.event_shape = tuple(event_shape)

    def _run(self, method, x: Array) -> tuple[Array, Array]:
        lead = x.shape[:x.ndim - len(self.event_shape)]
        batch = self.context.shape[0]
        if lead == (batch,):
            return method(x, self.context)
        if not lead or lead[-1] != batch:
            raise ValueError(f"expected leading axes ending in the context's batch size {batch}; "
                             f"got input of shape {x.shape}.")
        repeats = math.prod(lead[:-1])
        context = jnp.tile(self.context, (repeats,) + (1,) * (self.context.ndim - 1))
        out, log_det = method(x.reshape((-1,) + self.event_shape), context)
        return out.reshape(x.shape), log_det.reshape(lead)

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        """Maps x forward; returns (y, log|det dy/dx|) with the batch shape."""
        return self._run(self.flow.forward_and_log_det, x)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        """Maps y back; returns (x, log|det dx/dy|) with the batch shape."""
        return self._run(self.flow.inverse_and_log_det, y)


def flow_distribution(flow: Any, context: Array, event_shape: tuple[int, ...],
                      temperature: float = 1.0) -> distrax.Transformed:
    """p(value | context) as `distrax.Transformed(N(0, T^2 I), latent -> value)`.

    Its `log_prob` at temperature 1 equals the flow's `log_prob`; its samples at
    temperature T are the flow's `sample(..., temperature=T)`.
    """
    batch = context.shape[0]
    loc = jnp.zeros((batch,) + tuple(event_shape), jnp.float32)
    base = distrax.Independent(distrax.Normal(loc, temperature * jnp.ones_like(loc)), len(event_shape))
    return distrax.Transformed(base, distrax.Inverse(ValueToLatent(flow, context, event_shape)))
