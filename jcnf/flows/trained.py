"""`TrainedModel`: a trained conditional density as a tool, with jitted sampling and log-densities.

A model is trained in its own units (often standardized ones), and a user
wants it in theirs. `TrainedModel` holds the model, its parameters, the
elementwise `Standardization` applied outside it and optional `bounds`, and
answers in the user's units:

    value = bounds(value_loc + value_scale * u),    u ~ model(. | (context - context_loc) / context_scale)

with bounds(y) = lower + (upper - lower) * sigmoid(y) elementwise (the
identity without bounds), so

    log p(value | context) = log p_model(u | context') - sum log value_scale - sum log|bounds'(y)|.

Values on or outside the box of the bounds have log-density -inf.

Each method compiles once per input shape: the jitted functions live on the
instance, and parameters, standardization and temperature are their
arguments, not constants folded into the program.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Mapping, Optional, Sequence

import distrax
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.sharding import Mesh

from jcnf import _checks
from jcnf.flows.base import ConditionalFlow, params_wrapper_error, trained_event_shape, with_event_shape
from jcnf.flows.realnvp import ConditionalRealNVP
from jcnf.sharding import batch_sharding, make_mesh

# A standard deviation below this (a constant feature) would blow up the standardized values.
_MIN_SCALE = 1e-6


@dataclasses.dataclass(frozen=True)
class Standardization:
    """An elementwise affine map applied outside the model: u = (value - value_loc) / value_scale.

    Every array broadcasts against one item's event shape (value) or context
    shape (context): a per-feature [D], per-pixel [H, W, C] or scalar entry.
    A None entry means loc 0 or scale 1.

    Attributes:
      value_loc: subtracted from the value before the model sees it.
      value_scale: divides the value after `value_loc` (positive).
      context_loc: subtracted from the context.
      context_scale: divides the context after `context_loc` (positive).
    """

    value_loc: Optional[np.ndarray] = None
    value_scale: Optional[np.ndarray] = None
    context_loc: Optional[np.ndarray] = None
    context_scale: Optional[np.ndarray] = None

    def __post_init__(self):
        for name in ("value_loc", "value_scale", "context_loc", "context_scale"):
            array = getattr(self, name)
            if array is None:
                continue
            array = np.asarray(array, np.float32)
            if not np.all(np.isfinite(array)):
                raise ValueError(f"`{name}` must be finite; got {array}.")
            if name.endswith("scale") and not np.all(array > 0):
                raise ValueError(f"`{name}` must be positive; got minimum {array.min()}.")
            object.__setattr__(self, name, array)

    @classmethod
    def fit(cls, value: Optional[Any] = None, context: Optional[Any] = None,
            min_scale: float = _MIN_SCALE) -> "Standardization":
        """Mean and standard deviation of each feature over the leading (batch) axis.

        Args:
          value: training values [N, *event], or None to leave values as they are.
          context: training contexts [N, ...], or None.
          min_scale: the floor of every standard deviation (a constant feature gets it).

        Returns:
          The standardization of the given arrays; the others' entries are None.
        """
        if not min_scale > 0:
            raise ValueError(f"`min_scale` must be positive; got {min_scale}.")
        entries = {}
        for name, array in (("value", value), ("context", context)):
            if array is None:
                continue
            array = np.asarray(array, np.float64)
            if array.ndim < 2 or array.shape[0] < 2:
                raise ValueError(f"`{name}` must have shape [N, ...] with N >= 2 rows; got shape {array.shape}.")
            entries[f"{name}_loc"] = array.mean(0)
            entries[f"{name}_scale"] = np.maximum(array.std(0), min_scale)
        return cls(**entries)

    def arrays(self) -> dict[str, np.ndarray]:
        """The entries that are set, by name."""
        return {name: getattr(self, name) for name in ("value_loc", "value_scale", "context_loc", "context_scale")
                if getattr(self, name) is not None}


def _rows(stat: Array, ndim: int) -> Array:
    """An entry of one item's shape with leading unit axes up to rank `ndim`, broadcasting over the batch."""
    return jnp.reshape(stat, (1,) * (ndim - jnp.ndim(stat)) + jnp.shape(stat))


def _event_sum(x: Array, event_shape: tuple[int, ...]) -> Array:
    """Sum of an array broadcast to one item's event shape (a per-item log-det term)."""
    return jnp.sum(jnp.broadcast_to(x, event_shape))


def _has_method(model: Any, name: str) -> bool:
    """Whether `model.apply(..., method=name)` exists (flows define it publicly, wrappers privately)."""
    return callable(getattr(model, name, None)) or callable(getattr(model, "_" + name, None))


def _takes_temperature(model: Any) -> bool:
    """Whether the model samples at a temperature (every flow does; a factorized Bernoulli does not)."""
    if _has_method(model, "sample_and_log_prob"):
        return True
    return "temperature" in inspect.signature(type(model).sample).parameters


class TrainedModel:
    """A trained conditional density with jitted `sample`, `log_prob` and a distrax view.

    Args:
      model: a jcnf flow, `jcnf.inverse.LatentCorrectedFlow` or baseline.
      params: its parameters (the tree under "params" that `model.init` returns).
      standardization: the `Standardization` the model was trained in, or None.
      bounds: (lower, upper), each broadcastable to the value's event shape,
        lower < upper: values are squashed onto the open box by a final sigmoid.
      metadata: JSON-able notes saved with the model (e.g. the data it was trained on).
      value_shape: the value's event shape it was trained on; read from the
        parameters' shape marker when not given.
      context_shape: one context's shape it was trained on, e.g. (features,) or
        (height, width, channels); read from the parameters for vector-context
        flows, otherwise needed to check a context's width.
      mesh: the device mesh many samples are split over (default: all devices).

    Attributes:
      model, params, standardization, bounds, metadata, value_shape, context_shape.
    """

    def __init__(self, model: Any, params: Any, *, standardization: Optional[Standardization] = None,
                 bounds: Optional[Sequence[Any]] = None, metadata: Optional[Mapping[str, Any]] = None,
                 value_shape: Optional[Sequence[int]] = None, context_shape: Optional[Sequence[int]] = None,
                 mesh: Optional[Mesh] = None):
        message = params_wrapper_error(params)
        if message:
            raise ValueError(message)
        if not callable(getattr(model, "apply", None)):
            raise ValueError(f"`model` must be a jcnf flow or baseline with an `apply` method; got "
                             f"{type(model).__name__}.")
        if standardization is not None and not isinstance(standardization, Standardization):
            raise ValueError(f"`standardization` must be a jcnf.Standardization or None; got "
                             f"{type(standardization).__name__}.")
        self.model = model
        self.params = params
        self.standardization = standardization or Standardization()
        self.metadata = dict(metadata or {})
        self.value_shape = _value_shape(model, params) if value_shape is None else tuple(int(s) for s in value_shape)
        self.context_shape = (_context_shape(model, params) if context_shape is None
                              else tuple(int(s) for s in context_shape))
        self.bounds = None if bounds is None else _check_bounds(bounds, self.value_shape)
        self._mesh = mesh
        self._sample_fn = jax.jit(self._sample_rows, static_argnames=("num_samples", "event_shape"))
        self._log_prob_fn = jax.jit(self._log_prob_rows, static_argnames=("event_shape",))

    # Units ------------------------------------------------------------------
    def _stats(self) -> dict[str, Any]:
        stats = dict(self.standardization.arrays())
        if self.bounds is not None:
            stats["lower"], stats["upper"] = self.bounds
        return stats

    @staticmethod
    def _to_value(stats: dict, u: Array, event_shape: tuple[int, ...]) -> tuple[Array, Array]:
        """Model units u -> user units, with log|d value / d u| per row."""
        entry = {name: _rows(stat, u.ndim) for name, stat in stats.items() if not name.startswith("context")}
        log_det = jnp.zeros(u.shape[0], u.dtype)
        y = u
        if "value_scale" in stats:
            y = y * entry["value_scale"]
            log_det += _event_sum(jnp.log(stats["value_scale"]), event_shape)
        if "value_loc" in stats:
            y = y + entry["value_loc"]
        if "lower" not in stats:
            return y, log_det
        width = entry["upper"] - entry["lower"]
        value = entry["lower"] + width * jax.nn.sigmoid(y)
        terms = jnp.log(width) + jax.nn.log_sigmoid(y) + jax.nn.log_sigmoid(-y)
        return value, log_det + jnp.sum(terms, axis=tuple(range(1, y.ndim)))

    @staticmethod
    def _to_model(stats: dict, value: Array, event_shape: tuple[int, ...]) -> tuple[Array, Array, Array]:
        """User units -> model units u, log|d value / d u| per row, and whether each row is inside the bounds."""
        entry = {name: _rows(stat, value.ndim) for name, stat in stats.items() if not name.startswith("context")}
        inside = jnp.ones(value.shape[0], bool)
        y = value
        log_det = jnp.zeros(value.shape[0], value.dtype)
        if "lower" in stats:
            width = entry["upper"] - entry["lower"]
            fraction = (value - entry["lower"]) / width
            axes = tuple(range(1, value.ndim))
            inside = jnp.all((fraction > 0) & (fraction < 1), axis=axes)
            # Rows outside the box are scored -inf below; clipping keeps their arithmetic finite meanwhile.
            fraction = jnp.clip(fraction, 1e-30, 1 - 1e-7)
            y = jnp.log(fraction) - jnp.log1p(-fraction)
            log_det += jnp.sum(jnp.log(width) + jnp.log(fraction) + jnp.log1p(-fraction), axis=axes)
        if "value_loc" in stats:
            y = y - entry["value_loc"]
        if "value_scale" in stats:
            y = y / entry["value_scale"]
            log_det += _event_sum(jnp.log(stats["value_scale"]), event_shape)
        return y, log_det, inside

    @staticmethod
    def _context_to_model(stats: dict, context: Array) -> Array:
        if "context_loc" in stats:
            context = context - _rows(stats["context_loc"], context.ndim)
        if "context_scale" in stats:
            context = context / _rows(stats["context_scale"], context.ndim)
        return context

    def _variables(self, params: Any, event_shape: tuple[int, ...]) -> dict:
        if event_shape != self.value_shape:
            params = with_event_shape(self.model, params, event_shape)
        return {"params": params}

    # Jitted bodies ----------------------------------------------------------
    def _log_prob_rows(self, params, stats, value, context, *, event_shape):
        u, log_det, inside = self._to_model(stats, value, event_shape)
        model_log_prob = self.model.apply(self._variables(params, event_shape), u,
                                          self._context_to_model(stats, context), method="log_prob")
        return jnp.where(inside, model_log_prob - log_det, -jnp.inf)

    def _sample_rows(self, params, stats, rng, context, temperature, *, num_samples, event_shape):
        batch = context.shape[0]
        rows = jnp.tile(self._context_to_model(stats, context), (num_samples,) + (1,) * (context.ndim - 1))
        mesh = self._sample_mesh(rows.shape[0])
        if mesh is not None:
            rows = jax.lax.with_sharding_constraint(rows, batch_sharding(mesh))
        variables = self._variables(params, event_shape)
        if _has_method(self.model, "sample_and_log_prob"):
            u, model_log_prob = self.model.apply(variables, rng, rows, temperature, method="sample_and_log_prob")
        else:
            extra = (temperature,) if _takes_temperature(self.model) else ()
            u = self.model.apply(variables, rng, rows, *extra, method="sample")
            model_log_prob = self.model.apply(variables, u, rows, method="log_prob")
        value, log_det = self._to_value(stats, u, event_shape)
        shape = (num_samples, batch)
        return value.reshape(shape + value.shape[1:]), (model_log_prob - log_det).reshape(shape)

    def _sample_mesh(self, rows: int) -> Optional[Mesh]:
        """The mesh to split `rows` sample rows over, or None on one device or when they do not split evenly."""
        if jax.device_count() == 1 and self._mesh is None:
            return None
        mesh = self._mesh if self._mesh is not None else make_mesh()
        return mesh if mesh.size > 1 and rows % mesh.size == 0 else None

    # Checks -----------------------------------------------------------------
    def _check_context(self, context: Any) -> Array:
        context = jnp.asarray(context) if isinstance(context, (np.ndarray, list, tuple)) else context
        shape = self.context_shape
        expected = "[batch, ...]" if shape is None else f"[batch, {', '.join(map(str, shape))}]"
        ranks = (2, 3, 4, 5) if self.context_shape is None else (len(self.context_shape) + 1,)
        _checks.check_float_array("context", context, expected, ranks)
        if self.context_shape is not None and context.shape[-1] != self.context_shape[-1]:
            what = "features" if len(self.context_shape) == 1 else "channels"
            raise ValueError(f"`context` must have {self.context_shape[-1]} {what} on its last axis, as the model "
                             f"was trained with (shape {expected}); got {_checks.describe(context)}.")
        return context

    def _sample_event_shape(self, context: Array) -> tuple[int, ...]:
        """The value's event shape for this context: the trained one, or scaled with an image context."""
        trained, context_shape = self.value_shape, self.context_shape
        if (not isinstance(self.model, ConditionalFlow) or context_shape is None or len(trained) != 3
                or len(context_shape) != 3 or tuple(context.shape[1:]) == context_shape):
            return trained
        factor = trained[0] // context_shape[0]
        if factor * context_shape[0] != trained[0] or factor * context_shape[1] != trained[1]:
            return trained
        shape = (context.shape[1] * factor, context.shape[2] * factor, trained[-1])
        self.model._check_event_shape(trained, shape)
        return shape

    def _check_value(self, value: Any, context: Array) -> tuple[Array, tuple[int, ...]]:
        value = jnp.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else value
        expected = f"[batch, {', '.join(map(str, self.value_shape))}]"
        _checks.check_float_array("value", value, expected, (len(self.value_shape) + 1,))
        _checks.check_same_batch("value", value, "context", context)
        event_shape = tuple(value.shape[1:])
        if event_shape != self.value_shape:
            message = f"`value` must have shape {expected}, the shape the model was trained on"
            if not isinstance(self.model, ConditionalFlow):
                raise ValueError(f"{message}; got {_checks.describe(value)}.")
            try:
                self.model._check_event_shape(self.value_shape, event_shape)
            except ValueError as error:
                raise ValueError(f"{message} or one the flow also fits ({error}); got "
                                 f"{_checks.describe(value)}.") from None
        return value, event_shape

    # Public API -------------------------------------------------------------
    def log_prob(self, value: Any, context: Any) -> Array:
        """Log p(value | context) in nats, in the user's units.

        Args:
          value: [batch, *event_shape].
          context: [batch, *context_shape].

        Returns:
          [batch]; -inf where a value lies outside the bounds.
        """
        context = self._check_context(context)
        value, event_shape = self._check_value(value, context)
        return self._log_prob_fn(self.params, self._stats(), value, context, event_shape=event_shape)

    def sample_and_log_prob(self, rng: Array, context: Any, num_samples: int = 1,
                            temperature: float = 1.0) -> tuple[Array, Array]:
        """Draws `num_samples` values per context row, with their log-densities.

        Args:
          rng: a `jax.random` key.
          context: [batch, *context_shape].
          num_samples: draws per context row.
          temperature: the latent's scale (0 gives the mode of the latent; 1 the model).

        Returns:
          values [num_samples, batch, *event_shape] and log p(value | context)
          [num_samples, batch] (of the model at temperature 1).
        """
        _checks.check_int("num_samples", num_samples)
        if isinstance(temperature, jax.core.Tracer) or not float(temperature) >= 0.0:
            raise ValueError(f"`temperature` must be a non-negative number (0 gives the mode of the latent); "
                             f"got {temperature}.")
        if float(temperature) != 1.0 and not _takes_temperature(self.model):
            raise ValueError(f"`temperature` must be 1 for {type(self.model).__name__}, which samples only at "
                             f"temperature 1; got {temperature}.")
        context = self._check_context(context)
        event_shape = self._sample_event_shape(context)
        return self._sample_fn(self.params, self._stats(), rng, context, jnp.float32(temperature),
                               num_samples=num_samples, event_shape=event_shape)

    def sample(self, rng: Array, context: Any, num_samples: int = 1, temperature: float = 1.0) -> Array:
        """Draws `num_samples` values per context row: [num_samples, batch, *event_shape]."""
        return self.sample_and_log_prob(rng, context, num_samples, temperature)[0]

    def distribution(self, context: Any) -> distrax.Distribution:
        """p(value | context) as a `distrax.Distribution` of batch shape [batch] (user units)."""
        context = self._check_context(context)
        return _TrainedDistribution(self, context, self._sample_event_shape(context))

    def __repr__(self) -> str:
        return (f"TrainedModel({type(self.model).__name__}, value_shape={self.value_shape}, "
                f"context_shape={self.context_shape})")


class _TrainedDistribution(distrax.Distribution):
    """A `TrainedModel` at one context as a distrax distribution; extra leading axes of a value are sample axes."""

    def __init__(self, trained: TrainedModel, context: Array, event_shape: tuple[int, ...]):
        super().__init__()
        self._trained, self._context, self._event_shape = trained, context, tuple(event_shape)

    @property
    def event_shape(self) -> tuple[int, ...]:
        """One value's shape."""
        return self._event_shape

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """One distribution per context row."""
        return (self._context.shape[0],)

    def _sample_n(self, key: Array, n: int) -> Array:
        return self._trained.sample(key, self._context, n)

    def _sample_n_and_log_prob(self, key: Array, n: int) -> tuple[Array, Array]:
        return self._trained.sample_and_log_prob(key, self._context, n)

    def log_prob(self, value: Array) -> Array:
        """Log-density [..., batch] of values [..., batch, *event]."""
        value = jnp.asarray(value)
        lead = value.shape[:value.ndim - len(self._event_shape)]
        batch = self._context.shape[0]
        if not lead or lead[-1] != batch:
            raise ValueError(f"`value` must have shape [..., {batch}, {', '.join(map(str, self._event_shape))}] "
                             f"(leading axes ending in the context's batch); got shape {value.shape}.")
        repeats = math.prod(lead[:-1])
        context = jnp.tile(self._context, (repeats,) + (1,) * (self._context.ndim - 1))
        return self._trained.log_prob(value.reshape((-1,) + self._event_shape), context).reshape(lead)


def _value_shape(model: Any, params: Any) -> tuple[int, ...]:
    """The event shape the parameters record: a flow's shape marker, a latent correction's shift."""
    if isinstance(params, Mapping):
        if "shift" in params and "frozen" in params:
            return tuple(params["shift"].shape)
        if "shape_marker" in params:
            return trained_event_shape(params)
        for key, entry in params.items():
            # A compact module (the logistic baseline) names its marker after the class.
            if key.startswith("ShapeMarker") and isinstance(entry, Mapping) and "value_shape" in entry:
                return tuple(entry["value_shape"].shape[1:])
    raise ValueError(f"The parameters of {type(model).__name__} do not record the value's shape; pass "
                     f"`value_shape` (one value's shape, e.g. (height, width, channels)).")


def _context_shape(model: Any, params: Any) -> Optional[tuple[int, ...]]:
    """A vector context's shape (features,) where the parameters fix it; None where they leave it open."""
    if isinstance(model, ConditionalRealNVP):
        width = model._trained_context_width(params)  # reads only shapes of the given tree
        return None if width is None else (width,)
    flow = getattr(model, "flow", None)
    if isinstance(params, Mapping) and "frozen" in params and flow is not None:
        return _context_shape(flow, params["frozen"])
    return None


def _check_bounds(bounds: Sequence[Any], event_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"`bounds` must be a pair (lower, upper) of arrays broadcastable to the value's event "
                         f"shape {event_shape}; got {type(bounds).__name__}.")
    lower, upper = (np.asarray(bound, np.float32) for bound in bounds)
    for name, bound in (("lower", lower), ("upper", upper)):
        try:
            np.broadcast_to(bound, event_shape)
        except ValueError:
            raise ValueError(f"`bounds` {name} of shape {bound.shape} must broadcast to the value's event shape "
                             f"{event_shape}.") from None
    if not np.all(np.isfinite(lower)) or not np.all(np.isfinite(upper)) or not np.all(lower < upper):
        raise ValueError("`bounds` must be finite with lower < upper everywhere.")
    return lower, upper
