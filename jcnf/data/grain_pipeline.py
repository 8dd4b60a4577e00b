"""Streaming input pipelines on grain: random-access sources to resumable, per-host batches.

A source is anything with `len()` and integer indexing (grain's random-access
protocol): in-memory arrays, a prepared tfds dataset (`tfds_source`),
array_record files (`array_record_source`) or a folder of images
(`ImageFolderSource`). `grain_batches` turns it into a lazy grain
`MapDataset` pipeline

    source -> shuffle (per epoch, from the seed) -> repeat -> example transforms
           -> this process's rows of each global batch -> batch transforms

and returns its iterator. Only the examples a process uses are read or
transformed, and the iterator's position (`get_state()`, a small JSON-able
dict) is what `jcnf.train.fit` stores in its checkpoint to resume exactly.

The global order of examples and every random transform depend only on the
seed and the example's position in that order, not on the number of
processes: the rows of the processes' batches, stacked in process order, are
the batch one process would read.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import grain
import jax
import numpy as np
from PIL import Image

from jcnf._checks import check_int
from jcnf.data.arrays import example_arrays
from jcnf.data.folder import IMAGE_EXTENSIONS, image_paths
from jcnf.data.images import NUM_BINS

Example = Mapping[str, Any]


class ArraySource:
    """A dict of arrays with a shared leading (example) axis as a random-access source.

    Args:
      arrays: {key: array [N, ...]}; example i is {key: array[i]}.
    """

    def __init__(self, arrays: Mapping[str, Any]):
        self._arrays, self._length = example_arrays(arrays)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {key: x[index] for key, x in self._arrays.items()}


class ImageFolderSource:
    """The images of a folder (not recursive, sorted by name) as {"image": uint8 [height, width, channels]}.

    Images are read with PIL when indexed, so a large folder is never held in memory.

    Args:
      directory: a folder of PNG/JPEG files.
      channels: 3 (RGB; grey images are repeated) or 1 (grey; colour is converted).
      extensions: file endings to read (case-insensitive).
    """

    def __init__(self, directory: str | os.PathLike, channels: int = 3,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS):
        self.paths = image_paths(directory, channels, extensions)
        self._mode = {1: "L", 3: "RGB"}[channels]
        self._channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        with Image.open(self.paths[index]) as image:
            array = np.asarray(image.convert(self._mode), np.uint8)
        return {"image": array.reshape(*array.shape[:2], self._channels)}


def tfds_source(name: str, split: str = "train", data_dir: str | os.PathLike | None = None) -> Any:
    """A prepared tfds dataset (array_record or parquet files) as a random-access source; never downloads.

    Args:
      name: the registered builder name, optionally with config and version ("name/config:1.0.0").
      split: the split, tfds slicing allowed ("train[:90%]").
      data_dir: where the dataset was prepared (default: tfds's data_dir).

    Returns:
      A source whose examples are dicts of numpy arrays (the decoded features).

    Raises:
      ValueError: naming `name` and the folder searched when it is unknown or not prepared.
    """
    import tensorflow_datasets as tfds  # imported here: the other sources do not need it

    data_dir = None if data_dir is None else os.fspath(data_dir)
    searched = data_dir if data_dir is not None else "tfds's default data_dir"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(f"tfds dataset `name`={name!r} is not registered (searched {searched!r}); define or "
                         "import its builder first.") from error
    if not builder.is_prepared():
        raise ValueError(f"tfds dataset `name`={name!r} is not prepared in {builder.data_dir!r} (`data_dir`="
                         f"{searched!r}); jcnf never downloads it. Prepare it first (tfds build --file_format="
                         "array_record, or builder.download_and_prepare()) and pass its `data_dir`.")
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)


def array_record_source(
        paths: str | os.PathLike | Sequence[str | os.PathLike]) -> grain.sources.ArrayRecordDataSource:
    """array_record files as one random-access source of serialized records (bytes).

    Decode the records with an example transform passed to `grain_batches`.

    Args:
      paths: one file, or a list of files read one after the other.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("`paths` must name at least one array_record file.")
    missing = [os.fspath(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"`paths` must be existing array_record files; missing {missing}.")
    return grain.sources.ArrayRecordDataSource([os.fspath(p) for p in paths])


class _RandomCrop(grain.transforms.RandomMap):

    def __init__(self, size: int, key: str):
        self.size = size
        self.key = key

    def random_map(self, element: Example, rng: np.random.Generator) -> dict[str, Any]:
        image = element[self.key]
        height, width = image.shape[:2]
        if height < self.size or width < self.size:
            raise ValueError(f"`{self.key}` of shape {tuple(image.shape)} is smaller than the crop `size`="
                             f"{self.size}.")
        top = rng.integers(0, height - self.size + 1)
        left = rng.integers(0, width - self.size + 1)
        return {**element, self.key: image[top:top + self.size, left:left + self.size]}


def random_crop(size: int, key: str = "image") -> grain.transforms.RandomMap:
    """An example transform: a size x size crop of `element[key]` [height, width, channels] at a random place.

    The place is drawn from the pipeline's seed and the example's position,
    so a resumed run crops as the uninterrupted one did.
    """
    check_int("size", size)
    return _RandomCrop(size, key)


class _DownsamplePair(grain.transforms.Map):

    def __init__(self, factor: int, key: str):
        self.factor = factor
        self.key = key

    def map(self, element: Example) -> dict[str, Any]:
        image = np.asarray(element[self.key])
        if image.ndim not in (3, 4) or image.dtype != np.uint8:
            raise ValueError(f"`{self.key}` must be uint8 [height, width, channels] or [batch, height, width, "
                             f"channels]; got shape {tuple(image.shape)} and dtype {image.dtype}.")
        *lead, height, width, channels = image.shape
        if height % self.factor or width % self.factor:
            raise ValueError(f"`{self.key}` height and width must be divisible by `factor`={self.factor}; got "
                             f"shape {tuple(image.shape)}.")
        # The k / 256 convention and the block mean of `jcnf.data.make_pairs`, in numpy: pipelines
        # run on host threads and must not place per-example work on the accelerator.
        value = image.astype(np.float32) / NUM_BINS
        blocks = value.reshape(*lead, height // self.factor, self.factor, width // self.factor, self.factor,
                               channels)
        rest = {k: v for k, v in element.items() if k != self.key}
        return {**rest, "value": value, "context": blocks.mean(axis=(-4, -2))}


def downsample_pair(factor: int, key: str = "image") -> grain.transforms.Map:
    """An example or batch transform: uint8 `element[key]` to {"value": k/256, "context": area-downsampled}.

    Shapes: [..., H, W, C] uint8 -> "value" float32 [..., H, W, C] and
    "context" float32 [..., H/factor, W/factor, C]; other keys pass through.
    """
    check_int("factor", factor)
    return _DownsamplePair(factor, key)


def _apply(dataset: grain.MapDataset, transforms: Sequence[Callable], seed: int) -> grain.MapDataset:
    for position, transform in enumerate(transforms):
        if isinstance(transform, grain.transforms.RandomMap):
            # One seed per transform, so two random transforms draw independently.
            dataset = dataset.random_map(transform, seed=seed + 1 + position)
        elif callable(transform) or isinstance(transform, grain.transforms.Map):
            dataset = dataset.map(transform)
        else:
            raise ValueError(f"transforms must be callables or grain Map/RandomMap transforms; got "
                             f"{type(transform).__name__} at position {position}.")
    return dataset


def grain_batches(source: Any, batch_size: int, *, seed: int = 0, transforms: Sequence[Callable] = (),
                  batch_transforms: Sequence[Callable] = (), shard_by_process: bool = True,
                  num_epochs: int | None = None, drop_remainder: bool = True,
                  process_index: int | None = None, process_count: int | None = None) -> grain.DatasetIterator:
    """Shuffled batches of `source`, this process's rows of each global batch, with a resumable position.

    Args:
      source: a dict of arrays {key: [N, ...]}, a grain `MapDataset`, or a random-access source (`len()`
        and integer indexing: `tfds_source`, `array_record_source`, `ImageFolderSource`, ...).
      batch_size: the global batch size B; each process yields B / process_count rows.
      seed: seeds the shuffling (a new order each epoch) and the random transforms.
      transforms: per-example transforms in order: callables `element -> element`, grain
        `Map` transforms, or grain `RandomMap` transforms such as `random_crop`.
      batch_transforms: the same, applied to each batch (a dict of stacked arrays).
      shard_by_process: read only this process's rows; False reads whole global batches
        (e.g. evaluation on one host).
      num_epochs: passes over the data; None repeats forever.
      drop_remainder: drop the last incomplete batch (every batch then has the same shape,
        and the step compiles once). Several processes need True.
      process_index: this process's index (default `jax.process_index()`).
      process_count: number of processes (default `jax.process_count()`).

    Returns:
      An iterator of batches (dicts of numpy arrays with leading axis B / process_count) with
      `get_state()` and `set_state(state)`.
    """
    check_int("batch_size", batch_size)
    if num_epochs is not None:
        check_int("num_epochs", num_epochs)
    if isinstance(source, Mapping):
        source = ArraySource(source)
    dataset = source if isinstance(source, grain.MapDataset) else grain.MapDataset.source(source)
    if len(dataset) == 0:
        raise ValueError("`source` holds no examples.")
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not shard_by_process:
        process_index, process_count = 0, 1
    check_int("process_count", process_count)
    if not 0 <= process_index < process_count:
        raise ValueError(f"`process_index` must be in [0, {process_count}); got {process_index}.")
    if batch_size % process_count:
        raise ValueError(f"`batch_size` ({batch_size}) must be divisible by the number of processes "
                         f"({process_count}).")
    if process_count > 1 and not drop_remainder:
        raise ValueError(f"`drop_remainder` must be True with {process_count} processes: a last incomplete "
                         "batch cannot be split into equal rows for every process.")

    # Shuffle before repeat: grain folds the epoch into the seed, so each epoch has its own order.
    dataset = _apply(dataset.shuffle(seed=seed).repeat(num_epochs), transforms, seed)
    rows = batch_size // process_count
    if process_count > 1:
        # Global batch b is made of row blocks b * count ... b * count + count - 1; this process
        # reads block b * count + index only. Whole global batches first, so every process
        # yields the same number of batches.
        blocks = dataset.batch(rows, drop_remainder=True)
        blocks = blocks[:len(blocks) // process_count * process_count]
        dataset = blocks[process_index::process_count]
    else:
        dataset = dataset.batch(rows, drop_remainder=drop_remainder)
    dataset = _apply(dataset, batch_transforms, seed + len(transforms))
    return iter(dataset.to_iter_dataset())
