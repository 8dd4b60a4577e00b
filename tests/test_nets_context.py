"""jcnf.nets.context: the context at the value's resolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnf.nets import resize_context


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
