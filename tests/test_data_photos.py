"""The embedded photographs: present without downloads, RGB, split by photograph."""


import numpy as np
import pytest

from jcnf.data import TEST_PHOTOS, TRAIN_PHOTOS, grid_patches, load_sample_photos


def test_split_by_photograph_and_loaded_as_rgb():
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    train, test = load_sample_photos("train"), load_sample_photos("test")
    assert len(train) == len(TRAIN_PHOTOS) and len(test) == len(TEST_PHOTOS)
    for photo in train + test:
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[-1] == 3
        assert min(photo.shape[:2]) >= 256
        assert photo.std() > 20  # a real photograph, not a blank placeholder
    # No test photograph's pixels appear among the training ones.
    train_bytes = {p.tobytes() for p in train}
    assert not any(p.tobytes() in train_bytes for p in test)
    assert len(grid_patches(test, 32)) > 300  # enough held-out 32x32 tiles


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_sample_photos("validation")
