"""The API shared by all flows: jit/vmap/grad, checked mode (the distrax views: test_flows_distribution.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, perturb, perturbed_realnvp
from jax.experimental import checkify

import jcnf

pytestmark = pytest.mark.strict_dtypes

RNG = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def realnvp():
    return perturbed_realnvp(4, 16, 8)


def test_jit_vmap_grad(realnvp):
    model, variables, value, context = realnvp
    eager = model.apply(variables, value, context)
    jitted = jax.jit(model.apply)(variables, value, context)
    mapped = jax.vmap(lambda v, c: model.apply(variables, v[None], c[None])[0])(value, context)
    assert_close(jitted, eager, atol=1e-5)
    assert_close(mapped, eager, atol=1e-5)
    grads = jax.grad(lambda p: jnp.mean(model.apply({"params": p}, value, context)))(variables["params"])
    norms = [float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(grads) if g.size]
    assert all(np.isfinite(norms)) and sum(norms) > 0


def test_checked_mode_reports_nan_eagerly_and_under_jit(realnvp):
    _, variables, value, context = realnvp
    model = jcnf.ConditionalRealNVP(blocks=4, hidden=16, check_finite=True)
    bad = value.at[2, 1].set(jnp.nan)
    with pytest.raises(ValueError, match="`value` contains 1 NaN"):
        model.apply(variables, bad, context)
    checked = checkify.checkify(jax.jit(lambda v: model.apply(variables, v, context)))
    error, _ = checked(bad)
    assert "value` contains NaN" in str(error.get())
    error, out = checked(value)
    assert error.get() is None and np.all(np.isfinite(out))


def test_sampling_before_init_and_wrong_latent_shape_are_reported(realnvp):
    model, variables, _, context = realnvp
    with pytest.raises(ValueError, match="initialize the model"):
        model.init(RNG, RNG, context, method="sample")
    with pytest.raises(ValueError, match="`z` must have shape"):
        model.apply(variables, jnp.zeros((8, 4)), context, method="inverse")


def test_with_event_shape_applies_a_glow_trained_on_crops_to_whole_images():
    model = jcnf.ConditionalGlow(levels=1, blocks=1, hidden=4, context_features=4, encoder_blocks=1)
    crops = jax.random.uniform(RNG, (2, 4, 4, 1))
    params = perturb(model.init(RNG, crops, crops)["params"], jax.random.PRNGKey(1), 0.1)
    images = jax.random.uniform(jax.random.PRNGKey(2), (2, 8, 6, 1))
    context = images.reshape(2, 4, 2, 3, 2, 1).mean((2, 4))   # half resolution
    whole = jcnf.flows.with_event_shape(model, params, (8, 6, 1))
    assert tuple(params["shape_marker"]["value_shape"].shape) == (0, 4, 4, 1)  # the input tree is not changed
    assert whole["level_blocks_0"] is params["level_blocks_0"]
    samples = model.apply({"params": whole}, RNG, context, method="sample")
    assert samples.shape == (2, 8, 6, 1)
    z, log_det = model.apply({"params": whole}, images, context, method="forward_and_log_det")
    # float32 round trip through one affine coupling and a 1x1 conv.
    assert_close(model.apply({"params": whole}, z, context, method="inverse"), images, atol=1e-5)
    assert log_det.shape == (2,) and bool(jnp.all(jnp.isfinite(log_det)))
    # Back at the trained shape the parameters score exactly as before.
    same = jcnf.flows.with_event_shape(model, whole, (4, 4, 1))
    np.testing.assert_array_equal(model.apply({"params": same}, crops, crops),
                                  model.apply({"params": params}, crops, crops))


def test_with_event_shape_rejects_shapes_the_model_cannot_take(realnvp):
    glow = jcnf.ConditionalGlow(levels=2, blocks=1, hidden=4, context_features=4, encoder_blocks=1)
    params = {"shape_marker": {"value_shape": jnp.zeros((0, 8, 8, 3))}}
    with pytest.raises(ValueError, match=r"`event_shape` must be \(height, width, 3\).*2\^levels = 4.*\(12, 10, 3\)"):
        jcnf.flows.with_event_shape(glow, params, (12, 10, 3))
    with pytest.raises(ValueError, match=r"`event_shape`.*got \(16, 16, 1\)"):
        jcnf.flows.with_event_shape(glow, params, (16, 16, 1))
    with pytest.raises(ValueError, match="positive integers"):
        jcnf.flows.with_event_shape(glow, params, (16, 0, 3))
    with pytest.raises(ValueError, match="shape_marker"):
        jcnf.flows.with_event_shape(glow, {"encoder": {}}, (16, 16, 3))
    with pytest.raises(ValueError, match="shape_marker"):
        jcnf.flows.with_event_shape(glow, {"shape_marker": jnp.zeros(3)}, (16, 16, 3))
    with pytest.raises(ValueError, match="`model` must be a jcnf flow"):
        jcnf.flows.with_event_shape(object(), params, (16, 16, 3))
    # Dense layers over the whole vector fix its dimension.
    model, variables, _, _ = realnvp
    with pytest.raises(ValueError, match=r"trained event shape \(3,\) for ConditionalRealNVP; got \(4,\)"):
        jcnf.flows.with_event_shape(model, variables["params"], (4,))
    assert jcnf.flows.with_event_shape(model, variables["params"], (3,)).keys() == variables["params"].keys()


def test_trained_flows_name_a_context_of_the_wrong_width_and_a_negative_temperature():
    realnvp = jcnf.ConditionalRealNVP(blocks=3, hidden=8)
    value, context = jnp.ones((4, 3)), jnp.ones((4, 2))
    variables = realnvp.init(RNG, value, context)
    with pytest.raises(ValueError, match=r"`context` must have 2 features .* got shape \(4, 5\)"):
        realnvp.apply(variables, value, jnp.ones((4, 5)))
    with pytest.raises(ValueError, match=r"`context` must have 2 features"):
        realnvp.apply(variables, RNG, jnp.ones((4, 1)), method="sample")
    with pytest.raises(ValueError, match="`temperature` must be a non-negative"):
        realnvp.apply(variables, RNG, context, temperature=-1.0, method="sample")
    glow = jcnf.ConditionalGlow(levels=1, blocks=1, hidden=4, context_features=2, encoder_blocks=1)
    image, low_res = jnp.ones((2, 4, 4, 1)), jnp.ones((2, 2, 2, 3))
    glow_variables = glow.init(RNG, image, low_res)
    with pytest.raises(ValueError, match=r"`context` must have 3 features .* got shape \(2, 2, 2, 1\)"):
        glow.apply(glow_variables, image, jnp.ones((2, 2, 2, 1)))
