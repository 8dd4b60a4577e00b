"""Tests of experiments.superres: its grain training pipeline, bad input, and the smoke config end to end.

The smoke config runs as 1 process x 4 devices and as 2 processes x 2
devices; the single run's outputs are checked for content, then the same
directory is run again with more steps and must resume from its checkpoints.
"""

import json
import subprocess

import numpy as np
import pytest

from experiments import superres
from experiments._config import load_config
from tests._multihost import ROOT, assert_same_results, experiment_command, run_single_and_pair
from tests._xla import subprocess_env


def _data(**overrides):
    config = load_config("experiments/configs/superres.py:smoke")
    config.data.update(overrides)
    return config.data


def test_training_pairs_are_crops_of_the_photographs_and_split_over_processes():
    data = _data()
    source = superres.train_source(data, seed=0)
    assert len(source) == data.train_patches
    single = superres.training_batches(source, data, 4, seed=0, process_index=0, process_count=1)
    halves = [superres.training_batches(source, data, 4, seed=0, process_index=i, process_count=2) for i in range(2)]
    for _ in range(3):
        batch = next(single)
        value, context = batch["value"], batch["context"]
        assert value.shape == (4, 16, 16, 3) and context.shape == (4, 8, 8, 3) and set(batch) == {"value", "context"}
        # 8-bit pixels k / 256, and the context is the mean of each 2x2 block (float32 sums of four exact values).
        assert np.all(value * 256 == np.round(value * 256))
        np.testing.assert_allclose(context, value.reshape(4, 8, 2, 8, 2, 3).mean((2, 4)), rtol=1e-6)
        # Each process reads its own rows; stacked in process order they are the one-process batch, exactly.
        rows = [next(half) for half in halves]
        for key in ("value", "context"):
            np.testing.assert_array_equal(np.concatenate([row[key] for row in rows]), batch[key])


def test_a_process_count_that_does_not_divide_the_batch_is_named():
    data = _data()
    with pytest.raises(ValueError, match=r"`train.batch` \(4\) must be divisible by the number of processes \(3\)"):
        superres.training_batches(superres.train_source(data, 0), data, 4, seed=0, process_index=0,
                                  process_count=3)


def test_a_folder_without_images_is_named(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.txt").write_text("no images here")
    data = _data(source="folder", train_folder=str(tmp_path / "train"), test_folder=str(tmp_path))
    with pytest.raises(ValueError, match=r"`data.train_folder`.*holds no files ending in"):
        superres.train_source(data, 0)


def test_an_unprepared_tfds_dataset_names_where_it_looked_and_downloads_nothing(tmp_path):
    data = _data(source="tfds", tfds_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not prepared") as error:
        superres.train_source(data, 0)
    assert str(tmp_path) in str(error.value) and "never downloads" in str(error.value)
    assert not any(tmp_path.rglob("*.tar*")) and not (tmp_path / "downloads").exists()


def test_an_unknown_config_key_stops_the_run_before_it_starts(tmp_path):
    with pytest.raises(ValueError, match="Unknown config key `train.stpes`"):
        superres.main(["--config", "experiments/configs/superres.py:smoke", "--config.train.stpes=3",
                       "--out", str(tmp_path / "never")])
    assert not (tmp_path / "never").exists()


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_superres_smoke_one_and_two_processes_then_resumes(tmp_path):
    # The rerun below compiles the same programs as the single run: it reads them from the single run's
    # compilation cache (every program cached, however fast it compiled).
    cache = dict(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "compilation_cache"),
                 JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    single, pair = run_single_and_pair("superres", tmp_path, single_env=cache)
    results = json.loads((single / "results.json").read_text())
    assert (single / "samples.png").stat().st_size > 1000
    assert (single / "model" / "model.json").is_file() and (pair / "model" / "model.json").is_file()
    # The baseline's head width is chosen to match the flow's parameter count:
    # within 15% at this tiny size (one width step changes it by a few percent).
    assert abs(results["baseline"]["params"] / results["cnf"]["params"] - 1) < 0.15
    for name in ("cnf", "baseline"):
        # Even barely trained, both are proper models of 8-bit data: below the
        # 8 bits/dim of a uniform model, plus slack for 4 steps of training.
        assert 0 < results[name]["test_bits_per_dim"] < 9.0
        assert np.isfinite(results[name]["train_bits_per_dim_last"])
    assert set(results["cnf"]["samples"]) == {"0", "0.5", "0.8", "1"}
    for scores in [results["bicubic"], results["baseline"]["mode"], *results["cnf"]["samples"].values()]:
        assert np.isfinite(scores["psnr"]) and -1.0 <= scores["ssim"] <= 1.0
    # Bicubic upsampling of a x2 area-downsampled photograph is a strong
    # reference: well above 20 dB on natural-image patches.
    assert results["bicubic"]["psnr"] > 20.0
    claims = results["claims"]
    assert set(claims) == {"cnf_bits_per_dim_below_baseline", "cnf_t0_psnr_at_least_bicubic",
                           "cnf_t0_psnr_above_baseline_mode", "lower_temperature_higher_psnr"}
    assert all(isinstance(c["holds"], bool) and c["claim"] and c["evidence"] for c in claims.values())
    assert claims["cnf_bits_per_dim_below_baseline"]["holds"] == (
        results["cnf"]["test_bits_per_dim"] < results["baseline"]["test_bits_per_dim"])
    # Both processes train on the same global batches (grain rows stacked in process order) with the
    # same keys; only the all-reduce order differs (float32 round-off, ~1e-7). Four Adam steps and the
    # scoring keep that at ~1e-5 relative; a sample pixel at a quantization bin edge can still flip one
    # 8-bit level, which moves a PSNR of 20-45 dB over 8 tiles by ~1e-3 dB, hence rtol 1e-3.
    assert_same_results(single, pair, rtol=1e-3, atol=1e-4)

    # Rerun the single run's directory with more steps: each model resumes from its step-4 checkpoint.
    before = {name: _records(single / f"{name}_metrics.jsonl") for name in ("cnf", "baseline")}
    assert [r["step"] for r in before["cnf"]] == [1, 2, 3, 4]
    done = subprocess.run(experiment_command("superres", "smoke", single, "off") + ["--config.train.steps=6"],
                          timeout=300, cwd=ROOT, env=subprocess_env(4, **cache), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("cnf", "baseline"):
        after = _records(single / f"{name}_metrics.jsonl")
        # The first run's records (their wall-clock rates included) are kept verbatim: steps 1-4 were
        # not trained again; only 5 and 6 are new.
        assert after[:4] == before[name] and [r["step"] for r in after[4:]] == [5, 6]
        assert {p.name for p in (single / "checkpoints" / name).iterdir()} >= {"4", "6"}
