"""jcnf.nets.embedding: shapes, context use, a set summary invariant to the items' order, bad input."""

import chex
import jax
import jax.numpy as jnp
import pytest

from jcnf.nets import CNNEmbedding, DeepSetEmbedding, MLPEmbedding


def _normal(seed, shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


@pytest.mark.parametrize("net,shape", [
    (MLPEmbedding(features=3, hidden=8), (2, 5)),
    (DeepSetEmbedding(features=3, hidden=8), (2, 4, 5)),
    (CNNEmbedding(features=3, channels=(4,)), (2, 6, 6, 1)),
], ids=["mlp", "deepset", "cnn"])
def test_summary_has_the_features_and_follows_the_context(net, shape):
    context = _normal(0, shape)
    variables = net.init(jax.random.PRNGKey(1), context)
    summary = net.apply(variables, context)
    chex.assert_shape(summary, (2, 3))
    # Random initial weights move the summary far above float32 rounding.
    assert float(jnp.max(jnp.abs(net.apply(variables, context + 1.0) - summary))) > 1e-3


def test_set_summary_is_invariant_to_the_order_of_the_items():
    net = DeepSetEmbedding(features=3, hidden=8)
    items = _normal(0, (2, 5, 2))
    variables = net.init(jax.random.PRNGKey(1), items)
    shuffled = items[:, jnp.array([3, 0, 4, 2, 1])]
    # A mean over items reorders float32 sums only: equal to rounding.
    chex.assert_trees_all_close(net.apply(variables, shuffled), net.apply(variables, items), atol=1e-6, rtol=0)


@pytest.mark.parametrize("net,shape", [
    (MLPEmbedding(), (2, 3, 1)), (DeepSetEmbedding(), (2, 3)), (CNNEmbedding(), (2, 3, 3))])
def test_wrong_context_rank_raises_naming_the_context(net, shape):
    with pytest.raises(ValueError, match="`context`"):
        net.init(jax.random.PRNGKey(0), jnp.zeros(shape))
