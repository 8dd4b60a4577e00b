"""jcnf.train.state: data-dependent init, the params layout, module dequantizers, bad input."""

import _train_worker as worker
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jcnf
from jcnf import train

MODEL = jcnf.ConditionalRealNVP(**worker.MODEL_KWARGS)


def _batch(size=32):
    return {key: x[:size] for key, x in worker.tiny_problem(size).items()}


class ScaledUniformDequantizer(nn.Module):
    """A learnable-width uniform dequantizer: u ~ U(0, w/256), w = sigmoid(a) in (0, 1).

    q(u | x) = (256 / w)^D, so log_correction = -log q(u | x) = -D log(256 / w).
    Small enough to test that module parameters are created and trained.
    """

    @nn.compact
    def __call__(self, rng, value, batch):
        width = nn.sigmoid(self.param("logit_width", nn.initializers.zeros, ()))
        noise = jax.random.uniform(rng, value.shape) * width / 256
        dims = value[0].size
        return value + noise, jnp.full(value.shape[:1], -dims * jnp.log(256 / width))


def test_create_state_runs_actnorm_data_dependent_init():
    batch = _batch()
    state = train.create_state(MODEL, optax.adam(1e-3), jax.random.PRNGKey(0), batch)
    # The first pair's first ActNorm is step 0 of the stacked pairs.
    first = jax.tree.map(lambda leaf: leaf[0], state.params["flow"]["pairs"]["blocks"]["second_half"]["actnorm"])
    normalized = (batch["value"] + first["loc"][None]) * np.exp(first["log_scale"])[None]
    # ActNorm's init makes the example batch zero-mean, unit-variance per channel.
    np.testing.assert_allclose(normalized.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalized.std(0), 1.0, atol=1e-4)
    assert int(state.step) == 0 and int(state.skipped) == 0 and state.ema_params is None
    assert set(state.params) == {"flow"}
    log_prob = MODEL.apply(state.variables(), batch["value"], batch["context"], method="log_prob")
    assert log_prob.shape == (32,)
    with pytest.raises(ValueError, match="no EMA"):
        state.variables(use_ema=True)


def test_typed_keys_and_ema_start_at_the_params():
    state = train.create_state(MODEL, optax.adam(1e-3), jax.random.key(0), _batch(), ema_decay=0.99)
    assert state.rng.dtype == jnp.uint32
    for a, b in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(state.params), strict=False):
        np.testing.assert_array_equal(a, b)


def test_module_dequantizer_params_live_in_the_state_and_train():
    batch = _batch()
    batch["value"] = np.floor(np.clip(batch["value"] * 32 + 128, 0, 255)) / 256
    dequantizer = ScaledUniformDequantizer()
    state = train.create_state(MODEL, optax.adam(1e-1), jax.random.PRNGKey(0), batch, dequantizer=dequantizer)
    assert set(state.params) == {"flow", "dequantizer"}
    assert float(state.params["dequantizer"]["logit_width"]) == 0.0
    state, metrics = train.mle_step(MODEL, dequantizer=dequantizer)(state, batch)
    assert float(metrics["skipped"]) == 0.0
    # The width gets a gradient through the noise and the correction, so one Adam step moves it by ~lr.
    assert abs(float(state.params["dequantizer"]["logit_width"])) > 1e-3
    with pytest.raises(ValueError, match="params\\['dequantizer'\\]"):
        plain = train.create_state(MODEL, optax.adam(1e-1), jax.random.PRNGKey(0), batch)
        train.mle_step(MODEL, dequantizer=dequantizer)(plain, batch)


def test_bad_arguments():
    batch = _batch()
    with pytest.raises(ValueError, match="missing \\['context'\\]"):
        train.create_state(MODEL, optax.adam(1e-3), jax.random.PRNGKey(0), {"value": batch["value"]})
    with pytest.raises(ValueError, match="ema_decay"):
        train.create_state(MODEL, optax.adam(1e-3), jax.random.PRNGKey(0), batch, ema_decay=1.0)
    with pytest.raises(ValueError, match="value"):
        train.create_state(MODEL, optax.adam(1e-3), jax.random.PRNGKey(0),
                           {"value": batch["value"][:, :1], "context": batch["context"]})
    with pytest.raises(ValueError, match="TrainState"):
        train.mle_step(MODEL)({"params": {}}, batch)


def test_count_params_counts_every_entry_of_arrays_and_shape_structs():
    tree = {"dense": {"kernel": jnp.zeros((3, 4)), "bias": jnp.zeros(4)}, "scale": jnp.zeros(()),
            "marker": jnp.zeros((0, 8, 8, 1))}
    assert train.count_params(tree) == 12 + 4 + 1 + 0
    assert train.count_params({}) == 0
    # The size of a model without allocating it: the same count from jax.eval_shape.
    batch = _batch(4)
    params = MODEL.init(jax.random.PRNGKey(0), batch["value"], batch["context"])["params"]
    shapes = jax.eval_shape(MODEL.init, jax.random.PRNGKey(0), batch["value"], batch["context"])["params"]
    assert train.count_params(shapes) == train.count_params(params) == sum(np.size(x) for x in jax.tree.leaves(params))
