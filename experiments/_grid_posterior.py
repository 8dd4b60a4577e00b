"""Exact 2D reference posteriors on a grid, and a histogram KL of samples against them.

In two dimensions any unnormalized posterior can be normalized on a grid,
which is a better reference than the SGLD chains of the paper's code; flow
samples are then compared with it by a histogram KL divergence
(`kl_from_samples_to_grid`). The Rosenbrock experiment and the tests use it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jcnf._checks import check_int_pair, describe


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
        return tuple((hi - lo) / n for (lo, hi), n in zip(self.bounds, self.resolution, strict=False))

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
    return lows[None] + (index + uniforms[n:].reshape(n, 2)) * widths[None]


def _cell_centers(bounds: tuple[float, float], num_cells: int) -> Array:
    lo, hi = bounds
    return lo + (jnp.arange(num_cells, dtype=jnp.float32) + 0.5) * ((hi - lo) / num_cells)


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
    resolution = check_int_pair("resolution", resolution)
    centers = [_cell_centers(b, n) for b, n in zip(bounds, resolution, strict=False)]
    points = jnp.stack(jnp.meshgrid(*centers, indexing="ij"), axis=-1)
    log_density = jnp.asarray(log_density_fn(points.reshape(-1, 2)))
    if log_density.shape != (points.shape[0] * points.shape[1],):
        raise ValueError(f"`log_density_fn` must map points [N, 2] to [N]; for N = "
                         f"{points.shape[0] * points.shape[1]} it returned {describe(log_density)}.")
    if not bool(jnp.any(jnp.isfinite(log_density))) or bool(jnp.any(jnp.isnan(log_density))):
        raise ValueError("`log_density_fn` returned NaN, or no finite value on the grid; check `bounds`.")
    probs, mean, cov, log_sum = _normalize_on_grid(log_density.reshape(resolution), points)
    cell_area = float(np.prod([(hi - lo) / n for (lo, hi), n in zip(bounds, resolution, strict=False)]))
    return GridPosterior(probs=probs, mean=mean, cov=cov, log_normalizer=log_sum + np.log(cell_area), bounds=bounds,
                         resolution=resolution)


@jax.jit
def _normalize_on_grid(log_density: Array, points: Array) -> tuple[Array, Array, Array, Array]:
    """Cell masses [n1, n2], mean [2], covariance [2, 2] and logsumexp of a log density on cell centers [n1, n2, 2]."""
    # Softmax subtracts the maximum first, so densities far below exp(-88)
    # (float32 underflow) still normalize.
    probs = jax.nn.softmax(log_density.reshape(-1)).reshape(log_density.shape)
    mean = jnp.einsum("ij,ijk->k", probs, points, precision=jax.lax.Precision.HIGHEST)
    centered = points - mean[None, None]
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
    if not hasattr(samples, "shape") or samples.ndim != 2 or samples.shape[-1] != 2:
        raise ValueError(f"`samples` must have shape [n, 2]; got {describe(samples)}.")
    bins = check_int_pair("bins", bins)
    if any(b > n for b, n in zip(bins, reference.resolution, strict=False)):
        raise ValueError(f"`bins` {bins} must not exceed the grid's resolution {reference.resolution}.")
    if not pseudo_count > 0:
        raise ValueError(f"`pseudo_count` must be > 0; got {pseudo_count}.")
    return _histogram_kl(samples, reference, bins, pseudo_count)


@functools.partial(jax.jit, static_argnums=2)
def _histogram_kl(samples: Array, reference: GridPosterior, bins: tuple[int, int], pseudo_count: Array) -> Array:
    """kl_from_samples_to_grid after validation; bins static, pseudo_count traced."""
    resolution = jnp.array(reference.resolution)[None]  # [1, 2], against samples [N, 2]
    # Cell i of an axis with n cells belongs to coarse bin floor(i b / n).
    cell_to_bin = [np.arange(n) * b // n for b, n in zip(bins, reference.resolution, strict=False)]
    reference_mass = jnp.zeros(bins).at[cell_to_bin[0][:, None], cell_to_bin[1][None, :]].add(reference.probs)

    lows = jnp.array([lo for lo, _ in reference.bounds])
    scaled = (samples - lows[None]) / jnp.array(reference.cell_size)[None]
    # Compared as floats before any integer cast, so huge values and NaN
    # count as outside instead of overflowing into some bin.
    inside = jnp.all((scaled >= 0) & (scaled < resolution), axis=-1)
    cell = jnp.clip(jnp.floor(jnp.where(inside[:, None], scaled, 0.0)), 0, resolution - 1).astype(jnp.int32)
    sample_bin = cell * jnp.array(bins)[None] // resolution
    num_bins = bins[0] * bins[1]
    flat_bin = jnp.where(inside, sample_bin[:, 0] * bins[1] + sample_bin[:, 1], num_bins)
    counts = jnp.bincount(flat_bin, length=num_bins + 1)
    sample_mass = (counts + pseudo_count) / (samples.shape[0] + pseudo_count * (num_bins + 1))

    p = reference_mass.reshape(-1)
    q = sample_mass[:num_bins]
    return jnp.sum(jnp.where(p > 0, p * (jnp.log(jnp.where(p > 0, p, 1.0)) - jnp.log(q)), 0.0))
