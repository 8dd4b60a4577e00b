"""jcnf.inverse.likelihood: the Gaussian log-likelihood against scipy, its shapes, and its gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _operators import OPERATORS, normal, unknowns
from scipy import stats

from jcnf import inverse as ops


def test_gaussian_log_likelihood_matches_scipy_and_drops_constant_by_default():
    operator = OPERATORS["dense"]
    x = unknowns(operator, 17)
    y_obs = normal(18, (3,))
    noise_std = 0.4
    predicted = np.asarray(operator.apply(x), np.float64)
    expected = np.array([stats.multivariate_normal(p, noise_std ** 2 * np.eye(3)).logpdf(y_obs) for p in predicted])
    normalized = ops.gaussian_log_likelihood(operator, x, y_obs, noise_std, include_normalizer=True)
    unnormalized = ops.gaussian_log_likelihood(operator, x, y_obs, noise_std)
    assert normalized.shape == unnormalized.shape == (x.shape[0],)
    # Values are O(10-100), where a float32 ulp is up to 8e-6; the difference
    # of two such values has that absolute error.
    np.testing.assert_allclose(normalized, expected, rtol=1e-5)
    np.testing.assert_allclose(normalized - unnormalized, -1.5 * np.log(2 * np.pi * noise_std ** 2), atol=5e-5)
    with pytest.raises(ValueError, match="`noise_std` must be > 0"):
        ops.gaussian_log_likelihood(operator, x, y_obs, 0.0)


def test_gaussian_log_likelihood_accepts_batched_observations_and_callables():
    operator = OPERATORS["blur_ragged"]
    x = unknowns(operator, 19)
    y_obs = normal(20, (4, 3))
    shared = ops.gaussian_log_likelihood(operator, x, y_obs, 0.1)
    batched = ops.gaussian_log_likelihood(operator, x, jnp.broadcast_to(y_obs, (x.shape[0], 4, 3)), 0.1)
    via_callable = ops.gaussian_log_likelihood(operator.apply, x, y_obs, 0.1)
    residual = np.asarray(operator.apply(x), np.float64) - np.asarray(y_obs, np.float64)
    expected = -0.5 * np.sum(residual ** 2, axis=(1, 2)) / 0.1 ** 2
    np.testing.assert_allclose(shared, expected, rtol=1e-5)  # float32 sums of 12 squares.
    np.testing.assert_allclose(batched, shared, rtol=1e-6)
    np.testing.assert_allclose(via_callable, shared, rtol=1e-6)
    with pytest.raises(ValueError, match=r"`y_obs`.*\[4, 3\].*\(4, 4\)"):
        ops.gaussian_log_likelihood(operator, x, np.zeros((4, 4), np.float32), 0.1)


def test_likelihood_gradient_is_the_adjoint_residual():
    # grad_x of -||F x - y||^2 / (2 s^2) is -F^T (F x - y) / s^2: autodiff and
    # the hand-written adjoint must agree.
    operator = OPERATORS["romberg_even"]
    x = unknowns(operator, 21)
    y_obs = normal(22, operator.output_shape)
    noise_std = 0.5
    loss = lambda value: jnp.sum(ops.gaussian_log_likelihood(operator, value, y_obs, noise_std))
    grad = jax.jit(jax.grad(loss))(x)
    expected = -operator.adjoint(operator.apply(x) - y_obs[None]) / noise_std ** 2
    np.testing.assert_allclose(grad, expected, atol=1e-5)  # Entries O(4), float32 FFT rounding.
