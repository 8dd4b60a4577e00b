"""The closed-form posterior of a linear operator, Gaussian noise and a Gaussian prior."""

from __future__ import annotations

from typing import Union

import jax
import jax.numpy as jnp
from jax import Array
from jax.scipy.linalg import cho_solve

from jcnf._checks import describe
from jcnf.inverse.linear_operator import LinearOperator


def linear_gaussian_posterior(forward_op: Union[Array, LinearOperator], y: Array, noise_std: float,
                              prior_mean: Array, prior_cov: Array) -> tuple[Array, Array]:
    """Closed-form posterior of y = A x + eps, eps ~ N(0, noise_std^2 I), x ~ N(prior_mean, prior_cov).

    Uses the gain form K = C A^T (A C A^T + sigma^2 I)^-1, mean = m + K (y - A m),
    cov = C - K A C: it needs one Cholesky of the (positive-definite) data-space
    matrix and no inverse of the prior covariance, so a degenerate prior works.

    Args:
      forward_op: the matrix A [m, n], or a `LinearOperator` with vector input
        and output shapes (its matrix is recovered by applying it to the
        identity basis, so keep n small).
      y: the observation, shape [m].
      noise_std: noise standard deviation sigma > 0.
      prior_mean: shape [n].
      prior_cov: shape [n, n].

    Returns:
      The posterior mean [n] and covariance [n, n] (symmetrized).
    """
    if isinstance(forward_op, LinearOperator):
        if len(forward_op.input_shape) != 1 or len(forward_op.output_shape) != 1:
            raise ValueError(f"`forward_op` must map vectors to vectors; got {forward_op!r}.")
        matrix = forward_op.apply(jnp.eye(forward_op.input_shape[0], dtype=jnp.float32)).T
    else:
        matrix = jnp.asarray(forward_op)
    if matrix.ndim != 2:
        raise ValueError(f"`forward_op` must be a matrix of shape [m, n]; got {describe(matrix)}.")
    num_observed, dim = matrix.shape
    y, prior_mean, prior_cov = jnp.asarray(y), jnp.asarray(prior_mean), jnp.asarray(prior_cov)
    if y.shape != (num_observed,):
        raise ValueError(f"`y` must have shape [{num_observed}]; got {describe(y)}.")
    if prior_mean.shape != (dim,) or prior_cov.shape != (dim, dim):
        raise ValueError(f"`prior_mean` and `prior_cov` must have shapes [{dim}] and [{dim}, {dim}]; "
                         f"got prior_mean {describe(prior_mean)} and prior_cov {describe(prior_cov)}.")
    return _linear_gaussian_posterior(matrix, y, noise_std, prior_mean, prior_cov)


@jax.jit
def _linear_gaussian_posterior(matrix: Array, y: Array, noise_std: Array, prior_mean: Array,
                               prior_cov: Array) -> tuple[Array, Array]:
    """linear_gaussian_posterior after validation, for a matrix [m, n]."""
    num_observed = matrix.shape[0]
    hi = jax.lax.Precision.HIGHEST
    cross = jnp.matmul(prior_cov, matrix.T, precision=hi)  # C A^T, [n, m].
    data_cov = jnp.matmul(matrix, cross, precision=hi) + noise_std ** 2 * jnp.eye(num_observed)
    chol = jnp.linalg.cholesky(data_cov)
    gain = cho_solve((chol, True), cross.T).T  # K = C A^T S^-1, [n, m].
    mean = prior_mean + jnp.matmul(gain, y - jnp.matmul(matrix, prior_mean, precision=hi), precision=hi)
    cov = prior_cov - jnp.matmul(gain, cross.T, precision=hi)
    return mean, 0.5 * (cov + cov.T)
