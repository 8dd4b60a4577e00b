"""Tests for jcnf.metrics.images: PSNR and SSIM against scikit-image, SNR by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data as skdata
from skimage import metrics as skmetrics

from jcnf import metrics


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
                                                     channel_axis=-1) for a, b in zip(x, y, strict=False)])


@pytest.mark.parametrize("noise_std", [0.01, 0.05, 0.2])
def test_psnr_matches_skimage(noise_std):
    clean, noisy = _astronaut_pairs(noise_std=noise_std)
    expected = [skmetrics.peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(clean, noisy, strict=False)]
    ours = metrics.psnr(clean.astype(np.float32), noisy.astype(np.float32))
    # float32 MSE has relative error ~1e-6, i.e. 10 / ln 10 * 1e-6 ~ 4e-6 dB (measured <= 4.2e-6).
    np.testing.assert_allclose(ours, expected, atol=2e-5)


def test_psnr_with_data_range_255():
    clean, noisy = _astronaut_pairs()
    clean, noisy = 255.0 * clean, 255.0 * noisy
    expected = [skmetrics.peak_signal_noise_ratio(a, b, data_range=255.0) for a, b in zip(clean, noisy, strict=False)]
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


def test_snr_db_hand_case():
    # ||[3, 4]|| = 5; errors of norm 0.05 and 0.5 give ratios 100 and 10: 40 dB and 20 dB.
    reference = jnp.array([[3.0, 4.0], [3.0, 4.0]])
    estimate = reference + jnp.array([[0.05, 0.0], [0.0, -0.5]])
    # float32: 0.05 is stored with relative error ~1e-8, amplified by 20 / ln 10 -> ~1e-6 dB.
    np.testing.assert_allclose(metrics.snr_db(estimate, reference), [40.0, 20.0], atol=1e-4)


_IMAGES = np.zeros((2, 16, 16, 3), np.float32)

BAD_INPUTS = [
    ("x", lambda: metrics.psnr(_IMAGES[0], _IMAGES[0])),
    ("y", lambda: metrics.psnr(_IMAGES, _IMAGES[:, :8])),
    ("x", lambda: metrics.psnr(_IMAGES.astype(np.uint8), _IMAGES)),
    ("data_range", lambda: metrics.psnr(_IMAGES, _IMAGES, data_range=0.0)),
    ("x", lambda: metrics.ssim(_IMAGES[:, :8, :8], _IMAGES[:, :8, :8])),
    ("y", lambda: metrics.ssim(_IMAGES, _IMAGES[..., :1])),
    ("reference", lambda: metrics.snr_db(jnp.zeros((2, 3)), jnp.zeros((2, 4)))),
    ("estimate", lambda: metrics.snr_db(jnp.zeros(3), jnp.zeros(3))),
]


@pytest.mark.parametrize("argument, call", BAD_INPUTS, ids=[f"{i}-{arg}" for i, (arg, _) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_naming_the_argument(argument, call):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        call()


def test_mean_image_scores_leave_out_and_count_non_finite_images():
    clean, noisy = _astronaut_pairs(height=16, width=16)
    clean, noisy = clean.astype(np.float32), noisy.astype(np.float32)
    broken = noisy.copy()
    broken[1, 3, 4, 0] = np.nan
    broken[2, 0, 0, 2] = np.inf
    scores = jax.jit(metrics.mean_image_scores)(broken, clean)
    assert int(scores["non_finite"]) == 2
    kept = [0, 3]
    # The same float32 sums as the per-image metrics, averaged over two images.
    np.testing.assert_allclose(scores["psnr"], np.mean(metrics.psnr(noisy[kept], clean[kept])), rtol=1e-6)
    np.testing.assert_allclose(scores["ssim"], np.mean(metrics.ssim(noisy[kept], clean[kept])), rtol=1e-6)
    whole = metrics.mean_image_scores(noisy, clean)
    assert int(whole["non_finite"]) == 0
    np.testing.assert_allclose(whole["psnr"], np.mean(metrics.psnr(noisy, clean)), rtol=1e-6)
    with pytest.raises(ValueError, match="`y`"):
        metrics.mean_image_scores(noisy, clean[:2])
