"""jcnf.nets.rrdb: the residual-in-residual dense block encoder, alone and inside ConditionalGlow."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import brute_force_log_det, perturb

import jcnf
from jcnf.nets import RRDB, ContextEncoder, ResidualDenseBlock, RRDBEncoder

FEATURES, GROWTH = 6, 3


@functools.lru_cache(maxsize=None)
def _setup():
    """An encoder of 2 RRDBs, its parameters and a low-resolution context (factor 2) of a 8x8 value."""
    encoder = RRDBEncoder(features=FEATURES, blocks=2, growth=GROWTH)
    context = jax.random.uniform(jax.random.PRNGKey(0), (2, 4, 4, 3))
    params = jax.jit(encoder.init, static_argnums=(2, 3))(jax.random.PRNGKey(1), context, (8, 8), 3)["params"]
    return encoder, params, context


def _apply(encoder, params, context, levels=3):
    return encoder.apply({"params": params}, context, (8, 8), levels)


def test_one_feature_map_per_level_at_its_resolution():
    encoder, params, context = _setup()
    features = _apply(encoder, params, context)
    # Level l of an 8x8 value works at 8 / 2^(l+1): 4x4, 2x2, 1x1.
    assert [f.shape for f in features] == [(2, 4, 4, FEATURES), (2, 2, 2, FEATURES), (2, 1, 1, FEATURES)]
    assert all(f.dtype == jnp.float32 for f in features)
    vector = jax.random.normal(jax.random.PRNGKey(2), (2, 5))
    vector_params = RRDBEncoder(FEATURES, 2, growth=GROWTH).init(jax.random.PRNGKey(1), vector, (8, 8), 2)["params"]
    maps = RRDBEncoder(FEATURES, 2, growth=GROWTH).apply({"params": vector_params}, vector, (8, 8), 2)
    assert [f.shape for f in maps] == [(2, 4, 4, FEATURES), (2, 2, 2, FEATURES)]


def test_architecture_is_rrdbs_of_three_dense_blocks_of_five_convolutions():
    _, params, _ = _setup()
    assert sorted(name for name in params if name.startswith("RRDB")) == ["RRDB_0", "RRDB_1"]
    for rrdb in ("RRDB_0", "RRDB_1"):
        assert sorted(params[rrdb]) == ["ResidualDenseBlock_0", "ResidualDenseBlock_1", "ResidualDenseBlock_2"]
        dense = params[rrdb]["ResidualDenseBlock_0"]
        # Convolution i reads the block's input and the i earlier outputs of `growth` channels each.
        shapes = [dense[f"Conv_{i}"]["kernel"].shape for i in range(5)]
        assert shapes == [(3, 3, FEATURES + i * GROWTH, GROWTH) for i in range(4)] + [
            (3, 3, FEATURES + 4 * GROWTH, FEATURES)]
    # The first convolution reads the context's channels, as in ContextEncoder
    # (ConditionalGlow reads the trained context width from it).
    assert params["stem"]["kernel"].shape == (3, 3, 3, FEATURES)


def test_dense_block_starts_near_the_identity_and_rrdb_near_1_2_times_it():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 16))
    block = ResidualDenseBlock(16, 8)
    dense = block.apply(block.init(jax.random.PRNGKey(1), x), x)
    # 0.2 x a convolution at a tenth of He initialization: the branch is ~3% of x.
    assert float(jnp.linalg.norm(dense - x) / jnp.linalg.norm(x)) < 0.1
    rrdb = RRDB(16, 8)
    out = rrdb.apply(rrdb.init(jax.random.PRNGKey(1), x), x)
    # x + 0.2 * (three near-identity dense blocks of x): within ~10% of 1.2 x.
    assert float(jnp.linalg.norm(out - 1.2 * x) / jnp.linalg.norm(1.2 * x)) < 0.1


def test_jit_matches_eager_and_gradients_are_finite():
    encoder, params, context = _setup()
    eager = _apply(encoder, params, context)
    jitted = jax.jit(lambda p, c: _apply(encoder, p, c))(params, context)
    for a, b in zip(eager, jitted, strict=True):
        # Same float32 convolutions; only XLA's fusion order differs.
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    loss = lambda p, c: sum(jnp.sum(f ** 2) for f in _apply(encoder, p, c))  # noqa: E731
    param_grads, context_grad = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, context)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(param_grads))
    assert np.all(np.isfinite(context_grad)) and float(jnp.max(jnp.abs(context_grad))) > 0


def test_context_changes_every_level():
    encoder, params, context = _setup()
    apply = jax.jit(lambda c: _apply(encoder, params, c))
    for a, b in zip(apply(context), apply(context + 0.5), strict=True):
        assert float(jnp.max(jnp.abs(a - b))) > 1e-3


def test_bad_input_raises_naming_the_argument():
    encoder, params, context = _setup()
    with pytest.raises(ValueError, match=r"`context` must have shape \[2, h, w, c\]"):
        _apply(encoder, params, context[..., 0])
    with pytest.raises(ValueError, match="`blocks` and `growth` must be >= 1"):
        RRDBEncoder(FEATURES, 0, growth=GROWTH).init(jax.random.PRNGKey(0), context, (8, 8), 1)


@functools.lru_cache(maxsize=None)
def _glow():
    model = jcnf.ConditionalGlow(levels=1, blocks=1, hidden=4, context_features=4, encoder_blocks=1, encoder="rrdb")
    value = jax.random.uniform(jax.random.PRNGKey(0), (2, 4, 4, 1))
    context = jax.random.uniform(jax.random.PRNGKey(1), (2, 2, 2, 3))
    params = jax.jit(model.init)(jax.random.PRNGKey(2), value, context)["params"]
    # The flow's zero-initialized layers are perturbed so they stop being the
    # identity; the encoder is random already, and noise of 0.2 on its
    # tenth-scale dense convolutions would blow its features up.
    flow = perturb({k: v for k, v in params.items() if k != "encoder"}, jax.random.PRNGKey(3), 0.2)
    return model, {"params": {**flow, "encoder": params["encoder"]}}, value, context


def test_glow_with_the_rrdb_encoder_inverts_with_exact_log_det():
    model, variables, value, context = _glow()
    assert "RRDB_0" in variables["params"]["encoder"]
    forward = jax.jit(lambda v, c: model.apply(variables, v, c, method="forward_and_log_det"))
    z, log_det = forward(value, context)
    back = jax.jit(lambda z, c: model.apply(variables, z, c, method="inverse"))(z, context)
    # float32 round trip through one affine coupling and a 1x1 conv.
    np.testing.assert_allclose(np.asarray(back), np.asarray(value), atol=1e-5)
    expected = brute_force_log_det(lambda v: forward(v[None], context[:1])[0][0], value[0])
    # log-dets of order 1-10 from a 16x16 float32 Jacobian.
    np.testing.assert_allclose(float(log_det[0]), float(expected), atol=1e-3)
    log_prob = jax.jit(lambda c: model.apply(variables, value, c))
    assert float(jnp.max(jnp.abs(log_prob(context + 0.5) - log_prob(context)))) > 1e-3


def test_glow_encoder_choice_is_checked_and_the_default_unchanged():
    assert jcnf.ConditionalGlow().encoder == "residual"
    value = jnp.zeros((1, 4, 4, 1))
    with pytest.raises(ValueError, match="`encoder` must be one of"):
        jcnf.ConditionalGlow(levels=1, blocks=1, hidden=4, encoder="rdb").init(jax.random.PRNGKey(0), value, value)
    model, variables, value, context = _glow()
    # The trained context width is read from the RRDB encoder's first convolution too.
    with pytest.raises(ValueError, match="must have 3 features"):
        model.apply(variables, value, context[..., :2])
    assert isinstance(RRDBEncoder(4), ContextEncoder)


def test_full_resolution_encoder_hands_the_first_level_each_pixels_features():
    encoder = ContextEncoder(features=4, blocks=1, full_resolution=True)
    context = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
    variables = encoder.init(jax.random.PRNGKey(1), context, (8, 8), 2)
    first, second = encoder.apply(variables, context, (8, 8), 2)
    assert first.shape == (2, 4, 4, 5 * 4) and second.shape == (2, 2, 2, 4)
    # The same parameters without the option give the strided map alone: the first 4 channels.
    plain = ContextEncoder(features=4, blocks=1).apply(variables, context, (8, 8), 2)
    np.testing.assert_array_equal(first[..., :4], plain[0])
