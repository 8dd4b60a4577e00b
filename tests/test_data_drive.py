"""The DRIVE builder reads the official archive layout, here a small fake written by the test."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from jcnf.data import drive

_HEIGHT, _WIDTH = 12, 10  # tiny stand-ins for 584 x 565


def _png_bytes(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def _write_fake_archive(path, rng):
    """DRIVE.zip with 2 training and 2 test images, in the official folder layout."""
    truth = {}
    with zipfile.ZipFile(path / "DRIVE.zip", "w") as archive:
        for folder, numbers in (("training", (21, 22)), ("test", (1, 2))):
            for number in numbers:
                stem = f"{number:02d}"
                image = rng.integers(0, 256, (_HEIGHT, _WIDTH, 3), dtype=np.uint8)
                vessels = (rng.uniform(size=(_HEIGHT, _WIDTH)) < 0.3).astype(np.uint8) * 255
                fov = np.zeros((_HEIGHT, _WIDTH), np.uint8)
                fov[1:-1, 1:-1] = 255
                archive.writestr(f"DRIVE/{folder}/images/{stem}_{folder}.tif", _png_bytes(image, "TIFF"))
                archive.writestr(f"DRIVE/{folder}/1st_manual/{stem}_manual1.gif", _png_bytes(vessels, "GIF"))
                archive.writestr(f"DRIVE/{folder}/mask/{stem}_{folder}_mask.gif", _png_bytes(fov, "GIF"))
                second = None
                if folder == "test":
                    second = (rng.uniform(size=(_HEIGHT, _WIDTH)) < 0.3).astype(np.uint8) * 255
                    archive.writestr(f"DRIVE/test/2nd_manual/{stem}_manual2.gif", _png_bytes(second, "GIF"))
                truth[(folder, number)] = (image, vessels, second, fov)
    return truth


def test_builder_reads_fake_archive_exactly(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    truth = _write_fake_archive(manual, np.random.default_rng(0))
    train = drive.load_drive("train", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual))
    test = drive.load_drive("test", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual))
    assert train["id"].tolist() == [21, 22] and test["id"].tolist() == [1, 2]
    assert train["image"].shape == (2, _HEIGHT, _WIDTH, 3) and train["fov"].shape == (2, _HEIGHT, _WIDTH, 1)
    for split, folder in ((train, "training"), (test, "test")):
        for i, number in enumerate(split["id"]):
            image, vessels, second, fov = truth[(folder, int(number))]
            # TIFF and GIF are lossless: uint8 pixels come back exactly (/255 in float32).
            np.testing.assert_array_equal(np.round(split["image"][i] * 255).astype(np.uint8), image)
            np.testing.assert_array_equal(split["vessels"][i, ..., 0], vessels / 255)
            np.testing.assert_array_equal(split["fov"][i, ..., 0], fov > 0)
            assert split["has_2nd"][i] == (second is not None)
            if second is not None:
                np.testing.assert_array_equal(split["vessels_2nd"][i, ..., 0], second / 255)


def test_missing_archive_and_bad_split_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="DRIVE.zip"):
        drive.load_drive("train", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path))
    with pytest.raises(ValueError, match="`split`"):
        drive.load_drive("validation", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path))
