"""Tests for the operators of jcnf.inverse (linear_operator, romberg, blur) and the likelihood: adjoints, shapes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jcnf import inverse as ops

# float32 inner products of a few thousand terms: the two sides of
# <F x, y> = <x, F^T y> round differently by about sqrt(n) * 2^-24 relative to
# ||F x|| ||y||; FFTs add log2(n) roundings more. 1e-5 leaves a wide margin
# and still catches any wrong index or conjugation, which errs by O(1).
ADJOINT_RTOL = 1e-5


def _normal(seed, shape):
    """Test data from numpy: no jax.random kernel to compile per shape."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _operators():
    """One of every kind, on shapes that exercise odd and even sizes and channels."""
    k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 3)
    return {
        "dense": ops.dense(_normal(0, (3, 5))),
        "identity": ops.identity((4, 3, 2)),
        "romberg_even": ops.random_convolution_subsample(k2, (16, 12)),
        "romberg_odd_channel": ops.random_convolution_subsample(k3, (9, 7, 1), keep_fraction=0.3),
        "romberg_two_channels": ops.random_convolution_subsample(k4, (6, 5, 2), keep_fraction=0.8),
        "blur_even": ops.blur_downsample((16, 16, 1), factor=4, sigma=1.5),
        "blur_ragged": ops.blur_downsample((11, 7), factor=3, sigma=0.8),
        "blur_no_blur": ops.blur_downsample((8, 6, 3), factor=2, sigma=0.0),
        "dense_square": ops.dense(_normal(6, (2, 2))),
    }


OPERATORS = _operators()


# Every test feeds an operator batches of exactly n = prod(input_shape) unknowns
# and m = prod(output_shape) observations, the sizes of the identity bases
# below, so each operator's jitted maps compile once for the whole file.


def _unknowns(operator, seed):
    """Random x, shape [n, *input_shape]."""
    return _normal(seed, (math.prod(operator.input_shape),) + operator.input_shape)


def _observations(operator, seed):
    """Random y, shape [m, *output_shape]."""
    return _normal(seed, (math.prod(operator.output_shape),) + operator.output_shape)


def _matrix(operator):
    """F as a dense [m, n] numpy matrix, column j = F e_j."""
    n = math.prod(operator.input_shape)
    basis = np.eye(n, dtype=np.float32).reshape((n,) + operator.input_shape)
    return np.asarray(operator.apply(jnp.asarray(basis))).reshape(n, -1).T


def _adjoint_matrix(operator):
    """F^T as a dense [n, m] numpy matrix, column i = F^T e_i."""
    m = math.prod(operator.output_shape)
    basis = np.eye(m, dtype=np.float32).reshape((m,) + operator.output_shape)
    return np.asarray(operator.adjoint(jnp.asarray(basis))).reshape(m, -1).T


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_dot_product_test(name):
    operator = OPERATORS[name]
    x, y = _unknowns(operator, 1), _observations(operator, 2)
    forward, back = operator.apply(x), operator.adjoint(y)
    assert forward.shape[1:] == y.shape[1:] and back.shape[1:] == x.shape[1:]
    assert forward.dtype == jnp.float32 and back.dtype == jnp.float32
    # Pair x[i] with y[i]; inner products in float64 on the host, so only the
    # operator's rounding is measured.
    pairs = min(x.shape[0], y.shape[0])
    x, y, forward, back = (np.asarray(a, np.float64)[:pairs].reshape(pairs, -1) for a in (x, y, forward, back))
    lhs = np.sum(forward * y, axis=1)
    rhs = np.sum(x * back, axis=1)
    scale = (np.linalg.norm(forward, axis=1) * np.linalg.norm(y, axis=1)
             + np.linalg.norm(x, axis=1) * np.linalg.norm(back, axis=1))
    assert np.all(np.abs(lhs - rhs) <= ADJOINT_RTOL * scale), (name, lhs, rhs)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_adjoint_is_transpose_of_dense_matrix(name):
    # Stronger than random dot products: every entry of F^T against F. Entries
    # are O(1) at most (unit-norm rows or normalized kernels): float32 rounding.
    operator = OPERATORS[name]
    np.testing.assert_allclose(_adjoint_matrix(operator), _matrix(operator).T, atol=2e-6)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_linear(name):
    operator = OPERATORS[name]
    x, x_other = _unknowns(operator, 3), _unknowns(operator, 4)
    combined = operator.apply(2.0 * x - 0.5 * x_other)
    expected = 2.0 * operator.apply(x) - 0.5 * operator.apply(x_other)
    # Values are O(1); a few float32 roundings of O(2.5) terms.
    np.testing.assert_allclose(combined, expected, atol=1e-5)


def test_operator_works_as_jit_argument_and_in_closure():
    operator = OPERATORS["romberg_odd_channel"]
    x = _unknowns(operator, 5)
    eager = operator.apply(x)

    @jax.jit
    def as_argument(op, value):
        return op.apply(value)

    closed = jax.jit(lambda value: operator.adjoint(operator.apply(value)))
    np.testing.assert_allclose(as_argument(operator, x), eager, atol=1e-6)
    np.testing.assert_allclose(closed(x), operator.adjoint(eager), atol=1e-6)
    # A fresh draw of the same kind and shape reuses the compiled function.
    other = ops.random_convolution_subsample(jax.random.PRNGKey(9), (9, 7, 1), keep_fraction=0.3)
    as_argument(other, x)
    assert as_argument._cache_size() == 1


def test_blur_downsample_jit_cache_is_shared_across_instances():
    # Static parts compare equal for equal arguments, so a jitted loss taking
    # the operator as an argument does not recompile for a rebuilt operator.
    first = ops.blur_downsample((16, 16, 1), factor=4, sigma=1.0)
    second = ops.blur_downsample((16, 16, 1), factor=4, sigma=1.0)
    assert jax.tree.structure(first) == jax.tree.structure(second)


def test_shape_errors_name_argument_and_shapes():
    operator = OPERATORS["blur_even"]
    with pytest.raises(ValueError, match=r"`x`.*\[batch, 16, 16, 1\].*\(16, 16, 1\)"):
        operator.apply(np.zeros((16, 16, 1), np.float32))  # Missing batch axis.
    with pytest.raises(ValueError, match=r"`x`.*\[batch, 16, 16, 1\].*\(2, 16, 16\)"):
        operator.apply(np.zeros((2, 16, 16), np.float32))
    with pytest.raises(ValueError, match=r"`y`.*\[batch, 4, 4, 1\].*\(2, 5, 4, 1\)"):
        operator.adjoint(np.zeros((2, 5, 4, 1), np.float32))
    with pytest.raises(ValueError, match=r"`x`.*floating-point"):
        operator.apply(np.zeros((2, 16, 16, 1), np.int32))
    with pytest.raises(ValueError, match=r"`x`.*array"):
        operator.apply([[0.0]])
    with pytest.raises(ValueError, match=r"`matrix`"):
        ops.dense(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"`image_shape`"):
        ops.random_convolution_subsample(jax.random.PRNGKey(0), (8,))
    with pytest.raises(ValueError, match=r"`keep_fraction`"):
        ops.random_convolution_subsample(jax.random.PRNGKey(0), (8, 8), keep_fraction=0.0)
    with pytest.raises(ValueError, match=r"`factor`"):
        ops.blur_downsample((8, 8), factor=0, sigma=1.0)
    with pytest.raises(ValueError, match=r"`factor`"):
        ops.blur_downsample((8, 8), factor=2.0, sigma=1.0)
    with pytest.raises(ValueError, match=r"`sigma`"):
        ops.blur_downsample((8, 8), factor=2, sigma=-1.0)
    with pytest.raises(ValueError, match=r"`shape`"):
        ops.identity((3, 0))


# --------------------------------------------------------------------------
# Random convolution and subsampling.
# --------------------------------------------------------------------------

# Even sizes have four self-conjugate frequencies, odd sizes one.
FULL_ROMBERG_SHAPES = [(8, 6), (7, 5, 1)]


@pytest.mark.parametrize("image_shape", FULL_ROMBERG_SHAPES)
def test_full_random_convolution_is_orthogonal_and_spreads_point_sources(image_shape):
    # With all samples kept F = D C is orthogonal exactly when the phases are
    # unit-modulus and Hermitian-symmetric: a non-Hermitian sigma would leave
    # an imaginary part that the real part drops, and the norm would shrink.
    operator = ops.random_convolution_subsample(jax.random.PRNGKey(5), image_shape, keep_fraction=1.0)
    matrix = _matrix(operator)
    # Entries of F^T F are float32 sums of n <= 48 products: rounding ~ n * 2^-24.
    np.testing.assert_allclose(matrix.T @ matrix, np.eye(matrix.shape[1]), atol=1e-5)
    # Column j is the response to a point source at pixel j: a convolution with
    # random phases spreads it (unit norm over 35-48 entries, ~0.15 each)
    # where the identity would keep a single entry of 1.
    assert np.max(np.abs(matrix)) < 0.6


@pytest.mark.parametrize("name", ["romberg_even", "romberg_odd_channel", "romberg_two_channels"])
def test_phases_are_hermitian_and_unit_modulus(name):
    phases = np.asarray(OPERATORS[name].params["phases"])
    height, width = phases.shape
    mirror = phases[(-np.arange(height)) % height][:, (-np.arange(width)) % width]
    np.testing.assert_allclose(np.abs(phases), 1.0, atol=1e-6)  # float32 cos/sin.
    np.testing.assert_allclose(mirror, np.conj(phases), atol=1e-6)
    # The convolution of a real image is real: the imaginary part that
    # `apply` drops is rounding only (float64 FFT here, float32 phases).
    image = np.random.default_rng(6).standard_normal((height, width))
    convolved = np.fft.ifft2(np.fft.fft2(image) * phases.astype(np.complex128))
    assert np.max(np.abs(convolved.imag)) < 1e-6 * np.max(np.abs(convolved.real))


@pytest.mark.parametrize("name, keep_fraction", [("romberg_even", 0.5), ("romberg_odd_channel", 0.3),
                                                 ("romberg_two_channels", 0.8)])
def test_random_convolution_keeps_stated_fraction_with_orthonormal_rows(name, keep_fraction):
    operator = OPERATORS[name]
    size = math.prod(operator.input_shape)
    expected_kept = round(keep_fraction * size)
    assert operator.output_shape == (expected_kept,)
    kept = np.asarray(operator.params["kept"])
    assert len(kept) == expected_kept and np.all(np.diff(kept) > 0) and 0 <= kept[0] and kept[-1] < size
    # F F^T = S S^T = I: distinct kept samples of an orthogonal map. float32
    # sums of n <= 192 products.
    matrix = _matrix(operator)
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(expected_kept), atol=2e-5)


def test_random_convolution_depends_only_on_key():
    reference = OPERATORS["romberg_even"]  # Built from split(PRNGKey(0), 4)[0].
    key = jax.random.split(jax.random.PRNGKey(0), 4)[0]
    again = ops.random_convolution_subsample(key, (16, 12))
    other = ops.random_convolution_subsample(jax.random.PRNGKey(13), (16, 12))
    for field in ("phases", "signs", "kept"):
        np.testing.assert_array_equal(again.params[field], reference.params[field])
    assert np.mean(np.asarray(other.params["signs"]) != np.asarray(reference.params["signs"])) > 0.3
    assert not np.array_equal(other.params["kept"], reference.params["kept"])


# --------------------------------------------------------------------------
# Blur and decimation.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("image_shape, factor, expected", [
    ((16, 16, 1), 4, (4, 4, 1)),
    ((16, 16), 2, (8, 8)),
    ((11, 7), 3, (4, 3)),
    ((8, 6, 3), 1, (8, 6, 3)),
])
def test_blur_downsample_output_shape(image_shape, factor, expected):
    # `apply` returns output_shape: checked on every operator in test_dot_product_test.
    operator = ops.blur_downsample(image_shape, factor, sigma=1.0)
    assert operator.input_shape == image_shape
    assert operator.output_shape == expected


@pytest.mark.parametrize("name, sigma, factor", [("blur_even", 1.5, 4), ("blur_ragged", 0.8, 3),
                                                 ("blur_no_blur", 0.0, 2)])
def test_blur_downsample_matches_scipy(name, sigma, factor):
    from scipy import ndimage

    operator = OPERATORS[name]
    images = _unknowns(operator, 15)
    ours = np.asarray(operator.apply(images))
    for image, result in zip(np.asarray(images, np.float64), ours, strict=False):
        # scipy's zero-padded ("constant") Gaussian filter with the same 4-sigma
        # truncation, over height and width only.
        sigmas = (sigma, sigma) + (0.0,) * (image.ndim - 2)
        reference = ndimage.gaussian_filter(image, sigmas, mode="constant", truncate=4.0)[::factor, ::factor]
        np.testing.assert_allclose(result, reference, atol=1e-5)  # float32 sums of O(1) terms.


# --------------------------------------------------------------------------
# Likelihood.
# --------------------------------------------------------------------------


def test_gaussian_log_likelihood_matches_scipy_and_drops_constant_by_default():
    operator = OPERATORS["dense"]
    x = _unknowns(operator, 17)
    y_obs = _normal(18, (3,))
    noise_std = 0.4
    predicted = np.asarray(operator.apply(x), np.float64)
    expected = np.array([stats.multivariate_normal(p, noise_std ** 2 * np.eye(3)).logpdf(y_obs) for p in predicted])
    normalized = ops.gaussian_log_likelihood(operator, x, y_obs, noise_std, include_normalizer=True)
    unnormalized = ops.gaussian_log_likelihood(operator, x, y_obs, noise_std)
    assert normalized.shape == unnormalized.shape == (x.shape[0],)
    # Values are O(10-100), where a float32 ulp is up to 8e-6; the difference
    # of two such values has that absolute error.
    np.testing.assert_allclose(normalized, expected, rtol=1e-5)
    np.testing.assert_allclose(normalized - unnormalized, -1.5 * np.log(2 * np.pi * noise_std ** 2), atol=5e-5)
    with pytest.raises(ValueError, match="`noise_std` must be > 0"):
        ops.gaussian_log_likelihood(operator, x, y_obs, 0.0)


def test_gaussian_log_likelihood_accepts_batched_observations_and_callables():
    operator = OPERATORS["blur_ragged"]
    x = _unknowns(operator, 19)
    y_obs = _normal(20, (4, 3))
    shared = ops.gaussian_log_likelihood(operator, x, y_obs, 0.1)
    batched = ops.gaussian_log_likelihood(operator, x, jnp.broadcast_to(y_obs, (x.shape[0], 4, 3)), 0.1)
    via_callable = ops.gaussian_log_likelihood(operator.apply, x, y_obs, 0.1)
    residual = np.asarray(operator.apply(x), np.float64) - np.asarray(y_obs, np.float64)
    expected = -0.5 * np.sum(residual ** 2, axis=(1, 2)) / 0.1 ** 2
    np.testing.assert_allclose(shared, expected, rtol=1e-5)  # float32 sums of 12 squares.
    np.testing.assert_allclose(batched, shared, rtol=1e-6)
    np.testing.assert_allclose(via_callable, shared, rtol=1e-6)
    with pytest.raises(ValueError, match=r"`y_obs`.*\[4, 3\].*\(4, 4\)"):
        ops.gaussian_log_likelihood(operator, x, np.zeros((4, 4), np.float32), 0.1)


def test_likelihood_gradient_is_the_adjoint_residual():
    # grad_x of -||F x - y||^2 / (2 s^2) is -F^T (F x - y) / s^2: autodiff and
    # the hand-written adjoint must agree.
    operator = OPERATORS["romberg_even"]
    x = _unknowns(operator, 21)
    y_obs = _normal(22, operator.output_shape)
    noise_std = 0.5
    loss = lambda value: jnp.sum(ops.gaussian_log_likelihood(operator, value, y_obs, noise_std))
    grad = jax.jit(jax.grad(loss))(x)
    expected = -operator.adjoint(operator.apply(x) - y_obs) / noise_std ** 2
    np.testing.assert_allclose(grad, expected, atol=1e-5)  # Entries O(4), float32 FFT rounding.
