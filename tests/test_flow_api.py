"""The API shared by all flows: distrax views, jit/vmap/grad, checked mode."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jcnf
from conftest import assert_close, perturb

RNG = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def realnvp():
    model = jcnf.ConditionalRealNVP(layers=4, hidden=16)
    value = jax.random.normal(RNG, (8, 3))
    context = jax.random.normal(jax.random.PRNGKey(1), (8, 2))
    variables = perturb(jax.jit(model.init)(RNG, value, context), jax.random.PRNGKey(2), 0.1)
    return model, variables, value, context


def test_distribution_view_is_distrax_and_matches_log_prob(realnvp):
    model, variables, value, context = realnvp
    dist = model.bind(variables).distribution(context)
    assert isinstance(dist, distrax.Distribution)
    assert_close(dist.log_prob(value), model.apply(variables, value, context), atol=1e-5)
    samples = dist.sample(seed=RNG, sample_shape=(5,))
    assert samples.shape == (5, 8, 3)
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


def test_jit_vmap_grad(realnvp):
    model, variables, value, context = realnvp
    eager = model.apply(variables, value, context)
    jitted = jax.jit(model.apply)(variables, value, context)
    mapped = jax.vmap(lambda v, c: model.apply(variables, v[None], c[None])[0])(value, context)
    assert_close(jitted, eager, atol=1e-5)
    assert_close(mapped, eager, atol=1e-5)
    grads = jax.grad(lambda p: jnp.mean(model.apply({"params": p}, value, context)))(variables["params"])
    norms = [float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(grads) if g.size]
    assert all(np.isfinite(norms)) and sum(norms) > 0


def test_checked_mode_reports_nan_eagerly_and_under_jit(realnvp):
    _, variables, value, context = realnvp
    model = jcnf.ConditionalRealNVP(layers=4, hidden=16, check_finite=True)
    bad = value.at[2, 1].set(jnp.nan)
    with pytest.raises(ValueError, match="`value` contains 1 NaN"):
        model.apply(variables, bad, context)
    checked = checkify.checkify(jax.jit(lambda v: model.apply(variables, v, context)))
    error, _ = checked(bad)
    assert "value` contains NaN" in str(error.get())
    error, out = checked(value)
    assert error.get() is None and np.all(np.isfinite(out))


def test_sampling_before_init_and_wrong_latent_shape_are_reported(realnvp):
    model, variables, _, context = realnvp
    with pytest.raises(ValueError, match="initialize the model"):
        model.init(RNG, RNG, context, method="sample")
    with pytest.raises(ValueError, match="`z` must have shape"):
        model.apply(variables, jnp.zeros((8, 4)), context, method="inverse")
