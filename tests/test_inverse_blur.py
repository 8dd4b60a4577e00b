"""jcnf.inverse.blur: Gaussian blur and decimation against scipy, shapes, and a jit-stable structure."""

import jax
import numpy as np
import pytest
from _operators import OPERATORS, unknowns

from jcnf import inverse as ops


def test_blur_downsample_jit_cache_is_shared_across_instances():
    # Static parts compare equal for equal arguments, so a jitted loss taking
    # the operator as an argument does not recompile for a rebuilt operator.
    first = ops.blur_downsample((16, 16, 1), factor=4, sigma=1.0)
    second = ops.blur_downsample((16, 16, 1), factor=4, sigma=1.0)
    assert jax.tree.structure(first) == jax.tree.structure(second)



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
    images = unknowns(operator, 15)
    ours = np.asarray(operator.apply(images))
    for image, result in zip(np.asarray(images, np.float64), ours, strict=False):
        # scipy's zero-padded ("constant") Gaussian filter with the same 4-sigma
        # truncation, over height and width only.
        sigmas = (sigma, sigma) + (0.0,) * (image.ndim - 2)
        reference = ndimage.gaussian_filter(image, sigmas, mode="constant", truncate=4.0)[::factor, ::factor]
        np.testing.assert_allclose(result, reference, atol=1e-5)  # float32 sums of O(1) terms.


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match=r"`factor`"):
        ops.blur_downsample((8, 8), factor=0, sigma=1.0)
    with pytest.raises(ValueError, match=r"`factor`"):
        ops.blur_downsample((8, 8), factor=2.0, sigma=1.0)
    with pytest.raises(ValueError, match=r"`sigma`"):
        ops.blur_downsample((8, 8), factor=2, sigma=-1.0)
