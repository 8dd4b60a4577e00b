"""The posterior objective: likelihood plus prior, and the frozen flow as a prior."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jcnf
from jcnf import inverse


def test_posterior_log_density_is_likelihood_plus_prior():
    operator = inverse.dense(jnp.array([[1.0, 0.5], [0.0, 2.0], [1.0, 1.0]]))
    y_obs = jnp.array([0.3, -1.0, 2.0])
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 2))
    log_density = inverse.posterior_log_density(operator, y_obs, 0.4, inverse.rosenbrock_log_prob)(x)
    matrix = np.asarray(operator.params["matrix"], np.float64)
    xs = np.asarray(x, np.float64)
    expected = (-0.5 * np.sum((xs @ matrix.T - np.asarray(y_obs)) ** 2, axis=1) / 0.16
                + stats.norm.logpdf(xs[:, 0], 0, 1) + stats.norm.logpdf(xs[:, 1], xs[:, 0] ** 2, np.sqrt(0.5)))
    # float32 arithmetic on O(10) values: 1e-4 relative.
    np.testing.assert_allclose(log_density, expected, rtol=1e-4)


def test_flow_log_prior_is_the_frozen_flow_at_the_fixed_context():
    model = jcnf.ConditionalRealNVP(blocks=2, hidden=8)
    value = jax.random.normal(jax.random.PRNGKey(0), (6, 2))
    context = jnp.array([[0.5, -0.2]])
    params = model.init(jax.random.PRNGKey(1), value, jnp.repeat(context, 6, 0))["params"]
    log_prior = inverse.flow_log_prior(model, params, context)
    expected = jax.jit(model.apply, static_argnames="method")({"params": params}, value, jnp.repeat(context, 6, 0),
                                                             method="log_prob")
    np.testing.assert_allclose(jax.jit(log_prior)(value), expected, rtol=1e-6, atol=1e-6)
    # Frozen: no gradient reaches the prior's parameters through log_prior, but x gets one.
    grad_params = jax.jit(jax.grad(lambda p: jnp.sum(inverse.flow_log_prior(model, p, context)(value))))(params)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grad_params) if g.size)
    assert float(jnp.max(jnp.abs(jax.jit(jax.grad(lambda x: jnp.sum(log_prior(x))))(value)))) > 0


def test_bad_arguments_raise():
    operator = inverse.dense(jnp.eye(2))
    with pytest.raises(ValueError, match="`noise_std` must be > 0"):
        inverse.posterior_log_density(operator, jnp.zeros(2), 0.0, inverse.rosenbrock_log_prob)
    with pytest.raises(ValueError, match=r"`y_obs` must have the operator's output shape \[2\]"):
        inverse.posterior_log_density(operator, jnp.zeros((1, 2)), 0.1, inverse.rosenbrock_log_prob)
    with pytest.raises(ValueError, match="`log_prior` must be a function"):
        inverse.posterior_log_density(operator, jnp.zeros(2), 0.1, None)
    with pytest.raises(ValueError, match=r"`context` must be one row.*\[1, \.\.\.\]"):
        inverse.flow_log_prior(jcnf.ConditionalRealNVP(), {}, jnp.zeros((3, 2)))
