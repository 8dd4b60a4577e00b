"""Tests for experiments._grid_posterior: exact 2D posteriors on a grid and the histogram KL of samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments._grid_posterior import grid_posterior, kl_from_samples_to_grid
from experiments.rosenbrock import paper_toy_operator
from jcnf import inverse

# Monte-Carlo checks allow 5 standard errors: a false failure has probability
# below 1e-6 per assertion, and every key is fixed anyway.
MC_SIGMAS = 5.0

# A correlated 2D Gaussian and a box of +-8 standard deviations around it.
GAUSS_MEAN = np.array([1.0, -0.5])
GAUSS_COV = np.array([[1.0, 0.6], [0.6, 2.0]])
GAUSS_BOUNDS = [(m - 8 * s, m + 8 * s) for m, s in zip(GAUSS_MEAN, np.sqrt(np.diag(GAUSS_COV)), strict=False)]

# The paper's banana: x1 in +-7 sd and x2 up to 45 keep all but ~1e-11 of the
# mass; cells of 0.05 x 0.1 resolve the conditional sd sqrt(0.5) = 0.71.
BANANA_BOUNDS = [(-7.0, 7.0), (-5.0, 45.0)]
BANANA_RESOLUTION = (280, 500)


@pytest.fixture(scope="module")
def banana():
    return grid_posterior(inverse.rosenbrock_log_prob, BANANA_BOUNDS, BANANA_RESOLUTION)


@pytest.fixture(scope="module")
def gaussian():
    log_density = lambda x: inverse.gaussian_log_prob(x, GAUSS_MEAN, GAUSS_COV)
    return grid_posterior(log_density, GAUSS_BOUNDS, 200)


# --------------------------------------------------------------------------
# Rosenbrock prior.
# --------------------------------------------------------------------------


def test_rosenbrock_density_integrates_to_one(banana):
    log_density = np.asarray(inverse.rosenbrock_log_prob(banana.points), np.float64)
    cell_area = banana.cell_size[0] * banana.cell_size[1]
    # The midpoint rule is spectrally accurate for this smooth density and the
    # box leaves out ~1e-11 of the mass: what remains is float32 rounding of
    # the log density (|log p| <= ~50, error <= ~5e-6 relative).
    np.testing.assert_allclose(np.sum(np.exp(log_density)) * cell_area, 1.0, atol=1e-4)


def test_rosenbrock_grid_moments_are_exact(banana):
    # E[x1] = 0, Var x1 = 1, E[x2] = E[x1^2] = 1, Var x2 = Var(x1^2) + 0.5 = 2.5,
    # Cov(x1, x2) = E[x1^3] = 0. float32 sums over 140k cells of O(1-40) terms.
    np.testing.assert_allclose(banana.mean, [0.0, 1.0], atol=1e-4)
    np.testing.assert_allclose(banana.cov, [[1.0, 0.0], [0.0, 2.5]], atol=1e-3)


def test_linear_gaussian_posterior_matches_grid_posterior():
    # The paper's toy operator with a Gaussian prior: the grid posterior of
    # prior x likelihood has the closed-form mean and covariance.
    operator = paper_toy_operator()
    prior_mean, prior_cov = jnp.array([0.5, -0.3]), jnp.array([[1.0, 0.3], [0.3, 0.5]])
    noise_std = 0.4
    y_obs = operator.apply(jnp.array([[2.0, 1.0]]))[0] + jnp.array([0.1, -0.05])
    mean, cov = inverse.linear_gaussian_posterior(operator, y_obs, noise_std, prior_mean, prior_cov)
    mean_from_matrix, cov_from_matrix = inverse.linear_gaussian_posterior(
        operator.params["matrix"], y_obs, noise_std, prior_mean, prior_cov)
    np.testing.assert_allclose(mean, mean_from_matrix, atol=1e-6)  # Identity-basis recovery is exact-ish.
    np.testing.assert_allclose(cov, cov_from_matrix, atol=1e-6)

    def log_posterior(x):
        return (inverse.gaussian_log_prob(x, prior_mean, prior_cov)
                + inverse.gaussian_log_likelihood(operator, x, y_obs, noise_std))

    std = np.sqrt(np.diag(cov))
    bounds = [(m - 8 * s, m + 8 * s) for m, s in zip(np.asarray(mean), std, strict=False)]
    reference = grid_posterior(log_posterior, bounds, 200)
    # Midpoint rule: spectrally accurate; float32 sums over 40k cells leave
    # ~1e-5 relative error, far below 1e-3 of the posterior sd (~0.4).
    np.testing.assert_allclose(reference.mean, mean, atol=1e-3 * std.min())
    np.testing.assert_allclose(reference.cov, cov, atol=1e-3 * std.min() ** 2)


def test_grid_posterior_recovers_gaussian_moments(gaussian):
    assert gaussian.probs.shape == (200, 200)
    # float32 softmax and sums over 40k cells.
    np.testing.assert_allclose(float(jnp.sum(gaussian.probs)), 1.0, atol=1e-5)
    cell_area = gaussian.cell_size[0] * gaussian.cell_size[1]
    np.testing.assert_allclose(float(jnp.sum(gaussian.density)) * cell_area, 1.0, atol=1e-5)
    # Midpoint rule on +-8 sd: exact up to float32 rounding of O(1) sums.
    np.testing.assert_allclose(gaussian.mean, GAUSS_MEAN, atol=1e-4)
    np.testing.assert_allclose(gaussian.cov, GAUSS_COV, atol=1e-4)
    np.testing.assert_allclose(gaussian.points[0, 0], [gaussian.x1[0], gaussian.x2[0]])
    np.testing.assert_allclose(gaussian.x1[0], GAUSS_BOUNDS[0][0] + gaussian.cell_size[0] / 2, rtol=1e-6)
    # A normalized density integrates to 1: log Z = 0 (float32 logsumexp over 40k cells).
    np.testing.assert_allclose(float(gaussian.log_normalizer), 0.0, atol=1e-5)


def test_grid_posterior_normalizes_far_below_float32_underflow():
    # A log density around -1e4 would underflow exp() in float32; softmax
    # subtracts the maximum first.
    shifted = grid_posterior(lambda x: inverse.gaussian_log_prob(x, GAUSS_MEAN, GAUSS_COV) - 1e4,
                                    GAUSS_BOUNDS, 64)
    np.testing.assert_allclose(float(jnp.sum(shifted.probs)), 1.0, atol=1e-5)
    # 64 cells over +-8 sd (h = 0.25 sd): still a midpoint rule, but the sum
    # of O(1e4) values loses 1e4 * 2^-24 ~ 1e-3 in each log density.
    np.testing.assert_allclose(shifted.mean, GAUSS_MEAN, atol=1e-2)
    # log Z of exp(log N - 1e4) is -1e4, with the 1e4 * 2^-24 rounding above.
    np.testing.assert_allclose(float(shifted.log_normalizer), -1e4, atol=2e-3)


def test_grid_posterior_samples_match_its_moments(gaussian):
    n = 100_000
    samples = np.asarray(gaussian.sample(jax.random.PRNGKey(4), n), np.float64)
    assert samples.shape == (n, 2)
    lows = np.array([lo for lo, _ in GAUSS_BOUNDS])
    highs = np.array([hi for _, hi in GAUSS_BOUNDS])
    assert np.all((samples >= lows - 1e-5) & (samples <= highs + 1e-5))
    std = np.sqrt(np.diag(GAUSS_COV))
    np.testing.assert_array_less(np.abs(samples.mean(0) - GAUSS_MEAN), MC_SIGMAS * std / np.sqrt(n))
    # Uniform jitter within a cell adds h^2 / 12 to each variance.
    expected_cov = GAUSS_COV + np.diag(np.square(gaussian.cell_size)) / 12
    # Standard error of a covariance entry: sqrt((s_ii s_jj + s_ij^2) / n).
    cov_standard_error = np.sqrt((np.outer(np.diag(GAUSS_COV), np.diag(GAUSS_COV)) + GAUSS_COV ** 2) / n)
    np.testing.assert_array_less(np.abs(np.cov(samples.T) - expected_cov), MC_SIGMAS * cov_standard_error)


def test_grid_posterior_rejects_bad_arguments():
    log_density = inverse.rosenbrock_log_prob
    with pytest.raises(ValueError, match=r"`bounds`"):
        grid_posterior(log_density, [(0.0, -1.0), (0.0, 1.0)], 10)
    with pytest.raises(ValueError, match=r"`resolution`"):
        grid_posterior(log_density, [(0.0, 1.0), (0.0, 1.0)], (10, 0))
    with pytest.raises(ValueError, match=r"`resolution`"):
        grid_posterior(log_density, [(0.0, 1.0), (0.0, 1.0)], (10,))
    with pytest.raises(ValueError, match=r"`log_density_fn`.*\[N\].*\(100, 1\)"):
        grid_posterior(lambda x: x[:, :1], [(0.0, 1.0), (0.0, 1.0)], 10)
    with pytest.raises(ValueError, match=r"no finite value"):
        grid_posterior(lambda x: jnp.full(x.shape[:1], -jnp.inf), [(0.0, 1.0), (0.0, 1.0)], 10)


# --------------------------------------------------------------------------
# Histogram KL divergence.
# --------------------------------------------------------------------------


# With n = 20k samples and 20 x 20 bins the estimator's upward bias is about
# (bins with mass) / (2 n) + pseudo_count * 401 / n ~ 0.015 for the banana.
KL_SAMPLES = 20_000
KL_EXACT_BOUND = 0.03


def test_kl_is_near_zero_for_exact_samples(banana):
    exact = inverse.rosenbrock_sample(jax.random.PRNGKey(5), KL_SAMPLES)
    from_grid = banana.sample(jax.random.PRNGKey(6), KL_SAMPLES)
    for samples in (exact, from_grid):
        kl = float(kl_from_samples_to_grid(samples, banana))
        assert 0.0 <= kl < KL_EXACT_BOUND


def test_kl_grows_for_wrong_distributions(banana):
    exact = inverse.rosenbrock_sample(jax.random.PRNGKey(5), KL_SAMPLES)
    baseline = float(kl_from_samples_to_grid(exact, banana))
    # Shifting x1 by half a standard deviation bends the banana off the
    # reference: the x1 marginal alone contributes 0.5^2 / 2 = 0.125 nats.
    shifted = float(kl_from_samples_to_grid(exact + jnp.array([[0.5, 0.0]]), banana))
    # Too narrow (a mode-seeking fit) misses the tails the reference covers.
    narrow = float(kl_from_samples_to_grid(exact * jnp.array([[0.5, 1.0]]), banana))
    assert shifted > max(0.125, 10 * baseline)
    assert narrow > max(0.125, 10 * baseline)


def test_kl_counts_samples_outside_the_grid_and_stays_finite(banana):
    exact = np.asarray(inverse.rosenbrock_sample(jax.random.PRNGKey(5), KL_SAMPLES))
    baseline = float(kl_from_samples_to_grid(exact, banana))
    # Moving a quarter of the samples far outside (one NaN among them) adds
    # about -log(3/4) = 0.29 nats: those samples are mass the reference lacks.
    moved = exact.copy()
    moved[: KL_SAMPLES // 4] = [100.0, -100.0]
    moved[0] = np.nan
    kl = float(kl_from_samples_to_grid(jnp.asarray(moved), banana))
    np.testing.assert_allclose(kl - baseline, -np.log(0.75), atol=0.02)  # Smoothing and sampling noise.
    all_outside = float(kl_from_samples_to_grid(jnp.full((100, 2), 1e3), banana))
    assert np.isfinite(all_outside) and all_outside > 3.0


def test_kl_rejects_bad_arguments(banana):
    samples = jnp.zeros((10, 2))
    with pytest.raises(ValueError, match=r"`samples`.*\[n, 2\]"):
        kl_from_samples_to_grid(jnp.zeros((10, 3)), banana)
    with pytest.raises(ValueError, match=r"`bins`.*resolution"):
        kl_from_samples_to_grid(samples, banana, bins=(300, 20))
    with pytest.raises(ValueError, match=r"`pseudo_count`"):
        kl_from_samples_to_grid(samples, banana, pseudo_count=0.0)
