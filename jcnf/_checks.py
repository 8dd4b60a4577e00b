"""Input validation shared by the public entry points.

Every check runs on static shapes and dtypes before deep code is traced, and
raises a `ValueError` that names the argument, the expected and the received
shape, so a user sees what to fix rather than an XLA shape error.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify


def describe(x) -> str:
    """Shape and dtype of `x` as a short string for error messages."""
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", type(x).__name__)
    return f"shape {tuple(shape) if shape is not None else '()'} and dtype {dtype}"


def check_float_array(name: str, x, expected: str, ndims: Sequence[int]) -> None:
    """Checks that `x` is a floating array whose rank is one of `ndims`.

    Args:
      name: the argument's name, quoted in the error.
      x: the value to check.
      expected: the expected shape in words, e.g. "[batch, height, width, channels]".
      ndims: allowed ranks.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise ValueError(f"`{name}` must be an array of shape {expected}; got {type(x).__name__}.")
    if x.ndim not in tuple(ndims):
        raise ValueError(f"`{name}` must have shape {expected} (rank {' or '.join(map(str, ndims))}); "
                         f"got {describe(x)}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"`{name}` must be a floating-point array of shape {expected}; got {describe(x)}. "
                         "Convert integer data first, e.g. `x.astype(jnp.float32) / 256`.")


def check_same_batch(name_a: str, a, name_b: str, b) -> None:
    """Checks that two arrays share their leading (batch) axis."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"`{name_a}` and `{name_b}` must have the same batch size (leading axis); "
                         f"got {name_a} {describe(a)} and {name_b} {describe(b)}.")


def check_finite(name: str, x) -> None:
    """Reports non-finite entries of `x` instead of propagating them.

    A concrete array is checked now and raises `ValueError`. Under `jax.jit`
    the check is a `checkify.check`: wrap the jitted function with
    `jax.experimental.checkify.checkify` to receive the error.
    """
    if isinstance(x, jax.core.Tracer):
        checkify.check(jnp.all(jnp.isfinite(x)), f"`{name}` contains NaN or infinite values.")
        return
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(np.asarray(x))))
    if bad:
        raise ValueError(f"`{name}` contains {bad} NaN or infinite value(s) ({describe(x)}).")


def check_int(name: str, value, minimum: int = 1) -> None:
    """Raises ValueError naming `name` unless `value` is an integer (not a bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r} of type "
                         f"{type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value}.")


def check_int_pair(name: str, value, minimum: int = 1) -> tuple[int, int]:
    """`value` as a pair (an integer n stands for (n, n)); ValueError naming `name` unless both are ints >= `minimum`.

    Returns:
      The pair as two Python ints, e.g. (height, width).
    """
    is_int = lambda n: isinstance(n, (int, np.integer)) and not isinstance(n, bool)  # noqa: E731
    pair = (value, value) if is_int(value) else tuple(value) if isinstance(value, (tuple, list)) else None
    if pair is None or len(pair) != 2 or not all(is_int(n) and n >= minimum for n in pair):
        wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"`{name}` must be {wanted} or a pair of them; got {value!r}.")
    return int(pair[0]), int(pair[1])
