"""jcnf.train.optimizer: warm-up, cosine decay and clipping of the default optimizer."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jcnf import train


def _first_update_norm(optimizer, grads, steps_before=0):
    params = {"w": jnp.zeros(4)}
    state = optimizer.init(params)
    for _ in range(steps_before):
        _, state = optimizer.update(grads, state, params)
    updates, _ = optimizer.update(grads, state, params)
    return float(optax.tree.norm(updates))


def test_warmup_starts_at_zero_and_reaches_the_peak():
    grads = {"w": jnp.ones(4)}
    optimizer = train.default_optimizer(1e-2, warmup=10)
    assert _first_update_norm(optimizer, grads) == 0.0
    # Adam's first moments normalize a constant gradient to 1 per entry: norm 2 * lr after warm-up.
    np.testing.assert_allclose(_first_update_norm(optimizer, grads, steps_before=10), 2e-2, rtol=1e-3)


def test_cosine_decays_to_zero_at_total_steps():
    optimizer = train.default_optimizer(1e-2, warmup=2, total_steps=6)
    assert _first_update_norm(optimizer, {"w": jnp.ones(4)}, steps_before=6) < 1e-9


def test_clipping_bounds_the_gradient_seen_by_adam():
    optimizer = train.default_optimizer(1.0, clip_norm=1e-3)
    params = {"w": jnp.zeros(4)}
    _, state = optimizer.update({"w": jnp.full(4, 1e6)}, optimizer.init(params), params)
    # Adam's second moment after one step is (1 - b2) g^2 = 1e-3 g^2 of the gradient it
    # received: clipped to norm 1e-3 over 4 entries, g = 5e-4 per entry.
    np.testing.assert_allclose(optax.tree.get(state, "nu")["w"], 1e-3 * 5e-4 ** 2, rtol=1e-4)


def test_bad_arguments():
    for learning_rate in (0.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="`learning_rate` must be finite and > 0"):
            train.default_optimizer(learning_rate)
    with pytest.raises(ValueError, match="warmup"):
        train.default_optimizer(1e-3, warmup=10, total_steps=5)
    # A zero or negative norm would clip every gradient to zero or flip it; NaN compares false both ways.
    for clip_norm in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"`clip_norm` must be None \(no clipping\) or > 0"):
            train.default_optimizer(1e-3, clip_norm=clip_norm)
    for weight_decay in (-1e-4, float("nan")):
        with pytest.raises(ValueError, match="`weight_decay` must be >= 0"):
            train.default_optimizer(1e-3, weight_decay=weight_decay)


def test_each_call_builds_its_own_optimizer_with_no_global_cache():
    # Compilation is explicit: the caller keeps one optimizer with its step; nothing is cached globally.
    assert train.default_optimizer(1e-3, warmup=5) is not train.default_optimizer(1e-3, warmup=5)
    # An array rate builds and works like a float one.
    optimizer = train.default_optimizer(jnp.float32(1e-3))
    assert _first_update_norm(optimizer, {"w": jnp.ones(4)}) == pytest.approx(2e-3, rel=1e-3)
