"""ConditionalRealNVP: invertibility, exact log-dets, normalization, context use, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_close, brute_force_log_det, perturb

import jcnf

pytestmark = pytest.mark.strict_dtypes

RNG = jax.random.PRNGKey(0)


def _data(batch=64, dim=3, context_dim=2, seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    context = jax.random.normal(k2, (batch, context_dim))
    value = jax.random.normal(k1, (batch, dim)) + jnp.sum(context, -1, keepdims=True)
    return value, context


@pytest.mark.allow_dtype_promotion("optax's Adam raises a Python float to its int32 step count")
@pytest.mark.parametrize("coupling,mixing,conditioner", [
    ("affine", "none", "mlp"), ("spline", "none", "mlp"),
    ("spline", "lu", "residual")])
def test_eight_layer_realnvp_inverts_at_init_and_after_training(coupling, mixing, conditioner):
    model = jcnf.ConditionalRealNVP(blocks=8, hidden=16, coupling=coupling, mixing=mixing, conditioner=conditioner)
    value, context = _data()
    variables = jax.jit(model.init)(RNG, value, context)
    roundtrip = jax.jit(lambda v: model.apply(
        v, model.apply(v, value, context, method="forward_and_log_det")[0], context, method="inverse"))
    assert_close(roundtrip(variables), value, atol=1e-4)

    optimizer = optax.adam(3e-3)
    params, opt_state = variables["params"], optimizer.init(variables["params"])

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(lambda p: -jnp.mean(model.apply({"params": p}, value, context)))(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    first = None
    for _ in range(20):
        params, opt_state, loss = step(params, opt_state)
        first = float(loss) if first is None else first
    assert float(loss) < first
    assert_close(roundtrip({"params": params}), value, atol=1e-4)


@pytest.mark.parametrize("kwargs,match", [({"mixing": "shuffle"}, "`mixing`"),
                                          ({"conditioner": "transformer"}, "`conditioner`")])
def test_bad_mixing_or_conditioner_raises_naming_it(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jcnf.ConditionalRealNVP(blocks=2, hidden=4, **kwargs).init(RNG, *_data(batch=2))


# The affine coupling with a conditional base is in test_registry.py.
@pytest.mark.parametrize("coupling,conditional_base", [
    ("additive", False), ("spline", True)])
def test_log_det_matches_brute_force_jacobian(coupling, conditional_base):
    model = jcnf.ConditionalRealNVP(blocks=3, hidden=8, coupling=coupling, conditional_base=conditional_base)
    value, context = _data(batch=4)
    variables = perturb(jax.jit(model.init)(RNG, value, context), jax.random.PRNGKey(1), 0.2)

    @jax.jit
    def log_dets(variables):
        log_det = model.apply(variables, value[:1], context[:1], method="forward_and_log_det")[1]
        expected = brute_force_log_det(
            lambda v: model.apply(variables, v[None], context[:1], method="forward_and_log_det")[0][0], value[0])
        return log_det, expected

    log_det, expected = log_dets(variables)
    assert_close(log_det[0], expected, atol=1e-4, rtol=1e-5)


def test_log_prob_integrates_to_one_on_a_grid():
    model = jcnf.ConditionalRealNVP(blocks=4, hidden=16)
    value, context = _data(batch=32, dim=2, context_dim=1)
    variables = perturb(jax.jit(model.init)(RNG, value, context), jax.random.PRNGKey(2), 0.1)
    # A 400x400 grid on [-12, 12]^2 covers the mass of this perturbed model; the
    # Riemann sum is accurate to well under 1% at this spacing.
    axis = jnp.linspace(-12.0, 12.0, 400)
    grid = jnp.stack(jnp.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    ctx = jnp.full((grid.shape[0], 1), 0.5)
    density = jnp.exp(jax.jit(model.apply)(variables, grid, ctx))
    total = float(jnp.sum(density) * (axis[1] - axis[0]) ** 2)
    assert abs(total - 1.0) < 1e-2


def test_context_reaches_output_and_samples():
    model = jcnf.ConditionalRealNVP(blocks=4, hidden=16)
    value, context = _data(batch=8)
    variables = perturb(jax.jit(model.init)(RNG, value, context), jax.random.PRNGKey(3), 0.1)
    grad = jax.grad(lambda c: jnp.sum(model.apply(variables, value, c)))(context)
    assert np.all(np.abs(grad).sum(-1) > 1e-6)
    a = model.apply(variables, RNG, context, method="sample")
    b = model.apply(variables, RNG, context + 1.0, method="sample")
    assert np.max(np.abs(a - b)) > 1e-3


@pytest.mark.parametrize("value,context,match", [
    (jnp.zeros((4, 1)), jnp.zeros((4, 2)), "dim >= 2"),
    (jnp.zeros((4, 3)), jnp.zeros((5, 2)), "batch"),
    (jnp.zeros((4, 3)), jnp.zeros((4, 2, 1)), "`context` must have shape"),
    (jnp.zeros((4, 3), jnp.int32), jnp.zeros((4, 2)), "floating-point"),
])
def test_bad_input_raises(value, context, match):
    with pytest.raises(ValueError, match=match):
        jcnf.ConditionalRealNVP(blocks=2, hidden=8).init(RNG, value, context)
