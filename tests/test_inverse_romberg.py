"""jcnf.inverse.romberg: the random convolution is orthogonal, its phases Hermitian, its subsampling as stated."""

import math

import jax
import numpy as np
import pytest
from _operators import OPERATORS, dense_matrix

from jcnf import inverse as ops

# Even sizes have four self-conjugate frequencies, odd sizes one.
FULL_ROMBERG_SHAPES = [(8, 6), (7, 5, 1)]


@pytest.mark.parametrize("image_shape", FULL_ROMBERG_SHAPES)
def test_full_random_convolution_is_orthogonal_and_spreads_point_sources(image_shape):
    # With all samples kept F = D C is orthogonal exactly when the phases are
    # unit-modulus and Hermitian-symmetric: a non-Hermitian sigma would leave
    # an imaginary part that the real part drops, and the norm would shrink.
    operator = ops.random_convolution_subsample(jax.random.PRNGKey(5), image_shape, keep_fraction=1.0)
    matrix = dense_matrix(operator)
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
    matrix = dense_matrix(operator)
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


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match=r"`image_shape`"):
        ops.random_convolution_subsample(jax.random.PRNGKey(0), (8,))
    with pytest.raises(ValueError, match=r"`keep_fraction`"):
        ops.random_convolution_subsample(jax.random.PRNGKey(0), (8, 8), keep_fraction=0.0)
