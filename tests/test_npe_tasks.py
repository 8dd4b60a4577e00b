import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from benchmarks import _mcmc, npe_tasks

N = 20_000  # reference samples per check: Monte Carlo standard errors of ~1% of a posterior std


@pytest.mark.parametrize("name", sorted(npe_tasks.TASKS))
def test_prior_and_simulator_shapes_bounds_and_determinism(name):
    task = npe_tasks.get_task(name)
    theta = task.prior_sample(jax.random.PRNGKey(0), 7)
    assert theta.shape == (7, task.theta_dim)
    assert bool(jnp.all(task.in_bounds(theta)))
    x = task.simulate(jax.random.PRNGKey(1), theta)
    assert x.shape == (7, task.x_dim) and bool(jnp.all(jnp.isfinite(x)))
    np.testing.assert_array_equal(x, task.simulate(jax.random.PRNGKey(1), theta))
    assert not np.allclose(x, task.simulate(jax.random.PRNGKey(2), theta))
    # `simulate` is `simulate_one` mapped over split keys, and jit changes nothing.
    keys = jax.random.split(jax.random.PRNGKey(1), 7)
    np.testing.assert_allclose(jax.jit(jax.vmap(task.simulate_one))(keys, theta), x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(npe_tasks.TASKS))
def test_observation_sets_are_fixed_and_disjoint(name):
    task = npe_tasks.get_task(name)
    theta, x = task.observations(2)
    again_theta, again_x = task.observations(2, "evaluation")
    np.testing.assert_array_equal(theta, again_theta)
    np.testing.assert_array_equal(x, again_x)
    _, tuning_x = task.observations(2, "tuning")
    assert x.shape == (2, task.x_dim) and not np.any(np.all(np.isclose(x[:, None], tuning_x[None]), axis=-1))


def test_gaussian_linear_reference_matches_the_exact_posterior():
    task = npe_tasks.get_task("gaussian_linear")
    _, x = task.observations(1)
    reference = task.reference_posterior(jax.random.PRNGKey(0), x[0], N)
    assert reference.info["exact"] and reference.samples.shape == (N, 10)
    # Posterior N(x / 2, 0.05 I): the mean's standard error is sqrt(0.05 / N) and a variance's is
    # 0.05 * sqrt(2 / N); 5 standard errors over 10 coordinates leave a false alarm below 1e-5.
    np.testing.assert_allclose(reference.samples.mean(0), x[0] / 2, atol=5 * math.sqrt(0.05 / N))
    covariance = np.cov(reference.samples, rowvar=False)
    np.testing.assert_allclose(np.diag(covariance), 0.05, atol=5 * 0.05 * math.sqrt(2 / N))
    np.testing.assert_allclose(covariance - np.diag(np.diag(covariance)), 0, atol=5 * 0.05 / math.sqrt(N))


def test_two_moons_grid_matches_the_exact_inverse_sampler():
    task = npe_tasks.get_task("two_moons")
    _, x = task.observations(1)
    reference = task.reference_posterior(jax.random.PRNGKey(0), x[0], N)
    exact = npe_tasks.two_moons_exact_posterior(jax.random.PRNGKey(1), x[0], N)
    grid = reference.samples
    assert bool(jnp.all(task.in_bounds(jnp.asarray(grid))))
    # Two independent samples of N: a difference of means has standard error sqrt(2 / N) * std.
    tolerance = 5 * math.sqrt(2 / N) * exact.std(0)
    np.testing.assert_array_less(np.abs(grid.mean(0) - exact.mean(0)), tolerance)
    np.testing.assert_allclose(grid.std(0), exact.std(0), rtol=5 * math.sqrt(1 / N))
    # Each crescent (sign of theta_0 + theta_1) holds a binomial fraction: standard error 0.5 * sqrt(2 / N).
    assert abs((grid.sum(1) > 0).mean() - (exact.sum(1) > 0).mean()) < 5 * 0.5 * math.sqrt(2 / N)
    # The crescent's width (radial std 0.01) is resolved: halving the grid moves the mean by far less than a cell.
    assert reference.info["cells_per_radial_std"] >= 10
    assert reference.info["mean_change_at_half_resolution"] < 0.1 * reference.info["cell_width"]


def test_two_moons_likelihood_is_the_simulators_density():
    task = npe_tasks.get_task("two_moons")
    theta = jnp.array([0.3, -0.2])
    x = task.simulate(jax.random.PRNGKey(0), jnp.tile(theta, (N, 1)))
    # The simulated points all have finite likelihood, and the density integrates to one over the
    # plane: a Monte Carlo integral with a uniform proposal on a box that holds the crescent.
    assert bool(jnp.all(jnp.isfinite(jax.vmap(npe_tasks.two_moons_log_likelihood, (None, 0))(theta, x))))
    low, high = x.min(0) - 0.05, x.max(0) + 0.05
    points = jax.random.uniform(jax.random.PRNGKey(1), (200_000, 2), minval=low[None], maxval=high[None])
    density = jnp.exp(jax.vmap(npe_tasks.two_moons_log_likelihood, (None, 0))(theta, points))
    integral = float(density.mean() * jnp.prod(high - low))
    # Standard error of that integral: the density's std over the box times its area / sqrt(200,000).
    error = float(density.std() * jnp.prod(high - low)) / math.sqrt(200_000)
    assert abs(integral - 1) < 5 * error


def test_slcp_likelihood_is_a_gaussian_and_sign_symmetric():
    theta = jnp.array([0.5, -1.0, 1.2, -0.7, 0.4])
    x = npe_tasks.get_task("slcp").simulate_one(jax.random.PRNGKey(0), theta)
    s1, s2, rho = 1.2 ** 2, 0.7 ** 2, math.tanh(0.4)
    covariance = [[s1 ** 2, rho * s1 * s2], [rho * s1 * s2, s2 ** 2]]
    expected = stats.multivariate_normal([0.5, -1.0], covariance).logpdf(np.asarray(x).reshape(4, 2)).sum()
    np.testing.assert_allclose(npe_tasks.slcp_log_likelihood(theta, x), expected, rtol=1e-5)
    flipped = theta * jnp.array([1, 1, -1, -1, 1])
    np.testing.assert_allclose(npe_tasks.slcp_log_likelihood(flipped, x), expected, rtol=1e-5)


def _gaussian_linear_log_posterior(theta, x):
    """gaussian_linear's posterior in any dim, unnormalized: N(theta; 0, 0.1 I) N(x; theta, 0.1 I)."""
    return -0.5 * (jnp.sum(theta ** 2) + jnp.sum((x - theta) ** 2)) / npe_tasks.GAUSSIAN_LINEAR_VARIANCE


def test_metropolis_recovers_gaussian_linears_exact_posterior():
    x = jnp.array([0.4, -0.3, 0.1])
    initial = jax.random.normal(jax.random.PRNGKey(0), (40, 3))  # overdispersed: prior std ~0.3, posterior 0.22
    draws, info = _mcmc.random_walk_metropolis(jax.random.PRNGKey(1), _gaussian_linear_log_posterior, x, initial,
                                               num_samples=100, thin=10, warmup_rounds=4, round_steps=200)
    assert draws.shape == (40, 100, 3)
    assert info["max_split_rhat"] < 1.01 and 0.1 < info["acceptance"] < 0.5
    pooled = draws.reshape(-1, 3)
    ess = info["min_ess_bulk"]
    # Monte Carlo standard errors from the sampler's own effective sample size: std / sqrt(ESS).
    np.testing.assert_allclose(pooled.mean(0), x / 2, atol=5 * math.sqrt(0.05 / ess))
    np.testing.assert_allclose(pooled.var(0), 0.05, atol=5 * 0.05 * math.sqrt(2 / ess))


def test_diagnostics_pass_independent_chains_and_flag_separated_ones():
    rng = np.random.default_rng(0)
    independent = rng.normal(size=(8, 500, 2))
    info = _mcmc.diagnostics(independent)
    # For 4,000 independent draws R-hat's excess over 1 is O(1 / n) and the ESS estimate's relative
    # error is a few percent.
    assert info["max_split_rhat"] < 1.01
    np.testing.assert_allclose(info["ess_bulk"], 4000, rtol=0.15)
    stuck = independent + np.arange(8)[:, None, None]  # each chain in its own place
    assert _mcmc.diagnostics(stuck)["max_split_rhat"] > 1.5


def test_slcp_reference_on_a_small_run_restores_the_sign_symmetry():
    task = npe_tasks.get_task("slcp")
    _, x = task.observations(1)
    settings = npe_tasks.MCMCSettings(chains=20, thin=5, warmup_rounds=3, round_steps=100, proposals=20_000)
    reference = npe_tasks._slcp_reference(jax.random.PRNGKey(0), x[0], 2000, settings)
    assert reference.samples.shape == (2000, 5) and bool(jnp.all(task.in_bounds(jnp.asarray(reference.samples))))
    # Random signs on theta_2 and theta_3: each quadrant a binomial quarter (standard error 0.0097).
    quadrants = (reference.samples[:, 2] > 0) * 2 + (reference.samples[:, 3] > 0)
    np.testing.assert_allclose(np.bincount(quadrants, minlength=4) / 2000, 0.25, atol=5 * math.sqrt(0.1875 / 2000))
    assert {"max_split_rhat", "min_ess_bulk", "chains", "thin", "warmup_steps", "converged"} <= set(reference.info)


def test_gaussian_mixture_reference_is_the_boxed_mixture():
    task = npe_tasks.get_task("gaussian_mixture")
    x = jnp.array([1.0, -2.0])
    samples = task.reference_posterior(jax.random.PRNGKey(0), x, N).samples
    # Within radius 0.3 of x: 0.5 P(chi2_2 < 9) + 0.5 P(chi2_2 < 0.09) = 0.5164 (the box is 8 stds away).
    inside = (np.linalg.norm(samples - np.asarray(x), axis=1) < 0.3).mean()
    expected = 0.5 * (1 - math.exp(-4.5)) + 0.5 * (1 - math.exp(-0.045))
    assert abs(inside - expected) < 5 * math.sqrt(expected * (1 - expected) / N)


def test_gaussian_linear_uniform_reference_matches_rejection():
    task = npe_tasks.gaussian_linear_uniform(dim=2)
    x = jnp.array([0.9, -0.2])  # near an edge, where the truncation matters
    samples = task.reference_posterior(jax.random.PRNGKey(0), x, N).samples
    assert bool(jnp.all(task.in_bounds(jnp.asarray(samples))))
    proposal = np.asarray(x) + math.sqrt(0.1) * np.random.default_rng(1).normal(size=(4 * N, 2))
    accepted = proposal[np.all(np.abs(proposal) <= 1, axis=1)]
    tolerance = 5 * math.sqrt(1 / N + 1 / len(accepted)) * accepted.std(0)
    np.testing.assert_array_less(np.abs(samples.mean(0) - accepted.mean(0)), tolerance)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="Unknown task 'three_moons'"):
        npe_tasks.get_task("three_moons")
    task = npe_tasks.get_task("two_moons")
    with pytest.raises(ValueError, match="`theta` must have shape"):
        task.simulate(jax.random.PRNGKey(0), jnp.zeros((3, 5)))
    with pytest.raises(ValueError, match="`x_obs` must have shape"):
        task.reference_posterior(jax.random.PRNGKey(0), jnp.zeros(3), 10)
    with pytest.raises(ValueError, match="`split` must be one of"):
        task.observations(1, "test")
    with pytest.raises(ValueError, match="`initial` must have shape"):
        _mcmc.random_walk_metropolis(jax.random.PRNGKey(0), _gaussian_linear_log_posterior, jnp.zeros(2),
                                     jnp.zeros(2), num_samples=4)
