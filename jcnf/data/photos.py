"""The embedded default data: photographs that ship inside scikit-image and scikit-learn.

No downloads: only files installed with the packages are read. The split is
by photograph, so no test patch ever comes from a photograph seen in training.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

# Colour photographs of natural scenes shipped in the packages' wheels
# (synthetic images, microscopy, astronomy and fundus pictures are left out).
TRAIN_PHOTOS = ("skimage:astronaut.png", "skimage:coffee.png", "skimage:rocket.jpg",
                "skimage:motorcycle_left.png", "sklearn:china.jpg")
TEST_PHOTOS = ("skimage:chelsea.png", "sklearn:flower.jpg")


def _photo_path(name: str) -> str:
    package, _, filename = name.partition(":")
    if package == "skimage":
        import skimage
        return os.path.join(os.path.dirname(skimage.__file__), "data", filename)
    if package == "sklearn":
        import sklearn.datasets
        return os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", filename)
    raise ValueError(f"Unknown photograph {name!r}: expected 'skimage:<file>' or 'sklearn:<file>'.")


def load_sample_photos(split: str) -> list[np.ndarray]:
    """The train or test photographs, each uint8 RGB [height, width, 3].

    Args:
      split: "train" (5 photographs) or "test" (2 photographs, never in train).
    """
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test'; got {split!r}.")
    photos = []
    for name in TRAIN_PHOTOS if split == "train" else TEST_PHOTOS:
        with Image.open(_photo_path(name)) as image:
            photos.append(np.asarray(image.convert("RGB"), np.uint8))
    return photos
