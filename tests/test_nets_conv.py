"""Conv2D: flax.linen.Conv's values and derivatives in every autodiff mode, its CPU gradient canonical in a scan."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnf.nets.conv import Conv2D, conv2d

RNG = jax.random.PRNGKey(0)
CANONICAL = "[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]"


def _reference(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _inputs(kernel_size):
    x = jax.random.normal(RNG, (2, 6, 5, 3))
    kernel = jax.random.normal(jax.random.PRNGKey(1), kernel_size + (3, 4))
    weights = jax.random.normal(jax.random.PRNGKey(2), (2, 6, 5, 4))
    return x, kernel, weights


@pytest.mark.parametrize("kernel_size", [(3, 3), (1, 1), (3, 5)])
def test_conv2d_matches_lax_convolution_in_value_and_gradients(kernel_size):
    x, kernel, weights = _inputs(kernel_size)
    np.testing.assert_allclose(conv2d(x, kernel), _reference(x, kernel), rtol=1e-6, atol=1e-6)
    loss = lambda fn: lambda x, k: jnp.sum(jnp.sin(fn(x, k)) * weights)
    want = jax.grad(loss(_reference), argnums=(0, 1))(x, kernel)
    got = jax.grad(loss(conv2d), argnums=(0, 1))(x, kernel)
    # Both gradients compute the same sums in another order: float32 rounding on sums of ~100 terms.
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_size", [(3, 3), (3, 5)])
def test_conv2d_forward_mode_and_second_derivatives_match_lax_convolution(kernel_size):
    x, kernel, weights = _inputs(kernel_size)
    x_dot, kernel_dot = jnp.cos(x), jnp.sin(kernel)

    def derivatives(fn):
        loss = lambda x, k: jnp.sum(jnp.sin(fn(x, k)) * weights)
        tangent = jax.jvp(fn, (x, kernel), (x_dot, kernel_dot))[1]
        jacobian = jax.jacfwd(lambda k: fn(x[:1, :3, :3], k))(kernel[..., :2])
        linear = jax.linearize(fn, x, kernel)[1](x_dot, kernel_dot)
        # Forward over reverse (jax.hessian) and reverse over reverse.
        hessian_vector = jax.jvp(lambda x: jax.grad(loss)(x, kernel), (x,), (x_dot,))[1]
        grad_of_grad = jax.grad(lambda k: jnp.sum(jax.grad(loss)(x, k) ** 2))(kernel)
        return tangent, jacobian, linear, hessian_vector, grad_of_grad

    # The same sums in another order: float32 rounding on sums of at most a few hundred terms of order 1.
    for got, want in zip(jax.jit(lambda: derivatives(conv2d))(), jax.jit(lambda: derivatives(_reference))(),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv2d_gradient_is_canonical_on_cpu_inside_a_scan():
    x, kernel, _ = _inputs((3, 3))

    def loss(kernels, x):
        def body(h, k):
            return jnp.tanh(conv2d(h, k)), None
        return jnp.sum(jax.lax.scan(body, x, kernels)[0])

    kernels = jnp.stack([kernel[..., :3]] * 2)
    text = jax.jit(jax.grad(loss, argnums=(0, 1))).trace(kernels, x).lower(lowering_platforms=("cpu",)).as_text()
    layouts = [line.split("dim_numbers = ")[1].split(", window")[0] for line in text.splitlines()
               if "stablehlo.convolution" in line]
    # The forward convolution and, per scanned block, the input and kernel gradients.
    assert len(layouts) >= 3
    assert set(layouts) == {CANONICAL}, layouts


def test_conv2d_module_has_nn_conv_parameters_and_values():
    x = jax.random.normal(RNG, (2, 4, 4, 3))
    ours, theirs = Conv2D(5, (3, 3)), nn.Conv(5, (3, 3))
    params = theirs.init(RNG, x)
    assert jax.tree.map(jnp.shape, ours.init(RNG, x)) == jax.tree.map(jnp.shape, params)
    np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-6, atol=1e-6)
    half = Conv2D(5, (3, 3), dtype=jnp.bfloat16).apply(params, x)
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(half, np.float32), theirs.apply(params, x), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("kernel_shape", [(2, 2, 1, 2), (3, 4, 1, 2), (3, 3, 1)])
def test_conv2d_rejects_kernels_that_are_not_odd_hwio(kernel_shape):
    with pytest.raises(ValueError, match="`kernel` must be .* odd"):
        conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros(kernel_shape))


def test_conv2d_module_rejects_even_kernels():
    with pytest.raises(ValueError, match="`kernel`.*odd.*\\(2, 2, 1, 2\\)"):
        Conv2D(2, (2, 2)).init(RNG, jnp.zeros((1, 4, 4, 1)))
