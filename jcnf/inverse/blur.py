"""Gaussian blur and decimation: the forward operator of super-resolution and deblurring."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from jcnf._checks import check_int
from jcnf.inverse.linear_operator import HIGHEST_PRECISION, LinearOperator, Params, as_image_shape

# A Gaussian kernel is truncated at this many standard deviations, as
# scipy.ndimage.gaussian_filter does by default; the mass beyond is < 1e-4.
_GAUSSIAN_TRUNCATE = 4.0


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalized 1D Gaussian of odd length 2 r + 1, r = round(4 sigma); [1.] for sigma 0."""
    radius = int(_GAUSSIAN_TRUNCATE * sigma + 0.5)
    if radius == 0:
        return np.ones(1, np.float32)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def _separable_blur(images: Array, kernel: Array) -> Array:
    """Zero-padded 'same' blur of images [B, H, W, C] by kernel (x) kernel.

    The kernel is symmetric and odd-length, so each 1D pass is a symmetric
    Toeplitz matrix and the blur is self-adjoint.
    """
    channels = images.shape[-1]
    size = kernel.shape[0]
    dimension_numbers = ("NHWC", "HWIO", "NHWC")
    for filter_shape in ((size, 1, 1, channels), (1, size, 1, channels)):
        filters = jnp.broadcast_to(kernel.reshape(filter_shape[:2] + (1, 1)), filter_shape).astype(images.dtype)
        images = lax.conv_general_dilated(images, filters, (1, 1), "SAME", dimension_numbers=dimension_numbers,
                                          feature_group_count=channels, precision=HIGHEST_PRECISION)
    return images


def _with_channels(x: Array, item_ndim: int) -> Array:
    return x if item_ndim == 3 else x[..., None]


@functools.partial(jax.jit, static_argnames=("factor",))
def _blur_downsample_forward(params: Params, x: Array, factor: int) -> Array:
    item_ndim = x.ndim - 1
    blurred = _separable_blur(_with_channels(x, item_ndim), params["kernel"])
    decimated = blurred[:, ::factor, ::factor, :]
    return decimated if item_ndim == 3 else decimated[..., 0]


@functools.partial(jax.jit, static_argnames=("factor", "image_hw"))
def _blur_downsample_adjoint(params: Params, y: Array, factor: int, image_hw: tuple[int, int]) -> Array:
    item_ndim = y.ndim - 1
    y = _with_channels(y, item_ndim)
    upsampled = jnp.zeros((y.shape[0],) + image_hw + (y.shape[-1],), y.dtype).at[:, ::factor, ::factor, :].set(y)
    blurred = _separable_blur(upsampled, params["kernel"])
    return blurred if item_ndim == 3 else blurred[..., 0]


# The maps are static fields of the operator's pytree: as frozen dataclasses they
# compare by value, so two operators of one (factor, size) have equal tree
# structures and a jitted function taking either compiles once.
@dataclasses.dataclass(frozen=True)
class _Decimate:
    """(params, x [B, H, W(, C)]) -> blurred and decimated [B, ceil(H / factor), ceil(W / factor)(, C)]."""

    factor: int

    def __call__(self, params: Params, x: Array) -> Array:
        return _blur_downsample_forward(params, x, factor=self.factor)


@dataclasses.dataclass(frozen=True)
class _Upsample:
    """The adjoint of `_Decimate`: zeros between the kept pixels, then the same blur."""

    factor: int
    image_hw: tuple[int, int]

    def __call__(self, params: Params, y: Array) -> Array:
        return _blur_downsample_adjoint(params, y, factor=self.factor, image_hw=self.image_hw)


def blur_downsample(image_shape: tuple[int, ...], factor: int, sigma: float) -> LinearOperator:
    """Gaussian blur, then keeping every `factor`-th pixel along height and width.

    The blur is separable, truncated at 4 sigma and zero-padded at the borders
    (so the operator is an exact symmetric convolution matrix, not a
    reflection); decimation keeps pixels (i * factor, j * factor). The adjoint
    inserts zeros between the kept pixels and blurs again.

    Args:
      image_shape: (height, width) or (height, width, channels).
      factor: integer decimation factor >= 1.
      sigma: blur standard deviation in pixels, >= 0 (0: no blur).

    Returns:
      An operator with input_shape = image_shape and output_shape
      (ceil(H / factor), ceil(W / factor)[, channels]).
    """
    dims = as_image_shape(image_shape)
    check_int("factor", factor)
    if not sigma >= 0.0:
        raise ValueError(f"`sigma` must be >= 0; got {sigma}.")
    factor = int(factor)
    out_dims = (-(-dims[0] // factor), -(-dims[1] // factor)) + dims[2:]
    params = {"kernel": jnp.asarray(_gaussian_kernel(float(sigma)))}
    return LinearOperator(dims, out_dims, params, _Decimate(factor), _Upsample(factor, dims[:2]),
                          f"Gaussian blur (sigma {sigma}) and decimation by {factor}")
