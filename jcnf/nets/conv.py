"""A stride-1, "SAME" 2-D convolution whose gradient keeps the canonical layout.

XLA lowers the gradient of `lax.conv_general_dilated` to two convolutions
with permuted dimension labels (the input gradient with the kernel's in and
out axes swapped, the kernel gradient with batch and features swapped).
Outside a loop, XLA's CPU backend rewrites them into the NHWC/HWIO layout its
fast convolution kernels accept; inside a `lax.scan` body it does not, and
the permuted convolutions fall back to a generic kernel, 16-19x slower on a
chain of 8 convolutions (2-core AMD EPYC CPU).
Flows scan their K blocks (`jcnf.flows.stack`), so their coupling networks
use `conv2d`.

`conv2d` is a `jax.custom_jvp`: convolution is bilinear, so its tangent is
conv(dx, kernel) + conv(x, dkernel), and reverse mode transposes that linear
map. On CPU the two tangent convolutions are written with permuted labels
(the kernel's in/out axes, x's batch/feature axes and the output's layout
swapped by explicit transposes) chosen so that JAX's transpose of each is an
NHWC/HWIO convolution: the gradients that `jax.grad` builds run on XLA's fast
CPU kernels inside a scan. Other backends (cuDNN, TPU) take any layout at
full speed and keep the plain tangent, hence XLA's own gradient: the choice
is made when the program is lowered for a platform
(`lax.platform_dependent`).

Every autodiff mode works on every backend: `jax.grad`, `jax.vjp`,
`jax.jacrev`, `jax.jvp`, `jax.jacfwd`, `jax.linearize` and `jax.hessian`.
Values and derivatives are those of `lax.conv_general_dilated`. (Forward
mode runs the permuted convolutions on CPU, the slow kernels inside a scan;
reverse mode, which training uses, runs the canonical ones.)
"""

from __future__ import annotations

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array
from jax.custom_derivatives import SymbolicZero

_LAYOUT = ("NHWC", "HWIO", "NHWC")
# The input tangent with the kernel stored [kh, kw, out, in]: its transpose
# (the input gradient) reads the flipped kernel as HWIO.
_INPUT_TANGENT_LAYOUT = ("NHWC", "HWOI", "NHWC")
# The kernel tangent with x stored [in, H, W, batch] (labelled as batch
# last, features first), dkernel stored [in, kh, kw, out] and the output
# written [H, W, batch, out]: its transpose (the kernel gradient) is the
# NHWC/HWIO convolution of x [in, H, W, batch] with the cotangent
# [H, W, batch, out], whose [in, kh, kw, out] output is the kernel's.
_KERNEL_TANGENT_LAYOUT = jax.lax.ConvDimensionNumbers(lhs_spec=(3, 0, 1, 2), rhs_spec=(3, 0, 1, 2),
                                                      out_spec=(2, 3, 0, 1))


def _same_padding(kernel_shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
    return tuple((size // 2, size // 2) for size in kernel_shape[:2])  # type: ignore[return-value]


def _convolve(x: Array, kernel: Array) -> Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), _same_padding(kernel.shape), dimension_numbers=_LAYOUT)


def _input_tangent(x_dot: Array, kernel: Array) -> Array:
    """conv(x_dot, kernel), written so that its transpose in x_dot is an NHWC/HWIO convolution."""
    return jax.lax.conv_general_dilated(x_dot, jnp.transpose(kernel, (0, 1, 3, 2)), (1, 1),
                                        _same_padding(kernel.shape), dimension_numbers=_INPUT_TANGENT_LAYOUT)


def _kernel_tangent(x: Array, kernel_dot: Array) -> Array:
    """conv(x, kernel_dot), written so that its transpose in kernel_dot is an NHWC/HWIO convolution."""
    out = jax.lax.conv_general_dilated(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(kernel_dot, (2, 0, 1, 3)),
                                       (1, 1), _same_padding(kernel_dot.shape),
                                       dimension_numbers=_KERNEL_TANGENT_LAYOUT)
    return jnp.transpose(out, (2, 0, 1, 3))


def _tangent(x: Array, kernel: Array, x_dot: Optional[Array], kernel_dot: Optional[Array],
             input_term: Callable[[Array, Array], Array], kernel_term: Callable[[Array, Array], Array]) -> Array:
    y_dot = None if x_dot is None else input_term(x_dot, kernel)
    if kernel_dot is not None:
        term = kernel_term(x, kernel_dot)
        y_dot = term if y_dot is None else y_dot + term
    return y_dot


def _canonical_tangent(x: Array, kernel: Array, x_dot: Optional[Array], kernel_dot: Optional[Array]) -> Array:
    return _tangent(x, kernel, x_dot, kernel_dot, _input_tangent, _kernel_tangent)


def _plain_tangent(x: Array, kernel: Array, x_dot: Optional[Array], kernel_dot: Optional[Array]) -> Array:
    return _tangent(x, kernel, x_dot, kernel_dot, _convolve, _convolve)


@jax.custom_jvp
def _conv2d(x: Array, kernel: Array) -> Array:
    return _convolve(x, kernel)


def _conv2d_jvp(primals: tuple[Array, Array], tangents: tuple) -> tuple[Array, Array]:
    x, kernel = primals
    # Symbolic zeros (an input not differentiated) drop their term instead of convolving zeros.
    x_dot, kernel_dot = (None if isinstance(t, SymbolicZero) else t for t in tangents)
    if x_dot is None and kernel_dot is None:
        y = _convolve(x, kernel)
        return y, jnp.zeros_like(y)
    y_dot = jax.lax.platform_dependent(x, kernel, x_dot, kernel_dot, cpu=_canonical_tangent,
                                       default=_plain_tangent)
    return _convolve(x, kernel), y_dot


_conv2d.defjvp(_conv2d_jvp, symbolic_zeros=True)


def conv2d(x: Array, kernel: Array) -> Array:
    """Stride-1 convolution with "SAME" padding of an odd-sized kernel.

    Args:
      x: images, [batch, height, width, in_channels].
      kernel: [kernel_height, kernel_width, in_channels, out_channels], both sizes odd.

    Returns:
      [batch, height, width, out_channels].

    Raises:
      ValueError: `kernel` is not [kh, kw, in_channels, out_channels] with kh
        and kw odd (a "SAME" padding of an even kernel is asymmetric, which the
        transposed convolutions of the gradient would not reproduce).
    """
    if kernel.ndim != 4 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError("`kernel` must be [kernel_height, kernel_width, in_channels, out_channels] with odd "
                         f"height and width; got shape {tuple(kernel.shape)}.")
    return _conv2d(x, kernel)


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
        kernel = self.param("kernel", self.kernel_init, tuple(self.kernel_size) + (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        dtype = x.dtype if self.dtype is None else self.dtype
        # The bias [F] broadcast explicitly over [B, H, W, F].
        return conv2d(x.astype(dtype), kernel.astype(dtype)) + bias.astype(dtype).reshape(1, 1, 1, -1)
