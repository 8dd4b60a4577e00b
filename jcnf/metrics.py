"""Evaluation metrics: likelihood in bits per dimension, image quality, segmentation, calibration.

Two kinds of function live here, and each docstring says which it is:

- jax.numpy metrics (`nats_to_bits_per_dim`, `bits_per_dim`, `psnr`, `ssim`,
  `snr_db`, `calibration_within_k_std`) are pure array maps with static
  shapes: they run on device and under `jax.jit`, so training and sampling
  loops can log them without a host round-trip.
- numpy metrics (`precision_recall_curve`, `max_f1`, `average_precision`,
  `roc_auc`, `precision_recall_f1`, `expected_calibration_error`) sort scores
  and select masked entries, so their sizes depend on the data. They are for
  evaluation on the host and return Python floats or numpy arrays.

Every function validates its inputs and raises `ValueError` naming the
argument, the expected and the received shape or range. Checks on values
(ranges, signs) run only on concrete inputs; under `jax.jit` only the static
shape and dtype checks run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from jcnf._checks import check_finite, check_float_array, check_int, describe
from jcnf.distributions.units import bits_per_dim, dequantization_offset, nats_to_bits_per_dim  # noqa: F401

_IMAGE_SHAPE = "[batch, height, width, channels]"

# SSIM constants of Wang et al. (2004), as scikit-image uses them with
# `gaussian_weights=True`: sigma 1.5 and a truncation at 3.5 sigma give a
# radius of int(3.5 * 1.5 + 0.5) = 5, i.e. an 11 x 11 window.
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


# --------------------------------------------------------------------------
# Validation helpers.
# --------------------------------------------------------------------------


def _is_concrete(x) -> bool:
    """Whether `x` holds values now (not a tracer), so value checks can run."""
    return not isinstance(x, jax.core.Tracer)


def _check_positive_scalar(name: str, value) -> None:
    if np.ndim(value) != 0:
        raise ValueError(f"`{name}` must be a positive scalar; got {describe(value)}.")
    if _is_concrete(value) and not float(value) > 0:
        raise ValueError(f"`{name}` must be a positive scalar; got {float(value)}.")


def _check_same_shape(name_a: str, a, name_b: str, b) -> None:
    if a.shape != b.shape:
        raise ValueError(f"`{name_b}` must have the same shape as `{name_a}` {tuple(a.shape)}; "
                         f"got {describe(b)}.")


def _check_float_min_rank(name: str, x, expected: str, min_rank: int) -> None:
    """Like `check_float_array`, for a leading batch axis followed by any number of axes."""
    if hasattr(x, "ndim") and x.ndim < min_rank:
        raise ValueError(f"`{name}` must have shape {expected} (rank >= {min_rank}); got {describe(x)}.")
    check_float_array(name, x, expected, (getattr(x, "ndim", 0),))


def _check_image_pair(x, y, data_range) -> None:
    check_float_array("x", x, _IMAGE_SHAPE, (4,))
    check_float_array("y", y, _IMAGE_SHAPE, (4,))
    _check_same_shape("x", x, "y", y)
    _check_positive_scalar("data_range", data_range)


def _binary_labels(name: str, labels: np.ndarray) -> np.ndarray:
    """Boolean copy of `labels`, which must be bool or hold only 0 and 1."""
    if labels.dtype == bool:
        return labels
    if not np.issubdtype(labels.dtype, np.number):
        raise ValueError(f"`{name}` must be boolean or numeric with values in {{0, 1}}; got {describe(labels)}.")
    values = np.unique(labels)
    if not np.all(np.isin(values, (0, 1))):
        raise ValueError(f"`{name}` must hold only 0 and 1 (or be boolean); got values "
                         f"{values[:5].tolist()}{' ...' if values.size > 5 else ''}.")
    return labels == 1


def _select(values_name: str, values: ArrayLike, labels: ArrayLike, mask: ArrayLike | None,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Validates a (values, labels, mask) triple and returns the masked entries, flattened.

    Args:
      values_name: the name of the first argument, quoted in errors.
      values: scores, probabilities or hard predictions, any shape.
      labels: ground truth of the same shape, bool or in {0, 1}.
      mask: optional boolean field of view of the same shape; only its True
        entries are scored.

    Returns:
      The selected values as float64 and the labels as bool, both of shape [n].
    """
    values = np.asarray(values)
    labels = np.asarray(labels)
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise ValueError(f"`{values_name}` must be a numeric array; got {describe(values)}.")
    _check_same_shape(values_name, values, "labels", labels)
    check_finite(values_name, values)
    labels = _binary_labels("labels", labels)
    if mask is not None:
        mask = np.asarray(mask)
        _check_same_shape(values_name, values, "mask", mask)
        if mask.dtype != bool:
            raise ValueError(f"`mask` must be a boolean array (the field of view); got {describe(mask)}. "
                             "Use `mask.astype(bool)` if it holds 0 and 1.")
        if not mask.any():
            raise ValueError(f"`mask` selects no entries of `{values_name}` ({describe(values)}); "
                             "a metric needs at least one.")
        values, labels = values[mask], labels[mask]
    if values.size == 0:
        raise ValueError(f"`{values_name}` is empty ({describe(values)}); a metric needs at least one entry.")
    return values.reshape(-1).astype(np.float64), labels.reshape(-1)


# --------------------------------------------------------------------------
# Image quality (jax.numpy).
# --------------------------------------------------------------------------


def _working_dtype(x: Array) -> jnp.dtype:
    # Half-precision inputs lose the small differences these metrics measure;
    # compute in at least float32.
    return jnp.promote_types(x.dtype, jnp.float32)


def psnr(x: ArrayLike, y: ArrayLike, data_range: float = 1.0) -> Array:
    """Peak signal-to-noise ratio of each image pair, in dB.

    jax.numpy; runs under `jax.jit`. Matches
    `skimage.metrics.peak_signal_noise_ratio` applied to each image. Identical
    images give +inf.

    Args:
      x: images, shape [batch, height, width, channels], floating point.
      y: images of the same shape.
      data_range: the span of valid values (1.0 for [0, 1], 255.0 for [0, 255]).

    Returns:
      10 * log10(data_range^2 / MSE) per image, shape [batch].
    """
    _check_image_pair(x, y, data_range)
    dtype = _working_dtype(x)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    mse = jnp.mean(jnp.square(x - y), axis=(1, 2, 3))
    return 10.0 * jnp.log10(jnp.square(jnp.asarray(data_range, dtype)) / mse)


def _gaussian_window() -> np.ndarray:
    """The normalized 1-D Gaussian taps of the SSIM window, shape [2 * radius + 1]."""
    offsets = np.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=np.float64)
    taps = np.exp(-0.5 * np.square(offsets / _SSIM_SIGMA))
    return taps / taps.sum()


def _filter_valid(images: Array, taps: np.ndarray) -> Array:
    """Separable Gaussian filter over height and width, keeping only full windows.

    Args:
      images: shape [batch, height, width, channels].
      taps: 1-D window of length n.

    Returns:
      Filtered images, shape [batch, height - n + 1, width - n + 1, channels].
    """
    n = taps.shape[0]
    for axis in (1, 2):
        out_size = images.shape[axis] - n + 1
        images = sum(float(tap) * jax.lax.slice_in_dim(images, k, k + out_size, axis=axis)
                     for k, tap in enumerate(taps))
    return images


def ssim(x: ArrayLike, y: ArrayLike, data_range: float = 1.0) -> Array:
    """Structural similarity of each image pair, Gaussian-window SSIM (Wang et al., 2004).

    jax.numpy; runs under `jax.jit` and on device. Matches
    `skimage.metrics.structural_similarity(x[i], y[i], gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=data_range,
    channel_axis=-1)`: an 11 x 11 Gaussian window with sigma 1.5, K1 = 0.01,
    K2 = 0.03, the SSIM map averaged over channels and over the positions
    where the window lies fully inside the image (scikit-image also crops the
    5-pixel border it computed with padding, so the padding never matters).

    Args:
      x: images, shape [batch, height, width, channels], floating point;
        height and width at least 11.
      y: images of the same shape.
      data_range: the span of valid values (1.0 for [0, 1]).

    Returns:
      Mean SSIM per image, shape [batch], at most 1 (equal images give 1).
    """
    _check_image_pair(x, y, data_range)
    window = 2 * _SSIM_RADIUS + 1
    if x.shape[1] < window or x.shape[2] < window:
        raise ValueError(f"`x` must have height and width >= {window} (the SSIM window); got {describe(x)}.")
    dtype = _working_dtype(x)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    taps = _gaussian_window()

    mean_x = _filter_valid(x, taps)
    mean_y = _filter_valid(y, taps)
    # (Co)variances are invariant to a constant shift of x or y, so they are
    # computed from per-image-centred values: E[x^2] - E[x]^2 on raw [0, 1]
    # pixels cancels most float32 digits in flat regions, centring keeps them.
    x_c = x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    y_c = y - jnp.mean(y, axis=(1, 2, 3), keepdims=True)
    mean_xc = _filter_valid(x_c, taps)
    mean_yc = _filter_valid(y_c, taps)
    var_x = _filter_valid(x_c * x_c, taps) - mean_xc * mean_xc
    var_y = _filter_valid(y_c * y_c, taps) - mean_yc * mean_yc
    cov_xy = _filter_valid(x_c * y_c, taps) - mean_xc * mean_yc

    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    luminance = (2.0 * mean_x * mean_y + c1) / (mean_x * mean_x + mean_y * mean_y + c1)
    structure = (2.0 * cov_xy + c2) / (var_x + var_y + c2)
    return jnp.mean(luminance * structure, axis=(1, 2, 3))


# --------------------------------------------------------------------------
# Signal reconstruction and uncertainty (jax.numpy).
# --------------------------------------------------------------------------


def snr_db(estimate: ArrayLike, reference: ArrayLike) -> Array:
    """Signal-to-noise ratio of each estimate against its reference, in dB.

    jax.numpy; runs under `jax.jit`. A perfect estimate gives +inf.

    Args:
      estimate: shape [batch, ...], floating point.
      reference: the same shape.

    Returns:
      20 * log10(||reference|| / ||reference - estimate||) per item, with norms
      over all non-batch axes, shape [batch].
    """
    _check_float_min_rank("estimate", estimate, "[batch, ...]", 2)
    _check_float_min_rank("reference", reference, "[batch, ...]", 2)
    _check_same_shape("estimate", estimate, "reference", reference)
    dtype = _working_dtype(reference)
    estimate, reference = jnp.asarray(estimate, dtype), jnp.asarray(reference, dtype)
    axes = tuple(range(1, reference.ndim))
    # Ratio of squared norms, halved in log space: avoids two square roots.
    signal = jnp.sum(jnp.square(reference), axis=axes)
    error = jnp.sum(jnp.square(reference - estimate), axis=axes)
    return 10.0 * jnp.log10(signal / error)


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
        _check_float_min_rank(name, value, "[...] (any shape)", 0)
    _check_same_shape("samples_mean", samples_mean, "samples_std", samples_std)
    _check_same_shape("samples_mean", samples_mean, "truth", truth)
    _check_positive_scalar("k", k)
    if _is_concrete(samples_std) and bool(np.any(np.asarray(samples_std) < 0)):
        raise ValueError(f"`samples_std` must be >= 0; got minimum {float(np.min(samples_std))}.")
    inside = jnp.abs(jnp.asarray(samples_mean) - jnp.asarray(truth)) <= k * jnp.asarray(samples_std)
    return jnp.mean(inside.astype(_working_dtype(jnp.asarray(samples_std))))


# --------------------------------------------------------------------------
# Segmentation and calibration of binary predictions (numpy, host only).
# --------------------------------------------------------------------------


def _counts_at_thresholds(scores: np.ndarray, labels: np.ndarray,
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when predicting `scores >= t`, for each distinct score t.

    Args:
      scores: shape [n], float64.
      labels: shape [n], bool.

    Returns:
      (thresholds, true_positives, false_positives), each of shape [t], with
      thresholds the distinct scores in decreasing order.
    """
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    # The last index of each run of equal scores: tied entries switch
    # together, so the curve gets one point per distinct score.
    last_of_run = np.append(np.flatnonzero(np.diff(scores)), scores.size - 1)
    true_positives = np.cumsum(labels)[last_of_run]
    false_positives = last_of_run + 1 - true_positives
    return scores[last_of_run], true_positives, false_positives


def _require_positives(num_positives: int) -> None:
    if num_positives == 0:
        raise ValueError("`labels` has no positive entries (inside `mask`); recall is undefined.")


def precision_recall_curve(scores: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None,
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall of `scores >= t` for every distinct score t.

    numpy, host only. Same convention as scikit-learn's
    `precision_recall_curve` (which keeps every threshold by default):
    thresholds increase, and a final point (precision 1, recall 0) with no
    threshold closes the curve.

    Args:
      scores: predicted scores or probabilities of the positive class, any shape.
      labels: ground truth, same shape, bool or in {0, 1}; needs a positive entry.
      mask: optional boolean field of view, same shape; only True entries count.

    Returns:
      (precision, recall, thresholds) with shapes [t + 1], [t + 1] and [t],
      where t is the number of distinct scores.
    """
    scores, labels = _select("scores", scores, labels, mask)
    thresholds, true_positives, false_positives = _counts_at_thresholds(scores, labels)
    _require_positives(int(true_positives[-1]))
    # Each threshold is an observed score, so at least one entry is predicted
    # positive and the precision denominator is never zero.
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / true_positives[-1]
    return (np.append(precision[::-1], 1.0), np.append(recall[::-1], 0.0), thresholds[::-1])


def max_f1(scores: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None) -> tuple[float, float]:
    """The best F1 score over all thresholds, and the threshold that reaches it.

    numpy, host only. Thresholds are the distinct scores and predict positive
    where `scores >= threshold`; among thresholds with equal F1 the highest
    (fewest positives) is returned.

    Args:
      scores: predicted scores of the positive class, any shape.
      labels: ground truth, same shape, bool or in {0, 1}; needs a positive entry.
      mask: optional boolean field of view, same shape.

    Returns:
      (f1, threshold) as Python floats.
    """
    scores, labels = _select("scores", scores, labels, mask)
    thresholds, true_positives, false_positives = _counts_at_thresholds(scores, labels)
    _require_positives(int(true_positives[-1]))
    # F1 = 2 TP / (2 TP + FP + FN) and FN = P - TP; the denominator is >= P > 0.
    f1 = 2.0 * true_positives / (true_positives + false_positives + true_positives[-1])
    best = int(np.argmax(f1))  # Thresholds decrease, so the first maximum is the highest.
    return float(f1[best]), float(thresholds[best])


def average_precision(scores: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Area under the precision-recall curve as the step sum AP = sum_n (R_n - R_{n-1}) P_n.

    numpy, host only. The same definition as scikit-learn's
    `average_precision_score`: no interpolation between points, which would
    be optimistic for PR curves.

    Args:
      scores: predicted scores of the positive class, any shape.
      labels: ground truth, same shape, bool or in {0, 1}; needs a positive entry.
      mask: optional boolean field of view, same shape.

    Returns:
      Average precision in [0, 1], a Python float.
    """
    precision, recall, _ = precision_recall_curve(scores, labels, mask)
    # Recall decreases along the curve, so its negated steps are the widths.
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def roc_auc(scores: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Area under the ROC curve (true- against false-positive rate), by the trapezoidal rule.

    numpy, host only. Equal to scikit-learn's `roc_auc_score` and to the
    probability that a random positive scores above a random negative, with
    ties counted as one half (the trapezoids over tied scores do this).

    Args:
      scores: predicted scores of the positive class, any shape.
      labels: ground truth, same shape, bool or in {0, 1}; needs both classes.
      mask: optional boolean field of view, same shape.

    Returns:
      ROC AUC in [0, 1], a Python float.
    """
    scores, labels = _select("scores", scores, labels, mask)
    _, true_positives, false_positives = _counts_at_thresholds(scores, labels)
    num_positives, num_negatives = int(true_positives[-1]), int(false_positives[-1])
    if num_positives == 0 or num_negatives == 0:
        raise ValueError(f"`labels` must contain both classes (inside `mask`) for ROC AUC; got "
                         f"{num_positives} positive and {num_negatives} negative entries.")
    true_rate = np.append(0.0, true_positives / num_positives)
    false_rate = np.append(0.0, false_positives / num_negatives)
    return float(np.trapezoid(true_rate, false_rate))


def precision_recall_f1(pred_binary: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None,
                        ) -> tuple[float, float, float]:
    """Precision, recall and F1 of a hard (0/1) prediction, e.g. one thresholded sample.

    numpy, host only. A ratio with a zero denominator (no predicted or no
    true positives) is reported as 0, as scikit-learn does with its default
    `zero_division`.

    Args:
      pred_binary: the prediction, any shape, bool or in {0, 1}.
      labels: ground truth, same shape, bool or in {0, 1}.
      mask: optional boolean field of view, same shape.

    Returns:
      (precision, recall, f1) as Python floats.
    """
    _binary_labels("pred_binary", np.asarray(pred_binary))
    predicted, labels = _select("pred_binary", pred_binary, labels, mask)
    predicted = predicted == 1.0
    true_positives = int(np.count_nonzero(predicted & labels))
    num_predicted, num_positives = int(np.count_nonzero(predicted)), int(np.count_nonzero(labels))

    def ratio(numerator: int, denominator: int) -> float:
        return numerator / denominator if denominator else 0.0

    return (ratio(true_positives, num_predicted), ratio(true_positives, num_positives),
            ratio(2 * true_positives, num_predicted + num_positives))


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, num_bins: int = 10,
                               mask: ArrayLike | None = None) -> float:
    """Expected calibration error of positive-class probabilities, over equal-width bins.

    numpy, host only. This is the gap in the reliability diagram of the
    positive class: [0, 1] is cut into `num_bins` bins [i/M, (i+1)/M) (the
    last one also holds 1), and

        ECE = sum_b (n_b / n) * |mean(labels in b) - mean(probs in b)|,

    the observed frequency of positives against the predicted probability,
    weighted by the share of entries in each bin; empty bins contribute 0.
    (The top-label variant, which bins max(p, 1 - p) against accuracy, gives
    different numbers; this one reads directly off a per-pixel probability
    map.)

    Args:
      probs: predicted probability of the positive class, any shape, in [0, 1].
      labels: ground truth, same shape, bool or in {0, 1}.
      num_bins: number of equal-width bins M.
      mask: optional boolean field of view, same shape.

    Returns:
      ECE in [0, 1], a Python float.
    """
    check_int("num_bins", num_bins)
    probs, labels = _select("probs", probs, labels, mask)
    if probs.min() < 0.0 or probs.max() > 1.0:
        raise ValueError(f"`probs` must lie in [0, 1]; got values in [{probs.min()}, {probs.max()}].")
    bins = np.minimum((probs * num_bins).astype(np.int64), num_bins - 1)
    # n_b / n * |mean_y - mean_p| = |sum_y - sum_p| / n: no per-bin division.
    positives_per_bin = np.bincount(bins, weights=labels.astype(np.float64), minlength=num_bins)
    probs_per_bin = np.bincount(bins, weights=probs, minlength=num_bins)
    return float(np.sum(np.abs(positives_per_bin - probs_per_bin)) / probs.size)
