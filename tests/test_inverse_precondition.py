"""precondition() copies the whole parameter tree: equal values, no shared buffers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnf
from jcnf import inverse


@pytest.fixture(scope="module")
def flow_params():
    model = jcnf.ConditionalRealNVP(blocks=1, hidden=4)
    value = jax.random.normal(jax.random.PRNGKey(0), (8, 2))
    return model, model.init(jax.random.PRNGKey(1), value, value)["params"]


def test_copy_is_equal_and_not_aliased(flow_params):
    _, params = flow_params
    copy = inverse.precondition(params)
    assert jax.tree.structure(copy) == jax.tree.structure(params)
    for original, copied in zip(jax.tree.leaves(params), jax.tree.leaves(copy), strict=False):
        assert copied.shape == original.shape and copied.dtype == original.dtype
        np.testing.assert_array_equal(copied, original)  # exact: a copy, not a recomputation
        if original.size:
            assert copied.unsafe_buffer_pointer() != original.unsafe_buffer_pointer()


def test_training_the_copy_leaves_the_original_unchanged(flow_params):
    model, params = flow_params
    before = jax.tree.map(np.array, params)
    optimizer = jcnf.train.default_optimizer(1e-2)
    copy = {"flow": inverse.precondition(params)}
    state = jcnf.train.TrainState(step=jnp.zeros((), jnp.int32), params=copy, opt_state=optimizer.init(copy),
                                  rng=jax.random.PRNGKey(2), skipped=jnp.zeros((), jnp.int32),
                                  skip_run=jnp.zeros((), jnp.int32), ema_params=None, tx=optimizer)
    # reverse_kl_step donates its input state: had the copy aliased `params`, their buffers
    # would now be deleted, and in-place updates would have changed them.
    step = jcnf.train.reverse_kl_step(model, inverse.rosenbrock_log_prob, 8)
    for _ in range(3):
        state, _ = step(state, jnp.zeros((1, 2)))
    moved = [not np.array_equal(a, b)
             for a, b in zip(jax.tree.leaves(state.params["flow"]), jax.tree.leaves(before), strict=True)]
    assert any(moved)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, params), before)


def test_rejects_empty_or_non_array_trees():
    with pytest.raises(ValueError, match="`params` must be a non-empty pytree"):
        inverse.precondition({})
    with pytest.raises(ValueError, match="leaves of type \\['str'\\]"):
        inverse.precondition({"w": "not an array"})
