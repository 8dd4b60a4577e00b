"""Cutting photographs into square patches: random crops for training, a grid for evaluation."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jcnf._checks import check_int, describe


def _check_photos(images: Sequence[np.ndarray], patch_size: int) -> list[np.ndarray]:
    check_int("patch_size", patch_size)
    if len(images) == 0:
        raise ValueError("`images` must be a non-empty list of [height, width, channels] uint8 arrays.")
    images = [np.asarray(image) for image in images]
    channels = {image.shape[-1] if image.ndim == 3 else None for image in images}
    for i, image in enumerate(images):
        if image.ndim != 3 or image.dtype != np.uint8:
            raise ValueError(f"`images[{i}]` must be a uint8 array of shape [height, width, channels]; "
                             f"got {describe(image)}.")
        if image.shape[0] < patch_size or image.shape[1] < patch_size:
            raise ValueError(f"`images[{i}]` ({describe(image)}) is smaller than `patch_size`={patch_size}.")
    if len(channels) != 1:
        raise ValueError(f"All `images` must have the same number of channels; got {sorted(channels)}.")
    return images


def random_patches(images: Sequence[np.ndarray], patch_size: int, num_patches: int,
                   rng: np.random.Generator) -> np.ndarray:
    """`num_patches` square crops at uniformly random positions, images drawn in proportion to their area.

    Args:
      images: photographs, each uint8 [height, width, channels] (sizes may differ).
      patch_size: side P of the crops.
      num_patches: number of crops N.
      rng: numpy generator.

    Returns:
      uint8 [N, P, P, channels].
    """
    images = _check_photos(images, patch_size)
    check_int("num_patches", num_patches)
    # Weighting by the number of crop positions samples every position of
    # every photograph equally often.
    positions = np.array([(h - patch_size + 1) * (w - patch_size + 1) for h, w, _ in (i.shape for i in images)],
                         np.float64)
    which = rng.choice(len(images), size=num_patches, p=positions / positions.sum())
    out = np.empty((num_patches, patch_size, patch_size, images[0].shape[-1]), np.uint8)
    for index, image in enumerate(images):
        rows = np.flatnonzero(which == index)
        if rows.size == 0:
            continue
        top = rng.integers(0, image.shape[0] - patch_size + 1, rows.size)
        left = rng.integers(0, image.shape[1] - patch_size + 1, rows.size)
        windows = np.lib.stride_tricks.sliding_window_view(image, (patch_size, patch_size), axis=(0, 1))
        # windows[t, l] is [channels, P, P]: one gather per photograph, no per-pixel Python.
        out[rows] = np.moveaxis(windows[top, left], 1, -1)
    return out


def grid_patches(images: Sequence[np.ndarray], patch_size: int) -> np.ndarray:
    """Every non-overlapping P x P tile of every photograph (the remainder at the right and bottom is dropped).

    Returns:
      uint8 [N, P, P, channels], tiles in row-major order, photograph after photograph.
    """
    images = _check_photos(images, patch_size)
    tiles = []
    for image in images:
        rows, cols = image.shape[0] // patch_size, image.shape[1] // patch_size
        cropped = image[:rows * patch_size, :cols * patch_size]
        grid = cropped.reshape(rows, patch_size, cols, patch_size, -1).transpose(0, 2, 1, 3, 4)
        tiles.append(grid.reshape(rows * cols, patch_size, patch_size, -1))
    return np.concatenate(tiles)
