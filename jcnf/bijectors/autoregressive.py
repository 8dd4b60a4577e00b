"""A conditional masked autoregressive bijector (MAF's transform) over vectors.

    z_i = tau(x_i; params_i(x_1..x_{i-1}, context)),   i = 1..D,

with tau an elementwise bijection (affine or rational-quadratic spline) whose
parameters come from an autoregressive conditioner (a MADE). Forward (value
-> latent, the density direction) needs one conditioner pass; the inverse
(latent -> value, sampling) needs D passes, because x_i is known only once
x_1..x_{i-1} are. The inverse runs them as one `lax.scan`: after pass k the
first k entries of x are exact, so the last pass's parameters are those of
the final x and give the inverse log-det too.
"""

from __future__ import annotations

from typing import Callable

import distrax
import jax
import jax.numpy as jnp
from jax import Array

from jcnf.bijectors.coupling import SHIFT_BOUND, soft_bound
from jcnf.bijectors.spline import RationalQuadraticSpline, spline_param_size

# (x [..., D], context [..., F]) -> params [..., D, params_per_dim]; params_i may depend on x_<i only.
AutoregressiveConditioner = Callable[[Array, Array], Array]

TRANSFORMERS = ("affine", "spline")


def transformer_param_size(transformer: str, num_bins: int = 8) -> int:
    """Conditioner outputs per dimension for an elementwise transform ("affine" or "spline")."""
    if transformer == "affine":
        return 2
    if transformer == "spline":
        return spline_param_size(num_bins)
    raise ValueError(f"`transformer` must be one of {list(TRANSFORMERS)}; got {transformer!r}.")


def elementwise_bijector(transformer: str, params: Array, num_bins: int = 8, bound: float = 4.0,
                         log_scale_bound: float = 3.0) -> distrax.Bijector:
    """The elementwise bijection tau with per-dimension parameters [..., D, P] (event_ndims 0).

    Affine: tau(x) = x * exp(log_scale) + shift, the log-scale and the shift
    soft-bounded by tanh as in the couplings (`soft_bound`: a zero conditioner
    gives the identity, and a finite latent inverts to a finite value). Spline: a
    rational-quadratic spline on [-bound, bound] with identity tails, so
    values far outside the interval stay finite.
    """
    if transformer == "affine":
        shift, raw = params[..., 0], params[..., 1]
        return distrax.ScalarAffine(shift=soft_bound(shift, SHIFT_BOUND), log_scale=soft_bound(raw, log_scale_bound))
    if transformer == "spline":
        return RationalQuadraticSpline(params, bound)
    raise ValueError(f"`transformer` must be one of {list(TRANSFORMERS)}; got {transformer!r}.")


class ConditionalMaskedAutoregressive(distrax.Bijector):
    """z = tau(x; conditioner(x, context)) with an autoregressive conditioner; event_ndims 1.

    The context is a constructor argument bound into the conditioner, as in
    the conditional couplings, so the object composes with `distrax.Chain`
    and `distrax.Inverse`.
    """

    def __init__(self, conditioner: AutoregressiveConditioner, context: Array, transformer: str = "affine",
                 num_bins: int = 8, bound: float = 4.0):
        """Initializes the bijector.

        Args:
          conditioner: (x [..., D], context) -> params [..., D, P], with
            params[..., i, :] a function of x[..., :i] and the context only.
          context: the conditioning input passed to the conditioner.
          transformer: "affine" (P = 2: shift, raw log-scale) or "spline"
            (P = 3 * num_bins + 1).
          num_bins: spline bins.
          bound: the spline's interval [-bound, bound].
        """
        transformer_param_size(transformer, num_bins)
        super().__init__(event_ndims_in=1)
        self.conditioner = conditioner
        self.context = context
        self.transformer = transformer
        self.num_bins = num_bins
        self.bound = bound

    def _tau(self, params: Array) -> distrax.Bijector:
        return elementwise_bijector(self.transformer, params, self.num_bins, self.bound)

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        """Maps value to latent in one conditioner pass; returns (z, log|dz/dx| [...])."""
        z, log_det = self._tau(self.conditioner(x, self.context)).forward_and_log_det(x)
        return z, jnp.sum(log_det, axis=-1)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        """Maps latent to value in D conditioner passes; returns (x, log|dx/dz| [...])."""
        def one_pass(carry: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], None]:
            x, _ = carry
            return self._tau(self.conditioner(x, self.context)).inverse_and_log_det(y), None

        start = (jnp.zeros_like(y), jnp.zeros_like(y))
        (x, log_det), _ = jax.lax.scan(one_pass, start, None, length=y.shape[-1])
        return x, jnp.sum(log_det, axis=-1)
