"""jcnf.dequantize.uniform: noise range, log-corrections, the default for continuous data."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnf.dequantize import no_dequantization, uniform_dequantization

pytestmark = pytest.mark.strict_dtypes


def test_uniform_noise_stays_in_the_bin_and_corrects_by_d_log_bins():
    value = jnp.floor(jax.random.uniform(jax.random.PRNGKey(0), (16, 4, 4, 3)) * 32) / 32
    dequantize = uniform_dequantization(32)
    noisy, correction = dequantize(jax.random.PRNGKey(1), value, {"value": value})
    noise = np.asarray(noisy - value)
    # Each value keeps its bin: the noise is in [0, 1/32) and not degenerate.
    assert noise.min() >= 0.0 and noise.max() < 1 / 32 and noise.std() > 1 / 32 / 4
    np.testing.assert_array_equal(np.floor(np.asarray(noisy) * 32), np.asarray(value) * 32)
    np.testing.assert_allclose(correction, np.full(16, -48 * math.log(32)), rtol=1e-6)


def test_no_dequantization_is_the_identity():
    value = jnp.ones((3, 2))
    out, correction = no_dequantization(jax.random.PRNGKey(0), value, {})
    assert out is value and correction.shape == (3,) and not np.any(np.asarray(correction))


def test_bins_are_checked():
    with pytest.raises(ValueError, match="num_bins"):
        uniform_dequantization(1)
    with pytest.raises(ValueError, match="`num_bins`"):
        uniform_dequantization(32.0)
