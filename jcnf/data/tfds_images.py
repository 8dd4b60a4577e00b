"""Real image data through tensorflow-datasets, read from a prepared `data_dir`; never downloads.

Two ways in:

- a catalogue name, `"downsampled_imagenet/32x32"`, `"downsampled_imagenet/64x64"`
  or `"imagenet_resized/32x32"` (also 8x8, 16x16, 64x64), whose data the user
  has prepared under `data_dir` beforehand. Those builders store PNG-encoded
  `tfds.features.Image`s in TFRecord files, which only TensorFlow decodes:
  this path needs the `tensorflow` extra and says so when it is missing.
- any `tfds.core.DatasetBuilder` instance, e.g. the user's own builder whose
  images are raw uint8 `tfds.features.Tensor`s written as `array_record`:
  it is read with `as_data_source()`, without TensorFlow.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Optional

import numpy as np

SUPERRES_DATASETS = ("downsampled_imagenet", "imagenet_resized")


def _has_tensorflow() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _catalogue_builder(name: str, data_dir: Optional[str | os.PathLike]):
    import tensorflow_datasets as tfds

    if name.split("/")[0].split(":")[0] not in SUPERRES_DATASETS:
        raise ValueError(f"`dataset` must be one of {list(SUPERRES_DATASETS)} with a config (e.g. "
                         f"'downsampled_imagenet/32x32') or a tfds.core.DatasetBuilder; got {name!r}.")
    if not _has_tensorflow():
        raise ImportError(f"Reading the tfds catalogue dataset {name!r} needs TensorFlow (its images are "
                          "PNG-encoded tfds.features.Image in TFRecord files). Install the `tensorflow` "
                          "extra (pip install 'jcnf[tensorflow]', or pip install tensorflow), or pass your own "
                          "array_record builder with raw uint8 Tensor images.")
    return tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))


def load_tfds_images(dataset, split: str = "train", data_dir: Optional[str | os.PathLike] = None,
                     image_key: str = "image", max_examples: Optional[int] = None) -> np.ndarray:
    """Reads the images of a prepared tfds dataset into memory: uint8 [N, height, width, channels].

    Args:
      dataset: a catalogue name (see the module docstring) or a
        `tfds.core.DatasetBuilder` instance.
      split: the split to read, e.g. "train", "validation", "train[:1000]".
      data_dir: where the data was prepared (catalogue names only; a builder
        carries its own).
      image_key: the feature holding the image.
      max_examples: read at most this many examples (default all).

    Raises:
      ImportError: a catalogue dataset without TensorFlow installed.
      FileNotFoundError: the dataset is not prepared in `data_dir` (it is
        never downloaded here).
      ValueError: bad arguments or images that are not uint8 [H, W, C].
    """
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"`max_examples` must be >= 1 or None; got {max_examples}.")
    builder = _catalogue_builder(dataset, data_dir) if isinstance(dataset, str) else dataset
    if not hasattr(builder, "as_data_source") or not hasattr(builder, "info"):
        raise ValueError(f"`dataset` must be a catalogue name or a tfds.core.DatasetBuilder; got "
                         f"{type(dataset).__name__}.")
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"tfds dataset {builder.name!r} is not prepared in {builder.data_dir!r}; jcnf never downloads it. "
            "Prepare it first (tfds build, or builder.download_and_prepare()) and pass its `data_dir`.")
    if image_key not in builder.info.features:
        raise ValueError(f"`image_key` {image_key!r} is not a feature of {builder.name!r}; features are "
                         f"{list(builder.info.features)}.")
    file_format = str(getattr(builder.info, "file_format", "")).lower()
    if "array_record" in file_format:
        source = builder.as_data_source(split=split)
        count = len(source) if max_examples is None else min(len(source), max_examples)
        # Random-access reads, one record per example: no TensorFlow involved.
        images = [np.asarray(source[i][image_key]) for i in range(count)]
    else:
        if not _has_tensorflow():
            raise ImportError(f"tfds dataset {builder.name!r} is stored as {file_format or 'tfrecord'}, which "
                              "only TensorFlow reads. Install the `tensorflow` extra (pip install tensorflow) "
                              "or prepare the builder with file_format='array_record'.")
        import tensorflow_datasets as tfds
        split_data = builder.as_dataset(split=split)
        if max_examples is not None:
            split_data = split_data.take(max_examples)
        images = [np.asarray(example[image_key]) for example in tfds.as_numpy(split_data)]
    if not images:
        raise ValueError(f"split {split!r} of {builder.name!r} holds no examples.")
    stacked = np.stack(images)
    if stacked.dtype != np.uint8 or stacked.ndim != 4:
        raise ValueError(f"`{image_key}` images must be uint8 [height, width, channels]; got an array of "
                         f"shape {stacked.shape[1:]} per example and dtype {stacked.dtype}.")
    return stacked
