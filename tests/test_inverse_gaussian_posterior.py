"""Tests for jcnf.inverse.gaussian_posterior: the closed-form linear-Gaussian posterior."""

import jax.numpy as jnp
import numpy as np

from jcnf import inverse


def test_linear_gaussian_posterior_matches_precision_form():
    # Gain form in float32 against the information form in float64.
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(3, 2))
    prior_mean, prior_cov = np.array([0.3, -0.2]), np.array([[1.0, 0.3], [0.3, 0.5]])
    y = rng.normal(size=3)
    noise_std = 0.4
    precision = matrix.T @ matrix / noise_std ** 2 + np.linalg.inv(prior_cov)
    expected_cov = np.linalg.inv(precision)
    expected_mean = expected_cov @ (matrix.T @ y / noise_std ** 2 + np.linalg.solve(prior_cov, prior_mean))
    mean, cov = inverse.linear_gaussian_posterior(jnp.asarray(matrix, jnp.float32), y, noise_std, prior_mean,
                                                  prior_cov)
    # float32 linear algebra on a condition number ~20 system.
    np.testing.assert_allclose(mean, expected_mean, atol=1e-5)
    np.testing.assert_allclose(cov, expected_cov, atol=1e-5)
    np.testing.assert_array_equal(cov, np.asarray(cov).T)
