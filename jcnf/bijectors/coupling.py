"""Conditional coupling bijectors: affine, additive and rational-quadratic spline.

Each is a `distrax.SplitCoupling` whose conditioner sees the unchanged half of
the input *and* the context. The context is an explicit constructor argument,
bound into the conditioner, so the resulting object is an ordinary distrax
bijector that composes with `distrax.Chain` and `distrax.Inverse`.

Finite samples by construction: sampling runs the couplings' inverses,
x2 = (y2 - shift) * exp(-log_scale), one after another, and a per-block
factor compounds over the blocks. The affine and additive couplings therefore
bound what their networks output, both ways: |log_scale| < LOG_SCALE_BOUND and
|shift| < SHIFT_BOUND (`soft_bound`). One inverse coupling maps |y| <= M to
|x| < (M + SHIFT_BOUND) * e^LOG_SCALE_BOUND whatever the conditioner and its
context compute, so a sample's magnitude is bounded by a constant of the depth
and of the ActNorm, 1x1-convolution and prior parameters (the spline is the
identity outside [-bound, bound] and stays inside it within), and a finite
latent gives a finite value for any context, in or out of distribution.
"""

from __future__ import annotations

from typing import Callable

import distrax
import jax.numpy as jnp
from jax import Array

from jcnf.bijectors.spline import RationalQuadraticSpline, spline_param_size

Conditioner = Callable[[Array, Array], Array]


# e^1 ~ 2.7 per coupling either way (it was e^3 ~ 20, which over 24 couplings allows 20^24 ~ 1e31 and
# overflowed float32 when sampling a trained super-resolution flow on an unseen photograph); ActNorm keeps
# global rescaling free. Shifts of standardized activations beyond 16 are never needed.
LOG_SCALE_BOUND = 1.0
SHIFT_BOUND = 16.0


def soft_bound(raw: Array, bound: float) -> Array:
    """Squashes `raw` into (-bound, bound) as bound * tanh(raw / bound), the identity near 0 (slope 1).

    Bounding a coupling's log-scale and shift bounds what its inverse can do to
    a sample, and keeps a coupling from blowing activations up early in
    training; a zero-initialised conditioner still gives the identity.
    """
    return bound * jnp.tanh(raw / bound)


def bounded_affine(params: Array, log_scale_bound: float = LOG_SCALE_BOUND) -> distrax.ScalarAffine:
    """The affine coupling's inner map from conditioner outputs [..., 2n]: shift first, then the raw log-scale."""
    shift, raw = jnp.split(params, 2, axis=-1)
    return distrax.ScalarAffine(shift=soft_bound(shift, SHIFT_BOUND), log_scale=soft_bound(raw, log_scale_bound))


def bounded_shift(shift: Array) -> distrax.ScalarAffine:
    """The additive coupling's inner map from conditioner outputs [..., n]."""
    return distrax.ScalarAffine(shift=soft_bound(shift, SHIFT_BOUND))


class _ConditionalSplitCoupling(distrax.SplitCoupling):
    """SplitCoupling whose conditioner is `conditioner(unchanged_half, context)`."""

    def __init__(self, conditioner: Conditioner, context: Array, split_index: int,
                 event_ndims: int, inner: Callable[[Array], distrax.Bijector], swap: bool = False):
        self.context = context
        super().__init__(split_index=split_index, event_ndims=event_ndims,
                         conditioner=lambda unchanged: conditioner(unchanged, context),
                         bijector=inner, swap=swap)


class ConditionalAffineCoupling(_ConditionalSplitCoupling):
    """y2 = x2 * exp(log_scale) + shift, (shift, raw) = conditioner(x1, context), both soft-bounded.

    The conditioner returns [..., 2 * size_of_x2] along the split axis: the raw
    shift first, then the raw log-scale (`bounded_affine`).
    """

    def __init__(self, conditioner: Conditioner, context: Array, split_index: int,
                 event_ndims: int, swap: bool = False, log_scale_bound: float = LOG_SCALE_BOUND):
        def inner(params: Array) -> distrax.Bijector:
            return bounded_affine(params, log_scale_bound)
        super().__init__(conditioner, context, split_index, event_ndims, inner, swap)


class ConditionalAdditiveCoupling(_ConditionalSplitCoupling):
    """y2 = x2 + shift(x1, context), the shift soft-bounded; volume preserving (log-det zero)."""

    def __init__(self, conditioner: Conditioner, context: Array, split_index: int,
                 event_ndims: int, swap: bool = False):
        super().__init__(conditioner, context, split_index, event_ndims, bounded_shift, swap)


class ConditionalSplineCoupling(_ConditionalSplitCoupling):
    """Rational-quadratic spline coupling on [-bound, bound], identity outside.

    The conditioner returns [..., size_of_x2 * (3 * num_bins + 1)]. Identity
    tails (slope 1 at the boundary) make the map and its gradients finite for
    inputs arbitrarily far outside the interval.
    """

    def __init__(self, conditioner: Conditioner, context: Array, split_index: int,
                 event_ndims: int, swap: bool = False, num_bins: int = 8, bound: float = 4.0):
        def inner(params: Array) -> distrax.Bijector:
            params = params.reshape(*params.shape[:-1], -1, spline_param_size(num_bins))
            return RationalQuadraticSpline(params, bound)
        super().__init__(conditioner, context, split_index, event_ndims, inner, swap)


def coupling_param_size(kind: str, transformed_size: int, num_bins: int = 8) -> int:
    """Number of conditioner outputs along the split axis for a coupling kind."""
    sizes = {"affine": 2, "additive": 1, "spline": spline_param_size(num_bins)}
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
