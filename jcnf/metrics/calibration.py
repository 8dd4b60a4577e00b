"""Calibration of predicted probabilities and of posterior uncertainty.

`expected_calibration_error` is numpy, host only (it selects masked entries,
so sizes depend on the data) and takes scikit-learn's order `(y_true,
y_prob)`, as `sklearn.calibration.calibration_curve` does.
`calibration_within_k_std` and `posterior_coverage` are jax.numpy and run
under `jax.jit`. Inputs are validated with `ValueError`s naming the argument.

    coverage = posterior_coverage(samples, truth)   # samples [S, H, W, C], truth [H, W, C]
    # -> [3]: fractions within 1, 2, 3 std; a calibrated Gaussian gives 0.683, 0.954, 0.997
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from jcnf._checks import check_int
from jcnf.metrics._validation import (
    check_float_min_rank,
    check_positive_scalar,
    check_same_shape,
    is_concrete,
    select_masked,
    working_dtype,
)


def expected_calibration_error(y_true: ArrayLike, y_prob: ArrayLike, num_bins: int = 10,
                               mask: ArrayLike | None = None) -> float:
    """Expected calibration error of positive-class probabilities, over equal-width bins.

    numpy, host only. This is the gap in the reliability diagram of the
    positive class: [0, 1] is cut into `num_bins` bins [i/M, (i+1)/M) (the
    last one also holds 1), and

        ECE = sum_b (n_b / n) * |mean(y_true in b) - mean(y_prob in b)|,

    the observed frequency of positives against the predicted probability,
    weighted by the share of entries in each bin; empty bins contribute 0.
    (The top-label variant, which bins max(p, 1 - p) against accuracy, gives
    different numbers; this one reads directly off a per-pixel probability
    map. scikit-learn's `calibration_curve` closes its bins on the right,
    (i/M, (i+1)/M], so its bins differ from these at the edges.)

    Args:
      y_true: ground truth, any shape, bool or in {0, 1}.
      y_prob: predicted probability of the positive class, same shape, in [0, 1].
      num_bins: number of equal-width bins M.
      mask: optional boolean field of view, same shape.

    Returns:
      ECE in [0, 1], a Python float.
    """
    check_int("num_bins", num_bins)
    y_true, y_prob = select_masked(y_true, "y_prob", y_prob, mask)
    if y_prob.min() < 0.0 or y_prob.max() > 1.0:
        raise ValueError(f"`y_prob` must lie in [0, 1]; got values in [{y_prob.min()}, {y_prob.max()}].")
    bins = np.minimum((y_prob * num_bins).astype(np.int64), num_bins - 1)
    # n_b / n * |mean_y - mean_p| = |sum_y - sum_p| / n: no per-bin division.
    positives_per_bin = np.bincount(bins, weights=y_true.astype(np.float64), minlength=num_bins)
    probs_per_bin = np.bincount(bins, weights=y_prob, minlength=num_bins)
    return float(np.sum(np.abs(positives_per_bin - probs_per_bin)) / y_prob.size)


def calibration_within_k_std(samples_mean: ArrayLike, samples_std: ArrayLike, truth: ArrayLike,
                             k: float = 2.0) -> Array:
    """Fraction of entries whose truth lies within k posterior standard deviations of the mean.

    jax.numpy; runs under `jax.jit`. For a calibrated Gaussian posterior the
    fraction is erf(k / sqrt(2)): 0.683 for k = 1, 0.954 for k = 2; lower
    means over-confident, higher under-confident.

    Args:
      samples_mean: posterior mean (e.g. over samples), any shape.
      samples_std: posterior standard deviation, same shape, >= 0.
      truth: the ground truth, same shape.
      k: the width of the interval in standard deviations, > 0.

    Returns:
      The fraction of entries with |mean - truth| <= k * std, a scalar.
    """
    for name, value in (("samples_mean", samples_mean), ("samples_std", samples_std), ("truth", truth)):
        check_float_min_rank(name, value, "[...] (any shape)", 0)
    check_same_shape("samples_mean", samples_mean, "samples_std", samples_std)
    check_same_shape("samples_mean", samples_mean, "truth", truth)
    check_positive_scalar("k", k)
    if is_concrete(samples_std) and bool(np.any(np.asarray(samples_std) < 0)):
        raise ValueError(f"`samples_std` must be >= 0; got minimum {float(np.min(samples_std))}.")
    inside = jnp.abs(jnp.asarray(samples_mean) - jnp.asarray(truth)) <= k * jnp.asarray(samples_std)
    return jnp.mean(inside.astype(working_dtype(jnp.asarray(samples_std))))


def posterior_coverage(samples: ArrayLike, truth: ArrayLike, ks: tuple[float, ...] = (1.0, 2.0, 3.0)) -> Array:
    """Coverage of posterior samples: for each k, the fraction of entries within k std of the sample mean.

    jax.numpy; runs under `jax.jit`. The mean and the (population) standard
    deviation are taken over the samples' leading axis, entry by entry; a
    posterior whose marginals are calibrated Gaussians covers erf(k / sqrt(2))
    of the entries: 0.683, 0.954 and 0.997 for k = 1, 2, 3. Lower is
    over-confident (intervals too narrow for the error of the mean), higher
    under-confident.

    Args:
      samples: posterior samples, shape [num_samples, *event] with num_samples >= 2.
      truth: the ground truth, shape [*event].
      ks: interval half-widths in standard deviations, each > 0.

    Returns:
      The fractions, shape [len(ks)], in the order of `ks`.
    """
    check_float_min_rank("samples", samples, "[num_samples, ...] (num_samples >= 2)", 1)
    samples = jnp.asarray(samples)
    if samples.shape[0] < 2:
        raise ValueError(f"`samples` must hold at least 2 samples along its leading axis (a spread needs two); "
                         f"got shape {tuple(samples.shape)}.")
    check_float_min_rank("truth", truth, "[...] (the shape of one sample)", 0)
    if tuple(jnp.shape(truth)) != tuple(samples.shape[1:]):
        raise ValueError(f"`truth` must have the shape of one sample, {list(samples.shape[1:])}; "
                         f"got shape {tuple(jnp.shape(truth))}.")
    if not ks:
        raise ValueError("`ks` must hold at least one interval width; got none.")
    mean, std = jnp.mean(samples, axis=0), jnp.std(samples, axis=0)
    return jnp.stack([calibration_within_k_std(mean, std, truth, k) for k in ks])
