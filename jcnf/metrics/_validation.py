"""Input checks shared by the metric modules, and the dtype the jax.numpy metrics compute in.

Each check raises `ValueError` naming the argument, the expected and the
received shape or range. Checks on values (ranges, signs) run only on
concrete inputs; under `jax.jit` only the static shape and dtype checks run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from jcnf._checks import check_finite, check_float_array, describe


def is_concrete(x) -> bool:
    """Whether `x` holds values now (not a tracer), so value checks can run."""
    return not isinstance(x, jax.core.Tracer)


def working_dtype(x: Array) -> jnp.dtype:
    """The dtype of `x` promoted to at least float32."""
    # Half-precision inputs lose the small differences these metrics measure.
    return jnp.promote_types(x.dtype, jnp.float32)


def check_positive_scalar(name: str, value) -> None:
    """Raises ValueError naming `name` unless `value` is a scalar, and > 0 where concrete."""
    if np.ndim(value) != 0:
        raise ValueError(f"`{name}` must be a positive scalar; got {describe(value)}.")
    if is_concrete(value) and not float(value) > 0:
        raise ValueError(f"`{name}` must be a positive scalar; got {float(value)}.")


def check_same_shape(name_a: str, a, name_b: str, b) -> None:
    """Raises ValueError naming `name_b` unless `b` has the shape of `a`."""
    if a.shape != b.shape:
        raise ValueError(f"`{name_b}` must have the same shape as `{name_a}` {tuple(a.shape)}; "
                         f"got {describe(b)}.")


def check_float_min_rank(name: str, x, expected: str, min_rank: int) -> None:
    """Like `check_float_array`, for a leading batch axis followed by any number of axes."""
    if hasattr(x, "ndim") and x.ndim < min_rank:
        raise ValueError(f"`{name}` must have shape {expected} (rank >= {min_rank}); got {describe(x)}.")
    check_float_array(name, x, expected, (getattr(x, "ndim", 0),))


def binary_labels(name: str, labels: np.ndarray) -> np.ndarray:
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


def select_masked(y_true: ArrayLike, values_name: str, values: ArrayLike, mask: ArrayLike | None,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Validates a (y_true, values, mask) triple and returns the masked entries, flattened.

    Args:
      y_true: ground truth, any shape, bool or in {0, 1}; quoted as `y_true`.
      values_name: the name of the second argument, quoted in errors.
      values: scores, probabilities or hard predictions, same shape as `y_true`.
      mask: optional boolean field of view of the same shape; only its True
        entries are scored.

    Returns:
      The selected labels as bool and the values as float64, both of shape [n].
    """
    y_true = np.asarray(y_true)
    values = np.asarray(values)
    # y_true is checked first: a call with the arguments swapped then fails
    # on the scores' non-binary values, naming `y_true`.
    y_true = binary_labels("y_true", y_true)
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise ValueError(f"`{values_name}` must be a numeric array; got {describe(values)}.")
    check_same_shape("y_true", y_true, values_name, values)
    check_finite(values_name, values)
    if mask is not None:
        mask = np.asarray(mask)
        check_same_shape("y_true", y_true, "mask", mask)
        if mask.dtype != bool:
            raise ValueError(f"`mask` must be a boolean array (the field of view); got {describe(mask)}. "
                             "Use `mask.astype(bool)` if it holds 0 and 1.")
        if not mask.any():
            raise ValueError(f"`mask` selects no entries of `y_true` ({describe(y_true)}); "
                             "a metric needs at least one.")
        y_true, values = y_true[mask], values[mask]
    if values.size == 0:
        raise ValueError(f"`y_true` is empty ({describe(y_true)}); a metric needs at least one entry.")
    return y_true.reshape(-1), values.reshape(-1).astype(np.float64)
