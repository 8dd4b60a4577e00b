"""Image and signal quality: PSNR, SSIM and SNR, in jax.numpy.

Pure array maps with static shapes: they run on device and under `jax.jit`,
so training and sampling loops can log them without a host round-trip.
Inputs are validated with `ValueError`s naming the argument; under `jax.jit`
only the static shape and dtype checks run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from jcnf._checks import check_float_array, describe
from jcnf.metrics._validation import check_float_min_rank, check_positive_scalar, check_same_shape, working_dtype

_IMAGE_SHAPE = "[batch, height, width, channels]"

# SSIM constants of Wang et al. (2004), as scikit-image uses them with
# `gaussian_weights=True`: sigma 1.5 and a truncation at 3.5 sigma give a
# radius of int(3.5 * 1.5 + 0.5) = 5, i.e. an 11 x 11 window.
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _check_image_pair(x, y, data_range) -> None:
    check_float_array("x", x, _IMAGE_SHAPE, (4,))
    check_float_array("y", y, _IMAGE_SHAPE, (4,))
    check_same_shape("x", x, "y", y)
    check_positive_scalar("data_range", data_range)


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
    dtype = working_dtype(x)
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
    dtype = working_dtype(x)
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
    check_float_min_rank("estimate", estimate, "[batch, ...]", 2)
    check_float_min_rank("reference", reference, "[batch, ...]", 2)
    check_same_shape("estimate", estimate, "reference", reference)
    dtype = working_dtype(reference)
    estimate, reference = jnp.asarray(estimate, dtype), jnp.asarray(reference, dtype)
    axes = tuple(range(1, reference.ndim))
    # Ratio of squared norms, halved in log space: avoids two square roots.
    signal = jnp.sum(jnp.square(reference), axis=axes)
    error = jnp.sum(jnp.square(reference - estimate), axis=axes)
    return 10.0 * jnp.log10(signal / error)


def mean_image_scores(predicted: ArrayLike, truth: ArrayLike, data_range: float = 1.0) -> dict[str, Array]:
    """Mean PSNR and SSIM over the predicted images that are finite, and how many were not.

    For averaging scores over samples: one sample with a NaN or infinite pixel
    would turn a plain mean into NaN and hide how many samples were usable.
    Such images are left out of both means and counted instead. jax.numpy;
    runs under `jax.jit`.

    Args:
      predicted: images, shape [batch, height, width, channels] (height and
        width at least 11, SSIM's window).
      truth: reference images of the same shape, finite.
      data_range: the span of valid values (1.0 for [0, 1]).

    Returns:
      {"psnr": mean dB, "ssim": mean SSIM (both scalars, NaN when no image is
      finite), "non_finite": the number of predicted images with a non-finite
      pixel (int32 scalar)}.
    """
    _check_image_pair(predicted, truth, data_range)
    predicted, truth = jnp.asarray(predicted), jnp.asarray(truth)
    finite = jnp.all(jnp.isfinite(predicted), axis=(1, 2, 3))
    # Non-finite images are scored against themselves' truth and then masked out, so no NaN enters a sum.
    scored = jnp.where(finite[:, None, None, None], predicted, truth)
    count = jnp.sum(finite.astype(jnp.int32))

    def finite_mean(scores: Array) -> Array:
        return jnp.sum(jnp.where(finite, scores, 0.0)) / count.astype(scores.dtype)

    return {"psnr": finite_mean(psnr(scored, truth, data_range)), "ssim": finite_mean(ssim(scored, truth, data_range)),
            "non_finite": predicted.shape[0] - count}
