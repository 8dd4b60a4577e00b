"""jcnf.inverse.linear_operator: adjoints, linearity, jit, and shape errors of every operator kind."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _operators import ADJOINT_RTOL, OPERATORS, dense_adjoint_matrix, dense_matrix, observations, unknowns

from jcnf import inverse as ops


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_dot_product_test(name):
    operator = OPERATORS[name]
    x, y = unknowns(operator, 1), observations(operator, 2)
    forward, back = operator.apply(x), operator.adjoint(y)
    assert forward.shape[1:] == y.shape[1:] and back.shape[1:] == x.shape[1:]
    assert forward.dtype == jnp.float32 and back.dtype == jnp.float32
    # Pair x[i] with y[i]; inner products in float64 on the host, so only the
    # operator's rounding is measured.
    pairs = min(x.shape[0], y.shape[0])
    x, y, forward, back = (np.asarray(a, np.float64)[:pairs].reshape(pairs, -1) for a in (x, y, forward, back))
    lhs = np.sum(forward * y, axis=1)
    rhs = np.sum(x * back, axis=1)
    scale = (np.linalg.norm(forward, axis=1) * np.linalg.norm(y, axis=1)
             + np.linalg.norm(x, axis=1) * np.linalg.norm(back, axis=1))
    assert np.all(np.abs(lhs - rhs) <= ADJOINT_RTOL * scale), (name, lhs, rhs)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_adjoint_is_transpose_of_dense_matrix(name):
    # Stronger than random dot products: every entry of F^T against F. Entries
    # are O(1) at most (unit-norm rows or normalized kernels): float32 rounding.
    operator = OPERATORS[name]
    np.testing.assert_allclose(dense_adjoint_matrix(operator), dense_matrix(operator).T, atol=2e-6)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_linear(name):
    operator = OPERATORS[name]
    x, x_other = unknowns(operator, 3), unknowns(operator, 4)
    combined = operator.apply(2.0 * x - 0.5 * x_other)
    expected = 2.0 * operator.apply(x) - 0.5 * operator.apply(x_other)
    # Values are O(1); a few float32 roundings of O(2.5) terms.
    np.testing.assert_allclose(combined, expected, atol=1e-5)


def test_operator_works_as_jit_argument_and_in_closure():
    operator = OPERATORS["romberg_odd_channel"]
    x = unknowns(operator, 5)
    eager = operator.apply(x)

    @jax.jit
    def as_argument(op, value):
        return op.apply(value)

    closed = jax.jit(lambda value: operator.adjoint(operator.apply(value)))
    np.testing.assert_allclose(as_argument(operator, x), eager, atol=1e-6)
    np.testing.assert_allclose(closed(x), operator.adjoint(eager), atol=1e-6)
    # A fresh draw of the same kind and shape reuses the compiled function.
    other = ops.random_convolution_subsample(jax.random.PRNGKey(9), (9, 7, 1), keep_fraction=0.3)
    as_argument(other, x)
    assert as_argument._cache_size() == 1



def test_shape_errors_name_argument_and_shapes():
    operator = OPERATORS["blur_even"]
    with pytest.raises(ValueError, match=r"`x`.*\[batch, 16, 16, 1\].*\(16, 16, 1\)"):
        operator.apply(np.zeros((16, 16, 1), np.float32))  # Missing batch axis.
    with pytest.raises(ValueError, match=r"`x`.*\[batch, 16, 16, 1\].*\(2, 16, 16\)"):
        operator.apply(np.zeros((2, 16, 16), np.float32))
    with pytest.raises(ValueError, match=r"`y`.*\[batch, 4, 4, 1\].*\(2, 5, 4, 1\)"):
        operator.adjoint(np.zeros((2, 5, 4, 1), np.float32))
    with pytest.raises(ValueError, match=r"`x`.*floating-point"):
        operator.apply(np.zeros((2, 16, 16, 1), np.int32))
    with pytest.raises(ValueError, match=r"`x`.*array"):
        operator.apply([[0.0]])
    with pytest.raises(ValueError, match=r"`matrix`"):
        ops.dense(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"`shape`"):
        ops.identity((3, 0))
