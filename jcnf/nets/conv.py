"""A stride-1, "SAME" 2-D convolution whose gradient keeps the canonical layout.

XLA lowers the gradient of `lax.conv_general_dilated` to two convolutions
with permuted dimension labels (the input gradient with the kernel's in and
out axes swapped, the kernel gradient with batch and features swapped).
Outside a loop, XLA's CPU backend rewrites them into the NHWC/HWIO layout its
fast convolution kernels accept; inside a `lax.scan` body it does not, and
the permuted convolutions fall back to a generic kernel, 16-19x slower on a
chain of 8 convolutions (2-core AMD EPYC CPU).
Flows scan their K blocks (`jcnf.flows.stack`), so their coupling networks
use `conv2d`, whose custom VJP on CPU writes both gradients as NHWC/HWIO
convolutions with explicit transposes. Other backends (cuDNN, TPU) take any
layout at full speed and keep XLA's own gradient: the choice is made when the
program is lowered for a platform (`lax.platform_dependent`). The values and
gradients are those of `lax.conv_general_dilated` on every backend.

Reverse mode only: `jax.grad`, `jax.vjp` and `jax.jacrev` work through
`conv2d` (and so through every flow's coupling networks); forward mode
(`jax.jvp`, `jax.jacfwd`) does not, as for any `jax.custom_vjp`.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array

_LAYOUT = ("NHWC", "HWIO", "NHWC")


def _same_padding(kernel_shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
    return tuple((size // 2, size // 2) for size in kernel_shape[:2])  # type: ignore[return-value]


def _convolve(x: Array, kernel: Array) -> Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), _same_padding(kernel.shape), dimension_numbers=_LAYOUT)


@jax.custom_vjp
def conv2d(x: Array, kernel: Array) -> Array:
    """Stride-1 convolution with "SAME" padding of an odd-sized kernel.

    Args:
      x: images, [batch, height, width, in_channels].
      kernel: [kernel_height, kernel_width, in_channels, out_channels], both sizes odd.

    Returns:
      [batch, height, width, out_channels].
    """
    return _convolve(x, kernel)


def _conv2d_forward(x: Array, kernel: Array) -> tuple[Array, tuple[Array, Array]]:
    return _convolve(x, kernel), (x, kernel)


def _canonical_gradients(x: Array, kernel: Array, y_bar: Array) -> tuple[Array, Array]:
    # Input gradient: the same convolution with the kernel flipped in space and
    # its in/out axes swapped (exact for odd kernels with symmetric padding).
    x_bar = _convolve(y_bar, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
    # Kernel gradient: correlate x with y_bar over batch and positions. With
    # x as [in, H, W, batch] and y_bar as [H, W, batch, out] this is an
    # NHWC/HWIO convolution whose output [in, kh, kw, out] is the kernel's.
    kernel_bar = jax.lax.conv_general_dilated(
        jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(y_bar, (1, 2, 0, 3)).astype(x.dtype), (1, 1),
        _same_padding(kernel.shape), dimension_numbers=_LAYOUT)
    return x_bar.astype(x.dtype), jnp.transpose(kernel_bar, (1, 2, 0, 3)).astype(kernel.dtype)


def _autodiff_gradients(x: Array, kernel: Array, y_bar: Array) -> tuple[Array, Array]:
    return jax.vjp(_convolve, x, kernel)[1](y_bar)


def _conv2d_backward(residuals: tuple[Array, Array], y_bar: Array) -> tuple[Array, Array]:
    x, kernel = residuals
    return jax.lax.platform_dependent(x, kernel, y_bar, cpu=_canonical_gradients, default=_autodiff_gradients)


conv2d.defvjp(_conv2d_forward, _conv2d_backward)


class Conv2D(nn.Module):
    """`flax.linen.Conv` (stride 1, "SAME", odd kernel) on `conv2d`, with the same parameters.

    Attributes:
      features: output channels.
      kernel_size: (height, width), both odd.
      kernel_init: initializer of the [kh, kw, in, out] kernel.
      dtype: computation dtype (e.g. bfloat16); parameters stay float32.
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    dtype: Optional[jnp.dtype] = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Args: x [B, H, W, C]. Returns [B, H, W, features]."""
        if any(size % 2 == 0 for size in self.kernel_size):
            raise ValueError(f"`kernel_size` must be odd; got {self.kernel_size}.")
        kernel = self.param("kernel", self.kernel_init, tuple(self.kernel_size) + (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        dtype = x.dtype if self.dtype is None else self.dtype
        # The bias [F] broadcast explicitly over [B, H, W, F].
        return conv2d(x.astype(dtype), kernel.astype(dtype)) + bias.astype(dtype).reshape(1, 1, 1, -1)
