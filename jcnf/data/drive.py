"""DRIVE (Digital Retinal Images for Vessel Extraction) as a tensorflow-datasets builder.

DRIVE cannot be downloaded automatically (it needs a registration). Put the
official archive `DRIVE.zip`, or its extracted `DRIVE/` folder, in a manual
directory and build:

    from jcnf.data.drive import load_drive
    train = load_drive("train", data_dir="~/tfds", manual_dir="~/downloads")   # builds once
    test = load_drive("test", data_dir="~/tfds", manual_dir="~/downloads")

The archive holds, under `DRIVE/`:

    training/images/21_training.tif ... 40_training.tif      RGB, 565 x 584
    training/1st_manual/21_manual1.gif ...                    vessel masks
    training/mask/21_training_mask.gif ...                    field-of-view masks
    test/images/01_test.tif ... 20_test.tif
    test/1st_manual/01_manual1.gif ...                        first annotator
    test/2nd_manual/01_manual2.gif ...                        second annotator
    test/mask/01_test_mask.gif ...

Features are raw `tfds.features.Tensor`s written as array_record, so the
dataset is built and read with `as_data_source()` without TensorFlow.
"""

from __future__ import annotations

import inspect
import io
import os
import re
import zipfile
from typing import Iterator, Optional

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

_SPLITS = {"train": "training", "test": "test"}
_ID = re.compile(r"^(\d+)_(training|test)\.tif$")


class _Archive:
    """Reads files of the DRIVE layout from a zip or a folder, by their path below `DRIVE/`."""

    def __init__(self, manual_dir: str):
        manual_dir = os.path.expanduser(str(manual_dir))
        zip_path = os.path.join(manual_dir, "DRIVE.zip")
        self._zip = zipfile.ZipFile(zip_path) if os.path.isfile(zip_path) else None
        if self._zip is not None:
            names = self._zip.namelist()
            prefix = next((n[:n.index("training/")] for n in names if "training/images/" in n), None)
            if prefix is None:
                raise FileNotFoundError(f"{zip_path} has no `training/images/` folder; is it the DRIVE archive?")
            self._prefix, self._names = prefix, set(names)
        else:
            for candidate in (os.path.join(manual_dir, "DRIVE"), manual_dir):
                if os.path.isdir(os.path.join(candidate, "training", "images")):
                    self._root = candidate
                    break
            else:
                raise FileNotFoundError(
                    f"No DRIVE data in the manual directory {manual_dir!r}: expected `DRIVE.zip` or a `DRIVE/` "
                    "folder with `training/images/` (the official archive, downloaded after registering at "
                    "https://drive.grand-challenge.org).")

    def list(self, folder: str) -> list[str]:
        """File names in `folder` (e.g. 'training/images'), sorted."""
        if self._zip is not None:
            start = self._prefix + folder.rstrip("/") + "/"
            return sorted(n[len(start):] for n in self._names if n.startswith(start) and n != start
                          and "/" not in n[len(start):])
        path = os.path.join(self._root, folder)
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def exists(self, path: str) -> bool:
        if self._zip is not None:
            return self._prefix + path in self._names
        return os.path.isfile(os.path.join(self._root, path))

    def read(self, path: str) -> np.ndarray:
        """The image at `path` as a numpy array (RGB uint8, or a 0/255 single-channel mask)."""
        if self._zip is not None:
            data = self._zip.read(self._prefix + path)
        else:
            with open(os.path.join(self._root, path), "rb") as f:
                data = f.read()
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB") if path.endswith(".tif") else image.convert("L"))


def _mask(array: np.ndarray) -> np.ndarray:
    """A 0/255 (or 0/1) mask image [H, W] as uint8 {0, 1} [H, W, 1]."""
    return (array > 127 if array.max() > 1 else array > 0).astype(np.uint8)[..., None]


class Drive(tfds.core.GeneratorBasedBuilder):
    """DRIVE retinal vessel segmentation: 20 training and 20 test fundus images with vessel and FOV masks."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Images, first manual annotation, second (test only, zeros elsewhere), FOV masks."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = ("Register at https://drive.grand-challenge.org, download DRIVE.zip and place it "
                                    "(or its extracted DRIVE/ folder) in the manual directory.")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """The folder of this builder's module."""
        # tfds's default resolves the path through `importlib_resources`, a
        # package this environment lacks (tfds does not require it); the
        # builder's source file is all it needs.
        return epath.Path(inspect.getfile(cls))

    def __init__(self, *, file_format: str = "array_record", **kwargs):
        super().__init__(file_format=file_format, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Tensor(shape=(), dtype=np.int32),
                "image": tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8, encoding="zlib"),
                "vessels": tfds.features.Tensor(shape=(None, None, 1), dtype=np.uint8, encoding="zlib"),
                "vessels_2nd": tfds.features.Tensor(shape=(None, None, 1), dtype=np.uint8, encoding="zlib"),
                "has_2nd": tfds.features.Tensor(shape=(), dtype=np.bool_),
                "fov": tfds.features.Tensor(shape=(None, None, 1), dtype=np.uint8, encoding="zlib"),
            }),
            homepage="https://drive.grand-challenge.org",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        archive = _Archive(dl_manager.manual_dir)
        return {split: self._generate_examples(archive, folder) for split, folder in _SPLITS.items()}

    def _generate_examples(self, archive: _Archive, folder: str) -> Iterator[tuple[int, dict]]:
        for name in archive.list(f"{folder}/images"):
            match = _ID.match(name)
            if match is None:
                continue
            number = match.group(1)
            image = archive.read(f"{folder}/images/{name}")
            vessels = _mask(archive.read(f"{folder}/1st_manual/{number}_manual1.gif"))
            second_path = f"{folder}/2nd_manual/{number}_manual2.gif"
            has_second = archive.exists(second_path)
            second = _mask(archive.read(second_path)) if has_second else np.zeros_like(vessels)
            fov = _mask(archive.read(f"{folder}/mask/{number}_{folder}_mask.gif"))
            if not image.shape[:2] == vessels.shape[:2] == fov.shape[:2] == second.shape[:2]:
                raise ValueError(f"DRIVE image {number} ({folder}): image, masks and FOV differ in size "
                                 f"({image.shape}, {vessels.shape}, {second.shape}, {fov.shape}).")
            yield int(number), {"id": np.int32(number), "image": image, "vessels": vessels,
                                "vessels_2nd": second, "has_2nd": np.bool_(has_second), "fov": fov}


def load_drive(split: str, data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
               ) -> dict[str, np.ndarray]:
    """Builds DRIVE if needed and returns one split as arrays.

    Args:
      split: "train" or "test".
      data_dir: where tfds stores the built dataset (default tfds's).
      manual_dir: the folder with `DRIVE.zip` or `DRIVE/`.

    Returns:
      {"id": [N] int32, "image": [N, H, W, 3] float32 in [0, 1],
       "vessels": [N, H, W, 1] float32 {0, 1}, "vessels_2nd": same (zeros
       where absent), "has_2nd": [N] bool, "fov": [N, H, W, 1] bool}, sorted by id.
    """
    if split not in _SPLITS:
        raise ValueError(f"`split` must be one of {sorted(_SPLITS)}; got {split!r}.")
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir is not None else None
    builder = Drive(data_dir=data_dir)
    builder.download_and_prepare(download_config=config)
    source = builder.as_data_source(split=split)
    records = sorted((source[i] for i in range(len(source))), key=lambda record: int(record["id"]))
    stacked = {key: np.stack([np.asarray(record[key]) for record in records]) for key in records[0]}
    return {"id": stacked["id"].astype(np.int32), "image": stacked["image"].astype(np.float32) / 255.0,
            "vessels": stacked["vessels"].astype(np.float32), "vessels_2nd": stacked["vessels_2nd"].astype(np.float32),
            "has_2nd": stacked["has_2nd"].astype(bool), "fov": stacked["fov"].astype(bool)}
