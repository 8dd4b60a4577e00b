"""Synthetic fundus images: exact masks inside the FOV, vessels darker than background; the model context."""

import numpy as np
import pytest
from scipy import ndimage

from jcnf.data.fundus import fundus_context, random_crops, synthetic_fundus


def test_synthetic_fundus_shapes_masks_and_contrast():
    data = synthetic_fundus(np.random.default_rng(0), 4, 64)
    assert data["image"].shape == (4, 64, 64, 3) and data["image"].dtype == np.float32
    assert data["vessels"].shape == (4, 64, 64, 1) and data["fov"].dtype == bool
    assert set(np.unique(data["vessels"]).tolist()) == {0.0, 1.0}
    # Masks are zero outside the FOV and the image is black there.
    assert not np.any(data["vessels"][~data["fov"]])
    assert not np.any(data["image"][np.broadcast_to(~data["fov"], data["image"].shape)])
    fraction = data["vessels"][data["fov"]].mean()
    # DRIVE's vessels cover ~12% of the FOV; the generator aims at that order (5-25%).
    assert 0.05 < fraction < 0.25, fraction
    green, vessels, fov = data["image"][..., 1], data["vessels"][..., 0] > 0, data["fov"][..., 0]
    # Vessels darken the green channel: their mean is clearly (> 10%) below the background's.
    assert green[vessels].mean() < 0.9 * green[fov & ~vessels].mean()
    # Same seed, same images.
    again = synthetic_fundus(np.random.default_rng(0), 4, 64)
    np.testing.assert_array_equal(again["vessels"], data["vessels"])


def test_fundus_context_is_standardized_inside_fov_and_zero_outside():
    data = synthetic_fundus(np.random.default_rng(1), 2, 48)
    context = fundus_context(data["image"], data["fov"])
    assert context.shape == (2, 48, 48, 2) and context.dtype == np.float32
    for i in range(2):
        inside = data["fov"][i, ..., 0]
        # Standardized per image (float32 rounding only).
        assert abs(context[i, ..., 0][inside].mean()) < 1e-4
        assert abs(context[i, ..., 0][inside].std() - 1.0) < 1e-4
        assert not np.any(context[i, ..., 0][~inside])
        np.testing.assert_array_equal(context[i, ..., 1], inside.astype(np.float32))


def test_random_crops_take_the_same_window_from_every_array():
    rng = np.random.default_rng(2)
    image = np.arange(2 * 16 * 16, dtype=np.float32).reshape(2, 16, 16, 1)
    crops = random_crops(rng, {"a": image, "b": 2 * image}, 8, 5)
    assert crops["a"].shape == (5, 8, 8, 1)
    np.testing.assert_array_equal(crops["b"], 2 * crops["a"])


def test_random_crops_are_the_windows_at_the_drawn_places():
    image = np.arange(3 * 12 * 10 * 2, dtype=np.float32).reshape(3, 12, 10, 2)
    mask = image[..., 0] > 100   # no channel axis
    crops = random_crops(np.random.default_rng(4), {"image": image, "mask": mask}, 5, 9)
    # The draws, in random_crops' order: images, then rows, then columns.
    rng = np.random.default_rng(4)
    index, rows, cols = rng.integers(0, 3, 9), rng.integers(0, 8, 9), rng.integers(0, 6, 9)
    expected = np.stack([image[i, r:r + 5, c:c + 5] for i, r, c in zip(index, rows, cols, strict=False)])
    np.testing.assert_array_equal(crops["image"], expected)
    np.testing.assert_array_equal(crops["mask"], expected[..., 0] > 100)
    assert crops["mask"].dtype == bool and crops["image"].flags.c_contiguous


def test_bad_arguments_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="`size`"):
        synthetic_fundus(rng, 1, 8)
    with pytest.raises(ValueError, match="`num`"):
        synthetic_fundus(rng, 0)
    with pytest.raises(ValueError, match="`fov`"):
        fundus_context(np.zeros((1, 8, 8, 3)), np.ones((1, 8, 8)))
    with pytest.raises(ValueError, match="`image`"):
        fundus_context(np.zeros((1, 8, 8)), np.ones((1, 8, 8, 1)))
    with pytest.raises(ValueError, match="`crop`"):
        random_crops(rng, {"a": np.zeros((1, 8, 8, 1))}, 9, 1)
    with pytest.raises(ValueError, match="`num`"):
        random_crops(rng, {"a": np.zeros((1, 8, 8, 1))}, 4, -1)
    with pytest.raises(ValueError, match="`arrays`"):
        random_crops(rng, {}, 4, 1)


def _flat_disc_photograph(size: int = 64, factor: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A flat grey disc on black with one dark horizontal vessel, area-averaged from a finer rendering.

    Averaged as a resized photograph is, the disc's edge pixels blend with the black surround.

    Returns image [1, S, S, 3], FOV [1, S, S, 1] (coverage > 0.1, as one thresholds a real photograph), and
    the vessel's pixels [S, S].
    """
    fine = size * factor
    ys, xs = np.mgrid[0:fine, 0:fine] + 0.5
    disc = np.hypot(xs - fine / 2, ys - fine / 2) <= 0.45 * fine
    vessel = disc & (np.abs(ys - fine / 2) < factor)  # two pixels wide after downsampling
    green = np.where(disc, 0.5, 0.0) * np.where(vessel, 0.6, 1.0)
    coarse = lambda a: a.reshape(size, factor, size, factor).mean(axis=(1, 3))  # noqa: E731
    image = np.repeat(coarse(green)[None, ..., None], 3, axis=-1)
    return image, (coarse(disc.astype(float)) > 0.1)[None, ..., None], coarse(vessel.astype(float)) > 0.5


def test_fundus_context_has_no_edge_response_at_the_rim_of_a_flat_disc():
    image, fov, vessel = _flat_disc_photograph()
    normalized = fundus_context(image, fov)[0, ..., 0]
    inside = fov[0, ..., 0]
    rim = inside & (ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1] <= 3)
    flat = inside & ~ndimage.binary_dilation(vessel, iterations=3)
    # The vessel stands out by several standard deviations of the context...
    assert normalized[vessel & ~rim].max() < -2.0
    # ...while the edge pixels (up to 90% black in the average) read as background: every pixel of the
    # rim band lies within the range the flat interior spans (0.5 wide, the vessel's blur of the
    # background), give or take 0.05. Dividing by a blur of the dark edge put them ~5 below it.
    interior = normalized[flat & ~rim]
    edge = normalized[flat & rim]
    assert interior.min() - 0.05 < edge.min() and edge.max() < interior.max() + 0.05

def test_fundus_context_rejects_a_rim_outside_its_range():
    data = synthetic_fundus(np.random.default_rng(1), 1, 32)
    with pytest.raises(ValueError, match="rim"):
        fundus_context(data["image"], data["fov"], rim=0.6)
