"""jcnf.flows.layers: the Flax layers that own the bijectors' parameters, and the shape marker."""

import chex
import jax
import jax.numpy as jnp
import pytest
from conftest import brute_force_log_det, perturb

from jcnf.flows.layers import (
    ActNormLayer,
    CouplingBlock,
    CouplingPair,
    GlowBlock,
    InvConv1x1Layer,
    ShapeMarker,
)

pytestmark = pytest.mark.strict_dtypes

RNG = jax.random.PRNGKey(0)
IMAGE = jax.random.normal(jax.random.PRNGKey(1), (2, 2, 2, 2))
IMAGE_FEATURES = jax.random.normal(jax.random.PRNGKey(2), (2, 2, 2, 3))
VECTOR = jax.random.normal(jax.random.PRNGKey(3), (2, 3))
VECTOR_CONTEXT = jax.random.normal(jax.random.PRNGKey(4), (2, 2))

# (name, layer, value, conditioning inputs before `inverse`): image layers on [2, 2, 2, 2], vector ones on [2, 3].
# GlowBlock runs ActNormLayer, InvConv1x1Layer and a convolutional CouplingLayer; the vector steps run the
# MLP conditioner.
LAYERS = [
    pytest.param("glow_step", GlowBlock(hidden=4), IMAGE, (IMAGE_FEATURES,)),
    pytest.param("coupling_step_spline", CouplingBlock("spline", hidden=4, num_bins=4), VECTOR, (VECTOR_CONTEXT,)),
    pytest.param("coupling_pair", CouplingPair("affine", hidden=4), VECTOR, (VECTOR_CONTEXT,)),
]


@pytest.mark.parametrize("name,layer,value,inputs", LAYERS, ids=[row.values[0] for row in LAYERS])
def test_inverse_undoes_forward_and_log_det_matches_the_jacobian(name, layer, value, inputs):
    # Perturbed so that zero-initialised conditioners stop being the identity.
    variables = perturb(jax.jit(layer.init)(RNG, value, *inputs), jax.random.PRNGKey(5))

    @jax.jit
    def check(value, inputs):
        output, log_det = layer.apply(variables, value, *inputs)
        back, inverse_log_det = layer.apply(variables, output, *inputs, inverse=True)
        row_inputs = [leaf[:1] for leaf in inputs]
        expected = brute_force_log_det(lambda v: layer.apply(variables, v[None], *row_inputs)[0][0], value[0])
        return output, log_det, back, inverse_log_det, expected

    output, log_det, back, inverse_log_det, expected = check(value, inputs)
    chex.assert_equal_shape([output, value])
    chex.assert_shape([log_det, inverse_log_det], (2,))
    # float32 round trips through at most four layers: ~1e-6 per layer.
    chex.assert_trees_all_close(back, value, atol=1e-5, rtol=0)
    chex.assert_trees_all_close(inverse_log_det, -log_det, atol=1e-5, rtol=0)
    # slogdet of a dense Jacobian of at most 8 dimensions against the closed form.
    chex.assert_trees_all_close(log_det[0], expected, atol=1e-4, rtol=1e-5)


def test_actnorm_layer_standardizes_the_batch_it_is_initialised_on():
    layer = ActNormLayer()
    value = 3.0 + 2.0 * IMAGE
    output, _ = layer.apply(layer.init(RNG, value), value)
    chex.assert_trees_all_close(jnp.mean(output, axis=(0, 1, 2)), jnp.zeros(2), atol=1e-5, rtol=0)
    chex.assert_trees_all_close(jnp.std(output, axis=(0, 1, 2)), jnp.ones(2), atol=1e-4, rtol=0)


def test_conv1x1_layer_starts_as_a_rotation():
    layer = InvConv1x1Layer()
    _, log_det = layer.apply(layer.init(RNG, IMAGE), IMAGE)
    # A rotation has |det| = 1.
    chex.assert_trees_all_close(log_det, jnp.zeros(2), atol=1e-5, rtol=0)


def test_coupling_step_without_actnorm_has_only_the_coupling_parameters():
    layer = CouplingBlock(hidden=4, actnorm=False)
    params = jax.eval_shape(layer.init, RNG, VECTOR, VECTOR_CONTEXT)["params"]
    assert sorted(params) == ["coupling"]


def test_shape_marker_records_the_event_shape_and_requires_init():
    marker = ShapeMarker()
    variables = marker.init(RNG, (4, 4, 2))
    chex.assert_shape(variables["params"]["value_shape"], (0, 4, 4, 2))
    assert marker.apply(variables) == (4, 4, 2)
    with pytest.raises(ValueError, match="model.init"):
        marker.apply({"params": {}})
