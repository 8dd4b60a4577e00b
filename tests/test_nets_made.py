"""jcnf.nets.made: output i depends on inputs 1..i-1 only, and on the whole context."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturb

from jcnf.nets import MADE, made_masks


@pytest.mark.parametrize("dim,depth", [(1, 1), (3, 2), (4, 3)])
def test_jacobian_is_strictly_lower_triangular_and_the_context_reaches_every_output(dim, depth):
    # 16 units: with ReLUs, fewer leave some row of the Jacobian dead at one point by chance.
    net = MADE(params_per_dim=2, hidden=16, depth=depth)
    x = jax.random.normal(jax.random.PRNGKey(0), (1, dim))
    context = jax.random.normal(jax.random.PRNGKey(1), (1, 2))
    variables = perturb(net.init(jax.random.PRNGKey(2), x, context), jax.random.PRNGKey(3), 0.5)
    chex.assert_shape(net.apply(variables, x, context), (1, dim, 2))
    # d out[i, p] / d x[j]: [dim, 2, dim]; exactly zero (masked weights) for j >= i.
    jac = jax.jacrev(lambda v: net.apply(variables, v[None], context)[0])(x[0])
    allowed = np.tril(np.ones((dim, dim)), -1)[:, None, :]
    np.testing.assert_array_equal(np.asarray(jac) * (1 - allowed), 0.0)
    if dim > 1:
        # Perturbed weights of scale 0.5 give dependences far above float32 rounding.
        assert float(jnp.min(jnp.max(jnp.abs(jac[1:]), axis=(1, 2)))) > 1e-4
    context_jac = jax.jacrev(lambda c: net.apply(variables, x, c[None])[0])(context[0])
    assert float(jnp.min(jnp.max(jnp.abs(context_jac), axis=(1, 2)))) > 1e-4


def test_a_fresh_made_outputs_zero():
    net = MADE(params_per_dim=3, hidden=8)
    x, context = jnp.ones((2, 3)), jnp.ones((2, 2))
    out = net.apply(net.init(jax.random.PRNGKey(0), x, context), x, context)
    # The output layer starts at zero, so a fresh transform is the identity.
    np.testing.assert_array_equal(np.asarray(out), 0.0)


def test_masks_have_the_layer_shapes():
    masks = made_masks(dim=3, hidden=5, depth=2)
    assert [mask.shape for mask in masks] == [(3, 5), (5, 5), (5, 3)]
