"""SuperResolutionGlow: a ConditionalGlow of the residual from the upsampled context.

Its round trip and log-det against the Jacobian are in test_registry.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import brute_force_log_det, perturb

from jcnf.flows import ConditionalGlow, SuperResolutionGlow
from jcnf.nets import backprojected_upsample

pytestmark = pytest.mark.strict_dtypes

SKIPS = ["backprojected", "nearest"]


@functools.lru_cache(maxsize=None)
def _setup(skip="backprojected"):
    """Perturbed variables, a 4x4 value and its 2x2 area-downsampled context; cached: compiling init is slow."""
    model = SuperResolutionGlow(levels=1, blocks=1, hidden=4, context_features=4, encoder_blocks=1, skip=skip)
    rng = jax.random.PRNGKey(0)
    value = jax.random.uniform(rng, (3, 4, 4, 1))
    context = value.reshape(3, 2, 2, 2, 2, 1).mean((2, 4))
    params = jax.jit(model.init)(rng, value, context)["params"]
    return model, {"params": perturb(params, jax.random.fold_in(rng, 1), 0.2)}, value, context


def _upsampled(context, skip):
    nearest = jnp.repeat(jnp.repeat(context, 2, axis=1), 2, axis=2)
    return nearest if skip == "nearest" else backprojected_upsample(context, (3, 4, 4))


@pytest.mark.parametrize("skip", SKIPS)
def test_inverse_and_log_det_against_jacobian(skip):
    model, variables, value, context = _setup(skip)
    forward = jax.jit(lambda v, c: model.apply(variables, v, c, method="forward_and_log_det"))
    inverse = jax.jit(lambda z, c: model.apply(variables, z, c, method="inverse"))
    z, log_det = forward(value, context)
    # float32 round trip through one affine coupling and a 1x1 conv.
    np.testing.assert_allclose(np.asarray(inverse(z, context)), np.asarray(value), atol=1e-5)
    expected = brute_force_log_det(lambda v: forward(v[None], context[:1])[0][0], value[0])
    # log-dets of order 1-10 from a 16x16 float32 Jacobian.
    np.testing.assert_allclose(float(log_det[0]), float(expected), atol=1e-3)


@pytest.mark.parametrize("skip", SKIPS)
def test_is_a_glow_of_the_residual_with_a_volume_preserving_skip(skip):
    model, variables, value, context = _setup(skip)
    residual = value - _upsampled(context, skip)
    glow = ConditionalGlow(levels=1, blocks=1, hidden=4, context_features=4, encoder_blocks=1)
    ours = jax.jit(lambda v, c: model.apply(variables, v, c, method="forward_and_log_det"))(value, context)
    expected = jax.jit(lambda v, c: glow.apply(variables, v, c, method="forward_and_log_det"))(residual, context)
    # Same parameters, same float32 operations on the same residual: the skip
    # adds nothing to the log-det (a translation given the context).
    for a, b in zip(ours, expected, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    value_back = jax.jit(lambda z, c: model.apply(variables, z, c, method="inverse"))(ours[0], context)
    residual_back = jax.jit(lambda z, c: glow.apply(variables, z, c, method="inverse"))(ours[0], context)
    np.testing.assert_allclose(np.asarray(value_back - residual_back), np.asarray(value - residual), atol=1e-5)


def test_skips_differ_and_the_default_is_backprojected():
    assert SuperResolutionGlow().skip == "backprojected"
    _, variables, value, context = _setup()
    # The skip has no parameters: both models read the same variables.
    log_prob = {skip: _setup(skip)[0].apply(variables, value, context) for skip in SKIPS}
    # A 2x2 context of distinct pixels: the bicubic and nearest residuals differ.
    assert float(jnp.max(jnp.abs(log_prob["backprojected"] - log_prob["nearest"]))) > 1e-3
    # Both residuals have zero block means (area-downsampled context).
    for skip in SKIPS:
        residual = value - _upsampled(context, skip)
        np.testing.assert_allclose(np.asarray(residual.reshape(3, 2, 2, 2, 2, 1).mean((2, 4))), 0.0, atol=1e-6)


def test_context_must_be_an_image_with_the_values_channels():
    model, variables, value, context = _setup()
    with pytest.raises(ValueError, match="1 channels"):
        model.init(jax.random.PRNGKey(0), value, jnp.zeros((3, 1, 1, 2)))
    with pytest.raises(ValueError, match="low-resolution image"):
        model.init(jax.random.PRNGKey(0), value, jnp.zeros((3, 4)))
    # Checked before the inverse is traced: sampling rejects a bad context too.
    with pytest.raises(ValueError, match="1 channels"):
        model.apply(variables, jax.random.PRNGKey(0), jnp.zeros((3, 1, 1, 2)), method="sample")
    with pytest.raises(ValueError, match="`skip` must be one of"):
        SuperResolutionGlow(levels=1, blocks=1, hidden=4, skip="bicubic").init(jax.random.PRNGKey(0), value, context)
