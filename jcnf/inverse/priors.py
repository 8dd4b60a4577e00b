"""Analytic prior densities of inverse problems: the Rosenbrock ("banana") distribution and Gaussians.

- `rosenbrock_log_prob` / `rosenbrock_sample`: the "banana" prior of the 2D
  toy problem of Siahkoohi et al. (2021).
- `gaussian_log_prob`: a full-covariance Gaussian.

Densities take x of shape [..., d] (a batch, or a grid of points) and return
shape [...].
"""

from __future__ import annotations

import math
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.scipy.linalg import solve_triangular

from jcnf._checks import check_int, describe

_LOG_2PI = math.log(2 * math.pi)


def _check_last_axis(name: str, x: Array, size: Union[int, None], expected: str) -> None:
    if not hasattr(x, "shape") or x.ndim < 1 or (size is not None and x.shape[-1] != size):
        raise ValueError(f"`{name}` must have shape {expected}; got {describe(x)}.")


def _check_rosenbrock(a: float, b: float) -> None:
    for name, value in (("a", a), ("b", b)):
        if not isinstance(value, jax.core.Tracer) and not np.all(np.asarray(value) > 0):
            raise ValueError(f"`{name}` must be > 0 (a precision / 2); got {value}.")


def rosenbrock_log_prob(x: Array, mu: float = 0.0, a: float = 0.5, b: float = 1.0) -> Array:
    """Normalized log density of the Rosenbrock distribution.

    p(x) = N(x1; mu, 1 / (2 a)) N(x2; x1^2, 1 / (2 b)), i.e. the density
    proportional to exp(-a (x1 - mu)^2 - b (x2 - x1^2)^2). The paper's prior
    (mu = 0, a = 0.5, b = 1) is x1 ~ N(0, 1), x2 | x1 ~ N(x1^2, 0.5).

    Args:
      x: points, shape [..., 2].
      mu: mean of x1.
      a: precision / 2 of x1, > 0.
      b: precision / 2 of x2 given x1, > 0.

    Returns:
      log p(x), shape [...].
    """
    _check_last_axis("x", x, 2, "[..., 2]")
    _check_rosenbrock(a, b)
    x1, x2 = x[..., 0], x[..., 1]
    # log of the normalizers sqrt(a / pi) and sqrt(b / pi) of the two Gaussians.
    log_normalizer = 0.5 * (jnp.log(a) + jnp.log(b)) - jnp.log(jnp.pi)
    return log_normalizer - a * (x1 - mu) ** 2 - b * (x2 - x1 ** 2) ** 2


def rosenbrock_sample(rng: Array, n: int, mu: float = 0.0, a: float = 0.5, b: float = 1.0) -> Array:
    """Exact samples of `rosenbrock_log_prob`'s density, drawn x1 first.

    Args:
      rng: a `jax.random` key.
      n: number of samples.
      mu: as in `rosenbrock_log_prob`.
      a: as in `rosenbrock_log_prob`.
      b: as in `rosenbrock_log_prob`.

    Returns:
      Samples, shape [n, 2], float32.
    """
    check_int("n", n)
    _check_rosenbrock(a, b)
    # Drawn flat: XLA:CPU compiles threefry for multi-axis shapes much more slowly.
    eps = jax.random.normal(rng, (2 * n,), jnp.float32).reshape(n, 2)
    x1 = mu + eps[:, 0] / jnp.sqrt(2.0 * a)
    x2 = x1 ** 2 + eps[:, 1] / jnp.sqrt(2.0 * b)
    return jnp.stack([x1, x2], axis=-1)


def gaussian_log_prob(x: Array, mean: Array, cov: Array) -> Array:
    """Normalized log density of N(mean, cov), through a Cholesky factor.

    Args:
      x: points, shape [..., d].
      mean: shape [d].
      cov: symmetric positive-definite covariance, shape [d, d].

    Returns:
      log N(x; mean, cov), shape [...].
    """
    mean, cov = jnp.asarray(mean), jnp.asarray(cov)
    _check_last_axis("mean", mean, None, "[d]")
    dim = mean.shape[-1]
    if mean.ndim != 1 or cov.shape != (dim, dim):
        raise ValueError(f"`mean` and `cov` must have shapes [d] and [d, d]; got mean {describe(mean)} "
                         f"and cov {describe(cov)}.")
    _check_last_axis("x", x, dim, f"[..., {dim}]")
    return _gaussian_log_prob(x, mean, cov)


@jax.jit
def _gaussian_log_prob(x: Array, mean: Array, cov: Array) -> Array:
    """gaussian_log_prob after validation; jitted so eager calls compile once per shape."""
    dim = mean.shape[-1]
    chol = jnp.linalg.cholesky(cov)
    centered = x.reshape(-1, dim) - mean[None, :]
    whitened = solve_triangular(chol, centered.T, lower=True)
    mahalanobis = jnp.sum(whitened ** 2, axis=0).reshape(x.shape[:-1])
    half_log_det = jnp.sum(jnp.log(jnp.diagonal(chol)))
    return -0.5 * mahalanobis - half_log_det - 0.5 * dim * _LOG_2PI
