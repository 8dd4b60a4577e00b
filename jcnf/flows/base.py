"""The public API shared by jcnf's conditional flows.

A flow is one bijection value -> latent, conditioned on the context, onto a
standard-normal latent of the value's shape. Conditional base densities and
split priors are part of that bijection (they standardize their part of the
latent), so `log p(value | context) = log N(z; 0, I) + log|det dz/dvalue|`
and sampling at temperature T inverts z = T * eps.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jcnf import _checks
from jcnf.distributions.normal import standard_normal_log_prob
from jcnf.flows.distribution import flow_distribution
from jcnf.flows.layers import ShapeMarker


class ConditionalFlow(nn.Module):
    """Base class: subclasses define `_forward`, `_inverse` and `_check_inputs`.

    Attributes shared by all flows:
      check_finite: report NaN/inf inputs (a `ValueError` eagerly; a
        `checkify` error under jit, when wrapped in `checkify.checkify`).
    """

    def _marker(self, event_shape: Optional[tuple[int, ...]] = None) -> tuple[int, ...]:
        return self.shape_marker(event_shape)

    # Subclass hooks ---------------------------------------------------------
    def _check_inputs(self, value: Optional[Array], context: Array) -> None:
        raise NotImplementedError

    def _trained_context_width(self, params: Mapping[str, Any]) -> Optional[int]:
        """The size of the context's last axis the parameters were trained with, if they record it."""
        return None

    def _check_context_width(self, context: Array) -> None:
        """Raises a named ValueError, rather than Flax's shape error, for a context the parameters do not fit."""
        if self.is_initializing():
            return
        width = self._trained_context_width(self.variables.get("params", {}))
        if width is not None and context.shape[-1] != width:
            raise ValueError(f"`context` must have {width} features on its last axis (the parameters were "
                             f"trained with {width}); got {_checks.describe(context)}.")

    def _check_event_shape(self, trained: tuple[int, ...], event_shape: tuple[int, ...]) -> None:
        """Raises ValueError unless parameters trained on `trained` also fit `event_shape`.

        By default the parameters fit only the shape they were trained on;
        fully convolutional flows accept more.
        """
        if event_shape != trained:
            raise ValueError(f"`event_shape` must be the trained event shape {trained} for "
                             f"{type(self).__name__}; got {event_shape}.")

    def _forward(self, value: Array, context: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    def _inverse(self, z: Array, context: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    # Public API -------------------------------------------------------------
    def __call__(self, value: Array, context: Array) -> Array:
        """Log p(value | context) in nats, shape [batch]: what `model.init` and `model.apply` run by default."""
        return self.log_prob(value, context)

    def forward_and_log_det(self, value: Array, context: Array) -> tuple[Array, Array]:
        """Maps value to latent.

        Args:
          value: [batch, *event_shape].
          context: [batch, ...] (the model's context layout).

        Returns:
          The latent z with the value's shape, and log|det dz/dvalue| of shape [batch].
        """
        self._check_inputs(value, context)
        self._check_context_width(context)
        if self.check_finite:
            _checks.check_finite("value", value)
            _checks.check_finite("context", context)
        self._marker(tuple(value.shape[1:]))
        return self._forward(value, context)

    def inverse_and_log_det(self, z: Array, context: Array) -> tuple[Array, Array]:
        """Maps latent to value; returns (value, log|det dvalue/dz|), the latter [batch]."""
        event_shape = self._marker()
        self._check_inputs(None, context)
        self._check_context_width(context)
        _checks.check_float_array("z", z, f"[batch, {', '.join(map(str, event_shape))}]", (len(event_shape) + 1,))
        if tuple(z.shape[1:]) != event_shape:
            raise ValueError(f"`z` must have shape [batch, {', '.join(map(str, event_shape))}]; "
                             f"got {_checks.describe(z)}.")
        _checks.check_same_batch("z", z, "context", context)
        if self.check_finite:
            _checks.check_finite("z", z)
            _checks.check_finite("context", context)
        return self._inverse(z, context)

    def inverse(self, z: Array, context: Array) -> Array:
        """Maps latent to value, shape [batch, *event_shape]."""
        return self.inverse_and_log_det(z, context)[0]

    def log_prob(self, value: Array, context: Array) -> Array:
        """Log p(value | context) in nats, shape [batch]."""
        z, log_det = self.forward_and_log_det(value, context)
        return standard_normal_log_prob(z, z.ndim - 1) + log_det

    def sample_and_log_prob(self, rng: Array, context: Array,
                            temperature: float = 1.0) -> tuple[Array, Array]:
        """Draws one value per context row, with the model's log-density of each.

        Args:
          rng: a `jax.random` key.
          context: [batch, ...].
          temperature: latent scale T; z = T * eps. T = 0 gives the mode of the latents.

        Returns:
          values [batch, *event_shape] and log p(value | context) [batch].
        """
        event_shape = self._marker()
        if not isinstance(temperature, jax.core.Tracer) and not float(temperature) >= 0.0:
            raise ValueError(f"`temperature` must be a non-negative scale of the latent (0 gives the mode); "
                             f"got {float(temperature)}.")
        z = temperature * jax.random.normal(rng, (context.shape[0],) + event_shape)
        value, inverse_log_det = self.inverse_and_log_det(z, context)
        return value, standard_normal_log_prob(z, len(event_shape)) - inverse_log_det

    def sample(self, rng: Array, context: Array, temperature: float = 1.0) -> Array:
        """Draws one value per context row at the given temperature, [batch, *event_shape]."""
        return self.sample_and_log_prob(rng, context, temperature)[0]

    def distribution(self, context: Array, temperature: float = 1.0) -> distrax.Distribution:
        """p(value | context) as a `distrax.Distribution` (use on a bound module)."""
        self._check_inputs(None, context)
        self._check_context_width(context)
        return flow_distribution(self, context, self._marker(), temperature)


def make_shape_marker() -> ShapeMarker:
    """The submodule every flow owns to remember its value's event shape."""
    return ShapeMarker()


def trained_event_shape(params: Mapping[str, Any], name: str = "params") -> tuple[int, ...]:
    """The event shape a jcnf flow's parameters record in their `shape_marker`.

    Args:
      params: the tree under "params" that `model.init` returns.
      name: the argument's name in the error message.

    Raises:
      ValueError: `params` has no shape marker (not a jcnf flow's, or not initialized).
    """
    marker = params.get("shape_marker") if isinstance(params, Mapping) else None
    marker = marker.get("value_shape") if isinstance(marker, Mapping) else None
    if marker is None:
        raise ValueError(f"`{name}` must be a jcnf flow's parameter tree (the dict under 'params', with its "
                         "'shape_marker'); initialize the model with `model.init(rng, value, context)` first.")
    return tuple(marker.shape[1:])


def with_event_shape(model: ConditionalFlow, params: Mapping[str, Any], event_shape: Sequence[int]) -> dict:
    """The flow's parameters for values of another event shape.

    A flow remembers its event shape only in the zero-size `shape_marker`
    parameter (`ShapeMarker`). `ConditionalGlow` is otherwise fully
    convolutional, so the parameters of a flow trained on crops score and
    sample whole images once the marker records the images' shape: any height
    and width divisible by 2^levels, with the trained channels. Flows with
    dense layers over the whole value (`ConditionalRealNVP`) accept only
    their trained shape.

    Args:
      model: the flow the parameters belong to.
      params: its parameters (the tree under "params" that `model.init` returns).
      event_shape: the new event shape, e.g. (height, width, channels).

    Returns:
      A copy of `params` whose shape marker records `event_shape`; every
      other leaf is the same array, not a copy.
    """
    if not isinstance(model, ConditionalFlow):
        raise ValueError(f"`model` must be a jcnf flow (a ConditionalFlow such as ConditionalGlow); "
                         f"got {type(model).__name__}.")
    trained = trained_event_shape(params)
    shape = tuple(event_shape)
    if not shape or any(isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1
                        for size in shape):
        raise ValueError(f"`event_shape` must be a non-empty tuple of positive integers; got {event_shape!r}.")
    shape = tuple(int(size) for size in shape)
    model._check_event_shape(trained, shape)
    updated = dict(params)
    updated["shape_marker"] = {"value_shape": jnp.zeros((0,) + shape, params["shape_marker"]["value_shape"].dtype)}
    return updated
