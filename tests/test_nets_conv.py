"""Conv2D: flax.linen.Conv's values and gradients, with a gradient that stays fast inside a scan on CPU."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnf.nets import conv
from jcnf.nets.conv import Conv2D, conv2d

RNG = jax.random.PRNGKey(0)


@pytest.mark.parametrize("kernel_size", [(3, 3), (1, 1), (3, 5)])
def test_conv2d_matches_lax_convolution_in_value_and_gradients(kernel_size):
    x = jax.random.normal(RNG, (2, 6, 5, 3))
    kernel = jax.random.normal(jax.random.PRNGKey(1), kernel_size + (3, 4))
    weights = jax.random.normal(jax.random.PRNGKey(2), (2, 6, 5, 4))

    def reference(x, kernel):
        return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    np.testing.assert_allclose(conv2d(x, kernel), reference(x, kernel), rtol=1e-6, atol=1e-6)
    loss = lambda fn: lambda x, k: jnp.sum(jnp.sin(fn(x, k)) * weights)  # noqa: E731
    want = jax.grad(loss(reference), argnums=(0, 1))(x, kernel)
    got = jax.grad(loss(conv2d), argnums=(0, 1))(x, kernel)
    # Both gradients compute the same sums in another order: float32 rounding on sums of ~100 terms.
    for g, w in zip(got, want, strict=False):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    # The CPU form is also checked directly, whichever backend runs this test.
    for g, w in zip(conv._canonical_gradients(x, kernel, jnp.cos(reference(x, kernel)) * weights), want, strict=False):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_conv2d_module_has_nn_conv_parameters_and_values():
    x = jax.random.normal(RNG, (2, 4, 4, 3))
    ours, theirs = Conv2D(5, (3, 3)), nn.Conv(5, (3, 3))
    params = theirs.init(RNG, x)
    assert jax.tree.map(jnp.shape, ours.init(RNG, x)) == jax.tree.map(jnp.shape, params)
    np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-6, atol=1e-6)
    half = Conv2D(5, (3, 3), dtype=jnp.bfloat16).apply(params, x)
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(half, np.float32), theirs.apply(params, x), rtol=0.05, atol=0.05)


def test_conv2d_rejects_even_kernels():
    with pytest.raises(ValueError, match="`kernel_size` must be odd"):
        Conv2D(2, (2, 2)).init(RNG, jnp.zeros((1, 4, 4, 1)))
