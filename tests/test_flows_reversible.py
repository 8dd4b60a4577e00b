"""Memory-efficient (inversion-based) gradients: same values, same gradients.

`reversible_chain` must give the plain loop's values exactly (the forward pass is the same arithmetic) and its
gradients to float32 rounding: the backward pass recomputes each step's input
by inverting the step, and that reconstruction carries a relative error of a
few float32 ulps per step. Tolerances below (rtol 1e-4, atol 1e-5 on values
of order 1-100) leave a factor of ~100 over that rounding on these depths.
"""

import jax
import jax.numpy as jnp
import pytest
from conftest import assert_close

from jcnf.flows.reversible import reversible_chain, stack_params

RNG = jax.random.PRNGKey(0)


def _step(params, x, context):
    """An affine coupling on 2-vectors whose scale and shift depend on x1 and the context."""
    x1, x2 = x[:, :1], x[:, 1:]
    raw = jnp.tanh(x1 * params["w"] + context @ params["v"])
    shift = jnp.sin(x1 * params["b"]) + context @ params["u"]
    y2 = x2 * jnp.exp(raw) + shift
    # Swap the halves so the next step changes the other coordinate.
    return jnp.concatenate([y2, x1], axis=1), jnp.sum(raw, axis=1)


def _step_inverse(params, y, context):
    y2, x1 = y[:, :1], y[:, 1:]
    raw = jnp.tanh(x1 * params["w"] + context @ params["v"])
    shift = jnp.sin(x1 * params["b"]) + context @ params["u"]
    x2 = (y2 - shift) * jnp.exp(-raw)
    return jnp.concatenate([x1, x2], axis=1), -jnp.sum(raw, axis=1)


def _chain_params(num_steps, context_features=3, seed=1):
    keys = jax.random.split(jax.random.PRNGKey(seed), num_steps)
    return [{"w": jax.random.normal(jax.random.fold_in(k, 0), (1, 1)),
             "v": 0.5 * jax.random.normal(jax.random.fold_in(k, 1), (context_features, 1)),
             "b": jax.random.normal(jax.random.fold_in(k, 2), (1, 1)),
             "u": 0.5 * jax.random.normal(jax.random.fold_in(k, 3), (context_features, 1))} for k in keys]


def _plain_chain(params, x, context):
    log_det = jnp.zeros(x.shape[:1])
    for step_params in params:
        x, step_log_det = _step(step_params, x, context)
        log_det = log_det + step_log_det
    return x, log_det


def _chain_loss(chain):
    # Weights the output and the log-det differently so both cotangents matter.
    def loss(params, x, context):
        y, log_det = chain(params, x, context)
        return jnp.sum(jnp.sin(y) * jnp.arange(1, y.size + 1).reshape(y.shape)) + jnp.sum(log_det ** 2)
    return loss


def test_step_inverse_is_exact_inverse_of_step():
    params = _chain_params(1)[0]
    x = jax.random.normal(RNG, (5, 2))
    context = jax.random.normal(jax.random.PRNGKey(2), (5, 3))
    y, log_det = _step(params, x, context)
    x_back, inverse_log_det = _step_inverse(params, y, context)
    assert_close(x_back, x, atol=1e-6)  # one float32 step: a few ulps
    assert_close(inverse_log_det, -log_det, atol=0)


def test_reversible_chain_matches_plain_loop_in_value_and_gradients():
    params = _chain_params(6)
    x = jax.random.normal(RNG, (5, 2))
    context = jax.random.normal(jax.random.PRNGKey(2), (5, 3))
    efficient = lambda p, v, c: reversible_chain(_step, _step_inverse, stack_params(p), v, c)

    y_plain, log_det_plain = jax.jit(_plain_chain)(params, x, context)
    y_eff, log_det_eff = jax.jit(efficient)(params, x, context)
    # scan vs unrolled loop: same operations, so equal up to XLA fusion differences.
    assert_close(y_eff, y_plain, atol=1e-6, rtol=1e-6)
    assert_close(log_det_eff, log_det_plain, atol=1e-6, rtol=1e-6)

    grads_plain = jax.jit(jax.grad(_chain_loss(_plain_chain), argnums=(0, 1, 2)))(params, x, context)
    grads_eff = jax.jit(jax.grad(_chain_loss(efficient), argnums=(0, 1, 2)))(params, x, context)
    for plain, eff in zip(jax.tree.leaves(grads_plain), jax.tree.leaves(grads_eff), strict=False):
        assert_close(eff, plain, atol=1e-5, rtol=1e-4)
    # Every gradient is used: a zero cotangent would hide a wiring bug.
    assert all(float(jnp.max(jnp.abs(leaf))) > 1e-3 for leaf in jax.tree.leaves(grads_plain))


def test_reversible_chain_rejects_mixed_steps():
    params = _chain_params(2)
    params[1] = {**params[1], "w": jnp.zeros((2, 1))}
    with pytest.raises(ValueError, match="same structure and shapes"):
        stack_params(params)
