"""TrainedModel: sampling and log-densities in the user's units, compiled once per shape, with named bad input."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _saved_models import tiny_models

import jcnf

STANDARDIZATION = jcnf.Standardization(value_loc=np.array([1.0, -2.0]), value_scale=np.array([2.0, 0.5]),
                                       context_loc=np.array([0.5, 0.0, 1.0]), context_scale=np.array([1.5, 1, 2]))
BOUNDS = (np.array([-6.0, -5.0]), np.array([8.0, 3.0]))


def _realnvp(**options):
    tiny = tiny_models()["ConditionalRealNVP"]
    return tiny, jcnf.TrainedModel(tiny.model, tiny.params, **options)


def test_standardization_fit_gives_each_feature_mean_and_floored_std():
    value = np.stack([np.arange(5.0), np.full(5, 3.0)], -1)
    fitted = jcnf.Standardization.fit(value=value)
    np.testing.assert_allclose(fitted.value_loc, [2.0, 3.0])
    # The constant feature's std is floored instead of dividing by zero.
    np.testing.assert_allclose(fitted.value_scale, [np.sqrt(2.0), 1e-6], rtol=1e-6)
    assert fitted.context_loc is None and fitted.context_scale is None
    with pytest.raises(ValueError, match=r"`value_scale` must be positive"):
        jcnf.Standardization(value_scale=np.array([1.0, 0.0]))


def test_log_prob_is_the_models_density_through_standardization_and_bounds():
    tiny, trained = _realnvp(standardization=STANDARDIZATION, bounds=BOUNDS)
    value = jnp.array([[0.5, -1.0], [-3.0, 2.5]])
    context = tiny.context

    def to_value(u):  # one item: model units -> user units, written out independently of the library
        y = u * STANDARDIZATION.value_scale + STANDARDIZATION.value_loc
        return BOUNDS[0] + (BOUNDS[1] - BOUNDS[0]) * jax.nn.sigmoid(y)

    def to_model(x):
        fraction = (x - BOUNDS[0]) / (BOUNDS[1] - BOUNDS[0])
        return (jnp.log(fraction) - jnp.log1p(-fraction) - STANDARDIZATION.value_loc) / STANDARDIZATION.value_scale

    u = jax.vmap(to_model)(value)
    model_context = (context - STANDARDIZATION.context_loc[None]) / STANDARDIZATION.context_scale[None]
    model_log_prob = tiny.model.apply({"params": tiny.params}, u, model_context)
    log_det = jnp.stack([jnp.linalg.slogdet(jax.jacfwd(to_value)(row))[1] for row in u])
    # float32 through logit and sigmoid of values a few units wide: agreement to ~1e-5 relative.
    np.testing.assert_allclose(trained.log_prob(value, context), model_log_prob - log_det, rtol=1e-5, atol=1e-5)
    outside = value.at[1, 0].set(BOUNDS[0][0])
    assert np.isneginf(np.asarray(trained.log_prob(outside, context))[1])


def test_samples_have_the_requested_shape_lie_in_the_bounds_and_carry_their_log_density():
    tiny, trained = _realnvp(standardization=STANDARDIZATION, bounds=BOUNDS)
    samples, log_prob = trained.sample_and_log_prob(jax.random.PRNGKey(0), tiny.context, num_samples=5)
    assert samples.shape == (5, 2, 2) and log_prob.shape == (5, 2)
    assert np.all((np.asarray(samples) > BOUNDS[0]) & (np.asarray(samples) < BOUNDS[1]))
    rescored = trained.log_prob(samples.reshape(10, 2), jnp.tile(tiny.context, (5, 1))).reshape(5, 2)
    # Scoring inverts the sigmoid that sampling applied: float32 logit round trips agree to ~1e-3 nats.
    np.testing.assert_allclose(rescored, log_prob, atol=2e-3)
    # Temperature 0 draws the latent's mode: the same value for every draw.
    modes = trained.sample(jax.random.PRNGKey(1), tiny.context, num_samples=3, temperature=0.0)
    np.testing.assert_array_equal(modes[0], modes[2])


def test_each_function_compiles_once_per_shape():
    tiny, trained = _realnvp()
    for seed, temperature in ((0, 1.0), (1, 0.5), (2, 0.0)):
        trained.sample(jax.random.PRNGKey(seed), tiny.context, num_samples=4, temperature=temperature)
        trained.log_prob(tiny.value, tiny.context)
    assert trained._sample_fn._cache_size() == 1 and trained._log_prob_fn._cache_size() == 1
    trained.sample(jax.random.PRNGKey(0), tiny.context, num_samples=2)
    assert trained._sample_fn._cache_size() == 2


def test_distribution_is_a_distrax_view_of_the_same_density():
    tiny, trained = _realnvp(standardization=STANDARDIZATION)
    distribution = trained.distribution(tiny.context)
    assert isinstance(distribution, distrax.Distribution)
    assert distribution.event_shape == (2,) and distribution.batch_shape == (2,)
    samples = distribution.sample(seed=jax.random.PRNGKey(0), sample_shape=3)
    assert samples.shape == (3, 2, 2)
    expected = trained.log_prob(samples.reshape(6, 2), jnp.tile(tiny.context, (3, 1))).reshape(3, 2)
    # The same jitted function on the same rows.
    np.testing.assert_allclose(distribution.log_prob(samples), expected, rtol=1e-6)


def test_an_image_flow_samples_at_the_size_its_context_asks_for():
    tiny = tiny_models()["SuperResolutionGlow"]
    trained = jcnf.TrainedModel(tiny.model, tiny.params, context_shape=tiny.context_shape)
    context = jax.random.uniform(jax.random.PRNGKey(0), (1, 4, 6, 1))
    samples = trained.sample(jax.random.PRNGKey(1), context, num_samples=2, temperature=0.5)
    assert samples.shape == (2, 1, 8, 12, 1) and np.all(np.isfinite(samples))
    assert trained.log_prob(samples[0], context).shape == (1,)
    with pytest.raises(ValueError, match=r"divisible by 2\^levels = 2"):
        trained.log_prob(jnp.zeros((1, 6, 5, 1)), jnp.zeros((1, 3, 3, 1)))


def test_bad_inputs_are_named():
    tiny, trained = _realnvp()
    with pytest.raises(ValueError, match=r"`context` must have 3 features on its last axis.*got shape \(2, 4\)"):
        trained.log_prob(tiny.value, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"`value` must have shape \[batch, 2\]"):
        trained.log_prob(jnp.zeros((2, 3)), tiny.context)
    with pytest.raises(ValueError, match=r"`temperature` must be a non-negative number"):
        trained.sample(jax.random.PRNGKey(0), tiny.context, temperature=-1.0)
    with pytest.raises(ValueError, match=r"`bounds` must be finite with lower < upper"):
        jcnf.TrainedModel(tiny.model, tiny.params, bounds=(np.ones(2), np.zeros(2)))
    bernoulli = tiny_models()["FactorizedBernoulli"]
    with pytest.raises(ValueError, match=r"`temperature` must be 1 for FactorizedBernoulli"):
        jcnf.TrainedModel(bernoulli.model, bernoulli.params, value_shape=(4, 4, 1)).sample(
            jax.random.PRNGKey(0), bernoulli.context, temperature=0.5)


def test_the_train_states_parameter_dict_is_refused_with_the_key_to_take():
    tiny = tiny_models()["ConditionalRealNVP"]
    match = r"train state's dict of parameter trees \{'flow': \.\.\.\}; pass its 'flow' entry"
    with pytest.raises(ValueError, match=match):
        jcnf.TrainedModel(tiny.model, {"flow": tiny.params})
    with pytest.raises(ValueError, match=match):
        tiny.model.apply({"params": {"flow": tiny.params}}, jax.random.PRNGKey(0), tiny.context, method="sample")
