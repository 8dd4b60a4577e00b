"""Tests for jcnf.metrics against hand computations, scikit-image and scikit-learn."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data as skdata
from skimage import metrics as skmetrics
from sklearn import metrics as skl

from jcnf import metrics

# Ranking metrics reduce exact integer counts to a few float64 divisions and
# sums, in a different order from scikit-learn's: agreement to a few ulp.
RANKING_ATOL = 1e-12


# --------------------------------------------------------------------------
# Bits per dimension.
# --------------------------------------------------------------------------


def test_bits_per_dim_matches_hand_computation():
    # CIFAR-sized example: 1000 nats over 32 * 32 * 3 = 3072 dims is
    # 1000 / (3072 * 0.6931471805599453) = 0.46962... bits/dim.
    log_prob = jnp.array([-1000.0, -2000.0], jnp.float32)
    expected = np.array([1000.0, 2000.0]) / (3072 * 0.6931471805599453)
    # float32 division: relative error a few times 2^-24.
    np.testing.assert_allclose(metrics.bits_per_dim(log_prob, 3072), expected, rtol=1e-6)
    np.testing.assert_allclose(metrics.nats_to_bits_per_dim(-log_prob, 3072), expected, rtol=1e-6)


def test_uniform_model_of_8_bit_data_costs_8_bits_per_dim():
    # A uniform density on [0, 1)^D has log-density 0; the offset alone must give log2(256) = 8.
    num_dims = 28 * 28
    offset = metrics.dequantization_offset(num_dims)
    assert offset == pytest.approx(-num_dims * math.log(256), rel=1e-15)  # Pure float64 arithmetic.
    np.testing.assert_allclose(metrics.bits_per_dim(jnp.float32(0.0) + offset, num_dims), 8.0, rtol=1e-6)
    assert metrics.dequantization_offset(num_dims, num_bins=32) == pytest.approx(-num_dims * math.log(32), rel=1e-15)


def test_bits_per_dim_under_jit():
    jitted = jax.jit(metrics.bits_per_dim, static_argnums=1)
    # One bit per dim: log p = -D ln 2. Tolerance: float32 rounding.
    np.testing.assert_allclose(jitted(jnp.array([-10 * math.log(2.0)]), 10), [1.0], rtol=1e-6)


# --------------------------------------------------------------------------
# PSNR and SSIM against scikit-image.
# --------------------------------------------------------------------------


def _astronaut_pairs(height=64, width=64, noise_std=0.05, seed=0):
    """Four crops of the astronaut image in [0, 1] and noisy, clipped copies, float64."""
    image = skdata.astronaut().astype(np.float64) / 255.0
    corners = [(0, 0), (100, 200), (300, 50), (400, 400)]
    clean = np.stack([image[i:i + height, j:j + width] for i, j in corners])
    noise = noise_std * np.random.default_rng(seed).standard_normal(clean.shape)
    return clean, np.clip(clean + noise, 0.0, 1.0)


def _skimage_ssim(x, y, data_range=1.0):
    return np.array([skmetrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                                     use_sample_covariance=False, data_range=data_range,
                                                     channel_axis=-1) for a, b in zip(x, y)])


@pytest.mark.parametrize("noise_std", [0.01, 0.05, 0.2])
def test_psnr_matches_skimage(noise_std):
    clean, noisy = _astronaut_pairs(noise_std=noise_std)
    expected = [skmetrics.peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(clean, noisy)]
    ours = metrics.psnr(clean.astype(np.float32), noisy.astype(np.float32))
    # float32 MSE has relative error ~1e-6, i.e. 10 / ln 10 * 1e-6 ~ 4e-6 dB (measured <= 4.2e-6).
    np.testing.assert_allclose(ours, expected, atol=2e-5)


def test_psnr_with_data_range_255():
    clean, noisy = _astronaut_pairs()
    clean, noisy = 255.0 * clean, 255.0 * noisy
    expected = [skmetrics.peak_signal_noise_ratio(a, b, data_range=255.0) for a, b in zip(clean, noisy)]
    np.testing.assert_allclose(metrics.psnr(clean.astype(np.float32), noisy.astype(np.float32), 255.0),
                               expected, atol=2e-5)  # Same float32 bound as above.


@pytest.mark.parametrize("noise_std", [0.01, 0.05, 0.2])
def test_ssim_matches_skimage_in_float32(noise_std):
    clean, noisy = _astronaut_pairs(noise_std=noise_std)
    ours = metrics.ssim(clean.astype(np.float32), noisy.astype(np.float32))
    # float32 sums of 11 x 11 windows against scikit-image's float64: measured
    # error <= 2.4e-7 on these crops; 2e-6 leaves room for other backends.
    np.testing.assert_allclose(ours, _skimage_ssim(clean, noisy), atol=2e-6)


def test_ssim_matches_skimage_in_float64_on_odd_shapes():
    # Non-square, grayscale, data range 255: in float64 the two must agree to
    # rounding (measured ~1e-15), which shows the window, constants and border
    # handling are the same, not just close.
    clean, noisy = _astronaut_pairs(height=23, width=40, noise_std=0.1)
    clean, noisy = 255.0 * clean[..., :1], 255.0 * noisy[..., :1]
    with jax.enable_x64(True):
        ours = metrics.ssim(jnp.asarray(clean), jnp.asarray(noisy), data_range=255.0)
        assert ours.dtype == jnp.float64
    np.testing.assert_allclose(ours, _skimage_ssim(clean, noisy, data_range=255.0), atol=1e-12)


def test_ssim_of_identical_images_is_one_and_jits():
    clean, _ = _astronaut_pairs()
    clean = jnp.asarray(clean, jnp.float32)
    # Luminance and structure terms are x/x exactly for equal inputs, up to float32 rounding.
    np.testing.assert_allclose(jax.jit(metrics.ssim)(clean, clean), np.ones(4), atol=1e-6)


# --------------------------------------------------------------------------
# Ranking metrics against scikit-learn.
# --------------------------------------------------------------------------


def _segmentation_case(seed, with_mask):
    """Scores with ties (rounded to 2 decimals) correlated with labels, and an optional field of view."""
    rng = np.random.default_rng(seed)
    labels = rng.random((2, 24, 24)) < 0.3
    scores = np.round(np.clip(0.3 * labels + 0.7 * rng.random(labels.shape), 0.0, 1.0), 2)
    mask = rng.random(labels.shape) < 0.6 if with_mask else None
    selected = (scores[mask], labels[mask]) if with_mask else (scores.ravel(), labels.ravel())
    return scores, labels, mask, selected


CASES = [(seed, with_mask) for seed in (0, 1) for with_mask in (False, True)]


@pytest.mark.parametrize("seed, with_mask", CASES)
def test_precision_recall_curve_matches_sklearn(seed, with_mask):
    scores, labels, mask, (sel_scores, sel_labels) = _segmentation_case(seed, with_mask)
    precision, recall, thresholds = metrics.precision_recall_curve(scores, labels, mask)
    sk_precision, sk_recall, sk_thresholds = skl.precision_recall_curve(sel_labels, sel_scores)
    np.testing.assert_allclose(thresholds, sk_thresholds, atol=0)  # Both are the observed scores.
    np.testing.assert_allclose(precision, sk_precision, atol=RANKING_ATOL)
    np.testing.assert_allclose(recall, sk_recall, atol=RANKING_ATOL)


@pytest.mark.parametrize("seed, with_mask", CASES)
def test_average_precision_and_roc_auc_match_sklearn(seed, with_mask):
    scores, labels, mask, (sel_scores, sel_labels) = _segmentation_case(seed, with_mask)
    assert metrics.average_precision(scores, labels, mask) == pytest.approx(
        skl.average_precision_score(sel_labels, sel_scores), abs=RANKING_ATOL)
    assert metrics.roc_auc(scores, labels, mask) == pytest.approx(
        skl.roc_auc_score(sel_labels, sel_scores), abs=RANKING_ATOL)


@pytest.mark.parametrize("seed, with_mask", CASES)
def test_max_f1_matches_brute_force_sklearn(seed, with_mask):
    scores, labels, mask, (sel_scores, sel_labels) = _segmentation_case(seed, with_mask)
    candidates = np.unique(sel_scores)[::-1]  # Highest first, so argmax picks the highest on ties.
    f1s = [skl.f1_score(sel_labels, sel_scores >= t) for t in candidates]
    best_f1, threshold = metrics.max_f1(scores, labels, mask)
    assert best_f1 == pytest.approx(max(f1s), abs=RANKING_ATOL)
    assert threshold == candidates[int(np.argmax(f1s))]  # An observed score, compared exactly.


@pytest.mark.parametrize("seed, with_mask", CASES)
def test_precision_recall_f1_matches_sklearn(seed, with_mask):
    scores, labels, mask, (sel_scores, sel_labels) = _segmentation_case(seed, with_mask)
    ours = metrics.precision_recall_f1((scores >= 0.5).astype(np.int32), labels.astype(np.int32), mask)
    predicted = sel_scores >= 0.5
    expected = (skl.precision_score(sel_labels, predicted), skl.recall_score(sel_labels, predicted),
                skl.f1_score(sel_labels, predicted))
    np.testing.assert_allclose(ours, expected, atol=RANKING_ATOL)


def test_precision_recall_f1_with_no_predicted_positives_is_zero():
    # Precision is 0/0 here; the documented convention (and sklearn's default) reports 0.
    labels = np.array([1, 0, 1, 0])
    assert metrics.precision_recall_f1(np.zeros(4, bool), labels) == (0.0, 0.0, 0.0)
    assert metrics.precision_recall_f1(np.array([1, 0, 0, 0]), labels) == pytest.approx((1.0, 0.5, 2 / 3), abs=1e-15)


def test_roc_auc_with_ties_counts_half():
    # One positive and one negative with equal scores: P(pos > neg) + 0.5 P(tie) = 0.5 exactly.
    assert metrics.roc_auc(np.array([0.4, 0.4]), np.array([1, 0])) == pytest.approx(0.5, abs=1e-15)


# --------------------------------------------------------------------------
# Calibration.
# --------------------------------------------------------------------------


def test_expected_calibration_error_hand_case():
    # Bin [0.2, 0.3): four entries at 0.25, one positive -> |0.25 - 0.25| = 0.
    # Bin [0.9, 1.0]: four entries at 0.95, three positive -> |0.75 - 0.95| = 0.2, weight 4/8.
    # ECE = 0.5 * 0 + 0.5 * 0.2 = 0.1. The mask hides two entries that would change it.
    probs = np.array([0.25, 0.25, 0.25, 0.25, 0.95, 0.95, 0.95, 0.95, 0.55, 0.05])
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0, 0, 1])
    mask = np.array([True] * 8 + [False] * 2)
    # Float64 sums of eight numbers: rounding ~1e-16.
    assert metrics.expected_calibration_error(probs, labels, mask=mask) == pytest.approx(0.1, abs=1e-12)
    # Unmasked, the extra bins add 1/10 * 0.55 + 1/10 * 0.95, and the first two bins reweight to 4/10.
    expected = 0.4 * 0.0 + 0.4 * 0.2 + 0.1 * 0.55 + 0.1 * 0.95
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx(expected, abs=1e-12)


def test_expected_calibration_error_of_calibrated_data_is_small():
    # Labels drawn as Bernoulli(p) are calibrated by construction, so the ECE
    # is sampling noise only: 2000 entries per bin give each bin's gap a std
    # <= sqrt(0.25 / 2000) = 0.011, an expected ECE ~0.8 * 0.009 ~ 0.007
    # (measured 0.0069) with std ~0.002; the bound 0.02 is ~6 std above.
    rng = np.random.default_rng(0)
    probs = rng.random(20_000)
    labels = rng.random(probs.shape) < probs
    assert metrics.expected_calibration_error(probs, labels) < 0.02
    # Over-confident copy of the same data, q = clip(2p - 0.5, 0, 1). Binned
    # analytically: the bins at q = 0 and q = 1 each hold 30% with a gap of
    # 0.1417 and the eight middle bins 5% each with gaps summing to 0.8, so
    # ECE = 2 * 0.3 * 0.1417 + 0.05 * 0.8 = 0.125 (measured 0.1207); the
    # tolerance is the noise bound above.
    overconfident = np.clip(2.0 * probs - 0.5, 0.0, 1.0)
    assert metrics.expected_calibration_error(overconfident, labels) == pytest.approx(0.125, abs=0.02)


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


# --------------------------------------------------------------------------
# SNR.
# --------------------------------------------------------------------------


def test_snr_db_hand_case():
    # ||[3, 4]|| = 5; errors of norm 0.05 and 0.5 give ratios 100 and 10: 40 dB and 20 dB.
    reference = jnp.array([[3.0, 4.0], [3.0, 4.0]])
    estimate = reference + jnp.array([[0.05, 0.0], [0.0, -0.5]])
    # float32: 0.05 is stored with relative error ~1e-8, amplified by 20 / ln 10 -> ~1e-6 dB.
    np.testing.assert_allclose(metrics.snr_db(estimate, reference), [40.0, 20.0], atol=1e-4)


# --------------------------------------------------------------------------
# Input validation.
# --------------------------------------------------------------------------

_IMAGES = np.zeros((2, 16, 16, 3), np.float32)
_SCORES = np.linspace(0.0, 1.0, 8)
_LABELS = np.array([0, 1] * 4)

BAD_INPUTS = [
    ("num_dims", lambda: metrics.bits_per_dim(jnp.zeros(2), 0)),
    ("num_dims", lambda: metrics.nats_to_bits_per_dim(jnp.zeros(2), 3.0)),
    ("num_bins", lambda: metrics.dequantization_offset(10, num_bins=1)),
    ("x", lambda: metrics.psnr(_IMAGES[0], _IMAGES[0])),
    ("y", lambda: metrics.psnr(_IMAGES, _IMAGES[:, :8])),
    ("x", lambda: metrics.psnr(_IMAGES.astype(np.uint8), _IMAGES)),
    ("data_range", lambda: metrics.psnr(_IMAGES, _IMAGES, data_range=0.0)),
    ("x", lambda: metrics.ssim(_IMAGES[:, :8, :8], _IMAGES[:, :8, :8])),
    ("y", lambda: metrics.ssim(_IMAGES, _IMAGES[..., :1])),
    ("reference", lambda: metrics.snr_db(jnp.zeros((2, 3)), jnp.zeros((2, 4)))),
    ("estimate", lambda: metrics.snr_db(jnp.zeros(3), jnp.zeros(3))),
    ("labels", lambda: metrics.precision_recall_curve(_SCORES, _LABELS[:4])),
    ("labels", lambda: metrics.average_precision(_SCORES, 2 * _LABELS)),
    ("labels", lambda: metrics.max_f1(_SCORES, np.zeros(8))),
    ("labels", lambda: metrics.roc_auc(_SCORES, np.ones(8))),
    ("scores", lambda: metrics.roc_auc(np.append(_SCORES[:7], np.nan), _LABELS)),
    ("mask", lambda: metrics.roc_auc(_SCORES, _LABELS, mask=np.ones(8, np.int32))),
    ("mask", lambda: metrics.roc_auc(_SCORES, _LABELS, mask=np.zeros(8, bool))),
    ("pred_binary", lambda: metrics.precision_recall_f1(_SCORES, _LABELS)),
    ("probs", lambda: metrics.expected_calibration_error(_SCORES + 0.5, _LABELS)),
    ("num_bins", lambda: metrics.expected_calibration_error(_SCORES, _LABELS, num_bins=0)),
    ("samples_std", lambda: metrics.calibration_within_k_std(jnp.zeros(2), -jnp.ones(2), jnp.zeros(2))),
    ("truth", lambda: metrics.calibration_within_k_std(jnp.zeros(2), jnp.ones(2), jnp.zeros(3))),
    ("k", lambda: metrics.calibration_within_k_std(jnp.zeros(2), jnp.ones(2), jnp.zeros(2), k=-1.0)),
]


@pytest.mark.parametrize("argument, call", BAD_INPUTS, ids=[f"{i}-{arg}" for i, (arg, _) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_naming_the_argument(argument, call):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        call()
