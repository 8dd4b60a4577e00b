"""Analytic densities and exact 2D reference posteriors for inverse problems.

- `rosenbrock_log_prob` / `rosenbrock_sample`: the "banana" prior of the 2D
  toy problem of Siahkoohi et al. (2021).
- `gaussian_log_prob`: a full-covariance Gaussian.
- `linear_gaussian_posterior`: the closed-form posterior of a linear
  operator, Gaussian noise and a Gaussian prior.
- `grid_posterior` and `kl_from_samples_to_grid`: in two dimensions any
  unnormalized posterior can be normalized on a grid, which is a better
  reference than the SGLD chains of the paper's code; flow samples are then
  compared with it by a histogram KL divergence.

Densities take x of shape [..., d] (a batch, or a grid of points) and return
shape [...].
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.scipy.linalg import cho_solve, solve_triangular

from jcnf._checks import check_int, check_int_pair, describe
from jcnf.inverse.operators import LinearOperator

_LOG_2PI = math.log(2 * math.pi)


def _check_last_axis(name: str, x: Array, size: Union[int, None], expected: str) -> None:
    if not hasattr(x, "shape") or x.ndim < 1 or (size is not None and x.shape[-1] != size):
        raise ValueError(f"`{name}` must have shape {expected}; got {describe(x)}.")


# --------------------------------------------------------------------------
# Rosenbrock ("banana") prior.
# --------------------------------------------------------------------------


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
      mu, a, b: as in `rosenbrock_log_prob`.

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


# --------------------------------------------------------------------------
# Gaussians.
# --------------------------------------------------------------------------


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
    centered = (x - mean).reshape(-1, dim)
    whitened = solve_triangular(chol, centered.T, lower=True)
    mahalanobis = jnp.sum(whitened ** 2, axis=0).reshape(x.shape[:-1])
    half_log_det = jnp.sum(jnp.log(jnp.diagonal(chol)))
    return -0.5 * mahalanobis - half_log_det - 0.5 * dim * _LOG_2PI


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


# --------------------------------------------------------------------------
# Exact 2D reference posteriors on a grid.
# --------------------------------------------------------------------------


@functools.partial(jax.tree_util.register_dataclass, data_fields=["probs", "mean", "cov", "log_normalizer"],
                   meta_fields=["bounds", "resolution"])
@dataclasses.dataclass(frozen=True, eq=False)
class GridPosterior:
    """A 2D density normalized on a regular grid of cells.

    Cell (i, j) spans [lo1 + i h1, lo1 + (i + 1) h1) x [lo2 + j h2, lo2 + (j + 1) h2)
    and is represented by its center; axis 0 of `probs` is x1 ("ij"
    indexing: plot `probs.T` with `origin="lower"`). The density is taken as
    constant on each cell, so outside `bounds` it is zero.

    Attributes:
      probs: probability mass of each cell, shape [n1, n2], summing to 1.
      mean: posterior mean over cell centers (midpoint rule), shape [2].
      cov: posterior covariance over cell centers (midpoint rule), shape
        [2, 2]. For a smooth density the midpoint rule is far more accurate
        than the piecewise-constant model that `sample` draws from, whose
        covariance is larger by diag(h1^2, h2^2) / 12.
      log_normalizer: log of the integral of exp(log_density) over `bounds`
        (midpoint rule), a scalar: the log evidence when the log density was
        an unnormalized log posterior. For a reverse-KL objective
        E_q[log q - log_density], KL(q || posterior) = objective + log_normalizer.
      bounds: ((lo1, hi1), (lo2, hi2)).
      resolution: (n1, n2), cells along x1 and x2.
    """

    probs: Array
    mean: Array
    cov: Array
    log_normalizer: Array
    bounds: tuple[tuple[float, float], tuple[float, float]]
    resolution: tuple[int, int]

    @property
    def cell_size(self) -> tuple[float, float]:
        """(h1, h2), the cell widths along x1 and x2."""
        return tuple((hi - lo) / n for (lo, hi), n in zip(self.bounds, self.resolution))

    @property
    def x1(self) -> Array:
        """Cell centers along x1, shape [n1]."""
        return _cell_centers(self.bounds[0], self.resolution[0])

    @property
    def x2(self) -> Array:
        """Cell centers along x2, shape [n2]."""
        return _cell_centers(self.bounds[1], self.resolution[1])

    @property
    def points(self) -> Array:
        """Cell centers, shape [n1, n2, 2]."""
        return jnp.stack(jnp.meshgrid(self.x1, self.x2, indexing="ij"), axis=-1)

    @property
    def density(self) -> Array:
        """Normalized density on each cell, probs / (h1 h2), shape [n1, n2]."""
        h1, h2 = self.cell_size
        return self.probs / (h1 * h2)

    def sample(self, rng: Array, n: int) -> Array:
        """Draws cells by their mass, then a uniform point within each cell.

        Args:
          rng: a `jax.random` key.
          n: number of samples.

        Returns:
          Samples, shape [n, 2], inside `bounds`.
        """
        return _sample_grid(self, rng, int(n))


@functools.partial(jax.jit, static_argnums=2)
def _sample_grid(posterior: GridPosterior, rng: Array, n: int) -> Array:
    uniforms = jax.random.uniform(rng, (3 * n,))  # Flat: see `rosenbrock_sample`.
    # Inverse-CDF sampling: memory O(n + cells), where jax.random.categorical
    # would materialize an [n, cells] array of Gumbel noise.
    cdf = jnp.cumsum(posterior.probs.reshape(-1))
    flat_index = jnp.minimum(jnp.searchsorted(cdf, uniforms[:n] * cdf[-1], side="right"), cdf.shape[0] - 1)
    index = jnp.stack(jnp.unravel_index(flat_index, posterior.resolution), axis=-1)
    lows = jnp.array([lo for lo, _ in posterior.bounds], jnp.float32)
    widths = jnp.array(posterior.cell_size, jnp.float32)
    return lows + (index + uniforms[n:].reshape(n, 2)) * widths


def _cell_centers(bounds: tuple[float, float], num_cells: int) -> Array:
    lo, hi = bounds
    return lo + (jnp.arange(num_cells, dtype=jnp.float32) + 0.5) * ((hi - lo) / num_cells)


def _as_pair(name: str, value: Union[int, Sequence[int]]) -> tuple[int, int]:
    return check_int_pair(name, value)


def grid_posterior(log_density_fn: Callable[[Array], Array],
                   bounds: Sequence[Sequence[float]],
                   resolution: Union[int, Sequence[int]] = 256) -> GridPosterior:
    """Normalizes an unnormalized 2D log density on a grid of cell centers.

    Args:
      log_density_fn: maps points [N, 2] to unnormalized log densities [N],
        e.g. log-prior plus `gaussian_log_likelihood`. Called once on all cell
        centers; -inf is allowed (zero mass).
      bounds: ((lo1, hi1), (lo2, hi2)); choose them so that the mass outside
        is negligible, since it is dropped.
      resolution: cells per axis, an int or (n1, n2).

    Returns:
      A `GridPosterior` with cell masses, mean and covariance.
    """
    if len(bounds) != 2 or any(len(b) != 2 or not float(b[0]) < float(b[1]) for b in bounds):
        raise ValueError(f"`bounds` must be ((lo1, hi1), (lo2, hi2)) with lo < hi; got {bounds!r}.")
    bounds = tuple((float(lo), float(hi)) for lo, hi in bounds)
    resolution = _as_pair("resolution", resolution)
    centers = [_cell_centers(b, n) for b, n in zip(bounds, resolution)]
    points = jnp.stack(jnp.meshgrid(*centers, indexing="ij"), axis=-1)
    log_density = jnp.asarray(log_density_fn(points.reshape(-1, 2)))
    if log_density.shape != (points.shape[0] * points.shape[1],):
        raise ValueError(f"`log_density_fn` must map points [N, 2] to [N]; for N = "
                         f"{points.shape[0] * points.shape[1]} it returned {describe(log_density)}.")
    if not bool(jnp.any(jnp.isfinite(log_density))) or bool(jnp.any(jnp.isnan(log_density))):
        raise ValueError("`log_density_fn` returned NaN, or no finite value on the grid; check `bounds`.")
    probs, mean, cov, log_sum = _normalize_on_grid(log_density.reshape(resolution), points)
    cell_area = float(np.prod([(hi - lo) / n for (lo, hi), n in zip(bounds, resolution)]))
    return GridPosterior(probs=probs, mean=mean, cov=cov, log_normalizer=log_sum + np.log(cell_area), bounds=bounds,
                         resolution=resolution)


@jax.jit
def _normalize_on_grid(log_density: Array, points: Array) -> tuple[Array, Array, Array, Array]:
    """Cell masses [n1, n2], mean [2], covariance [2, 2] and logsumexp of a log density on cell centers [n1, n2, 2]."""
    # Softmax subtracts the maximum first, so densities far below exp(-88)
    # (float32 underflow) still normalize.
    probs = jax.nn.softmax(log_density.reshape(-1)).reshape(log_density.shape)
    mean = jnp.einsum("ij,ijk->k", probs, points, precision=jax.lax.Precision.HIGHEST)
    centered = points - mean
    cov = jnp.einsum("ij,ijk,ijl->kl", probs, centered, centered, precision=jax.lax.Precision.HIGHEST)
    return probs, mean, cov, jax.scipy.special.logsumexp(log_density)


def kl_from_samples_to_grid(samples: Array, reference: GridPosterior, bins: Union[int, Sequence[int]] = 20,
                            pseudo_count: float = 0.5) -> Array:
    """Histogram estimate of KL(reference || samples) on coarse bins of the grid.

    The reference's cells are grouped into `bins` coarse bins per axis (bin
    edges fall on cell edges, so the reference mass of each bin is exact).
    The samples' histogram has one more bin for samples outside `bounds`,
    where the reference has no mass. Every bin gets `pseudo_count` added
    (0.5: the Krichevsky-Trofimov estimator), so the sample distribution
    q_b = (count_b + pseudo_count) / (n + pseudo_count (B + 1)) is positive
    everywhere and the divergence sum_b p_b log(p_b / q_b) is finite even
    where no sample landed. This direction is mass-covering: it is large when
    the samples miss regions the reference covers.

    The estimate is biased upward by roughly (bins with mass) / (2 n) from
    sampling noise plus the mass moved by smoothing, about
    pseudo_count (B + 1) / n; compare methods at equal n and bins.

    Args:
      samples: shape [n, 2].
      reference: the exact posterior from `grid_posterior`.
      bins: coarse bins per axis, an int or (b1, b2), each at most the grid's
        resolution.
      pseudo_count: added to every bin's count, > 0.

    Returns:
      The KL divergence in nats, a scalar.
    """
    _check_last_axis("samples", samples, 2, "[n, 2]")
    if samples.ndim != 2:
        raise ValueError(f"`samples` must have shape [n, 2]; got {describe(samples)}.")
    bins = _as_pair("bins", bins)
    if any(b > n for b, n in zip(bins, reference.resolution)):
        raise ValueError(f"`bins` {bins} must not exceed the grid's resolution {reference.resolution}.")
    if not pseudo_count > 0:
        raise ValueError(f"`pseudo_count` must be > 0; got {pseudo_count}.")
    return _histogram_kl(samples, reference, bins, pseudo_count)


@functools.partial(jax.jit, static_argnums=2)
def _histogram_kl(samples: Array, reference: GridPosterior, bins: tuple[int, int], pseudo_count: Array) -> Array:
    """kl_from_samples_to_grid after validation; bins static, pseudo_count traced."""
    resolution = jnp.array(reference.resolution)
    # Cell i of an axis with n cells belongs to coarse bin floor(i b / n).
    cell_to_bin = [np.arange(n) * b // n for b, n in zip(bins, reference.resolution)]
    reference_mass = jnp.zeros(bins).at[cell_to_bin[0][:, None], cell_to_bin[1][None, :]].add(reference.probs)

    lows = jnp.array([lo for lo, _ in reference.bounds])
    scaled = (samples - lows) / jnp.array(reference.cell_size)
    # Compared as floats before any integer cast, so huge values and NaN
    # count as outside instead of overflowing into some bin.
    inside = jnp.all((scaled >= 0) & (scaled < resolution), axis=-1)
    cell = jnp.clip(jnp.floor(jnp.where(inside[:, None], scaled, 0.0)), 0, resolution - 1).astype(jnp.int32)
    sample_bin = cell * jnp.array(bins) // resolution
    num_bins = bins[0] * bins[1]
    flat_bin = jnp.where(inside, sample_bin[:, 0] * bins[1] + sample_bin[:, 1], num_bins)
    counts = jnp.bincount(flat_bin, length=num_bins + 1)
    sample_mass = (counts + pseudo_count) / (samples.shape[0] + pseudo_count * (num_bins + 1))

    p = reference_mass.reshape(-1)
    q = sample_mass[:num_bins]
    return jnp.sum(jnp.where(p > 0, p * (jnp.log(jnp.where(p > 0, p, 1.0)) - jnp.log(q)), 0.0))
