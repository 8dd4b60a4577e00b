"""Conditional couplings: vector events, spline tails, distrax composition, errors.

Tolerances: float32 maps of a few dozen dimensions; round trips agree to
~1e-5 and log-dets computed two ways (closed form vs slogdet of the dense
Jacobian) to ~1e-4 absolute. Invertibility, log-dets, jit/vmap and grads of
every bijector are in test_registry.py.
"""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, brute_force_log_det

from jcnf import bijectors as jb

pytestmark = pytest.mark.strict_dtypes


def _conditioner(out_per_channel, seed=0):
    """A small fixed non-linear conditioner of (x_half, context) for image couplings."""
    def conditioner(x_half, context):
        c_out = out_per_channel
        w = jax.random.normal(jax.random.PRNGKey(seed), (x_half.shape[-1] + context.shape[-1], c_out)) * 0.5
        return jnp.tanh(jnp.concatenate([x_half, context], -1) @ w)
    return conditioner


def test_vector_affine_coupling_log_det():
    context = jnp.array([[0.3, -0.2]])
    bijector = jb.ConditionalAffineCoupling(
        lambda x1, c: jnp.tanh(jnp.concatenate([x1, c], -1) @ jnp.ones((3, 4))), context, 1, 1)
    x = jnp.array([[0.5, -1.0, 2.0]])
    y, log_det = bijector.forward_and_log_det(x)
    expected = brute_force_log_det(lambda v: bijector.forward(v[None])[0], x[0])
    assert_close(log_det[0], expected, atol=1e-4)


def test_spline_identity_tails_and_finite_gradients_far_outside():
    context = jnp.zeros((1, 1, 1, 1))
    def loss(scale, x):
        conditioner = lambda x_half, c: scale * jnp.ones(x_half.shape[:-1] + (25,))
        spline = jb.ConditionalSplineCoupling(conditioner, context, 1, 3, num_bins=8, bound=4.0)
        y, log_det = spline.forward_and_log_det(x)
        return jnp.sum(y) + jnp.sum(log_det)
    x = jnp.array([1e4, -1e6]).reshape(1, 1, 1, 2)
    grad_scale, grad_x = jax.grad(loss, argnums=(0, 1))(0.7, x)
    assert np.isfinite(grad_scale) and np.all(np.isfinite(grad_x))
    conditioner = lambda x_half, c: 0.7 * jnp.ones(x_half.shape[:-1] + (25,))
    spline = jb.ConditionalSplineCoupling(conditioner, context, 1, 3)
    y, log_det = spline.forward_and_log_det(x)
    assert_close(y, x, atol=1e-3)  # identity outside [-4, 4]
    assert_close(log_det, 0.0, atol=1e-6)


def test_couplings_compose_with_distrax_chain_and_inverse():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(3), 3)
    lower, upper, log_diag = jb.random_rotation_lu(k1, 4)
    context = jax.random.normal(k3, (1, 4, 4, 3))
    chain = distrax.Chain([jb.ConditionalAffineCoupling(_conditioner(2 * 2), context, 2, 3),
                           jb.InvConv1x1(lower + 0.1, upper + 0.2, log_diag + 0.3),
                           jb.ActNorm(jax.random.normal(k1, (4,)), 0.3 * jax.random.normal(k2, (4,)))])
    x = jax.random.normal(jax.random.PRNGKey(4), (1, 4, 4, 4))
    y, log_det = chain.forward_and_log_det(x)
    x_back, inverse_log_det = distrax.Inverse(chain).forward_and_log_det(y)
    assert_close(x_back, x, atol=1e-5)
    assert_close(inverse_log_det, -log_det, atol=1e-4)


def test_unknown_coupling_kind_is_rejected():
    with pytest.raises(ValueError, match="coupling"):
        jb.make_coupling("quadratic", lambda a, b: a, None, 1, 1)
