"""Conditional coupling bijectors: affine, additive and rational-quadratic spline.

Each is a `distrax.SplitCoupling` whose conditioner sees the unchanged half of
the input *and* the context. The context is an explicit constructor argument,
bound into the conditioner, so the resulting object is an ordinary distrax
bijector that composes with `distrax.Chain` and `distrax.Inverse`.
"""

from __future__ import annotations

from typing import Callable

import distrax
import jax.numpy as jnp
from jax import Array

Conditioner = Callable[[Array, Array], Array]


def bounded_log_scale(raw: Array, bound: float) -> Array:
    """log_scale = bound * tanh(raw / bound).

    Bounding the log-scale keeps a coupling from blowing activations up early in
    training, and tanh(0) = 0 makes a zero-initialised conditioner the identity.
    """
    return bound * jnp.tanh(raw / bound)


class _ConditionalSplitCoupling(distrax.SplitCoupling):
    """SplitCoupling whose conditioner is `conditioner(unchanged_half, context)`."""

    def __init__(self, conditioner: Conditioner, context: Array, split_index: int,
                 event_ndims: int, inner: Callable[[Array], distrax.Bijector], swap: bool = False):
        self.context = context
        super().__init__(split_index=split_index, event_ndims=event_ndims,
                         conditioner=lambda unchanged: conditioner(unchanged, context),
                         bijector=inner, swap=swap)


class ConditionalAffineCoupling(_ConditionalSplitCoupling):
    """y2 = x2 * exp(log_scale) + shift, (shift, raw) = conditioner(x1, context).

    The conditioner returns [..., 2 * size_of_x2] along the split axis: shift
    first, then the raw log-scale.
    """

    def __init__(self, conditioner: Conditioner, context: Array, split_index: int,
                 event_ndims: int, swap: bool = False, log_scale_bound: float = 3.0):
        def inner(params: Array) -> distrax.Bijector:
            shift, raw = jnp.split(params, 2, axis=-1)
            return distrax.ScalarAffine(shift=shift, log_scale=bounded_log_scale(raw, log_scale_bound))
        super().__init__(conditioner, context, split_index, event_ndims, inner, swap)


class ConditionalAdditiveCoupling(_ConditionalSplitCoupling):
    """y2 = x2 + shift(x1, context); volume preserving (log-det zero)."""

    def __init__(self, conditioner: Conditioner, context: Array, split_index: int,
                 event_ndims: int, swap: bool = False):
        def inner(shift: Array) -> distrax.Bijector:
            return distrax.ScalarAffine(shift=shift)
        super().__init__(conditioner, context, split_index, event_ndims, inner, swap)


class ConditionalSplineCoupling(_ConditionalSplitCoupling):
    """Rational-quadratic spline coupling on [-bound, bound], identity outside.

    The conditioner returns [..., size_of_x2 * (3 * num_bins + 1)]. Identity
    tails (slope 1 at the boundary) make the map and its gradients finite for
    inputs arbitrarily far outside the interval.
    """

    def __init__(self, conditioner: Conditioner, context: Array, split_index: int,
                 event_ndims: int, swap: bool = False, num_bins: int = 8, bound: float = 4.0):
        def inner(params: Array) -> distrax.Bijector:
            params = params.reshape(*params.shape[:-1], -1, 3 * num_bins + 1)
            return distrax.RationalQuadraticSpline(params, range_min=-bound, range_max=bound,
                                                   boundary_slopes="identity")
        super().__init__(conditioner, context, split_index, event_ndims, inner, swap)


def coupling_param_size(kind: str, transformed_size: int, num_bins: int = 8) -> int:
    """Number of conditioner outputs along the split axis for a coupling kind."""
    sizes = {"affine": 2, "additive": 1, "spline": 3 * num_bins + 1}
    if kind not in sizes:
        raise ValueError(f"`coupling` must be one of {sorted(sizes)}; got {kind!r}.")
    return sizes[kind] * transformed_size


def make_coupling(kind: str, conditioner: Conditioner, context: Array, split_index: int,
                  event_ndims: int, swap: bool = False, num_bins: int = 8) -> distrax.Bijector:
    """Builds the coupling bijector of the given kind ("affine", "additive", "spline")."""
    if kind == "affine":
        return ConditionalAffineCoupling(conditioner, context, split_index, event_ndims, swap)
    if kind == "additive":
        return ConditionalAdditiveCoupling(conditioner, context, split_index, event_ndims, swap)
    if kind == "spline":
        return ConditionalSplineCoupling(conditioner, context, split_index, event_ndims, swap, num_bins)
    raise ValueError(f"`coupling` must be one of ['additive', 'affine', 'spline']; got {kind!r}.")
