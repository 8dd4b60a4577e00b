"""jcnf.nets.encoder: the residual block and the per-level context features."""

import chex
import jax
import jax.numpy as jnp
import pytest

from jcnf.nets import ContextEncoder, ResidualBlock

RNG = jax.random.PRNGKey(0)


def _normal(seed, shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def test_residual_block_keeps_the_shape_and_scales_its_branch():
    x = _normal(0, (1, 4, 4, 3))
    block = ResidualBlock(3)
    variables = block.init(RNG, x)
    out = block.apply(variables, x)
    chex.assert_shape(out, x.shape)
    # The residual branch is linear in residual_scale: halving the scale halves x_out - x.
    half = ResidualBlock(3, residual_scale=0.1).apply(variables, x)
    chex.assert_trees_all_close(half - x, 0.5 * (out - x), atol=1e-6, rtol=0)
    assert float(jnp.max(jnp.abs(out - x))) > 1e-3


@pytest.fixture(scope="module")
def image_encoder():
    """A 4-channel encoder of a half-resolution image context, for an 8x8 value, and its outputs."""
    encoder = ContextEncoder(features=4, blocks=1)
    context = _normal(1, (2, 4, 4, 1))
    apply = jax.jit(encoder.apply, static_argnums=(2, 3))
    variables = jax.jit(encoder.init, static_argnums=(2, 3))(RNG, context, (8, 8), 2)
    return apply, variables, context


def test_image_context_gives_one_feature_map_per_level_at_halving_resolutions(image_encoder):
    apply, variables, context = image_encoder
    outputs = apply(variables, context, (8, 8), 2)
    assert len(outputs) == 2
    chex.assert_shape(outputs[0], (2, 4, 4, 4))
    chex.assert_shape(outputs[1], (2, 2, 2, 4))
    chex.assert_tree_all_finite(outputs)


def test_each_row_of_the_features_depends_only_on_its_own_context(image_encoder):
    apply, variables, context = image_encoder
    outputs = apply(variables, context, (8, 8), 2)
    moved = apply(variables, context.at[1].add(1.0), (8, 8), 2)
    for level, (out, other) in enumerate(zip(outputs, moved, strict=True)):
        chex.assert_trees_all_close(other[0], out[0], atol=0, rtol=0)
        assert float(jnp.max(jnp.abs(other[1] - out[1]))) > 1e-4, level


def test_vector_context_is_broadcast_over_every_level():
    encoder = ContextEncoder(features=4)
    context = _normal(2, (2, 3))
    variables = encoder.init(RNG, context, (8, 4), 2)
    outputs = encoder.apply(variables, context, (8, 4), 2)
    chex.assert_shape(outputs[0], (2, 4, 2, 4))
    chex.assert_shape(outputs[1], (2, 2, 1, 4))
    # One feature vector per row, the same at every position and level.
    chex.assert_trees_all_close(outputs[1][:, 1, 0], outputs[0][:, 0, 0], atol=0, rtol=0)
    assert float(jnp.max(jnp.abs(outputs[0][0, 0, 0] - outputs[0][1, 0, 0]))) > 1e-4
