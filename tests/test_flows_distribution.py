"""jcnf.flows.distribution: the distrax bijector and distribution views of a bound flow."""

import chex
import distrax
import jax
import jax.numpy as jnp
import pytest
from conftest import assert_close, perturbed_realnvp

from jcnf.flows import ValueToLatent, flow_distribution

pytestmark = pytest.mark.strict_dtypes

RNG = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def realnvp():
    return perturbed_realnvp(2, 8, 4)


def test_distribution_view_is_distrax_and_matches_log_prob(realnvp):
    model, variables, value, context = realnvp
    dist = model.bind(variables).distribution(context)
    assert isinstance(dist, distrax.Distribution)
    assert_close(dist.log_prob(value), model.apply(variables, value, context), atol=1e-5)
    samples = dist.sample(seed=RNG, sample_shape=(5,))
    chex.assert_shape(samples, (5, 4, 3))
    chex.assert_tree_all_finite(samples)


@pytest.mark.allow_rank_promotion("distrax.Normal.log_prob broadcasts its [B, D] loc against [5, B, D] values")
def test_log_prob_of_values_with_a_sample_shape(realnvp):
    model, variables, _, context = realnvp
    dist = model.bind(variables).distribution(context)
    samples = dist.sample(seed=RNG, sample_shape=(5,))
    assert_close(dist.log_prob(samples)[0], model.apply(variables, samples[0], context), atol=1e-4)


def test_distribution_composes_with_chain_and_inverse(realnvp):
    model, variables, value, context = realnvp
    dist = model.bind(variables).distribution(context)
    shift = distrax.Block(distrax.ScalarAffine(shift=2.0, scale=3.0), 1)
    moved = distrax.Transformed(dist, distrax.Chain([shift]))
    expected = model.apply(variables, (value * 3.0 + 2.0 - 2.0) / 3.0, context) - 3 * jnp.log(3.0)
    assert_close(moved.log_prob(value * 3.0 + 2.0), expected, atol=1e-4)
    undone = distrax.Transformed(moved, distrax.Inverse(shift))
    assert_close(undone.log_prob(value), dist.log_prob(value), atol=1e-4)


def test_value_to_latent_folds_leading_axes_into_the_batch(realnvp):
    model, variables, value, context = realnvp
    bijector = ValueToLatent(model.bind(variables), context, (3,))
    z, log_det = bijector.forward_and_log_det(value)
    stacked = jnp.stack([value, value + 0.5])
    z_stacked, log_det_stacked = bijector.forward_and_log_det(stacked)
    chex.assert_shape(z_stacked, (2, 4, 3))
    chex.assert_shape(log_det_stacked, (2, 4))
    # Row k of every leading slice sees context row k.
    chex.assert_trees_all_close((z_stacked[0], log_det_stacked[0]), (z, log_det), atol=1e-6, rtol=0)
    back, inverse_log_det = bijector.inverse_and_log_det(z_stacked)
    chex.assert_trees_all_close(back, stacked, atol=1e-5, rtol=0)
    chex.assert_trees_all_close(inverse_log_det, -log_det_stacked, atol=1e-5, rtol=0)


def test_value_to_latent_rejects_leading_axes_that_do_not_end_in_the_batch(realnvp):
    model, variables, value, context = realnvp
    bijector = ValueToLatent(model.bind(variables), context, (3,))
    with pytest.raises(ValueError, match="context's batch size 4.*shape \\(3, 3\\)"):
        bijector.forward_and_log_det(value[:3])


def test_temperature_scales_the_base_and_zero_gives_the_mode(realnvp):
    model, variables, _, context = realnvp
    bound = model.bind(variables)
    samples = flow_distribution(bound, context, (3,), temperature=0.0).sample(seed=RNG)
    expected = bound.inverse(jnp.zeros((4, 3)), context)
    chex.assert_trees_all_close(samples, expected, atol=1e-6, rtol=0)
    base = flow_distribution(bound, context, (3,), temperature=0.5).distribution
    chex.assert_trees_all_close(base.stddev(), jnp.full((4, 3), 0.5), atol=0, rtol=0)
