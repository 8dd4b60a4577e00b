"""Blocks stacked on a leading axis and scanned: same flow as the unrolled loop, flat program size in depth.

`schedule="scan"` (one `lax.scan` per level), `schedule="unrolled"` (a Python
loop over the same stacked parameters) and `schedule="reversible"` (the scan
with an inverting backward pass) are three schedules of one arithmetic.
Values agree to float32 fusion-order rounding (1e-5 relative on values of
order 1-10); gradients of the reversible schedule carry the reconstruction
error of inverting each block, a few ulps per block, hence 1e-4 relative.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, perturb

import jcnf
from jcnf.flows.layers import GlowBlock
from jcnf.flows.stack import BlockStack

pytestmark = pytest.mark.strict_dtypes

RNG = jax.random.PRNGKey(0)
GLOW = dict(levels=2, blocks=2, hidden=4, context_features=2, encoder_blocks=1)
REALNVP = dict(blocks=5, hidden=8)  # two scanned pairs and an odd last block


def _glow_data():
    value = jax.random.uniform(RNG, (4, 4, 4, 2))
    context = jax.random.normal(jax.random.PRNGKey(1), (4, 2, 2, 1))
    return value, context


def _realnvp_data():
    value = jax.random.normal(RNG, (6, 3))
    context = jax.random.normal(jax.random.PRNGKey(1), (6, 2))
    return value, context


CASES = {
    "glow": (jcnf.ConditionalGlow, GLOW, _glow_data),
    "realnvp": (jcnf.ConditionalRealNVP, REALNVP, _realnvp_data),
}


def _grads(model, params, value, z, context):
    """Values and gradients of both directions: maximum likelihood, and a loss through the inverse (sampling) map."""

    def nll(params, x, c):
        return -jnp.mean(model.apply({"params": params}, x, c, method="log_prob"))

    def sample_loss(params, z, c):
        # Reverse-KL style: differentiate through the inverse (sampling) direction.
        return jnp.sum(model.apply({"params": params}, z, c, method="inverse") ** 2)

    return (jax.value_and_grad(nll, argnums=(0, 1, 2))(params, value, context),
            jax.value_and_grad(sample_loss, argnums=(0, 1, 2))(params, z, context))


def _outputs(model, params, value, z, context, rng):
    """Forward, inverse, samples and the gradients of both directions, in one compiled program."""
    forward = model.apply({"params": params}, value, context, method="forward_and_log_det")
    inverse = model.apply({"params": params}, z, context, method="inverse_and_log_det")
    samples = model.apply({"params": params}, rng, context, temperature=0.7, method="sample")
    return (forward, inverse, samples, *_grads(model, params, value, z, context))


def _assert_trees_close(actual, expected, rtol):
    flat_expected = jax.tree_util.tree_leaves_with_path(expected)
    flat_actual = jax.tree.leaves(actual)
    assert len(flat_actual) == len(flat_expected)
    checked = 0
    for (path, want), got in zip(flat_expected, flat_actual, strict=False):
        if want.size == 0:  # the zero-size shape marker carries no values
            continue
        scale = max(float(jnp.max(jnp.abs(want))), 1.0)  # an absolute floor for entries near zero
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=rtol * scale, rtol=rtol,
                                   err_msg=jax.tree_util.keystr(path))
        checked += 1
    return checked


@pytest.mark.parametrize("name", sorted(CASES))
def test_scan_unrolled_and_reversible_schedules_agree(name):
    cls, kwargs, data = CASES[name]
    value, context = data()
    unrolled = cls(schedule="unrolled", **kwargs)
    # Random parameters of the model's shapes around zero (ActNorm and 1x1 conv near the
    # identity), so no coupling is the identity and every gradient is non-trivial. At a
    # scale of 0.2 some draws make the inverse so ill-conditioned that float32 gradients
    # reach 1e7 and differ by rounding alone (in float64 the reversible gradients
    # match to 1e-12); 0.1 keeps them of order 1-100.
    shapes = jax.eval_shape(unrolled.init, RNG, value, context)
    params = perturb(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), jax.random.PRNGKey(2),
                     0.1)["params"]
    z = 0.5 * jax.random.normal(jax.random.PRNGKey(3), value.shape)
    rng = jax.random.PRNGKey(4)
    reference = jax.jit(lambda *a: _outputs(unrolled, *a))(params, value, z, context, rng)
    (z_ref, log_det_ref), (x_ref, inv_log_det_ref), samples_ref, *grads_ref = reference
    (z_out, log_det), (x_out, inv_log_det), samples, *grads = jax.jit(
        lambda *a: _outputs(cls(**kwargs), *a))(params, value, z, context, rng)
    assert_close(z_out, z_ref, atol=1e-5, rtol=1e-5)
    assert_close(log_det, log_det_ref, atol=1e-4, rtol=1e-5)
    assert_close(x_out, x_ref, atol=1e-5, rtol=1e-5)
    assert_close(inv_log_det, inv_log_det_ref, atol=1e-4, rtol=1e-5)
    assert_close(samples, samples_ref, atol=1e-5, rtol=1e-5)
    assert _assert_trees_close(grads, grads_ref, 1e-4) > 10
    if cls is jcnf.ConditionalGlow:
        # The reversible schedule: both losses' values (its forward and inverse passes) and gradients
        # (inverting each block instead of storing activations).
        reversible = cls(schedule="reversible", **kwargs)
        grads = jax.jit(lambda *a: _grads(reversible, *a))(params, value, z, context)
        for (loss, _), (loss_ref, _) in zip(grads, grads_ref, strict=True):
            assert_close(loss, loss_ref, atol=1e-5, rtol=1e-5)  # values: the same scan, fusion-order rounding
        assert _assert_trees_close(grads, grads_ref, 1e-4) > 10
    # And the flow inverts: value -> latent -> value within float32 rounding of a few blocks.
    (z_ref, _), *_ = reference
    back = jax.jit(lambda *a: unrolled.apply({"params": params}, *a, method="inverse"))(z_ref, context)
    assert_close(back, value, atol=1e-4)


@pytest.mark.parametrize("name", sorted(CASES))
def test_scanned_init_equals_unrolled_init(name):
    cls, kwargs, data = CASES[name]
    value, context = data()
    scanned = jax.jit(cls(**kwargs).init)(RNG, value, context)
    unrolled = jax.jit(cls(schedule="unrolled", **kwargs).init)(RNG, value, context)
    assert jax.tree.structure(scanned) == jax.tree.structure(unrolled)
    # Same keys, same data-dependent statistics; the scan only changes fusion order.
    assert _assert_trees_close(scanned, unrolled, 1e-5) > 10


def test_actnorm_init_sees_the_activations_arriving_at_each_block():
    x = jax.random.normal(RNG, (8, 4, 4, 4)) * 3.0 + 1.0
    features = jax.random.normal(jax.random.PRNGKey(1), (8, 4, 4, 2))
    stack = BlockStack(GlowBlock, (("hidden", 8),), length=4)
    stacked = stack.init(RNG, x, features)["params"]["blocks"]
    assert stacked["actnorm"]["loc"].shape == (4, 4)
    block = GlowBlock(8)
    h = x
    for k in range(4):
        params = jax.tree.map(lambda leaf, k=k: leaf[k], stacked)
        loc, log_scale = params["actnorm"]["loc"], params["actnorm"]["log_scale"]
        normalized = (h + loc[None, None, None]) * jnp.exp(log_scale)[None, None, None]
        # Data-dependent init: block k's ActNorm standardizes block k's own input.
        assert_close(normalized.mean((0, 1, 2)), 0.0, atol=1e-5)
        assert_close(normalized.std((0, 1, 2)), 1.0, atol=1e-4)
        h, _ = block.apply({"params": params}, h, features)


@pytest.mark.parametrize("name", sorted(CASES))
def test_program_size_does_not_grow_with_depth(name):
    """One traced block body per level: the jaxprs of init and of the gradient have the same size at any depth."""
    cls, kwargs, data = CASES[name]
    value, context = data()
    sizes = {}
    for depth in (2, 6) if cls is jcnf.ConditionalGlow else (4, 12):
        model = cls(**{**kwargs, "blocks": depth})
        params = jax.eval_shape(model.init, RNG, value, context)
        grad = jax.grad(lambda p, model=model: -jnp.mean(model.apply(p, value, context)))
        sizes[depth] = (len(jax.make_jaxpr(model.init)(RNG, value, context).eqns),
                        len(jax.make_jaxpr(grad)(params).eqns))
    shallow, deep = sizes.values()
    assert shallow == deep, sizes


def test_unknown_schedule_is_named():
    value, context = _glow_data()
    with pytest.raises(ValueError, match="`schedule` must be one of .*'scan'.*got 'scanned'"):
        jcnf.ConditionalGlow(schedule="scanned", **GLOW).init(RNG, value, context)
