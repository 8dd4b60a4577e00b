"""The factorized discretized-logistic baseline: bin probabilities, mode, sampling, the module."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturb
from scipy.special import expit

from jcnf.baselines import (
    DiscretizedLogisticBaseline,
    discretized_logistic_log_prob,
    mixture_log_prob,
    mixture_mode,
    mixture_sample,
)
from jcnf.nets import upsample_context


def _reference_log_prob(level, num_bins, mean, scale):
    """float64 sigma(b) - sigma(a) with open outer bins, the textbook formula."""
    upper = np.where(level == num_bins - 1, np.inf, ((level + 1) / num_bins - mean) / scale)
    lower = np.where(level == 0, -np.inf, (level / num_bins - mean) / scale)
    return np.log(expit(upper) - expit(lower))


@pytest.mark.parametrize("mean, log_scale", [(0.5, -3.0), (0.02, -6.5), (0.99, -1.0), (-0.4, -2.0), (1.7, 0.5)])
def test_bin_probabilities_sum_to_one(mean, log_scale):
    num_bins = 256
    levels = jnp.arange(num_bins) / num_bins
    log_p = discretized_logistic_log_prob(levels, mean, log_scale, num_bins)
    # 256 float32 probabilities summed: rounding error of order 256 * 6e-8.
    np.testing.assert_allclose(float(jnp.sum(jnp.exp(log_p))), 1.0, atol=1e-5)


def test_log_prob_matches_float64_formula():
    rng = np.random.default_rng(0)
    num_bins = 16
    level = rng.integers(0, num_bins, 500)
    mean = rng.uniform(-0.2, 1.2, 500)
    log_scale = rng.uniform(-4.0, 0.0, 500)
    ours = discretized_logistic_log_prob(jnp.asarray(level / num_bins, jnp.float32), jnp.asarray(mean, jnp.float32),
                                         jnp.asarray(log_scale, jnp.float32), num_bins)
    expected = _reference_log_prob(level, num_bins, mean, np.exp(log_scale))
    # Bins within ~15 scales of the mean keep probabilities where float32 has
    # ~1e-6 relative accuracy; the absolute tolerance on the log covers it.
    keep = expected > -30
    np.testing.assert_allclose(np.asarray(ours)[keep], expected[keep], atol=1e-4, rtol=1e-5)


def test_far_tail_is_finite_with_finite_gradients():
    # A bin 100 scales from the mean: sigma(b) - sigma(a) underflows naively.
    value, mean, log_scale = jnp.float32(0.5), jnp.float32(0.1), jnp.float32(-5.5)
    log_p, grads = jax.value_and_grad(discretized_logistic_log_prob, argnums=(1, 2))(value, mean, log_scale, 256)
    # Far tail: log P ~ -(distance / scale) = -(0.4 * e^5.5) ~ -98.
    assert np.isfinite(float(log_p)) and -110 < float(log_p) < -85
    assert all(np.isfinite(float(g)) for g in grads)
    for edge in (0.0, 255 / 256):  # the open outer bins
        g = jax.grad(discretized_logistic_log_prob, argnums=(1, 2))(jnp.float32(edge), mean, log_scale, 256)
        assert all(np.isfinite(float(x)) for x in g)


def test_mixture_probabilities_sum_to_one_and_mode_is_argmax():
    rng = jax.random.PRNGKey(0)
    num_bins = 32
    logits, means, log_scales = (jax.random.normal(k, (3, 4)) for k in jax.random.split(rng, 3))
    means = 0.5 + 0.3 * means
    log_scales = -2.5 + 0.5 * log_scales
    levels = jnp.arange(num_bins) / num_bins
    table = jax.vmap(lambda v: mixture_log_prob(jnp.full((3,), v), logits, means, log_scales, num_bins))(levels)
    # 32 float32 terms per sum.
    np.testing.assert_allclose(np.exp(np.asarray(table)).sum(0), 1.0, atol=1e-5)
    mode = mixture_mode(logits, means, log_scales, num_bins)
    np.testing.assert_array_equal(np.asarray(mode), np.asarray(levels[jnp.argmax(table, axis=0)]))


def test_mixture_sample_frequencies_match_probabilities():
    num_bins, draws = 8, 20000
    logits = jnp.array([[0.3, -0.2]])
    means = jnp.array([[0.3, 0.7]])
    log_scales = jnp.array([[-2.0, -2.5]])
    rng = jax.random.PRNGKey(1)
    samples = mixture_sample(rng, jnp.broadcast_to(logits, (draws, 2)), jnp.broadcast_to(means, (draws, 2)),
                             jnp.broadcast_to(log_scales, (draws, 2)), 1.0, num_bins)
    levels = np.round(np.asarray(samples) * num_bins).astype(int)
    assert np.allclose(levels / num_bins, np.asarray(samples))  # on the grid
    counts = np.bincount(levels, minlength=num_bins) / draws
    probs = np.exp(np.asarray(mixture_log_prob(jnp.arange(num_bins) / num_bins, logits, means, log_scales,
                                               num_bins)))
    # Binomial standard error sqrt(p(1-p)/n) <= 0.0036; allow 4 of them.
    np.testing.assert_allclose(counts, probs, atol=4 * 0.5 / np.sqrt(draws))


def _tiny_model(**kwargs):
    return DiscretizedLogisticBaseline(hidden=4, head_blocks=1, num_mixtures=2, context_features=4,
                                       encoder_blocks=1, num_bins=4, **kwargs)


@functools.lru_cache(maxsize=None)
def _tiny_init(model, batch=2, seed=0):
    """Perturbed variables, a value and a context; cached: compiling init is the slow part."""
    rng = jax.random.PRNGKey(seed)
    value = jax.random.randint(rng, (batch, 2, 2, 1), 0, 4) / 4.0
    context = jax.random.uniform(jax.random.fold_in(rng, 1), (batch, 1, 1, 1), maxval=0.99)
    params = jax.jit(model.init)(rng, value, context)["params"]
    return {"params": perturb(params, jax.random.fold_in(rng, 2), 0.3)}, value, context


def test_model_probabilities_of_all_images_sum_to_one():
    model = _tiny_model()
    variables, _, context = _tiny_init(model)
    # Every 2x2 image with 4 levels: 4^4 = 256 values per context row.
    images = jnp.array(list(itertools.product(range(4), repeat=4)), jnp.float32).reshape(-1, 2, 2, 1) / 4.0
    log_prob = jax.jit(model.apply)
    for row in range(2):
        log_p = log_prob(variables, images, jnp.broadcast_to(context[row], (256, 1, 1, 1)))
        assert log_p.shape == (256,)
        # 256 float32 terms, each a product of 4 bin probabilities.
        np.testing.assert_allclose(float(jnp.sum(jnp.exp(log_p))), 1.0, atol=1e-5)


def test_model_shapes_mode_sample_and_context_dependence():
    model = _tiny_model()
    variables, value, context = _tiny_init(model)
    mode = jax.jit(lambda c: model.apply(variables, c, method="mode"))(context)
    assert mode.shape == value.shape
    draw = jax.jit(lambda c, t: model.apply(variables, jax.random.PRNGKey(3), c, t, method="sample"))
    np.testing.assert_array_equal(np.asarray(draw(context, 0.0)), np.asarray(mode))
    sample = draw(context, 1.0)
    assert sample.shape == value.shape
    levels = np.asarray(sample) * 4
    np.testing.assert_array_equal(levels, np.round(levels))
    assert levels.min() >= 0 and levels.max() <= 3
    log_prob = jax.jit(model.apply)
    shifted = log_prob(variables, value, context + 0.3)
    assert float(jnp.max(jnp.abs(shifted - log_prob(variables, value, context)))) > 1e-3
    grads = jax.jit(jax.grad(lambda p: jnp.sum(model.apply({"params": p}, value, context))))(variables["params"])
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("skip", ["backprojected", "nearest"])
def test_context_skip_puts_the_means_at_the_chosen_upsampling(skip):
    model = _tiny_model(skip=skip)
    value = jnp.zeros((2, 4, 4, 1))
    context = jax.random.uniform(jax.random.PRNGKey(0), (2, 2, 2, 1), maxval=0.99)
    params = jax.jit(model.init)(jax.random.PRNGKey(1), value, context)["params"]
    # With the output layer zeroed the means are the skip alone.
    head = sorted(name for name in params if name.startswith("Conv_"))[-1]
    params = {**params, head: jax.tree.map(jnp.zeros_like, params[head])}
    means = jax.jit(lambda c: model.apply({"params": params}, c, method="mixture_params"))(context)[1]
    expected = upsample_context(context, value.shape, skip)[..., None]
    # The same float32 upsampling, broadcast over the mixture components.
    np.testing.assert_allclose(np.asarray(means), np.asarray(jnp.broadcast_to(expected, means.shape)), atol=1e-6)
    other = upsample_context(context, value.shape, "nearest" if skip == "backprojected" else "backprojected")
    assert float(jnp.max(jnp.abs(other[..., None] - expected))) > 1e-2


def test_bad_inputs_raise_clear_errors():
    model = _tiny_model()
    variables, value, context = _tiny_init(model)
    with pytest.raises(ValueError, match="`value`"):
        model.apply(variables, value[0], context)
    with pytest.raises(ValueError, match="floating"):
        model.apply(variables, (value * 4).astype(jnp.int32), context)
    with pytest.raises(ValueError, match="batch size"):
        model.apply(variables, value, context[:1])
    with pytest.raises(ValueError, match="context_skip"):
        _tiny_model().init(jax.random.PRNGKey(0), value, jnp.zeros((2, 1, 1, 2)))
    with pytest.raises(ValueError, match="`skip` must be one of"):
        _tiny_model(skip="bicubic").init(jax.random.PRNGKey(0), value, context)
    with pytest.raises(ValueError, match="even"):
        _tiny_model().init(jax.random.PRNGKey(0), jnp.zeros((2, 3, 3, 1)), jnp.zeros((2, 1, 1, 1)))
    with pytest.raises(ValueError, match="integer factor"):
        _tiny_model().init(jax.random.PRNGKey(0), jnp.zeros((2, 4, 4, 1)), jnp.zeros((2, 3, 3, 1)))
    with pytest.raises(ValueError, match="num_bins"):
        discretized_logistic_log_prob(jnp.zeros(3), 0.0, 0.0, num_bins=1)
    with pytest.raises(ValueError, match="`num_bins`"):
        mixture_sample(jax.random.PRNGKey(0), jnp.zeros((3, 2)), jnp.zeros((3, 2)), jnp.zeros((3, 2)), 1.0, 0)
