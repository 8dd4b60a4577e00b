"""Latent correction: a frozen amortized flow behind a learned affine map of its latent."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import brute_force_log_det

import jcnf
from jcnf import inverse


@pytest.fixture(scope="module")
def amortized():
    model = jcnf.ConditionalRealNVP(blocks=2, hidden=8)
    value = jax.random.normal(jax.random.PRNGKey(0), (16, 2))
    return model, model.init(jax.random.PRNGKey(1), value, value)["params"]


def with_random_map(params, rng):
    shift_key, scale_key = jax.random.split(rng)
    return {**params, "shift": 0.5 * jax.random.normal(shift_key, (2,)),
            "log_scale": 0.3 * jax.random.normal(scale_key, (2,))}


def test_starts_as_the_amortized_flow(amortized):
    model, params = amortized
    corrected, corrected_params = inverse.latent_correction(model, params)
    value, context = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 2))
    expected = model.apply({"params": params}, value, context, method="log_prob")
    np.testing.assert_allclose(corrected.apply({"params": corrected_params}, value, context), expected,
                               rtol=1e-6, atol=1e-6)


def test_inverse_and_log_det_match_brute_force(amortized):
    model, params = amortized
    corrected, corrected_params = inverse.latent_correction(model, params)
    variables = {"params": with_random_map(corrected_params, jax.random.PRNGKey(3))}
    z, context = jax.random.normal(jax.random.PRNGKey(4), (2, 3, 2))
    value, log_det = corrected.apply(variables, z, context, method="inverse_and_log_det")
    z_back, forward_log_det = corrected.apply(variables, value, context, method="forward_and_log_det")
    # float32 round trip through two couplings and the affine map: 1e-5.
    np.testing.assert_allclose(z_back, z, atol=1e-5)
    np.testing.assert_allclose(forward_log_det, -log_det, atol=1e-5)
    inverse_one = jax.jit(lambda e, c: corrected.apply(variables, e[None], c[None], method="inverse")[0])
    for i in range(3):
        brute = brute_force_log_det(lambda e, i=i: inverse_one(e, context[i]), z[i])
        np.testing.assert_allclose(log_det[i], brute, atol=1e-4)  # slogdet of a float32 Jacobian


def test_fit_trains_only_the_affine_map(amortized):
    model, params = amortized
    corrected, corrected_params = inverse.latent_correction(model, params)
    operator, traces = inverse.identity(2), []

    def log_prior(x):
        traces.append(x.shape)  # once per trace
        return inverse.rosenbrock_log_prob(x)

    step = inverse.posterior_step(corrected, operator, 0.4, log_prior, num_samples=32, learning_rate=3e-2)

    def fit(params, y_obs, steps):
        return inverse.fit_reverse_kl(corrected, params, y_obs, operator, 0.4, log_prior, steps=steps,
                                      eval_samples=512, eval_every=30, progress=False, step=step)

    result = fit(corrected_params, jnp.array([1.0, 1.5]), 60)
    # The frozen flow is bit-for-bit the amortized one; the map moved and the objective fell.
    jax.tree.map(np.testing.assert_array_equal, result.params["frozen"], params)
    assert float(jnp.max(jnp.abs(result.params["shift"]))) > 0.1
    objective = result.objective_history[:, 1]
    assert objective[-1] < objective[0] - 1.0
    # The optimizer keeps no Adam moments for the frozen subtree (set_to_zero has no state).
    assert jcnf.train.count_params(result.state.opt_state) < 4 * jcnf.train.count_params(params)
    # Another observation from another start reuses the compiled step, frozen labels and all.
    traced = len(traces)
    fit(result.params, jnp.array([-0.5, 2.0]), 2)
    assert len(traces) == traced


def test_bad_input(amortized):
    model, params = amortized
    with pytest.raises(ValueError, match="`amortized_params`.*shape_marker"):
        inverse.latent_correction(model, {"dense": jnp.zeros(2)})
    corrected, corrected_params = inverse.latent_correction(model, params)
    with pytest.raises(ValueError, match=r"`z` must have shape \[batch, 2\]"):
        corrected.apply({"params": corrected_params}, jnp.zeros((3, 4)), jnp.zeros((3, 2)), method="inverse")
    with pytest.raises(ValueError, match="`method` must name a flow method"):
        corrected.apply({"params": corrected_params}, jnp.zeros((3, 2)), jnp.zeros((3, 2)), method="init")
