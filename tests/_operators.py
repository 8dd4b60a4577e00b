"""Operators shared by the tests of jcnf.inverse's linear operators, blur, random convolution and likelihood.

Every test feeds an operator batches of exactly n = prod(input_shape) unknowns
and m = prod(output_shape) observations, the sizes of the identity bases
below, so each operator's jitted maps compile once per test process.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jcnf import inverse as ops

# float32 inner products of a few thousand terms: the two sides of
# <F x, y> = <x, F^T y> round differently by about sqrt(n) * 2^-24 relative to
# ||F x|| ||y||; FFTs add log2(n) roundings more. 1e-5 leaves a wide margin
# and still catches any wrong index or conjugation, which errs by O(1).
ADJOINT_RTOL = 1e-5


def normal(seed, shape):
    """Test data from numpy: no jax.random kernel to compile per shape."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _operators():
    """One of every kind, on shapes that exercise odd and even sizes and channels."""
    k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 3)
    return {
        "dense": ops.dense(normal(0, (3, 5))),
        "identity": ops.identity((4, 3, 2)),
        "romberg_even": ops.random_convolution_subsample(k2, (16, 12)),
        "romberg_odd_channel": ops.random_convolution_subsample(k3, (9, 7, 1), keep_fraction=0.3),
        "romberg_two_channels": ops.random_convolution_subsample(k4, (6, 5, 2), keep_fraction=0.8),
        "blur_even": ops.blur_downsample((16, 16, 1), factor=4, sigma=1.5),
        "blur_ragged": ops.blur_downsample((11, 7), factor=3, sigma=0.8),
        "blur_no_blur": ops.blur_downsample((8, 6, 3), factor=2, sigma=0.0),
        "dense_square": ops.dense(normal(6, (2, 2))),
    }


OPERATORS = _operators()


def unknowns(operator, seed):
    """Random x, shape [n, *input_shape]."""
    return normal(seed, (math.prod(operator.input_shape),) + operator.input_shape)


def observations(operator, seed):
    """Random y, shape [m, *output_shape]."""
    return normal(seed, (math.prod(operator.output_shape),) + operator.output_shape)


def dense_matrix(operator):
    """F as a dense [m, n] numpy matrix, column j = F e_j."""
    n = math.prod(operator.input_shape)
    basis = np.eye(n, dtype=np.float32).reshape((n,) + operator.input_shape)
    return np.asarray(operator.apply(jnp.asarray(basis))).reshape(n, -1).T


def dense_adjoint_matrix(operator):
    """F^T as a dense [n, m] numpy matrix, column i = F^T e_i."""
    m = math.prod(operator.output_shape)
    basis = np.eye(m, dtype=np.float32).reshape((m,) + operator.output_shape)
    return np.asarray(operator.adjoint(jnp.asarray(basis))).reshape(m, -1).T

