"""ConditionalGlow: invertibility, exact log-dets, context use, sampling, errors.

Models are tiny (hidden 8-16, 8x8 images) so each compiles in seconds on two
CPU cores. Round-trip tolerance 1e-4 (float32, the target for a Glow round trip); log-det
tolerance 1e-3 absolute against slogdet of a 32-dimensional dense Jacobian.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_close, brute_force_log_det, perturb

import jcnf

pytestmark = pytest.mark.strict_dtypes

RNG = jax.random.PRNGKey(0)


def _data(batch=4, size=8, channels=2, context_size=4, seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    value = jax.random.uniform(k1, (batch, size, size, channels))
    context = jax.random.uniform(k2, (batch, context_size, context_size, 3))
    return value, context


def _train(model, variables, value, context, steps=3):
    optimizer = optax.adam(1e-3)
    params = variables["params"]
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(
            lambda p: -jnp.mean(model.apply({"params": p}, value, context)))(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(steps):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    return {"params": params}, losses


@pytest.mark.allow_dtype_promotion("optax's Adam raises a Python float to its int32 step count")
def test_three_level_eight_step_glow_inverts_at_init_and_after_training():
    model = jcnf.ConditionalGlow(levels=3, blocks=8, hidden=8, context_features=4, encoder_blocks=1)
    # 16 examples: ActNorm's data-dependent init at the 1x1 top level needs a
    # batch that spans the data, or its scales start degenerate.
    value, context = _data(batch=16)
    variables = jax.jit(model.init)(RNG, value, context)
    roundtrip = jax.jit(lambda v, x, c: model.apply(
        v, model.apply(v, x, c, method="forward_and_log_det")[0], c, method="inverse"))
    assert_close(roundtrip(variables, value, context), value, atol=1e-4)
    trained, losses = _train(model, variables, value, context)
    assert losses[-1] < losses[0]
    assert_close(roundtrip(trained, value, context), value, atol=1e-4)


# The affine coupling with an image context at half resolution is in test_registry.py.
@pytest.mark.parametrize("coupling,context_shape", [
    ("additive", (1, 4, 4, 1)), ("spline", (1, 5))])
def test_whole_glow_log_det_matches_brute_force_jacobian(coupling, context_shape):
    model = jcnf.ConditionalGlow(levels=2, blocks=1, hidden=8, coupling=coupling, context_features=4,
                                 encoder_blocks=1)
    value = jax.random.uniform(RNG, (1, 4, 4, 2))
    context = jax.random.normal(jax.random.PRNGKey(1), context_shape)
    variables = perturb(jax.jit(model.init)(RNG, value, context), jax.random.PRNGKey(2), 0.05)

    @jax.jit
    def check(variables):
        z, log_det = model.apply(variables, value, context, method="forward_and_log_det")
        expected = brute_force_log_det(
            lambda v: model.apply(variables, v[None], context, method="forward_and_log_det")[0][0], value[0])
        x, inverse_log_det = model.apply(variables, z, context, method="inverse_and_log_det")
        return z, log_det, expected, x, inverse_log_det

    z, log_det, expected, x, inverse_log_det = check(variables)
    assert z.shape == value.shape
    assert_close(log_det[0], expected, atol=1e-3, rtol=1e-4)
    assert_close(x, value, atol=1e-4)
    assert_close(inverse_log_det, -log_det, atol=1e-3)


def test_context_changes_log_prob_and_samples():
    model = jcnf.ConditionalGlow(levels=2, blocks=2, hidden=8, context_features=4, encoder_blocks=1)
    value, context = _data()
    variables = perturb(jax.jit(model.init)(RNG, value, context), jax.random.PRNGKey(3), 0.05)
    other = context[::-1]
    log_prob = jax.jit(lambda c: model.apply(variables, value, c))
    sample = jax.jit(lambda c: model.apply(variables, RNG, c, method="sample"))
    assert np.max(np.abs(log_prob(context) - log_prob(other))) > 1e-3
    assert np.max(np.abs(sample(context) - sample(other))) > 1e-3
    # The gradient of log p with respect to the context reaches every context row.
    grad = jax.jit(jax.grad(lambda c: jnp.sum(model.apply(variables, value, c))))(context)
    assert np.all(np.abs(grad).reshape(grad.shape[0], -1).sum(-1) > 0)


def test_sampling_temperature_and_keys():
    model = jcnf.ConditionalGlow(levels=2, blocks=1, hidden=8, context_features=4, encoder_blocks=1)
    value, context = _data(batch=2)
    variables = perturb(jax.jit(model.init)(RNG, value, context), jax.random.PRNGKey(4), 0.05)
    sample = jax.jit(lambda rng, t: model.apply(variables, rng, context, temperature=t, method="sample"))
    mode_a = sample(jax.random.PRNGKey(1), 0.0)
    mode_b = sample(jax.random.PRNGKey(2), 0.0)
    assert_close(mode_a, mode_b, atol=0)
    assert_close(sample(jax.random.PRNGKey(5), 0.8), sample(jax.random.PRNGKey(5), 0.8), atol=0)
    assert np.max(np.abs(sample(jax.random.PRNGKey(5), 0.8) - sample(jax.random.PRNGKey(6), 0.8))) > 1e-3
    x, log_q = jax.jit(lambda rng: model.apply(variables, rng, context, method="sample_and_log_prob"))(RNG)
    assert_close(log_q, jax.jit(model.apply)(variables, x, context), atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("value_shape,context_shape,match", [
    ((2, 8, 8), (2, 4, 4, 3), "value"),                 # wrong rank
    ((2, 8, 8, 2), (3, 4, 4, 3), "batch"),              # mismatched batch
    ((2, 6, 6, 2), (2, 3, 3, 3), "divisible by 2\\^levels"),
    ((2, 8, 8, 2), (2, 3, 3, 3), "integer"),            # context not value / r
])
def test_bad_shapes_raise_value_error_naming_argument(value_shape, context_shape, match):
    model = jcnf.ConditionalGlow(levels=2, blocks=1, hidden=8, context_features=4, encoder_blocks=1)
    with pytest.raises(ValueError, match=match):
        model.init(RNG, jnp.zeros(value_shape), jnp.zeros(context_shape))


def test_integer_value_is_rejected_with_advice():
    model = jcnf.ConditionalGlow(levels=1, blocks=1, hidden=8)
    with pytest.raises(ValueError, match="`value` must be a floating-point array"):
        model.init(RNG, jnp.zeros((1, 4, 4, 1), jnp.uint8), jnp.zeros((1, 4, 4, 1)))
