"""A user's own folder of photographs (PNG or JPEG) as a super-resolution dataset."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image

from jcnf.data.patches import random_patches

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")



def image_paths(directory: str | os.PathLike, channels: int = 3,
                extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[str]:
    """The sorted paths of the images in `directory`, after checking the arguments.

    Raises:
      ValueError: `channels` is not 1 or 3, `directory` is not a folder, or it
        holds no file with one of `extensions` (case-insensitive).
    """
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3; got {channels!r}.")
    if not os.path.isdir(directory):
        raise ValueError(f"`directory` must be an existing folder of images; got {os.fspath(directory)!r}.")
    suffixes = tuple(e.lower() for e in extensions)
    names = sorted(n for n in os.listdir(directory) if n.lower().endswith(suffixes))
    if not names:
        raise ValueError(f"`directory` {os.fspath(directory)!r} holds no files ending in {list(suffixes)}.")
    return [os.path.join(directory, name) for name in names]

def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    mode = {1: "L", 3: "RGB"}[channels]
    return image if image.mode == mode else image.convert(mode)


def load_image_folder(directory: str | os.PathLike, channels: int = 3,
                      extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[np.ndarray]:
    """Reads every image file of `directory` (not recursive), sorted by name.

    Args:
      directory: a folder of PNG/JPEG files.
      channels: 3 (RGB; grey images are repeated) or 1 (grey; colour is converted).
      extensions: file endings to read (case-insensitive).

    Returns:
      A list of uint8 arrays [height, width, channels] (sizes may differ).
    """
    names = [os.path.basename(path) for path in image_paths(directory, channels, extensions)]
    images = []
    for name in names:
        with Image.open(os.path.join(directory, name)) as image:
            array = np.asarray(_to_channels(image, channels), np.uint8)
        images.append(array.reshape(*array.shape[:2], channels))
    return images


def folder_patches(directory: str | os.PathLike, patch_size: int, num_patches: int, seed: int = 0,
                   channels: int = 3) -> np.ndarray:
    """Random P x P patches from the images of a folder: uint8 [num_patches, P, P, channels]."""
    return random_patches(load_image_folder(directory, channels), patch_size, num_patches,
                          np.random.default_rng(seed))
