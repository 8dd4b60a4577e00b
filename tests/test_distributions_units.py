"""Tests for jcnf.distributions.units (bits per dimension), also re-exported by jcnf.metrics."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnf import distributions, metrics
from jcnf.distributions import units

pytestmark = pytest.mark.strict_dtypes


def test_bits_per_dim_matches_hand_computation():
    # CIFAR-sized example: 1000 nats over 32 * 32 * 3 = 3072 dims is
    # 1000 / (3072 * 0.6931471805599453) = 0.46962... bits/dim.
    log_prob = jnp.array([-1000.0, -2000.0], jnp.float32)
    expected = np.array([1000.0, 2000.0]) / (3072 * 0.6931471805599453)
    # float32 division: relative error a few times 2^-24.
    np.testing.assert_allclose(units.bits_per_dim(log_prob, 3072), expected, rtol=1e-6)
    np.testing.assert_allclose(units.nats_to_bits_per_dim(-log_prob, 3072), expected, rtol=1e-6)


def test_uniform_model_of_8_bit_data_costs_8_bits_per_dim():
    # A uniform density on [0, 1)^D has log-density 0; the offset alone must give log2(256) = 8.
    num_dims = 28 * 28
    offset = units.dequantization_offset(num_dims)
    assert offset == pytest.approx(-num_dims * math.log(256), rel=1e-15)  # Pure float64 arithmetic.
    np.testing.assert_allclose(units.bits_per_dim(jnp.float32(0.0) + offset, num_dims), 8.0, rtol=1e-6)
    assert units.dequantization_offset(num_dims, num_bins=32) == pytest.approx(-num_dims * math.log(32), rel=1e-15)


def test_bits_per_dim_under_jit():
    jitted = jax.jit(units.bits_per_dim, static_argnums=1)
    # One bit per dim: log p = -D ln 2. Tolerance: float32 rounding.
    np.testing.assert_allclose(jitted(jnp.array([-10 * math.log(2.0)]), 10), [1.0], rtol=1e-6)


@pytest.mark.parametrize("name", ["bits_per_dim", "dequantization_offset", "nats_to_bits_per_dim"])
def test_public_in_metrics_only(name):
    # One function with one public home, not copies that could drift apart.
    assert not hasattr(distributions, name)
    assert getattr(metrics, name) is getattr(units, name)
    assert getattr(metrics.likelihood, name) is getattr(units, name)


BAD_INPUTS = [
    ("num_dims", lambda: units.bits_per_dim(jnp.zeros(2), 0)),
    ("num_dims", lambda: units.nats_to_bits_per_dim(jnp.zeros(2), 3.0)),
    ("num_bins", lambda: units.dequantization_offset(10, num_bins=1)),
]


@pytest.mark.parametrize("argument, call", BAD_INPUTS, ids=[f"{i}-{arg}" for i, (arg, _) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_naming_the_argument(argument, call):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        call()
