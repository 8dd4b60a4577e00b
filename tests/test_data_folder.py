"""A folder of generated PNG and JPEG files read as a dataset."""

import numpy as np
import pytest
from PIL import Image

from jcnf.data import folder_patches, load_image_folder


def _write_folder(path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    smooth = np.repeat(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], 32, 0).repeat(3, -1)
    Image.fromarray(rgb).save(path / "a.png")
    Image.fromarray(grey).save(path / "b.PNG")
    Image.fromarray(smooth).save(path / "c.jpg", quality=95)
    (path / "notes.txt").write_text("not an image")
    return rgb, grey, smooth


def test_reads_png_and_jpeg_in_name_order(tmp_path):
    rgb, grey, smooth = _write_folder(tmp_path)
    images = load_image_folder(tmp_path)
    assert [image.shape for image in images] == [(24, 20, 3), (16, 16, 3), (32, 32, 3)]
    np.testing.assert_array_equal(images[0], rgb)  # PNG is lossless
    np.testing.assert_array_equal(images[1], np.repeat(grey[..., None], 3, -1))
    # JPEG at quality 95 on a smooth ramp: a few levels of compression error.
    assert np.abs(images[2].astype(int) - smooth).max() <= 8
    grey_images = load_image_folder(tmp_path, channels=1)
    assert grey_images[1].shape == (16, 16, 1)
    np.testing.assert_array_equal(grey_images[1][..., 0], grey)


def test_folder_patches(tmp_path):
    _write_folder(tmp_path)
    patches = folder_patches(tmp_path, 16, 10, seed=3)
    assert patches.shape == (10, 16, 16, 3) and patches.dtype == np.uint8
    np.testing.assert_array_equal(patches, folder_patches(tmp_path, 16, 10, seed=3))  # seeded


def test_bad_folders(tmp_path):
    with pytest.raises(ValueError, match="existing folder"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no files ending"):
        load_image_folder(tmp_path)
    _write_folder(tmp_path)
    with pytest.raises(ValueError, match="channels"):
        load_image_folder(tmp_path, channels=2)
    with pytest.raises(ValueError, match="smaller than `patch_size`=20"):
        folder_patches(tmp_path, 20, 4)
