"""`LinearOperator`: a forward operator F of y = F(x) + eps with its exact adjoint; `dense` and `identity`.

A `LinearOperator` is a pytree: its arrays (a matrix, Fourier phases, a blur
kernel, kept indices) are leaves and its shapes and maps are static, so an
operator can be closed over by a jitted loss or passed to `jax.jit` as an
argument without recompiling for every new draw of the same kind.

Every `apply` and `adjoint` takes a leading batch axis, [batch, *input_shape]
and [batch, *output_shape], and checks the shape before tracing. The adjoint is
the exact transpose of `apply` as a real matrix, so <F x, y> = <x, F^T y> holds
to float32 rounding; tests check it for every constructor (this module's,
`random_convolution_subsample` and `blur_downsample`).

The batch maps are jitted, so eager calls compile once per shape rather than
once per primitive. Matrix products and convolutions run at
`HIGHEST_PRECISION`: on GPUs the default float32 precision may use TF32
(10-bit mantissa), which would break the adjoint identity and bias the
likelihood of a well-fit posterior.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from jcnf._checks import describe

HIGHEST_PRECISION = lax.Precision.HIGHEST

Params = dict[str, Array]
BatchMap = Callable[[Params, Array], Array]


@functools.partial(jax.tree_util.register_dataclass, data_fields=["params"],
                   meta_fields=["input_shape", "output_shape", "forward_fn", "adjoint_fn", "name"])
@dataclasses.dataclass(frozen=True, eq=False)
class LinearOperator:
    """A linear map F: R^input_shape -> R^output_shape with its adjoint F^T.

    Build one with a constructor (`dense`, `identity`,
    `random_convolution_subsample`, `blur_downsample`), not directly.

    Attributes:
      input_shape: shape of one unknown x, without the batch axis.
      output_shape: shape of one observation y, without the batch axis.
      params: the operator's arrays (pytree leaves).
      forward_fn: (params, x [B, *input_shape]) -> y [B, *output_shape].
      adjoint_fn: (params, y [B, *output_shape]) -> x [B, *input_shape].
      name: what the operator is, for messages and reprs.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: Params
    forward_fn: BatchMap
    adjoint_fn: BatchMap
    name: str

    def apply(self, x: Array) -> Array:
        """F x for a batch.

        Args:
          x: unknowns, shape [batch, *input_shape].

        Returns:
          Observations without noise, shape [batch, *output_shape].
        """
        check_batched("x", x, self.input_shape, self.name)
        return self.forward_fn(self.params, x)

    def adjoint(self, y: Array) -> Array:
        """F^T y for a batch.

        Args:
          y: observations, shape [batch, *output_shape].

        Returns:
          Back-projections, shape [batch, *input_shape].
        """
        check_batched("y", y, self.output_shape, self.name)
        return self.adjoint_fn(self.params, y)

    def __repr__(self) -> str:
        return f"LinearOperator({self.name}: {list(self.input_shape)} -> {list(self.output_shape)})"


def check_batched(name: str, value: Any, item_shape: tuple[int, ...], operator_name: str) -> None:
    """Raises ValueError unless `value` is a float array of shape [batch, *item_shape]."""
    expected = "[batch, " + ", ".join(map(str, item_shape)) + "]" if item_shape else "[batch]"
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise ValueError(f"`{name}` for {operator_name} must be an array of shape {expected}; "
                         f"got {type(value).__name__}.")
    if value.ndim != len(item_shape) + 1 or tuple(value.shape[1:]) != item_shape:
        raise ValueError(f"`{name}` for {operator_name} must have shape {expected} (a leading batch axis, "
                         f"then {list(item_shape)}); got {describe(value)}.")
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise ValueError(f"`{name}` for {operator_name} must be a floating-point array of shape {expected}; "
                         f"got {describe(value)}.")


def as_shape(name: str, shape: Any) -> tuple[int, ...]:
    """A shape argument as a tuple of positive Python ints, or ValueError."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a tuple of positive ints; got {shape!r}.") from None
    if not dims or any(d < 1 for d in dims) or any(int(d) != d for d in shape):
        raise ValueError(f"`{name}` must be a non-empty tuple of positive ints; got {shape!r}.")
    return dims


def as_image_shape(image_shape: Any) -> tuple[int, ...]:
    """An image shape (height, width) or (height, width, channels) as a tuple of ints, or ValueError."""
    dims = as_shape("image_shape", image_shape)
    if len(dims) not in (2, 3):
        raise ValueError(f"`image_shape` must be (height, width) or (height, width, channels); got {image_shape!r}.")
    return dims


@jax.jit
def _dense_forward(params: Params, x: Array) -> Array:
    return jnp.matmul(x, params["matrix"].T, precision=HIGHEST_PRECISION)


@jax.jit
def _dense_adjoint(params: Params, y: Array) -> Array:
    return jnp.matmul(y, params["matrix"], precision=HIGHEST_PRECISION)


def dense(matrix: Array) -> LinearOperator:
    """F x = matrix @ x for vectors.

    Args:
      matrix: shape [m, n], floating point.

    Returns:
      An operator with input_shape (n,) and output_shape (m,).
    """
    if not hasattr(matrix, "ndim") or matrix.ndim != 2:
        raise ValueError(f"`matrix` must have shape [m, n]; got {describe(matrix)}.")
    matrix = jnp.asarray(matrix)
    if not jnp.issubdtype(matrix.dtype, jnp.floating):
        raise ValueError(f"`matrix` must be floating point; got {describe(matrix)}.")
    rows, cols = matrix.shape
    return LinearOperator((cols,), (rows,), {"matrix": matrix}, _dense_forward, _dense_adjoint,
                          f"dense {rows}x{cols}")


def _identity_map(params: Params, x: Array) -> Array:
    del params
    return x


def identity(shape: Union[int, tuple[int, ...]]) -> LinearOperator:
    """F x = x: denoising, the low-fidelity problem of the 2D toy example.

    Args:
      shape: shape of one item, e.g. (2,) or (64, 64, 1).

    Returns:
      An operator with input_shape = output_shape = shape.
    """
    dims = as_shape("shape", shape)
    return LinearOperator(dims, dims, {}, _identity_map, _identity_map, "identity")
