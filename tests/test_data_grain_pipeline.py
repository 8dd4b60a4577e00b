"""grain pipelines: epochs, shuffling, exact resumption, the sources, per-process rows, bad input."""

import json
import os
import re
import subprocess
import sys

import _train_worker as worker
import jax
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import jcnf
from jcnf import train
from jcnf.data import (
    ImageFolderSource,
    array_record_source,
    downsample_pair,
    grain_batches,
    random_crop,
    tfds_source,
)
from tests._xla import free_port, subprocess_env

_NUM = 24
_IMAGES = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)


def _ids(batches) -> np.ndarray:
    return np.concatenate([batch["id"] for batch in batches])


def test_one_epoch_covers_every_example_once():
    batches = list(grain_batches({"id": np.arange(_NUM)}, 6, seed=0, num_epochs=1))
    assert len(batches) == _NUM // 6 and all(batch["id"].shape == (6,) for batch in batches)
    assert sorted(_ids(batches)) == list(range(_NUM))


def test_epochs_are_shuffled_differently_and_the_seed_fixes_the_order():
    def epochs(seed):
        return _ids(grain_batches({"id": np.arange(_NUM)}, 6, seed=seed, num_epochs=2)).reshape(2, _NUM)

    first, again, other = epochs(0), epochs(0), epochs(1)
    assert sorted(first[1]) == list(range(_NUM))
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], np.arange(_NUM))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_last_incomplete_batch_is_kept_on_request():
    batches = list(grain_batches({"id": np.arange(10)}, 4, num_epochs=1, drop_remainder=False))
    assert [len(batch["id"]) for batch in batches] == [4, 4, 2]
    assert len(list(grain_batches({"id": np.arange(10)}, 4, num_epochs=1))) == 2


def test_state_resumes_exactly_with_random_transforms():
    data = {"image": np.random.default_rng(1).integers(0, 256, (_NUM, 8, 8, 1), dtype=np.uint8)}

    def make():
        return grain_batches(data, 4, seed=3, transforms=[random_crop(4), downsample_pair(2)])

    uninterrupted = make()
    reference = [next(uninterrupted) for _ in range(10)]
    interrupted = make()
    for _ in range(4):
        next(interrupted)
    state = json.loads(json.dumps(interrupted.get_state()))  # what a checkpoint stores
    resumed = make()
    resumed.set_state(state)
    for expected in reference[4:]:
        batch = next(resumed)
        assert batch["value"].shape == (4, 4, 4, 1) and batch["context"].shape == (4, 2, 2, 1)
        for key in ("value", "context"):
            np.testing.assert_array_equal(batch[key], expected[key])


def test_downsample_pair_matches_the_block_mean_and_works_per_batch():
    pairs = next(grain_batches({"image": _IMAGES}, 2, batch_transforms=[downsample_pair(2)]))
    value, context = pairs["value"], pairs["context"]
    assert value.dtype == np.float32 and value.shape == (2, 8, 8, 3) and context.shape == (2, 4, 4, 3)
    # Pixels are k / 256 and the context is the mean of each 2x2 block; float32 sums of four exact values.
    assert np.all(value * 256 == np.round(value * 256)) and value.max() < 1.0
    np.testing.assert_allclose(context[:, 1, 2], value[:, 2:4, 4:6].mean(axis=(1, 2)), rtol=1e-6)


def test_random_crop_is_a_window_of_the_image():
    crop = next(grain_batches({"image": _IMAGES, "id": np.arange(6)}, 1, transforms=[random_crop(5)]))
    image, window = _IMAGES[crop["id"][0]], crop["image"][0]
    assert window.shape == (5, 5, 3)
    assert any(np.array_equal(image[top:top + 5, left:left + 5], window) for top in range(4) for left in range(4))


def test_process_rows_stack_to_the_single_process_batch():
    single = grain_batches({"id": np.arange(_NUM)}, 8, seed=2, num_epochs=1)
    hosts = [list(grain_batches({"id": np.arange(_NUM)}, 8, seed=2, num_epochs=1, process_index=i,
                                process_count=2)) for i in range(2)]
    assert len(hosts[0]) == len(hosts[1]) == _NUM // 8
    for step, batch in enumerate(single):
        rows = [hosts[i][step]["id"] for i in range(2)]
        assert rows[0].shape == (4,)
        np.testing.assert_array_equal(np.concatenate(rows), batch["id"])
    assert sorted(np.concatenate([_ids(h) for h in hosts])) == list(range(_NUM))


def test_fit_resumes_the_pipeline_from_its_checkpoint(tmp_path):
    # fit stores get_state() beside the train state; a resumed run must see the batches the
    # uninterrupted run saw, so the parameters agree to float32 round-off of one compiled step.
    model = jcnf.ConditionalRealNVP(**worker.MODEL_KWARGS)
    data = worker.tiny_problem(64)
    options = {"optimizer": optax.adam(1e-2), "step_fn": train.mle_step(model), "progress": False}
    straight = train.fit(model, grain_batches(data, 16, seed=4), 12, **options)
    train.fit(model, grain_batches(data, 16, seed=4), 6, checkpoint_dir=tmp_path, checkpoint_every=3, **options)
    resumed = train.fit(model, grain_batches(data, 16, seed=4), 12, checkpoint_dir=tmp_path, **options)
    for a, b in zip(jax.tree.leaves(straight.state.params), jax.tree.leaves(resumed.state.params), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


class TinyGrainImages(tfds.core.GeneratorBasedBuilder):
    """Six 8x8 RGB images as raw uint8 tensors, with their index."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(8, 8, 3), dtype=np.uint8),
            "id": tfds.features.Tensor(shape=(), dtype=np.int64)}))

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing is downloaded
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, image in enumerate(_IMAGES):
            yield i, {"image": image, "id": i}


def test_prepared_tfds_dataset(tmp_path):
    TinyGrainImages(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    source = tfds_source("tiny_grain_images", "train", data_dir=tmp_path)
    batches = list(grain_batches(source, 3, num_epochs=1, transforms=[downsample_pair(2)]))
    ids = _ids(batches)
    assert sorted(ids) == list(range(6))
    values = np.concatenate([batch["value"] for batch in batches])
    np.testing.assert_array_equal(values, _IMAGES[ids].astype(np.float32) / 256)


def test_unprepared_tfds_dataset_is_never_downloaded(tmp_path):
    with pytest.raises(ValueError, match=f"tiny_grain_images.*not prepared.*{re.escape(str(tmp_path))}"):
        tfds_source("tiny_grain_images", "train", data_dir=tmp_path)
    assert not any(tmp_path.rglob("*.array_record*"))
    with pytest.raises(ValueError, match="no_such_dataset_anywhere.*not registered"):
        tfds_source("no_such_dataset_anywhere", data_dir=tmp_path)


def test_array_record_files(tmp_path):
    from array_record.python.array_record_module import ArrayRecordWriter

    paths = [str(tmp_path / f"part{k}.array_record") for k in range(2)]
    for k, path in enumerate(paths):
        writer = ArrayRecordWriter(path, "group_size:1")
        for i in range(3 * k, 3 * k + 3):
            writer.write(_IMAGES[i].tobytes())
        writer.close()

    def decode(record: bytes) -> dict:
        return {"image": np.frombuffer(record, np.uint8).reshape(8, 8, 3)}

    batches = list(grain_batches(array_record_source(paths), 2, num_epochs=1, transforms=[decode]))
    images = np.concatenate([batch["image"] for batch in batches])
    assert sorted(map(bytes, images)) == sorted(map(bytes, _IMAGES))


def test_image_folder(tmp_path):
    for i, image in enumerate(_IMAGES[:4]):
        Image.fromarray(image).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    source = ImageFolderSource(tmp_path)
    assert len(source) == 4
    np.testing.assert_array_equal(source[2]["image"], _IMAGES[2])
    grey = ImageFolderSource(tmp_path, channels=1)[0]["image"]
    assert grey.shape == (8, 8, 1) and grey.dtype == np.uint8
    batches = list(grain_batches(source, 2, num_epochs=1))
    assert sorted(map(bytes, np.concatenate([b["image"] for b in batches]))) == sorted(map(bytes, _IMAGES[:4]))


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match=f"{re.escape(str(tmp_path))}.*holds no files"):
        ImageFolderSource(tmp_path)
    with pytest.raises(ValueError, match=r"`batch_size` \(6\).*number of processes \(4\)"):
        grain_batches({"id": np.arange(_NUM)}, 6, process_index=0, process_count=4)
    with pytest.raises(ValueError, match="drop_remainder"):
        grain_batches({"id": np.arange(_NUM)}, 6, process_index=0, process_count=2, drop_remainder=False)
    with pytest.raises(ValueError, match="share the leading"):
        grain_batches({"a": np.arange(3), "b": np.arange(4)}, 1)
    with pytest.raises(ValueError, match="paths"):
        array_record_source(tmp_path / "missing.array_record")
    with pytest.raises(ValueError, match="smaller than the crop"):
        next(grain_batches({"image": _IMAGES}, 2, transforms=[random_crop(9)]))


_WORKER = """
import json, sys
import jax
from jcnf.data import grain_batches, tfds_source
port, process_id, data_dir, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)
assert jax.process_count() == 2
source = tfds_source("tiny_grain_images", "train", data_dir=data_dir)

def batches(**options):
    return grain_batches(source, 2, seed=5, **options)

epoch = [b["id"].tolist() for b in batches(num_epochs=1)]
straight = [b["id"].tolist() for b in batches(num_epochs=2)]
# Killed after four batches: the position, as a checkpoint stores it (JSON), restarts a new pipeline.
first = batches(num_epochs=2)
resumed = [next(first)["id"].tolist() for _ in range(4)]
state = json.loads(json.dumps(first.get_state()))
del first
again = batches(num_epochs=2)
again.set_state(state)
resumed += [b["id"].tolist() for b in again]
with open(out, "w") as f:
    json.dump({"epoch": epoch, "straight": straight, "resumed": resumed}, f)
"""


def test_two_processes_split_a_prepared_tfds_dataset_and_resume_exactly(tmp_path):
    TinyGrainImages(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    port, env = free_port(), subprocess_env(PYTHONPATH=os.getcwd())
    outs = [tmp_path / f"p{i}.json" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(port), str(i), str(tmp_path), str(outs[i])],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
    for proc in procs:
        output = proc.communicate(timeout=120)[0].decode()
        assert proc.returncode == 0, output
    hosts = [json.loads(out.read_text()) for out in outs]
    # Global batch 2 over 2 processes: one row each per batch, 3 batches per epoch of 6 examples.
    assert all(len(h["epoch"]) == 3 and all(len(rows) == 1 for rows in h["epoch"]) for h in hosts)
    seen = [i for h in hosts for rows in h["epoch"] for i in rows]
    assert sorted(seen) == list(range(len(_IMAGES)))  # the whole dataset, no example twice
    source = tfds_source("tiny_grain_images", "train", data_dir=tmp_path)
    single = [b["id"].tolist() for b in grain_batches(source, 2, seed=5, num_epochs=1)]
    assert [hosts[0]["epoch"][s] + hosts[1]["epoch"][s] for s in range(3)] == single
    for h in hosts:
        # Stopped in the second epoch's first batch and resumed: the same batches as the uninterrupted run.
        assert len(h["straight"]) == 6 and h["resumed"] == h["straight"]
