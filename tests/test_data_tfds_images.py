"""The tfds path: a tiny array_record builder prepared by the test is read back without TensorFlow."""

import importlib.util

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jcnf.data import load_tfds_images

_IMAGES = np.random.default_rng(0).integers(0, 256, (7, 8, 8, 3), dtype=np.uint8)


class TinyImages(tfds.core.GeneratorBasedBuilder):
    """Seven 8x8 RGB images as raw uint8 tensors: what a user's own builder looks like."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        # DatasetInfo built directly: `dataset_info_from_configs` would look for
        # metadata files beside this test module.
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(8, 8, 3), dtype=np.uint8),
            "label": tfds.features.Tensor(shape=(), dtype=np.int64)}))

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing is downloaded
        return {"train": self._generate_examples(range(5)), "validation": self._generate_examples(range(5, 7))}

    def _generate_examples(self, indices):
        for i in indices:
            yield i, {"image": _IMAGES[i], "label": i}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    builder = TinyImages(data_dir=str(tmp_path_factory.mktemp("tfds")), file_format="array_record")
    builder.download_and_prepare()
    return builder


def test_reads_prepared_builder_in_order(prepared):
    train = load_tfds_images(prepared, "train")
    assert train.shape == (5, 8, 8, 3) and train.dtype == np.uint8
    # tfds shuffles examples by a hash of their keys when it writes: compare as sets.
    assert sorted(map(bytes, train)) == sorted(map(bytes, _IMAGES[:5]))
    validation = load_tfds_images(prepared, "validation")
    assert sorted(map(bytes, validation)) == sorted(map(bytes, _IMAGES[5:]))
    assert load_tfds_images(prepared, "train", max_examples=2).shape == (2, 8, 8, 3)


def test_unprepared_builder_is_never_downloaded(tmp_path):
    builder = TinyImages(data_dir=str(tmp_path), file_format="array_record")
    with pytest.raises(FileNotFoundError, match="not prepared"):
        load_tfds_images(builder, "train")
    assert not any(tmp_path.rglob("*.array_record*"))


def test_bad_arguments(prepared):
    with pytest.raises(ValueError, match="image_key"):
        load_tfds_images(prepared, "train", image_key="photo")
    with pytest.raises(ValueError, match="uint8"):
        load_tfds_images(prepared, "train", image_key="label")
    with pytest.raises(ValueError, match="max_examples"):
        load_tfds_images(prepared, "train", max_examples=0)
    with pytest.raises(ValueError, match="downsampled_imagenet"):
        load_tfds_images("mnist", "train")
    with pytest.raises(ValueError, match="DatasetBuilder"):
        load_tfds_images(42, "train")


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow is installed")
@pytest.mark.parametrize("name", ["downsampled_imagenet/32x32", "downsampled_imagenet/64x64",
                                  "imagenet_resized/32x32"])
def test_catalogue_datasets_name_the_tensorflow_extra(name, tmp_path):
    with pytest.raises(ImportError, match="`tensorflow` extra"):
        load_tfds_images(name, "train", data_dir=tmp_path)
