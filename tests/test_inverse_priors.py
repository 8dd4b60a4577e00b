"""Tests for jcnf.inverse.priors: the Rosenbrock prior and Gaussian densities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jcnf.inverse import priors

# Monte-Carlo checks allow 5 standard errors: a false failure has probability
# below 1e-6 per assertion, and every key is fixed anyway.
MC_SIGMAS = 5.0


@pytest.mark.parametrize("mu, a, b", [(0.0, 0.5, 1.0), (1.0, 2.0, 0.25)])
def test_rosenbrock_log_prob_is_the_stated_product_of_gaussians(mu, a, b):
    # x1 ~ N(mu, 1 / (2 a)), x2 | x1 ~ N(x1^2, 1 / (2 b)); the defaults are the
    # paper's x1 ~ N(0, 1), x2 | x1 ~ N(x1^2, 0.5).
    points = np.random.default_rng(0).normal(size=(50, 2)) * [1.5, 3.0] + [0.0, 1.0]
    expected = (stats.norm.logpdf(points[:, 0], mu, np.sqrt(1 / (2 * a)))
                + stats.norm.logpdf(points[:, 1], points[:, 0] ** 2, np.sqrt(1 / (2 * b))))
    ours = priors.rosenbrock_log_prob(jnp.asarray(points, jnp.float32), mu=mu, a=a, b=b)
    # float32 inputs: x1^2 of |x1| <= 5 carries ~2e-6 absolute error, times b (x2 - x1^2) ~ 10.
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-4)


def test_rosenbrock_log_prob_accepts_any_leading_shape():
    points = jnp.zeros((3, 4, 2))
    assert priors.rosenbrock_log_prob(points).shape == (3, 4)
    with pytest.raises(ValueError, match=r"`x`.*\[\.\.\., 2\].*\(5, 3\)"):
        priors.rosenbrock_log_prob(jnp.zeros((5, 3)))
    # A non-positive precision would silently give NaN (log of a negative) or nonsense samples.
    with pytest.raises(ValueError, match="`a` must be > 0"):
        priors.rosenbrock_log_prob(jnp.zeros((5, 2)), a=0.0)
    with pytest.raises(ValueError, match="`b` must be > 0"):
        priors.rosenbrock_sample(jax.random.PRNGKey(0), 4, b=-1.0)
    with pytest.raises(ValueError, match="`n`"):
        priors.rosenbrock_sample(jax.random.PRNGKey(0), 4.0)


@pytest.mark.parametrize("mu, a, b", [(0.0, 0.5, 1.0), (1.0, 2.0, 0.25)])
def test_rosenbrock_samples_have_the_right_moments(mu, a, b):
    n = 200_000
    samples = np.asarray(priors.rosenbrock_sample(jax.random.PRNGKey(1), n, mu=mu, a=a, b=b), np.float64)
    assert samples.shape == (n, 2)
    x1, x2 = samples[:, 0], samples[:, 1]
    var1, var_cond = 1 / (2 * a), 1 / (2 * b)
    # Moments of x1 ~ N(mu, var1): E[x1^2] = mu^2 + var1; Var(x1^2) = 4 mu^2 var1 + 2 var1^2.
    mean2 = mu ** 2 + var1
    var2 = 4 * mu ** 2 * var1 + 2 * var1 ** 2 + var_cond
    checks = [  # (estimate, expected value, standard error of the estimate)
        (x1.mean(), mu, np.sqrt(var1 / n)),
        (x1.var(), var1, var1 * np.sqrt(2 / n)),
        (x2.mean(), mean2, np.sqrt(var2 / n)),  # E[x2] = E[x1^2] = 1 for the paper's prior.
        ((x2 - x1 ** 2).mean(), 0.0, np.sqrt(var_cond / n)),
        ((x2 - x1 ** 2).var(), var_cond, var_cond * np.sqrt(2 / n)),
    ]
    for estimate, expected, standard_error in checks:
        assert abs(estimate - expected) < MC_SIGMAS * standard_error, (estimate, expected)


def test_gaussian_log_prob_matches_scipy():
    rng = np.random.default_rng(2)
    mean = np.array([0.5, -1.0, 2.0])
    factor = rng.normal(size=(3, 3))
    cov = factor @ factor.T + 0.5 * np.eye(3)
    points = rng.normal(size=(4, 5, 3))
    ours = priors.gaussian_log_prob(jnp.asarray(points, jnp.float32), mean, cov)
    assert ours.shape == (4, 5)
    # Values O(5-20): float32 Cholesky and solves, relative error ~1e-6.
    np.testing.assert_allclose(ours, stats.multivariate_normal(mean, cov).logpdf(points), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"`x`.*\[\.\.\., 3\]"):
        priors.gaussian_log_prob(jnp.zeros((4, 2)), mean, cov)
    with pytest.raises(ValueError, match=r"`mean` and `cov`"):
        priors.gaussian_log_prob(jnp.zeros((4, 3)), mean, np.eye(2))
