"""Seismic images: a generator of seismic-like sections and loaders for the user's own data.

The generator draws layered reflectivity (sparse reflectors of random
strength), bends the layers by smooth folds, offsets them across a fault, and
convolves each trace with a Ricker wavelet, which is what a migrated
seismic section of layered sediments looks like to first order. Two
"families" differ slightly (fold amplitude and wavelength, wavelet peak
frequency, fault throw, reflector density), playing the roles of the
low-fidelity training set and the shifted high-fidelity target of
Siahkoohi et al. (2021).

Images are [N, height, width, 1] float32, depth down the rows; `whiten`
brings each to zero mean and unit standard deviation, as in the paper.

Loaders: `load_seismic_folder` reads a folder of .npy arrays (2D sections or
3D volumes sliced along their first axis); `load_segy` reads a SEG-Y file
through the optional `segyio` package (the `seismic` extra).
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
from typing import Optional, Union

import numpy as np

from jcnf._checks import check_int, check_int_pair


@dataclasses.dataclass(frozen=True)
class SeismicFamily:
    """Parameters of one family of synthetic sections (lengths in pixels at size 32; they scale with size).

    Attributes:
      reflectors_per_depth: mean number of reflectors per pixel of depth.
      fold_amplitude: (min, max) amplitude of the sinusoidal folds.
      fold_wavelength: (min, max) horizontal wavelength of the folds.
      max_dip: largest layer dip, depth pixels per width pixel.
      peak_frequency: Ricker peak frequency, cycles per depth pixel.
      fault_probability: chance that an image has a fault.
      fault_throw: (min, max) vertical offset across a fault.
    """

    reflectors_per_depth: float
    fold_amplitude: tuple[float, float]
    fold_wavelength: tuple[float, float]
    max_dip: float
    peak_frequency: float
    fault_probability: float
    fault_throw: tuple[float, float]


FAMILIES = {
    # Low fidelity: gentler folds, a slightly higher-frequency wavelet.
    "low": SeismicFamily(reflectors_per_depth=0.35, fold_amplitude=(0.5, 2.5), fold_wavelength=(24.0, 48.0),
                         max_dip=0.15, peak_frequency=0.16, fault_probability=0.5, fault_throw=(1.0, 4.0)),
    # High fidelity: stronger, tighter folds, lower frequency, larger throws.
    "high": SeismicFamily(reflectors_per_depth=0.3, fold_amplitude=(1.5, 4.0), fold_wavelength=(16.0, 36.0),
                          max_dip=0.25, peak_frequency=0.13, fault_probability=0.7, fault_throw=(2.0, 6.0)),
}

_REFERENCE_SIZE = 32


def ricker(t: np.ndarray, peak_frequency: float) -> np.ndarray:
    """The Ricker (Mexican-hat) wavelet (1 - 2 (pi f t)^2) exp(-(pi f t)^2), peak 1 at t = 0."""
    arg = (math.pi * peak_frequency * t) ** 2
    return (1.0 - 2.0 * arg) * np.exp(-arg)


def synthetic_seismic_images(seed: Union[int, np.random.Generator], num: int, size: Union[int, tuple[int, int]] = 32,
                             family: Union[str, SeismicFamily] = "low") -> np.ndarray:
    """Draws seismic-like sections: folded, faulted layers convolved with a Ricker wavelet.

    Each image is sum_k a_k ricker(depth - u_k - shift(x, depth)), with
    reflector depths u_k and strengths a_k random, shift the fold (a dipping
    sinusoid) plus the fault throw on the hanging-wall side of a random
    fault line. Evaluating the wavelet at continuous shifts needs no
    interpolation.

    Args:
      seed: an int seed or a numpy Generator.
      num: number of images, >= 1.
      size: height = width, or (height, width).
      family: "low", "high" or a `SeismicFamily`.

    Returns:
      Images [num, height, width, 1], float32, not whitened.
    """
    if isinstance(family, str):
        if family not in FAMILIES:
            raise ValueError(f"`family` must be one of {sorted(FAMILIES)} or a SeismicFamily; got {family!r}.")
        family = FAMILIES[family]
    if num < 1:
        raise ValueError(f"`num` must be >= 1; got {num!r}.")
    check_int("num", num)
    height, width = check_int_pair("size", size, 4)
    rng = np.random.default_rng(seed)
    scale = height / _REFERENCE_SIZE  # lengths of the family are for 32-pixel-high images
    depth = np.arange(height, dtype=np.float64)[:, None]
    across = np.arange(width, dtype=np.float64)[None, :]
    images = np.empty((num, height, width, 1), np.float32)
    # Reflectors cover more than the image, so folds and throws never expose an empty band.
    margin = 8.0 * scale + family.fold_amplitude[1] * scale + family.fault_throw[1] * scale + family.max_dip * width
    for i in range(num):
        count = rng.poisson(family.reflectors_per_depth * (height + 2 * margin)) + 1
        reflector_depth = rng.uniform(-margin, height + margin, count)
        strength = rng.normal(size=count) * rng.uniform(0.3, 1.0, count)
        amplitude = rng.uniform(*family.fold_amplitude) * scale
        wavelength = rng.uniform(*family.fold_wavelength) * scale
        shift = (amplitude * np.sin(2 * math.pi * across / wavelength + rng.uniform(0, 2 * math.pi))
                 + rng.uniform(-family.max_dip, family.max_dip) * (across - width / 2))
        shift = np.broadcast_to(shift, (height, width)).copy()
        if rng.uniform() < family.fault_probability:
            # The fault line passes through a random point at a steep random angle.
            x0, z0 = rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height
            slope = math.tan(rng.uniform(-0.4, 0.4))  # horizontal offset per depth pixel
            hanging = across > x0 + slope * (depth - z0)
            shift += np.where(hanging, rng.uniform(*family.fault_throw) * scale * rng.choice([-1.0, 1.0]), 0.0)
        lag = depth[None] - reflector_depth[:, None, None] - shift[None]
        images[i, :, :, 0] = np.einsum("k,khw->hw", strength, ricker(lag, family.peak_frequency / scale))
    return images


def whiten(images: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Each image to zero mean and unit standard deviation over its pixels.

    Args:
      images: [N, height, width, channels].
      eps: floor of the standard deviation (a constant image stays finite).

    Returns:
      Whitened images, float32, same shape.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"`images` must have shape [N, height, width, channels]; got shape {images.shape}.")
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    std = images.std(axis=(1, 2, 3), keepdims=True)
    return (images - mean) / np.maximum(std, eps)


def _patches(section: np.ndarray, patch: Optional[tuple[int, int]]) -> np.ndarray:
    """Non-overlapping patches [n, ph, pw] of a 2D section (the whole section without `patch`)."""
    if patch is None:
        return section[None]
    ph, pw = patch
    rows, cols = section.shape[0] // ph, section.shape[1] // pw
    cropped = section[:rows * ph, :cols * pw]
    return cropped.reshape(rows, ph, cols, pw).transpose(0, 2, 1, 3).reshape(-1, ph, pw)


def _as_patch(patch_size: Optional[Union[int, tuple[int, int]]]) -> Optional[tuple[int, int]]:
    """`patch_size` as (height, width), or None; ValueError unless a positive int or a pair of them."""
    if patch_size is None:
        return None
    return check_int_pair("patch_size", patch_size)


def _section_images(sections: np.ndarray, patch: Optional[tuple[int, int]], source: str) -> list[np.ndarray]:
    """Checked sections [n, H, W] as images [H, W] or their patches [ph, pw], float32."""
    if not np.issubdtype(sections.dtype, np.number) or not np.all(np.isfinite(sections)):
        raise ValueError(f"{source} must hold finite numbers; got dtype {sections.dtype} with "
                         f"{int(np.size(sections) - np.count_nonzero(np.isfinite(sections)))} non-finite values.")
    images = []
    for section in sections:
        if patch is not None and (section.shape[0] < patch[0] or section.shape[1] < patch[1]):
            raise ValueError(f"{source} has a section of shape {section.shape}, smaller than `patch_size` {patch}.")
        images.extend(_patches(section.astype(np.float32), patch))
    return images


def _sections(array: np.ndarray, source: str) -> np.ndarray:
    """A 2D section [H, W], [H, W, 1] or a volume [n, H, W] as sections [n, H, W]."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        return array
    raise ValueError(f"{source} must hold a 2D section [height, width] (or [height, width, 1]) or a volume "
                     f"[n, height, width]; got shape {array.shape}.")


def load_seismic_folder(path: Union[str, os.PathLike], patch_size: Optional[Union[int, tuple[int, int]]] = None,
                        whitened: bool = True) -> np.ndarray:
    """Loads every .npy file of a folder as seismic images.

    Args:
      path: a folder of .npy files, each a section [H, W] (or [H, W, 1]) or a
        volume [n, H, W] sliced along its first axis. Read in sorted name order.
      patch_size: cut each section into non-overlapping patches of this size
        (an int or (height, width)), dropping the remainder; required when
        sections differ in size.
      whitened: whiten each image (zero mean, unit std).

    Returns:
      Images [N, height, width, 1], float32.
    """
    if not os.path.isdir(path):
        raise ValueError(f"`path` must be a folder of .npy files; {os.fspath(path)!r} is not a folder.")
    files = sorted(glob.glob(os.path.join(os.fspath(path), "*.npy")))
    if not files:
        raise ValueError(f"`path` {os.fspath(path)!r} holds no .npy files.")
    patch = _as_patch(patch_size)
    images = []
    for file in files:
        source = f"file {file!r}"
        images.extend(_section_images(_sections(np.load(file, allow_pickle=False), source), patch, source))
    shapes = sorted({image.shape for image in images})
    if len(shapes) > 1:
        raise ValueError(f"the sections have different shapes {shapes}; pass `patch_size` to cut equal patches.")
    stacked = np.stack(images)[..., None]
    return whiten(stacked) if whitened else stacked


SEGYIO_MISSING = ("Reading SEG-Y files needs the optional package segyio. Install the `seismic` extra: "
                  "pip install 'jcnf[seismic]' (or pip install segyio), or convert the data to .npy and use "
                  "load_seismic_folder.")


def load_segy(path: Union[str, os.PathLike], patch_size: Optional[Union[int, tuple[int, int]]] = None,
              whitened: bool = True) -> np.ndarray:
    """Loads the traces of a SEG-Y file as one section [samples, traces] (or its patches).

    Args:
      path: a SEG-Y file; its traces are read in file order, ignoring geometry.
      patch_size: as in `load_seismic_folder`.
      whitened: whiten each image.

    Returns:
      Images [N, height, width, 1], float32.

    Raises:
      ImportError: when segyio is not installed (the `seismic` extra).
    """
    try:
        import segyio  # noqa: PLC0415 (optional dependency)
    except ImportError as error:
        raise ImportError(SEGYIO_MISSING) from error
    patch = _as_patch(patch_size)
    if not os.path.isfile(path):
        raise ValueError(f"`path` must be a SEG-Y file; {os.fspath(path)!r} is not a file.")
    with segyio.open(os.fspath(path), ignore_geometry=True) as segy:
        traces = np.stack([np.asarray(trace, np.float32) for trace in segy.trace])
    # Depth (time samples) down the rows, traces across.
    images = np.stack(_section_images(traces.T[None], patch, f"SEG-Y file {os.fspath(path)!r}"))[..., None]
    return whiten(images) if whitened else images
