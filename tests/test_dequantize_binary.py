"""Half-infinite binary dequantization: the half-lines, the density with its softplus Jacobian, training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jcnf
from jcnf.dequantize import BinaryDequantizer, binarize, elbo_bits_per_pixel, soft_image
from jcnf.dequantize.binary import half_infinite_inverse, half_infinite_map
from tests.conftest import assert_close, perturb

pytestmark = pytest.mark.strict_dtypes

_SHAPE = (2, 4, 4, 1)


def _labels(seed=0, shape=_SHAPE):
    return (jax.random.uniform(jax.random.PRNGKey(seed), shape) < 0.5).astype(jnp.float32)


def _init(dq, value, context):
    variables = jax.jit(dq.init)(jax.random.PRNGKey(1), jax.random.PRNGKey(2), value, {"context": context})
    # Perturbed so the zero-initialized head gives a pixel-dependent mean and scale.
    return {"params": perturb(variables["params"], jax.random.PRNGKey(3), 0.05)}


def test_labels_map_strictly_into_their_half_lines_even_at_extreme_noise():
    n = jnp.array([-1e4, -200.0, -104.0, -30.0, -1.0, 0.0, 3.0, 80.0, 1e4], jnp.float32)
    ones, zeros = jnp.ones_like(n), jnp.zeros_like(n)
    v_one, _ = half_infinite_map(n[None], ones[None])
    v_zero, _ = half_infinite_map(n[None], zeros[None])
    # Exact, no tolerance: the label must be recoverable from every v.
    assert bool(jnp.all(v_one > 0.5)) and bool(jnp.all(jnp.isfinite(v_one)))
    assert bool(jnp.all(v_zero < 0.5)) and bool(jnp.all(jnp.isfinite(v_zero)))
    np.testing.assert_array_equal(binarize(v_one), ones[None])
    np.testing.assert_array_equal(binarize(v_zero), zeros[None])


def test_module_samples_keep_labels_and_invert():
    value = _labels()
    context = jax.random.normal(jax.random.PRNGKey(4), _SHAPE[:3] + (2,))
    dq = BinaryDequantizer(hidden=8)
    variables = _init(dq, value, context)
    v, correction = jax.jit(dq.apply)(variables, jax.random.PRNGKey(5), value, {"context": context})
    np.testing.assert_array_equal(binarize(v), value)
    assert correction.shape == (2,)
    # The inverse map recovers the label and, away from the 2^-21 floor, n
    # (float32 round trip through softplus: relative error ~1e-6).
    n = jnp.linspace(-5.0, 8.0, 16).reshape(1, 4, 4, 1)
    label_back, n_back = half_infinite_inverse(half_infinite_map(n, value[:1])[0])
    np.testing.assert_array_equal(label_back, value[:1])
    assert_close(n_back, n, atol=1e-4)


def test_log_density_matches_jacfwd_of_the_eps_to_v_map():
    """Log q(v) = log N(eps) - log|det dv/deps|, the determinant from jax.jacfwd (float64 not needed: 16 dims)."""
    value = _labels(1, (1, 4, 4, 1))
    context = jax.random.normal(jax.random.PRNGKey(6), (1, 4, 4, 2))
    dq = BinaryDequantizer(hidden=8)
    variables = _init(dq, value, context)
    eps = jax.random.normal(jax.random.PRNGKey(7), value.shape)
    v, log_q = dq.apply(variables, eps, value, context, method="noise_and_log_density")

    def to_v(flat_eps):
        return dq.apply(variables, flat_eps.reshape(value.shape), value, context,
                        method="noise_and_log_density")[0].reshape(-1)

    jacobian = jax.jacfwd(to_v)(eps.reshape(-1))
    expected = jnp.sum(-0.5 * eps ** 2 - 0.5 * jnp.log(2 * jnp.pi)) - jnp.linalg.slogdet(jacobian)[1]
    # float32 sums of 16 terms of size ~1: agreement to 1e-4 nats.
    assert_close(log_q[0], expected, atol=1e-4)
    # The inverse route (v -> n -> eps) gives the same density.
    assert_close(dq.apply(variables, v, context, method="log_density"), log_q, atol=1e-4)


def test_density_integrates_to_one_on_each_half_line():
    """Numeric check of the softplus Jacobian: without it the integral would not be 1."""
    dq = BinaryDequantizer(hidden=4, use_context=False)
    for label in (0.0, 1.0):
        value = jnp.full((1, 1, 1, 1), label)
        variables = _init(dq, value, None)
        offsets = jnp.concatenate([jnp.geomspace(1e-7, 1.0, 20000), jnp.linspace(1.0, 60.0, 20000)[1:]])
        v = (0.5 + (2 * label - 1) * offsets).reshape(-1, 1, 1, 1)
        def log_density(x, variables=variables):
            return dq.apply(variables, x[None], None, method="log_density")[0]

        log_q = jax.jit(jax.vmap(log_density))(v)
        integral = np.trapezoid(np.exp(np.asarray(log_q, np.float64)), np.asarray(offsets, np.float64))
        # Trapezoids on 40k points of a smooth density: error well below 1e-3;
        # the tails below 1e-7 and above 60 hold < 1e-6 of the mass.
        assert abs(integral - 1.0) < 1e-3, (label, integral)


def test_context_changes_q_and_bad_input_raises():
    value = _labels()
    dq = BinaryDequantizer(hidden=8)
    context = jax.random.normal(jax.random.PRNGKey(8), _SHAPE[:3] + (2,))
    variables = _init(dq, value, context)
    eps = jax.random.normal(jax.random.PRNGKey(9), value.shape)
    _, log_q_a = dq.apply(variables, eps, value, context, method="noise_and_log_density")
    _, log_q_b = dq.apply(variables, eps, value, context + 1.0, method="noise_and_log_density")
    # Perturbed weights of scale 0.05 move log q by far more than float32 noise.
    assert float(jnp.max(jnp.abs(log_q_a - log_q_b))) > 1e-2
    with pytest.raises(ValueError, match="`value`"):
        dq.apply(variables, jax.random.PRNGKey(0), value[0], {"context": context})
    with pytest.raises(ValueError, match="`eps`"):
        dq.apply(variables, eps[:, :2], value, context, method="noise_and_log_density")
    with pytest.raises(ValueError, match="`samples`"):
        soft_image(value)
    with pytest.raises(ValueError, match="`num_pixels`"):
        elbo_bits_per_pixel(jnp.zeros(2), jnp.zeros(2), 0)


def test_soft_image_is_the_label_frequency():
    samples = jnp.stack([jnp.full(_SHAPE, 0.7), jnp.full(_SHAPE, -2.0), jnp.full(_SHAPE, 0.5), jnp.full(_SHAPE, 9.0)])
    # 0.5 itself is label 0 (v > 0.5 is strict): two of four samples are 1.
    np.testing.assert_array_equal(soft_image(samples), jnp.full(_SHAPE, 0.5))


@pytest.mark.allow_dtype_promotion("optax's Adam raises a Python float to its int32 step count")
def test_mle_step_trains_flow_and_dequantizer_and_reports_the_bound():
    """A tiny Glow + dequantizer: the ELBO in bits per pixel falls and both parameter trees move."""
    value = _labels(2, (8, 8, 8, 1))
    context = jnp.concatenate([2.0 * value - 1.0, jnp.zeros_like(value)], -1)  # context reveals the label
    batch = {"value": value, "context": context}
    model = jcnf.ConditionalGlow(levels=1, blocks=1, hidden=8, context_features=4, encoder_blocks=1)
    dq = BinaryDequantizer(hidden=4)
    state = jcnf.train.create_state(model, optax.adam(5e-3), jax.random.PRNGKey(0), batch, dequantizer=dq)
    before = state.params
    step = jcnf.train.mle_step(model, dequantizer=dq, donate=False)
    first = None
    for _ in range(40):
        state, metrics = step(state, batch)
        first = float(metrics["bits_per_dim"]) if first is None else first
    last = float(metrics["bits_per_dim"])
    # The bound is the mean negative ELBO per pixel; recompute it from the pieces.
    v, correction = dq.apply({"params": state.params["dequantizer"]}, jax.random.PRNGKey(1), value, batch)
    log_prob = model.apply({"params": state.params["flow"]}, v, context, method="log_prob")
    bound = float(jnp.mean(elbo_bits_per_pixel(log_prob, correction, 64)))
    # One noise draw per item, so not exactly the step's number, but the same bound up to Monte Carlo noise.
    assert np.isfinite(bound) and abs(bound - last) < 0.3, (bound, last)
    # The context gives the label away: 40 Adam steps cut the bound by far more than noise (> 0.2 bits/pixel).
    assert last < first - 0.2, (first, last)
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), before["dequantizer"],
                                   state.params["dequantizer"])
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-3
