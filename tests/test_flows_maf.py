"""ConditionalMAF: sampling and density agree, the scan equals the unrolled blocks, bad attributes raise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturb

import jcnf


def _setup(**kwargs):
    model = jcnf.ConditionalMAF(blocks=2, hidden=8, **kwargs)
    value = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    context = jax.random.normal(jax.random.PRNGKey(1), (4, 2))
    variables = perturb(model.init(jax.random.PRNGKey(2), value, context), jax.random.PRNGKey(3), 0.1)
    return model, variables, value, context


def test_sample_and_log_prob_agrees_with_log_prob_of_the_samples():
    model, variables, _, context = _setup()
    samples, log_prob = model.apply(variables, jax.random.PRNGKey(4), context, method="sample_and_log_prob")
    # Sampling inverts the D-pass autoregression; float32 agreement of two routes through 2 blocks.
    np.testing.assert_allclose(model.apply(variables, samples, context), log_prob, atol=1e-4)
    dist = model.bind(variables).distribution(context)
    np.testing.assert_allclose(dist.log_prob(samples), log_prob, atol=1e-4)


def test_scanned_unrolled_and_reversible_blocks_give_the_same_density():
    model, variables, value, context = _setup()
    unrolled = jcnf.ConditionalMAF(blocks=2, hidden=8, schedule="unrolled")
    # Same parameters, same operations in another program: float32 rounding only.
    np.testing.assert_allclose(unrolled.apply(variables, value, context), model.apply(variables, value, context),
                               atol=1e-5)
    reversible = jcnf.ConditionalMAF(blocks=2, hidden=8, schedule="reversible")
    np.testing.assert_allclose(reversible.apply(variables, value, context), model.apply(variables, value, context),
                               atol=1e-5)


def test_one_dimensional_values_are_conditional():
    model = jcnf.ConditionalMAF(blocks=1, hidden=8)
    value, context = jnp.zeros((2, 1)), jnp.array([[0.0], [1.0]])
    variables = perturb(model.init(jax.random.PRNGKey(0), value, context), jax.random.PRNGKey(1), 0.3)
    log_prob = model.apply(variables, value, context)
    # Perturbed weights of scale 0.3 make the two contexts' densities differ far above rounding.
    assert abs(float(log_prob[0] - log_prob[1])) > 1e-3


@pytest.mark.parametrize("kwargs,match", [({"blocks": 0}, "`blocks`"), ({"transformer": "cubic"}, "`transformer`")])
def test_bad_attributes_raise_naming_them(kwargs, match):
    model = jcnf.ConditionalMAF(**kwargs)
    with pytest.raises(ValueError, match=match):
        model.init(jax.random.PRNGKey(0), jnp.zeros((2, 3)), jnp.zeros((2, 2)))


def test_context_of_the_wrong_width_raises_naming_the_context():
    model, variables, value, _ = _setup()
    with pytest.raises(ValueError, match="`context` must have 2 features"):
        model.apply(variables, value, jnp.zeros((4, 5)))
