"""A flow trained in standardized units, seen in the user's units.

`jcnf.inverse.fit_amortized` trains its flow on z-scored values and
contexts (and, for a box prior, on logit-mapped values). `StandardizedFlow`
wraps that flow so that every method takes and returns the user's units:

    value --BoxLogit (with a box)--> u --(u - value_loc) / value_scale--> flow's value,
    context --(context - context_loc) / context_scale--> flow's context,

with the log-dets of both maps included, so `log_prob` is the density of the
user's value. The wrapped flow's parameters are the wrapper's parameters (the
same tree: the wrapper shares the flow's scope), so a fit_amortized
posterior's `params` can be fine-tuned with `jcnf.inverse.fit_reverse_kl` in
the user's units and put back into the same flow. It is the module form of a
`jcnf.TrainedModel` of a vector flow (`StandardizedFlow.from_trained`), with
the same maps in the same order: what the layers above need when they train
through a flow with `model.apply` rather than sample a trained one.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import Array

from jcnf.bijectors.box import BoxLogit
from jcnf.flows.base import ConditionalFlow
from jcnf.flows.trained import TrainedModel


def _along_last(stats: tuple[float, ...], x: Array) -> Array:
    """Per-feature statistics [F] shaped to broadcast against x [..., F] without rank promotion."""
    return jnp.asarray(stats, x.dtype).reshape((1,) * (x.ndim - 1) + (len(stats),))


class StandardizedFlow(ConditionalFlow):
    """p(value | context) in the user's units of a flow trained on standardized data.

    Attributes:
      flow: the flow trained in standardized units.
      value_loc, value_scale: per-dimension location and scale of the
        (unbounded) value, [D] as tuples.
      context_loc, context_scale: per-feature statistics of the context's last axis.
      lower, upper: the box of the value's support, or None for all of R^D.
      check_finite: report non-finite inputs instead of returning NaN.
    """

    flow: ConditionalFlow
    value_loc: tuple[float, ...]
    value_scale: tuple[float, ...]
    context_loc: tuple[float, ...]
    context_scale: tuple[float, ...]
    lower: Optional[tuple[float, ...]] = None
    upper: Optional[tuple[float, ...]] = None

    @classmethod
    def from_trained(cls, trained: TrainedModel) -> "StandardizedFlow":
        """The module form of a `TrainedModel` of a vector flow (value [B, D]); its params fit both."""
        if not isinstance(trained, TrainedModel) or not isinstance(trained.model, ConditionalFlow):
            what = type(getattr(trained, "model", trained)).__name__
            raise ValueError(f"`trained` must be a jcnf.TrainedModel of a jcnf flow; got one of {what}.")
        if len(trained.value_shape) != 1:
            raise ValueError(f"`trained` must model vectors [batch, dim]; its value shape is {trained.value_shape}.")
        dim = trained.value_shape[0]
        stats = trained.standardization

        def per_feature(entry: Any, size: Optional[int], default: float) -> tuple[float, ...]:
            array = np.full(size or 1, default) if entry is None else np.asarray(entry, np.float64)
            return tuple(np.broadcast_to(array, (size or array.size,)).tolist())

        features = None if trained.context_shape is None else trained.context_shape[-1]
        lower, upper = (None, None) if trained.bounds is None else (
            per_feature(trained.bounds[0], dim, 0.0), per_feature(trained.bounds[1], dim, 0.0))
        return cls(trained.model, per_feature(stats.value_loc, dim, 0.0), per_feature(stats.value_scale, dim, 1.0),
                   per_feature(stats.context_loc, features, 0.0), per_feature(stats.context_scale, features, 1.0),
                   lower, upper)

    def setup(self):
        """Shares the wrapped flow's scope, so both read the same parameter tree."""
        nn.share_scope(self, self.flow)

    def _box(self) -> Optional[BoxLogit]:
        return None if self.lower is None else BoxLogit(jnp.asarray(self.lower), jnp.asarray(self.upper))

    def _context(self, context: Array) -> Array:
        return (context - _along_last(self.context_loc, context)) / _along_last(self.context_scale, context)

    def _log_scale(self, x: Array) -> Array:
        return jnp.sum(jnp.log(jnp.asarray(self.value_scale, x.dtype)))

    def _marker(self, event_shape: Optional[tuple[int, ...]] = None) -> tuple[int, ...]:
        return self.flow._marker(event_shape)

    def _check_inputs(self, value: Optional[Array], context: Array) -> None:
        self.flow._check_inputs(value, context)

    def forward_and_log_det(self, value: Array, context: Array) -> tuple[Array, Array]:
        """Maps the user's value [B, D] to the latent; returns (z, log|det dz/dvalue| [B])."""
        self._check_inputs(value, context)
        box = self._box()
        log_det = jnp.zeros(value.shape[:1], value.dtype)
        if box is not None:
            value, log_det = box.forward_and_log_det(value)
        scaled = (value - _along_last(self.value_loc, value)) / _along_last(self.value_scale, value)
        z, flow_log_det = self.flow.forward_and_log_det(scaled, self._context(context))
        return z, log_det + flow_log_det - self._log_scale(value)

    def inverse_and_log_det(self, z: Array, context: Array) -> tuple[Array, Array]:
        """Maps the latent [B, D] to the user's value; returns (value, log|det dvalue/dz| [B])."""
        scaled, log_det = self.flow.inverse_and_log_det(z, self._context(context))
        value = scaled * _along_last(self.value_scale, scaled) + _along_last(self.value_loc, scaled)
        log_det = log_det + self._log_scale(value)
        box = self._box()
        if box is not None:
            value, box_log_det = box.inverse_and_log_det(value)
            log_det = log_det + box_log_det
        return value, log_det
