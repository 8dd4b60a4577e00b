"""jcnf.nets.coupling_nets: the couplings' conditioners start at zero and see both inputs."""

import chex
import jax
import jax.numpy as jnp
import pytest
from conftest import perturb

from jcnf.nets import ConvCouplingNet, MLPCouplingNet

RNG = jax.random.PRNGKey(0)


def _normal(seed, shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def _max_change(a, b):
    return float(jnp.max(jnp.abs(a - b)))


@pytest.mark.parametrize("net,x_shape,features_shape,out_shape", [
    (ConvCouplingNet(out_channels=4, hidden=4), (2, 4, 4, 1), (2, 4, 4, 2), (2, 4, 4, 4)),
    (MLPCouplingNet(out_features=4, hidden=4), (2, 1), (2, 2), (2, 4)),
], ids=["conv", "mlp"])
def test_starts_at_zero_then_depends_on_the_half_and_the_context(net, x_shape, features_shape, out_shape):
    x_half, features = _normal(0, x_shape), _normal(1, features_shape)
    apply = jax.jit(net.apply)
    variables = jax.jit(net.init)(RNG, x_half, features)
    fresh = apply(variables, x_half, features)
    chex.assert_shape(fresh, out_shape)
    # The zero-initialised last layer: a fresh coupling is the identity.
    chex.assert_trees_all_close(fresh, jnp.zeros(out_shape), atol=0, rtol=0)
    moved = perturb(variables, jax.random.PRNGKey(1))
    out = apply(moved, x_half, features)
    assert _max_change(apply(moved, x_half + 1.0, features), out) > 1e-4
    assert _max_change(apply(moved, x_half, features + 1.0), out) > 1e-4


def test_conv_net_names_its_layers_as_flax_conv_would():
    net = ConvCouplingNet(out_channels=2, hidden=4)
    # Shapes only: jax.eval_shape traces without compiling.
    params = jax.eval_shape(net.init, RNG, jnp.zeros((1, 2, 2, 1)), None)["params"]
    assert sorted(params) == ["conv_hidden", "conv_in", "conv_out"]
    chex.assert_shape(params["conv_in"]["kernel"], (3, 3, 1, 4))
    chex.assert_shape(params["conv_hidden"]["kernel"], (1, 1, 4, 4))
    chex.assert_shape(params["conv_out"]["kernel"], (3, 3, 4, 2))


def test_conv_net_keeps_float32_parameters_and_returns_the_input_dtype():
    net = ConvCouplingNet(out_channels=2, hidden=4, dtype=jnp.bfloat16)
    x_half = _normal(0, (1, 2, 2, 1))
    variables = jax.eval_shape(net.init, RNG, x_half, None)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    assert jax.eval_shape(net.apply, variables, x_half, None).dtype == jnp.float32


def test_mlp_depth_sets_the_number_of_hidden_layers():
    params = jax.eval_shape(MLPCouplingNet(out_features=2, hidden=4, depth=3).init, RNG, jnp.zeros((1, 1)), None)
    params = params["params"]
    assert len(params) == 4
