"""Random and grid patches of photographs of different sizes."""

import numpy as np
import pytest

from jcnf.data import grid_patches, random_patches


def _photos():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)]


def test_random_patches_are_crops_of_the_photos():
    photos = _photos()
    patches = random_patches(photos, 8, 200, np.random.default_rng(1))
    assert patches.shape == (200, 8, 8, 3) and patches.dtype == np.uint8
    windows = [np.lib.stride_tricks.sliding_window_view(p, (8, 8), axis=(0, 1)) for p in photos]
    crops = {np.ascontiguousarray(np.moveaxis(w[i, j], 0, -1)).tobytes()
             for w in windows for i in range(w.shape[0]) for j in range(w.shape[1])}
    assert all(patch.tobytes() in crops for patch in patches)
    # Photos are drawn in proportion to their crop positions: 13*23 = 299 against 2*2 = 4.
    from_small = sum(patch.tobytes() in {np.ascontiguousarray(np.moveaxis(windows[1][i, j], 0, -1)).tobytes()
                                         for i in range(2) for j in range(2)} for patch in patches)
    assert from_small < 15  # expected 200 * 4 / 303 ~ 2.6


def test_grid_patches_tile_each_photo():
    photos = _photos()
    tiles = grid_patches(photos, 8)
    assert tiles.shape == (2 * 3 + 1, 8, 8, 3)
    np.testing.assert_array_equal(tiles[4], photos[0][8:16, 8:16])
    np.testing.assert_array_equal(tiles[6], photos[1][:8, :8])


def test_bad_photos_raise():
    photos = _photos()
    with pytest.raises(ValueError, match=r"`images\[1\]`.*smaller than `patch_size`=10"):
        grid_patches(photos, 10)
    with pytest.raises(ValueError, match=r"`images\[0\]` must be a uint8"):
        grid_patches([photos[0].astype(np.float32)], 8)
    with pytest.raises(ValueError, match="same number of channels"):
        grid_patches([photos[0], photos[1][..., :1]], 8)
    with pytest.raises(ValueError, match="num_patches"):
        random_patches(photos, 8, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="`num_patches`"):
        random_patches(photos, 8, 2.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="non-empty"):
        random_patches([], 8, 1, np.random.default_rng(0))
