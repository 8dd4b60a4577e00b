"""Variational dequantization: the noise stays in its bin, log q is exact, the bound holds, training runs."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import brute_force_log_det, perturb
from scipy.special import ndtr

from jcnf.dequantize import VariationalDequantizer, apply_dequantizer
from jcnf.distributions import standard_normal_log_prob
from jcnf.train import create_state, mle_step

pytestmark = pytest.mark.strict_dtypes

NUM_BINS = 4


def _tiny(**kwargs):
    return VariationalDequantizer(num_bins=NUM_BINS, levels=1, blocks=1, hidden=4, context_features=4,
                                  encoder_blocks=1, **kwargs)


@functools.lru_cache(maxsize=None)
def _setup(model, batch=2, seed=0):
    """Initialized (and perturbed) variables, a value and a context; cached: compiling init is the slow part."""
    rng = jax.random.PRNGKey(seed)
    value = jax.random.randint(rng, (batch, 2, 2, 1), 0, NUM_BINS) / NUM_BINS
    context = jax.random.uniform(jax.random.fold_in(rng, 1), (batch, 1, 1, 1))
    variables = jax.jit(model.init)(rng, rng, value, {"value": value, "context": context})
    # Perturbed, so that the zero-initialised couplings and priors are not the identity.
    return {"params": perturb(variables["params"], jax.random.fold_in(rng, 2), 0.3)}, value, context


def test_noise_in_bin_and_log_density_matches_jacobian():
    model = _tiny()
    variables, value, context = _setup(model)
    eps = 1.5 * jax.random.normal(jax.random.PRNGKey(5), value.shape)
    noise_fn = jax.jit(lambda e, v, c: model.apply(variables, e, v, c, method="noise_and_log_density"))
    noise, log_q = noise_fn(eps, value, context)
    assert noise.shape == value.shape and log_q.shape == (2,)
    assert float(noise.min()) >= 0.0 and float(noise.max()) < 1.0 / NUM_BINS
    for row in range(2):
        # Change of variables for the bijection eps -> u: log q(u) = log N(eps) - log|det du/deps|.
        def to_noise(e, row=row):
            return noise_fn(e[None], value[row:row + 1], context[row:row + 1])[0][0]

        log_det = brute_force_log_det(to_noise, eps[row])
        expected = standard_normal_log_prob(eps[row:row + 1], 3)[0] - log_det
        # float32 Jacobian of a 4-dimensional map; log q is ~5 nats.
        np.testing.assert_allclose(float(log_q[row]), float(expected), atol=2e-4, rtol=1e-5)


def test_context_and_value_change_the_noise():
    model = _tiny()
    variables, value, context = _setup(model)
    eps = jax.random.normal(jax.random.PRNGKey(5), value.shape)
    noise_fn = jax.jit(lambda v, c: model.apply(variables, eps, v, c, method="noise_and_log_density")[0])
    base = noise_fn(value, context)
    assert float(jnp.max(jnp.abs(noise_fn(value, context + 0.5) - base))) > 1e-5
    assert float(jnp.max(jnp.abs(noise_fn(1.0 - 1.0 / NUM_BINS - value, context) - base))) > 1e-5


def test_bound_is_below_exact_discrete_log_likelihood():
    """E_q[log p(value + u) - log q(u)] <= log P(value) for a density whose bin masses are known."""
    model = _tiny(use_context=False)
    rng = jax.random.PRNGKey(0)
    value = jnp.array([0, 1, 2, 3], jnp.float32).reshape(1, 2, 2, 1) / NUM_BINS
    # ActNorm initializes from the batch's statistics: a batch of one value
    # would give it a zero standard deviation, so initialize on many.
    init_values = jax.random.randint(rng, (64, 2, 2, 1), 0, NUM_BINS) / NUM_BINS
    fresh = jax.jit(model.init)(rng, rng, init_values, {})["params"]
    mean, std = 0.4, 0.3  # p = independent N(0.4, 0.3^2) on every entry: bin masses in closed form

    def log_p(x):
        return jnp.sum(-0.5 * ((x - mean) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi)), axis=(1, 2, 3))

    draws = 4000

    @jax.jit
    def bounds(params):
        rngs = jax.random.split(jax.random.PRNGKey(7), draws)
        dequantized, log_correction = jax.vmap(lambda k: model.apply({"params": params}, k, value, {}))(rngs)
        return log_p(dequantized[:, 0]) + log_correction[:, 0]

    level = np.asarray(value[0]) * NUM_BINS
    exact = float(np.sum(np.log(ndtr(((level + 1) / NUM_BINS - mean) / std) - ndtr((level / NUM_BINS - mean) / std))))
    for params in (fresh, perturb(fresh, jax.random.fold_in(rng, 2), 0.3)):
        bound = bounds(params)
        # Jensen: the bound's expectation is at most exact; 3 standard errors of the Monte-Carlo mean.
        standard_error = float(jnp.std(bound)) / math.sqrt(draws)
        assert float(jnp.mean(bound)) <= exact + 3 * standard_error
    # A fresh noise flow is the identity, so q is a logit-normal on each bin,
    # close to uniform: the gap KL(q || p(. | bin)) is a fraction of a nat per entry.
    assert float(jnp.mean(bounds(fresh))) > exact - 4 * 0.5


@pytest.mark.allow_dtype_promotion("optax's Adam raises a Python float to its int32 step count")
def test_trains_jointly_with_a_flow():
    import jcnf
    dequantizer = _tiny()
    flow = jcnf.ConditionalGlow(levels=1, blocks=1, hidden=4, context_features=4, encoder_blocks=1)
    rng = jax.random.PRNGKey(0)
    value = jax.random.randint(rng, (4, 2, 2, 1), 0, NUM_BINS) / NUM_BINS
    batch = {"value": value, "context": jax.random.uniform(rng, (4, 1, 1, 1))}
    state = create_state(flow, optax.adam(1e-2), rng, batch, dequantizer=dequantizer)
    assert set(state.params) == {"flow", "dequantizer"}
    before = state.params["dequantizer"]
    step = mle_step(flow, dequantizer=dequantizer, donate=False)
    new_state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"])) and int(new_state.skipped) == 0
    change = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))) if a.size else 0.0,
                          new_state.params["dequantizer"], before)
    # One Adam step of lr 1e-2 moves every parameter with a gradient by ~1e-2.
    assert max(jax.tree.leaves(change)) > 1e-3
    noisy, correction = jax.jit(functools.partial(apply_dequantizer, dequantizer))(new_state.params, rng, value, batch)
    assert float(jnp.min(noisy - value)) >= 0.0 and float(jnp.max(noisy - value)) < 1.0 / NUM_BINS
    assert correction.shape == (4,)


def test_bad_inputs_raise_clear_errors():
    model = _tiny()
    variables, value, context = _setup(model)
    with pytest.raises(ValueError, match="`value`"):
        model.apply(variables, jax.random.PRNGKey(0), (value * NUM_BINS).astype(jnp.int32), {"context": context})
    with pytest.raises(ValueError, match="`value`"):
        model.apply(variables, jax.random.PRNGKey(0), value[..., 0], {"context": context})
    # A context of another batch size would otherwise be stretched over the values by the resize.
    with pytest.raises(ValueError, match="`context`"):
        model.apply(variables, jax.random.PRNGKey(0), value, {"context": context[:1]})
    with pytest.raises(ValueError, match="`context`"):
        model.apply(variables, jax.random.PRNGKey(0), value, {"context": context[:, 0]})
    with pytest.raises(ValueError, match="num_bins"):
        VariationalDequantizer(num_bins=1).init(jax.random.PRNGKey(0), jax.random.PRNGKey(0), value, {})
