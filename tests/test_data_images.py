"""Image checks, 8-bit scaling, area downsampling, bicubic upsampling, pairs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.transform import downscale_local_mean

from jcnf.data import area_downsample, bicubic_upsample, check_images, make_pairs, quantize, to_unit_interval


def test_area_downsample_matches_scikit_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 8, 12, 3)).astype(np.float32) / 256
    for factor in (2, 4):
        expected = np.stack([downscale_local_mean(image, (factor, factor, 1)) for image in images])
        # float32 means of 4 or 16 values in [0, 1).
        np.testing.assert_allclose(np.asarray(area_downsample(images, factor)), expected, atol=1e-6)


def test_pairs_from_uint8_and_float_agree():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    from_uint8 = jax.jit(lambda x: make_pairs(x, 2))(pixels)
    from_float = make_pairs(to_unit_interval(pixels), 2)
    np.testing.assert_array_equal(np.asarray(from_uint8["value"]), pixels / np.float32(256))
    assert from_uint8["context"].shape == (3, 4, 4, 3)
    # Same float32 operations on the same values.
    np.testing.assert_allclose(np.asarray(from_uint8["context"]), np.asarray(from_float["context"]), atol=1e-7)


def test_bicubic_upsample_reproduces_smooth_images_and_stays_in_range():
    # A linear ramp is reproduced exactly by a cubic kernel away from the border.
    ramp = np.tile(np.linspace(0.2, 0.6, 16, dtype=np.float32), (16, 1))[None, :, :, None]
    up = np.asarray(bicubic_upsample(jnp.asarray(area_downsample(ramp, 2)), 2))
    assert up.shape == (1, 16, 16, 1)
    # Away from the border (the kernel spans two low-res pixels, 4 high-res ones)
    # the ramp is recovered to float32 rounding.
    np.testing.assert_allclose(up[0, 4:-4, 4:-4, 0], ramp[0, 4:-4, 4:-4, 0], atol=1e-5)
    step = np.zeros((1, 4, 4, 1), np.float32)
    step[..., 2:, :] = 255 / 256  # overshoot at a sharp edge is clipped
    up = np.asarray(bicubic_upsample(step, 4))
    assert up.min() >= 0.0 and up.max() <= 255 / 256


def test_quantize_puts_samples_in_their_bins():
    x = jnp.array([-0.1, 0.0, 0.00195, 0.5 + 1e-4, 0.99999, 1.3])
    np.testing.assert_array_equal(np.asarray(quantize(x)) * 256, [0, 0, 0, 128, 255, 255])
    with pytest.raises(ValueError, match="`num_bins`"):
        quantize(x, 0)


def test_wrong_shapes_and_ranges_raise():
    with pytest.raises(ValueError, match=r"`images` must have shape \[batch, height, width, channels\]"):
        check_images("images", np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        check_images("images", np.full((1, 4, 4, 3), 255.0, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        check_images("images", np.full((1, 4, 4, 3), -0.5, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        check_images("images", np.full((1, 4, 4, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="uint8"):
        check_images("images", np.zeros((1, 4, 4, 3), np.int32))
    with pytest.raises(ValueError, match="3 channels"):
        check_images("images", np.zeros((1, 4, 4, 1), np.uint8), channels=3)
    with pytest.raises(ValueError, match="divisible by `factor`=4"):
        area_downsample(np.zeros((1, 6, 6, 3), np.float32), 4)
    with pytest.raises(ValueError, match="factor"):
        make_pairs(np.zeros((1, 4, 4, 3), np.float32), 0)
    with pytest.raises(ValueError, match="`value`"):
        make_pairs(np.full((1, 4, 4, 3), 2.0, np.float32), 2)
