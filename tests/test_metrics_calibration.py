"""Tests for jcnf.metrics.calibration: ECE by hand and on synthetic data, the k-std coverage of posteriors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnf import metrics

pytestmark = pytest.mark.strict_dtypes


def test_expected_calibration_error_hand_case():
    # Bin [0.2, 0.3): four entries at 0.25, one positive -> |0.25 - 0.25| = 0.
    # Bin [0.9, 1.0]: four entries at 0.95, three positive -> |0.75 - 0.95| = 0.2, weight 4/8.
    # ECE = 0.5 * 0 + 0.5 * 0.2 = 0.1. The mask hides two entries that would change it.
    probs = np.array([0.25, 0.25, 0.25, 0.25, 0.95, 0.95, 0.95, 0.95, 0.55, 0.05])
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0, 0, 1])
    mask = np.array([True] * 8 + [False] * 2)
    # Float64 sums of eight numbers: rounding ~1e-16.
    assert metrics.expected_calibration_error(labels, probs, mask=mask) == pytest.approx(0.1, abs=1e-12)
    # Unmasked, the extra bins add 1/10 * 0.55 + 1/10 * 0.95, and the first two bins reweight to 4/10.
    expected = 0.4 * 0.0 + 0.4 * 0.2 + 0.1 * 0.55 + 0.1 * 0.95
    assert metrics.expected_calibration_error(labels, probs) == pytest.approx(expected, abs=1e-12)


def test_expected_calibration_error_of_calibrated_data_is_small():
    # Labels drawn as Bernoulli(p) are calibrated by construction, so the ECE
    # is sampling noise only: 2000 entries per bin give each bin's gap a std
    # <= sqrt(0.25 / 2000) = 0.011, an expected ECE ~0.8 * 0.009 ~ 0.007
    # (measured 0.0069) with std ~0.002; the bound 0.02 is ~6 std above.
    rng = np.random.default_rng(0)
    probs = rng.random(20_000)
    labels = rng.random(probs.shape) < probs
    assert metrics.expected_calibration_error(labels, probs) < 0.02
    # Over-confident copy of the same data, q = clip(2p - 0.5, 0, 1). Binned
    # analytically: the bins at q = 0 and q = 1 each hold 30% with a gap of
    # 0.1417 and the eight middle bins 5% each with gaps summing to 0.8, so
    # ECE = 2 * 0.3 * 0.1417 + 0.05 * 0.8 = 0.125 (measured 0.1207); the
    # tolerance is the noise bound above.
    overconfident = np.clip(2.0 * probs - 0.5, 0.0, 1.0)
    assert metrics.expected_calibration_error(labels, overconfident) == pytest.approx(0.125, abs=0.02)


def test_calibration_within_k_std_hand_case_and_gaussian():
    mean = jnp.zeros(4)
    std = jnp.ones(4)
    truth = jnp.array([0.5, 1.9, 2.1, -3.0])  # Inside, inside, outside, outside at k = 2.
    assert float(metrics.calibration_within_k_std(mean, std, truth, k=2.0)) == 0.5  # Exact count ratio.
    # Gaussian truth around the mean: the fraction is erf(2 / sqrt 2) = 0.9545;
    # with 100000 entries its standard error is 6.6e-4, tolerance ~7 of them.
    key_noise, key_std = jax.random.split(jax.random.key(0))
    std = jax.random.uniform(key_std, (100_000,), minval=0.5, maxval=2.0)
    truth = std * jax.random.normal(key_noise, (100_000,))
    fraction = jax.jit(metrics.calibration_within_k_std)(jnp.zeros_like(std), std, truth)
    assert float(fraction) == pytest.approx(math.erf(2.0 / math.sqrt(2.0)), abs=5e-3)


def test_posterior_coverage_hand_case():
    # Two samples -1, +1 per entry: mean 0, population std 1 everywhere. Truths at 0.5, 1.5, 2.5 and 3.5
    # std lie within 1, 2, 3 and no std count: coverage 1/4, 2/4, 3/4, exact count ratios.
    samples = jnp.stack([-jnp.ones((2, 2, 1)), jnp.ones((2, 2, 1))])
    truth = jnp.array([0.5, -1.5, 2.5, -3.5]).reshape(2, 2, 1)
    np.testing.assert_array_equal(np.asarray(metrics.posterior_coverage(samples, truth)), [0.25, 0.5, 0.75])
    np.testing.assert_array_equal(np.asarray(metrics.posterior_coverage(samples, truth, ks=(4.0,))), [1.0])


def test_posterior_coverage_of_a_calibrated_gaussian_posterior():
    # Truth and samples drawn from the same Gaussian per entry (shift and scale varying over entries):
    # the truth is mean + std * N(0, 1 + 1/S) relative to the sample mean, so coverage is
    # erf(k / sqrt(2 (1 + 1/S))) up to the sample std's own noise; S = 400 keeps that within 0.002
    # of 68.3/95.4/99.7%. 20000 entries give a binomial standard error <= 3.3e-3; tolerance 0.012.
    key_shift, key_scale, key_truth, key_samples = jax.random.split(jax.random.key(1), 4)
    shift = jax.random.normal(key_shift, (100, 200))
    scale = jax.random.uniform(key_scale, (100, 200), minval=0.1, maxval=3.0)
    truth = shift + scale * jax.random.normal(key_truth, (100, 200))
    samples = shift[None] + scale[None] * jax.random.normal(key_samples, (400, 100, 200))
    coverage = jax.jit(metrics.posterior_coverage)(samples, truth)
    expected = [math.erf(k / math.sqrt(2.0)) for k in (1.0, 2.0, 3.0)]
    np.testing.assert_allclose(np.asarray(coverage), expected, atol=0.012)
    # Samples half as spread as the truth's distribution: over-confident, 2-std coverage erf(1/sqrt 2) = 0.683.
    narrow = shift[None] + 0.5 * scale[None] * jax.random.normal(key_samples, (400, 100, 200))
    assert float(metrics.posterior_coverage(narrow, truth, ks=(2.0,))[0]) == pytest.approx(0.683, abs=0.012)


_PROBS = np.linspace(0.0, 1.0, 8)
_LABELS = np.array([0, 1] * 4)


def test_probabilities_passed_first_are_caught_as_non_binary_y_true():
    # The order before scikit-learn's was (probs, labels); such a call must not run silently.
    with pytest.raises(ValueError, match="`y_true` must hold only 0 and 1"):
        metrics.expected_calibration_error(_PROBS, _LABELS)


BAD_INPUTS = [
    ("y_prob", lambda: metrics.expected_calibration_error(_LABELS, _PROBS + 0.5)),
    ("num_bins", lambda: metrics.expected_calibration_error(_LABELS, _PROBS, num_bins=0)),
    ("mask", lambda: metrics.expected_calibration_error(_LABELS, _PROBS, mask=np.ones(3, bool))),
    ("samples_std", lambda: metrics.calibration_within_k_std(jnp.zeros(2), -jnp.ones(2), jnp.zeros(2))),
    ("truth", lambda: metrics.calibration_within_k_std(jnp.zeros(2), jnp.ones(2), jnp.zeros(3))),
    ("k", lambda: metrics.calibration_within_k_std(jnp.zeros(2), jnp.ones(2), jnp.zeros(2), k=-1.0)),
    ("samples", lambda: metrics.posterior_coverage(jnp.zeros((1, 3)), jnp.zeros(3))),
    ("truth", lambda: metrics.posterior_coverage(jnp.zeros((4, 3)), jnp.zeros(2))),
    ("ks", lambda: metrics.posterior_coverage(jnp.zeros((4, 3)), jnp.zeros(3), ks=())),
    ("k", lambda: metrics.posterior_coverage(jnp.zeros((4, 3)), jnp.zeros(3), ks=(0.0,))),
]


@pytest.mark.parametrize("argument, call", BAD_INPUTS, ids=[f"{i}-{arg}" for i, (arg, _) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_naming_the_argument(argument, call):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        call()
