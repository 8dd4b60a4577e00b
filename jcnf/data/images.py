"""Image arrays for super-resolution: validation, 8-bit scaling, low-resolution pairs.

The data convention is that of `jcnf.dequantize.uniform_dequantization`: an 8-bit
pixel k in {0, ..., 255} is the value k / 256 in [0, 1). A low-resolution
context is made from the high-resolution value by area downsampling (the mean
of each factor x factor block), as the super-resolution papers do; bicubic
upsampling of that context is the classical reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jcnf._checks import check_int, describe

NUM_BINS = 256
_IMAGE_SHAPE = "[batch, height, width, channels]"


def check_images(name: str, images, channels: int | None = None) -> None:
    """Checks an image batch: rank 4 NHWC, uint8, or floating point in [0, 1).

    Value ranges are checked only on concrete arrays (not under `jax.jit`).

    Args:
      name: the argument's name, quoted in the error.
      images: [batch, height, width, channels], uint8 (0..255) or float in [0, 1).
      channels: the required number of channels, or None for any.

    Raises:
      ValueError: naming `name`, the expected and the received shape, dtype or range.
    """
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        raise ValueError(f"`{name}` must be an array of shape {_IMAGE_SHAPE}; got {type(images).__name__}.")
    if images.ndim != 4:
        raise ValueError(f"`{name}` must have shape {_IMAGE_SHAPE} (rank 4, NHWC); got {describe(images)}.")
    if channels is not None and images.shape[-1] != channels:
        raise ValueError(f"`{name}` must have {channels} channels (last axis, NHWC); got {describe(images)}.")
    if images.dtype == np.uint8:
        return
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"`{name}` must be uint8 (0..255) or floating point in [0, 1); got {describe(images)}.")
    if not isinstance(images, jax.core.Tracer) and images.size:
        low, high = float(jnp.min(images)), float(jnp.max(images))
        if not (np.isfinite(low) and np.isfinite(high) and low >= 0.0 and high < 1.0):
            raise ValueError(f"`{name}` must hold values in [0, 1) (8-bit pixels k / 256); got values in "
                             f"[{low:.4g}, {high:.4g}] ({describe(images)}). Divide 0..255 data by 256.")


def to_unit_interval(images) -> np.ndarray:
    """8-bit pixels k (uint8) to the values k / 256 in [0, 1), float32; floats in [0, 1) pass unchanged.

    Args:
      images: [batch, height, width, channels], uint8 or float in [0, 1).

    Returns:
      float32 array of the same shape.
    """
    check_images("images", images)
    if images.dtype == np.uint8:
        return np.asarray(images, np.float32) / NUM_BINS
    return np.asarray(images, np.float32)


def area_downsample(images: Array, factor: int) -> Array:
    """Mean of every factor x factor block: [B, H, W, C] -> [B, H/factor, W/factor, C].

    jax.numpy; runs under `jax.jit`. This is scikit-image's
    `downscale_local_mean` for block sizes that divide the image.
    """
    check_int("factor", factor)
    check_images("images", images)
    batch, height, width, channels = images.shape
    if height % factor or width % factor:
        raise ValueError(f"`images` height and width must be divisible by `factor`={factor}; "
                         f"got {describe(images)}.")
    blocks = jnp.asarray(images, jnp.float32).reshape(batch, height // factor, factor, width // factor, factor,
                                                      channels)
    return jnp.mean(blocks, axis=(2, 4))


def bicubic_upsample(context: Array, factor: int) -> Array:
    """Bicubic upsampling [B, h, w, C] -> [B, h*factor, w*factor, C], clipped to [0, 1).

    jax.numpy (`jax.image.resize` with the Keys cubic, a = -0.5, antialiasing
    irrelevant when enlarging); the reference line of super-resolution tables.
    """
    check_int("factor", factor)
    if getattr(context, "ndim", None) != 4:
        raise ValueError(f"`context` must have shape {_IMAGE_SHAPE}; got {describe(context)}.")
    batch, height, width, channels = context.shape
    up = jax.image.resize(jnp.asarray(context, jnp.float32), (batch, height * factor, width * factor, channels),
                          "bicubic")
    # Cubic kernels overshoot at edges; the largest valid value is the last bin's.
    return jnp.clip(up, 0.0, (NUM_BINS - 1) / NUM_BINS)


def quantize(images: Array, num_bins: int = NUM_BINS) -> Array:
    """Continuous values in [0, 1) to the grid k / num_bins (floor, clipped): a flow sample to an 8-bit image."""
    check_int("num_bins", num_bins, 2)
    return jnp.clip(jnp.floor(jnp.asarray(images) * num_bins), 0, num_bins - 1) / num_bins


def make_pairs(value: Array, factor: int) -> dict[str, Array]:
    """Super-resolution pairs {"value": [B, H, W, C] float k/256, "context": [B, H/f, W/f, C]}.

    jax.numpy (jit it to make pairs on device). uint8 input is scaled to k/256 first.

    Args:
      value: high-resolution images [B, H, W, C], uint8 or float in [0, 1).
      factor: the downsampling factor (2 or 4 in the papers).
    """
    check_images("value", value)
    if value.dtype == jnp.uint8:
        value = jnp.asarray(value, jnp.float32) / NUM_BINS
    value = jnp.asarray(value, jnp.float32)
    return {"value": value, "context": area_downsample(value, factor)}
