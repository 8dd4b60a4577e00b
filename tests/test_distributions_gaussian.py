"""jcnf.distributions.gaussian: the standardizing bijector, the diagonal Gaussian and the learned priors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturb
from scipy.stats import norm

from jcnf.distributions import ConditionalDiagGaussian, SplitPrior, diag_gaussian, standardizer

pytestmark = pytest.mark.strict_dtypes

RNG = jax.random.PRNGKey(0)


def _normal(seed, shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def test_standardizer_maps_to_standard_units_with_closed_form_log_det():
    z, mean, log_scale = _normal(0, (2, 3, 4)), _normal(1, (2, 3, 4)), 0.3 * _normal(2, (2, 3, 4))
    bijector = standardizer(mean, log_scale, event_ndims=2)
    eps, log_det = bijector.forward_and_log_det(z)
    # float32 affine maps of order-1 numbers: 1e-5 is a few ulps.
    chex.assert_trees_all_close(eps, (z - mean) * jnp.exp(-log_scale), atol=1e-5, rtol=0)
    chex.assert_shape(log_det, (2,))
    chex.assert_trees_all_close(log_det, -jnp.sum(log_scale, axis=(1, 2)), atol=1e-5, rtol=0)
    back, inverse_log_det = bijector.inverse_and_log_det(eps)
    chex.assert_trees_all_close(back, z, atol=1e-5, rtol=0)
    chex.assert_trees_all_close(inverse_log_det, -log_det, atol=1e-5, rtol=0)


def test_standardizer_without_event_axes_is_elementwise():
    z = _normal(0, (2, 3))
    eps, log_det = standardizer(jnp.ones((2, 3)), jnp.zeros((2, 3)), event_ndims=0).forward_and_log_det(z)
    chex.assert_trees_all_close(eps, z - 1.0, atol=1e-6, rtol=0)
    chex.assert_trees_all_close(log_det, jnp.zeros((2, 3)), atol=0, rtol=0)


def test_diag_gaussian_log_prob_matches_scipy_summed_over_event_axes():
    z, mean, log_scale = _normal(0, (2, 3, 4)), _normal(1, (2, 3, 4)), 0.3 * _normal(2, (2, 3, 4))
    log_prob = diag_gaussian(mean, log_scale, event_ndims=2).log_prob(z)
    expected = norm.logpdf(np.asarray(z), np.asarray(mean), np.exp(np.asarray(log_scale))).sum(axis=(1, 2))
    # Sums of 12 float32 terms of order 1: 1e-5 relative.
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5)


@pytest.mark.parametrize("features_shape,event_shape", [
    (None, (4, 4, 2)),          # unconditional: free mean and log-scale
    ((2, 4, 4, 3), (4, 4, 2)),  # image features: a 3x3 convolution
    ((2, 5), (2, 2, 3)),        # vector features: a dense layer, reshaped to the event
])
def test_conditional_gaussian_starts_standard_and_has_the_event_shape(features_shape, event_shape):
    features = None if features_shape is None else _normal(3, features_shape)
    prior = ConditionalDiagGaussian()
    variables = prior.init(RNG, features, event_shape, 2)
    mean, log_scale = prior.apply(variables, features, event_shape, 2)
    chex.assert_shape([mean, log_scale], (2,) + event_shape)
    # The zero-initialised head makes a fresh prior exactly N(0, I).
    chex.assert_trees_all_close((mean, log_scale), (jnp.zeros_like(mean), jnp.zeros_like(log_scale)), atol=0, rtol=0)
    if features is not None:
        moved = prior.apply(perturb(variables, jax.random.PRNGKey(1)), features, event_shape, 2)
        assert float(jnp.max(jnp.abs(moved[0] - mean))) > 1e-3


def test_conditional_gaussian_distribution_is_the_standard_normal_at_init():
    prior = ConditionalDiagGaussian()
    variables = prior.init(RNG, None, (3,), 2)
    dist = prior.apply(variables, None, (3,), 2, method="distribution")
    z = _normal(0, (2, 3))
    np.testing.assert_allclose(dist.log_prob(z), norm.logpdf(np.asarray(z)).sum(axis=1), rtol=1e-5)


def test_image_features_of_the_wrong_resolution_raise():
    with pytest.raises(ValueError, match="image features of shape .* event shape"):
        ConditionalDiagGaussian().init(RNG, _normal(0, (2, 3, 3, 1)), (4, 4, 2), 2)


def test_split_prior_shape_and_dependence_on_the_kept_half():
    # An uneven split (3 channels out for 2 kept); the even split is the default below.
    expected = 3
    z_kept, features = _normal(0, (2, 4, 4, 2)), _normal(1, (2, 4, 4, 3))
    prior = SplitPrior(expected)
    variables = perturb(prior.init(RNG, z_kept, features), jax.random.PRNGKey(2))
    mean, log_scale = prior.apply(variables, z_kept, features)
    chex.assert_shape([mean, log_scale], (2, 4, 4, expected))
    other_mean, _ = prior.apply(variables, z_kept + 1.0, features)
    assert float(jnp.max(jnp.abs(other_mean - mean))) > 1e-3
    log_prob = prior.apply(variables, z_kept, features, method="distribution").log_prob(
        jnp.zeros((2, 4, 4, expected)))
    chex.assert_shape(log_prob, (2,))
    chex.assert_tree_all_finite(log_prob)


def test_split_prior_without_features():
    z_kept = _normal(0, (2, 2, 2, 2))
    prior = SplitPrior()
    mean, log_scale = prior.apply(prior.init(RNG, z_kept, None), z_kept, None)
    chex.assert_trees_all_close((mean, log_scale), (jnp.zeros_like(z_kept), jnp.zeros_like(z_kept)), atol=0, rtol=0)
