"""Invertible 1x1 convolution in LU form (Glow), with a log-det that is a sum.

W = P L U with P a fixed channel permutation, L unit lower-triangular and
U = U_strict + diag(exp(log_diag)). The log-det is positions * sum(log_diag):
no `slogdet` per call, and the inverse uses two triangular solves of a
[channels, channels] matrix rather than a general solve.
"""

from __future__ import annotations

from typing import Optional

import distrax
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jcnf.bijectors._shape import num_positions


class InvConv1x1(distrax.Bijector):
    """Channel mixing y = x W^T at every position, W = P L U."""

    def __init__(self, lower: Array, upper: Array, log_diag: Array,
                 permutation: Optional[np.ndarray] = None, event_ndims: int = 3):
        """Initializes the bijector.

        Args:
          lower: [C, C]; only the strictly lower triangle is used (unit diagonal).
          upper: [C, C]; only the strictly upper triangle is used.
          log_diag: [C], log of U's positive diagonal.
          permutation: optional static channel permutation (the rows of P), as
            integers; None means the identity.
          event_ndims: rank of one event (3 for HWC images, 1 for vectors).
        """
        super().__init__(event_ndims_in=event_ndims)
        self.lower = jnp.tril(lower, -1) + jnp.eye(lower.shape[-1], dtype=lower.dtype)
        self.upper = jnp.triu(upper, 1) + jnp.diag(jnp.exp(log_diag))
        self.log_diag = log_diag
        self.permutation = None if permutation is None else np.asarray(permutation)

    def weight(self) -> Array:
        """The dense [C, C] matrix W (for tests and inspection)."""
        w = self.lower @ self.upper
        return w if self.permutation is None else w[self.permutation]

    def _log_det(self, x: Array) -> Array:
        log_det = num_positions(x, self.event_ndims_in) * jnp.sum(self.log_diag)
        return jnp.broadcast_to(log_det, x.shape[:x.ndim - self.event_ndims_in])

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        """Maps x forward; returns (y, log|det dy/dx|) with the batch shape."""
        y = x @ (self.lower @ self.upper).T
        if self.permutation is not None:
            y = y[..., self.permutation]
        return y, self._log_det(x)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        """Maps y back; returns (x, log|det dx/dy|) with the batch shape."""
        if self.permutation is not None:
            y = y[..., np.argsort(self.permutation)]
        eye = jnp.eye(self.lower.shape[-1], dtype=self.lower.dtype)
        lower_inv = jax.scipy.linalg.solve_triangular(self.lower, eye, lower=True, unit_diagonal=True)
        w_inv = jax.scipy.linalg.solve_triangular(self.upper, lower_inv, lower=False)
        return y @ w_inv.T, -self._log_det(y)


def random_rotation_lu(rng: Array, channels: int) -> tuple[Array, Array, Array]:
    """LU parameters of a random rotation, needing no permutation and no signs.

    A random orthogonal W0 factors as P L U. D P^T W0, with D the signs of
    diag(U), is still orthogonal and factors as (D L D)(D U) with a unit lower
    and a positive-diagonal upper factor. Starting from that matrix lets the
    permutation be the identity and the diagonal's sign be fixed positive, so
    no non-trainable state lives in the parameter tree.

    Returns:
      (lower, upper, log_diag) with shapes [C, C], [C, C], [C].
    """
    q, _ = jnp.linalg.qr(jax.random.normal(rng, (channels, channels)))
    _, lower, upper = jax.scipy.linalg.lu(q)
    signs = jnp.sign(jnp.diag(upper))
    lower = signs[:, None] * lower * signs[None, :]
    upper = signs[:, None] * upper
    return jnp.tril(lower, -1), jnp.triu(upper, 1), jnp.log(jnp.abs(jnp.diag(upper)))
