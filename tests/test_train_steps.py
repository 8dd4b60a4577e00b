"""jcnf.train.steps: the non-finite guard, learning a conditional density, reverse KL, EMA, sampling.

Tiny RealNVPs (2 couplings, 16 hidden) on 2-D data keep each compile near a
second on two CPU cores.
"""

import math

import _train_worker as worker
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jcnf
from jcnf import train

MODEL = jcnf.ConditionalRealNVP(**worker.MODEL_KWARGS)


@pytest.fixture(scope="module")
def mle():
    """One MLE step for the module: tests with the same shapes share its compilation."""
    return train.mle_step(MODEL)


def _batch(size=32, seed=0):
    return {key: x[:size] for key, x in worker.tiny_problem(size, seed).items()}


def _host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=False):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("key,bad", [("value", np.nan), ("context", np.inf)])
def test_non_finite_batch_leaves_params_and_optimizer_unchanged(mle, key, bad):
    batch = _batch()
    state = train.create_state(MODEL, optax.adam(1e-2), jax.random.PRNGKey(0), batch, ema_decay=0.9)
    step = mle
    before = _host(state)
    poisoned = dict(batch)
    poisoned[key] = batch[key].copy()
    poisoned[key][3, 1] = bad
    state, metrics = step(state, poisoned)
    assert float(metrics["skipped"]) == 1.0
    assert int(state.skipped) == 1 and int(state.skip_run) == 1 and int(state.step) == 1
    _assert_trees_equal(state.params, before.params)
    _assert_trees_equal(state.opt_state, before.opt_state)
    _assert_trees_equal(state.ema_params, before.ema_params)
    # A clean batch then trains: the run of skips resets, the total stays.
    state, metrics = step(state, batch)
    assert float(metrics["skipped"]) == 0.0 and int(state.skipped) == 1 and int(state.skip_run) == 0
    moved = [np.max(np.abs(a - b))
             for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(before.params), strict=True) if a.size]
    assert max(moved) > 1e-3


def test_learns_a_conditional_density():
    # value = A c + s(c) * noise with s >= 0.2: the conditional entropy is 0.25
    # nats, the (nearly Gaussian) marginal's 2.95. The untrained flow (ActNorm-
    # initialized, couplings at identity) scores 3.2 nats on held-out data and
    # 300 steps reach ~0.4 (seeds 0 and 1): a 2-nat gain leaves slack, yet a
    # model that ignored the context could not reach it.
    data = worker.tiny_problem(1024, seed=0)
    held_out = worker.tiny_problem(256, seed=1)
    evaluate = train.mle_eval_step(MODEL)
    state = train.create_state(MODEL, train.default_optimizer(1e-2, warmup=20), jax.random.PRNGKey(0),
                               {key: x[:64] for key, x in data.items()})
    initial = float(evaluate(state, held_out)["loss"])
    result = train.fit(MODEL, data, 300, state=state, batch_size=64, log_every=50, progress=False)
    losses = [record["loss"] for record in result.history]
    assert losses[-1] < losses[0] - 1.0, losses
    final = float(evaluate(result.state, held_out)["loss"])
    assert final < initial - 2.0, (initial, final)
    # The context matters: pairing held-out values with other contexts costs > 1 nat.
    shuffled = {"value": held_out["value"], "context": held_out["context"][::-1]}
    assert float(evaluate(result.state, shuffled)["loss"]) > final + 1.0


def test_bits_per_dim_with_uniform_dequantization():
    batch = _batch()
    batch["value"] = np.floor(np.clip(batch["value"] * 32 + 128, 0, 255)) / 256
    dequantizer = jcnf.dequantize.uniform_dequantization(256)
    state = train.create_state(MODEL, optax.sgd(0.0), jax.random.PRNGKey(0), batch, dequantizer=dequantizer)
    evaluate = train.mle_eval_step(MODEL, dequantizer=dequantizer)
    rng = jax.random.PRNGKey(3)
    metrics = evaluate(state, batch, rng)
    np.testing.assert_allclose(metrics["bits_per_dim"], metrics["loss"] / (2 * math.log(2)), rtol=1e-6)
    # The loss is the continuous NLL of the dequantized values plus D log 256 per item.
    noisy, correction = dequantizer(rng, jnp.asarray(batch["value"]), batch)
    continuous = -jnp.mean(MODEL.apply(state.variables(), noisy, jnp.asarray(batch["context"]),
                                       method="log_prob"))
    np.testing.assert_allclose(metrics["loss"], continuous + 2 * math.log(256), rtol=1e-5)
    _, train_metrics = train.mle_step(MODEL, dequantizer=dequantizer)(state, batch)
    assert set(train_metrics) == {"loss", "bits_per_dim", "grad_norm", "skipped"}


def test_reverse_kl_fits_a_gaussian_target():
    # Target N(mean, 0.5^2 I) (normalized): KL(q || p) = loss >= 0, 0 at the optimum.
    context = np.array([[1.0, -1.0]], np.float32)
    mean = jnp.array([2.0, -1.0])

    def log_density(value):
        return jnp.sum(-0.5 * jnp.square((value - mean[None]) / 0.5) - math.log(0.5) - 0.5 * math.log(2 * math.pi),
                       axis=-1)

    batch = {"value": np.zeros((8, 2), np.float32) + np.arange(8, dtype=np.float32)[:, None],
             "context": np.repeat(context, 8, axis=0)}
    state = train.create_state(MODEL, optax.adam(2e-2), jax.random.PRNGKey(0), batch)
    step = train.reverse_kl_step(MODEL, log_density, num_samples=64)
    state, metrics = step(state, context)
    first = float(metrics["loss"])
    for _ in range(200):
        state, metrics = step(state, context)
    assert first > 1.0 and float(metrics["loss"]) < 0.1, (first, float(metrics["loss"]))

    # Fixed latents from the batch: the loss is log q - log p at exactly those latents.
    z = jax.random.normal(jax.random.PRNGKey(5), (64, 2))
    value, inverse_log_det = MODEL.apply(state.variables(), z, jnp.repeat(context, 64, axis=0),
                                         method="inverse_and_log_det")
    log_q = jcnf.distributions.standard_normal_log_prob(z, 1) - inverse_log_det
    expected = float(jnp.mean(log_q - log_density(value)))
    _, metrics = step(state, context, batch={"z": z})
    np.testing.assert_allclose(float(metrics["loss"]), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="num_samples=64"):
        step(state, context, batch={"z": z[:8]})


def test_one_reverse_kl_step_serves_every_context_and_target_with_one_compilation():
    # Target N(mean, I) with the mean passed as a target array: new contexts and means must not retrace.
    traces = []

    def log_density(value, mean):
        return -0.5 * jnp.sum(jnp.square(value - mean[None]), axis=-1)

    def counting_log_density(value, mean):
        traces.append(value.shape)  # Python runs once per trace, never in a compiled call
        return log_density(value, mean)

    state = train.create_state(MODEL, optax.adam(1e-2), jax.random.PRNGKey(0), _batch(8))
    step = train.reverse_kl_step(MODEL, counting_log_density, num_samples=16, donate=False)
    z = jax.random.normal(jax.random.PRNGKey(3), (16, 2))
    losses = []
    for context, mean in [([[0.5, 1.0]], [1.0, -1.0]), ([[-1.0, 0.0]], [3.0, 2.0])]:
        context, mean = np.asarray(context, np.float32), jnp.asarray(mean)
        _, metrics = step(state, context, (mean,), {"z": z})
        value, log_q = jcnf.flows.push_latents(MODEL, state.variables(), z, jnp.repeat(context, 16, axis=0))
        expected = float(jnp.mean(log_q - log_density(value, mean)))
        np.testing.assert_allclose(float(metrics["loss"]), expected, rtol=1e-5, atol=1e-6)
        losses.append(float(metrics["loss"]))
    assert losses[0] != losses[1]
    assert len(traces) == 1


def test_ema_follows_the_params(mle):
    batch = _batch()
    state = train.create_state(MODEL, optax.sgd(1e-1), jax.random.PRNGKey(0), batch, ema_decay=0.25)
    before = _host(state.params)
    state, _ = mle(state, batch)
    expected = jax.tree.map(lambda old, new: 0.25 * old + 0.75 * new, before, _host(state.params))
    for a, b in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(expected), strict=False):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_sample_step_and_bad_batches(mle):
    batch = _batch(8)
    state = train.create_state(MODEL, optax.sgd(1e-2), jax.random.PRNGKey(0), batch)
    sample = train.sample_step(MODEL)
    values = sample(state, jax.random.PRNGKey(1), batch["context"], temperature=0.5)
    assert values.shape == (8, 2) and bool(jnp.all(jnp.isfinite(values)))
    mode = sample(state, jax.random.PRNGKey(1), batch["context"], temperature=0.0)
    np.testing.assert_allclose(mode, sample(state, jax.random.PRNGKey(2), batch["context"], 0.0), atol=1e-6)
    step = mle
    with pytest.raises(ValueError, match="missing \\['context'\\]"):
        step(state, {"value": batch["value"]})
    with pytest.raises(ValueError, match="context"):
        step(state, {"value": batch["value"], "context": batch["context"][:, :, None]})


def test_eval_and_reverse_kl_steps_reject_bad_arguments():
    batch = _batch(8)
    state = train.create_state(MODEL, optax.sgd(1e-2), jax.random.PRNGKey(0), batch)
    with pytest.raises(ValueError, match="`use_ema=True` but the state keeps no EMA"):
        train.mle_eval_step(MODEL, use_ema=True)(state, batch)
    context = batch["context"][:1]
    log_density = lambda value: -jnp.sum(jnp.square(value), axis=-1)  # noqa: E731
    with pytest.raises(ValueError, match=r"`num_samples` \(0\) must be a positive multiple"):
        train.reverse_kl_step(MODEL, log_density, num_samples=0)
    with pytest.raises(ValueError, match="`num_samples`"):
        train.reverse_kl_step(MODEL, log_density, num_samples=8.0)
    with pytest.raises(ValueError, match="`extra_loss` must be a function"):
        train.reverse_kl_step(MODEL, log_density, num_samples=8, extra_loss=0.1)
    with pytest.raises(ValueError, match=r"`context` must have a leading axis of 1.*num_samples=8; got shape \(3, 2\)"):
        train.reverse_kl_step(MODEL, log_density, num_samples=8)(state, batch["context"][:3])
    # Raised while tracing the first step: one value per sample, not one per coordinate.
    step = train.reverse_kl_step(MODEL, lambda value: -jnp.square(value), num_samples=8)
    with pytest.raises(ValueError, match=r"`log_density_fn` must return shape \(8,\).*got \(8, 2\)"):
        step(state, context)
