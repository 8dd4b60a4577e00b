"""jcnf.nets.context: the context at the value's resolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnf.nets import backprojected_upsample, resize_context, upsample_context


def test_image_context_is_upsampled_by_nearest_neighbour():
    context = jnp.arange(2 * 2 * 3 * 5, dtype=jnp.float32).reshape(2, 2, 3, 5)
    resized = resize_context(context, (2, 4, 6, 1))
    assert resized.shape == (2, 4, 6, 5) and resized.dtype == context.dtype
    # Each low-resolution pixel fills its 2x2 block exactly (values are copied, not interpolated).
    np.testing.assert_array_equal(resized, jnp.repeat(jnp.repeat(context, 2, axis=1), 2, axis=2))


def test_context_at_the_value_resolution_is_returned_unchanged():
    context = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 4, 2))
    assert resize_context(context, (3, 4, 4)) is context


def test_vector_context_is_broadcast_to_every_position():
    context = jax.random.normal(jax.random.PRNGKey(0), (2, 3))
    resized = resize_context(context, (2, 4, 5, 1))
    assert resized.shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(resized[:, 3, 1], context)


def test_works_under_jit():
    context = jax.random.normal(jax.random.PRNGKey(0), (2, 2, 2, 1))
    jitted = jax.jit(lambda c: resize_context(c, (2, 4, 4)))(context)
    np.testing.assert_array_equal(jitted, resize_context(context, (2, 4, 4)))


def test_bad_context_raises_naming_the_argument_and_shape():
    # jax.image.resize alone would stretch a batch of 1 over the value's 4 items.
    with pytest.raises(ValueError, match=r"`context` must have shape \[4, h, w, c\].*got shape \(1, 2, 2, 1\)"):
        resize_context(jnp.zeros((1, 2, 2, 1)), (4, 4, 4, 1))
    with pytest.raises(ValueError, match=r"`low_res` must have shape \[2, h, w, c\] or \[2, c\].*\(2, 2, 2\)"):
        resize_context(jnp.zeros((2, 2, 2)), (2, 4, 4, 1), name="low_res")


def _block_means(image, factor):
    """Area downsampling in float64, independent of the library's."""
    image = np.asarray(image, np.float64)
    batch, height, width, channels = image.shape
    return image.reshape(batch, height // factor, factor, width // factor, factor, channels).mean(axis=(2, 4))


def _smooth_image(size=16):
    y, x = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    image = 0.5 + 0.3 * np.sin(2 * np.pi * x) * np.cos(np.pi * y)
    return jnp.asarray(np.stack([image, 1 - image], -1)[None], jnp.float32)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_backprojected_upsampling_keeps_every_block_mean(factor):
    low = jax.random.uniform(jax.random.PRNGKey(factor), (2, 3, 5, 2))
    up = backprojected_upsample(low, (2, 3 * factor, 5 * factor, 2))
    assert up.shape == (2, 3 * factor, 5 * factor, 2) and up.dtype == low.dtype
    # Exact in real arithmetic; float32 rounding of values of order 1 is ~1e-7.
    np.testing.assert_allclose(_block_means(up, factor), np.asarray(low), atol=1e-5)
    # Plain bicubic does not keep them: the back-projection step is what does.
    bicubic = jax.image.resize(low, up.shape, "bicubic")
    assert np.max(np.abs(_block_means(bicubic, factor) - np.asarray(low))) > 1e-3


@pytest.mark.parametrize("factor", [2, 4])
def test_backprojected_upsampling_of_a_smooth_image_beats_nearest_neighbour(factor):
    image = _smooth_image()
    low = jnp.asarray(_block_means(image, factor), jnp.float32)
    error = lambda up: float(jnp.sqrt(jnp.mean((up - image) ** 2)))  # noqa: E731
    sharp, nearest = error(upsample_context(low, image.shape)), error(upsample_context(low, image.shape, "nearest"))
    # On this image the root-mean-square errors are ~0.013 vs ~0.036 (r=2) and
    # ~0.053 vs ~0.078 (r=4); nearest neighbour's blocks are a step function.
    assert sharp < 0.8 * nearest


def test_upsampling_choices_and_identity_at_full_resolution():
    low = jax.random.uniform(jax.random.PRNGKey(0), (2, 2, 3, 1))
    np.testing.assert_array_equal(upsample_context(low, (2, 4, 6), "nearest"), resize_context(low, (2, 4, 6)))
    np.testing.assert_array_equal(upsample_context(low, (2, 4, 6)), backprojected_upsample(low, (2, 4, 6)))
    assert backprojected_upsample(low, (2, 2, 3)) is low
    jitted = jax.jit(lambda c: upsample_context(c, (2, 4, 6)))(low)
    # Same float32 operations; XLA may fuse them in another order.
    np.testing.assert_allclose(jitted, upsample_context(low, (2, 4, 6)), atol=1e-6)


def test_bad_upsampling_arguments_raise_naming_them():
    low = jnp.zeros((2, 2, 2, 1))
    with pytest.raises(ValueError, match=r"`skip` must be one of \('backprojected', 'nearest'\); got 'bilinear'"):
        upsample_context(low, (2, 4, 4), "bilinear")
    for skip in ("backprojected", "nearest"):
        # A factor of 2 in height but 3 in width, a wrong batch size, a vector.
        for bad in (jnp.zeros((2, 2, 2, 1)), jnp.zeros((1, 2, 3, 1)), jnp.zeros((2, 3))):
            with pytest.raises(ValueError, match=r"`low_res` must have shape \[2, 4/r, 6/r, c\]"):
                upsample_context(bad, (2, 4, 6), skip, name="low_res")
