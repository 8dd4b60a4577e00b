"""SuperResolutionBatches: on-device pairs, prefetch, exact resume, two processes."""

import json

import _train_worker as worker
import jax
import numpy as np
import pytest

from jcnf.data import SuperResolutionBatches


def _patches():
    return np.random.default_rng(0).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)


def test_batches_are_pairs_on_device():
    patches = _patches()
    batches = SuperResolutionBatches(patches, 4, 2, seed=1, prefetch=2)
    seen = []
    for _ in range(3):  # one epoch
        batch = next(batches)
        assert isinstance(batch["value"], jax.Array) and batch["value"].shape == (4, 8, 8, 3)
        assert batch["context"].shape == (4, 4, 4, 3)
        value = np.asarray(batch["value"])
        np.testing.assert_allclose(np.asarray(batch["context"]), value.reshape(4, 4, 2, 4, 2, 3).mean((2, 4)),
                                   atol=1e-7)  # float32 mean of four values
        seen.extend(np.round(value * 256).astype(np.uint8))
    assert sorted(p.tobytes() for p in seen) == sorted(p.tobytes() for p in patches)


def test_state_resumes_at_the_next_unreturned_batch():
    batches = SuperResolutionBatches(_patches(), 4, 2, seed=1, prefetch=3)
    next(batches)
    state = batches.get_state()
    expected = [np.asarray(next(batches)["value"]) for _ in range(4)]
    resumed = SuperResolutionBatches(_patches(), 4, 2, seed=1, prefetch=1)
    resumed.set_state(state)
    for want in expected:
        np.testing.assert_array_equal(np.asarray(next(resumed)["value"]), want)


def test_bad_patches():
    with pytest.raises(ValueError, match="uint8"):
        SuperResolutionBatches(_patches().astype(np.float32) / 256, 4, 2)
    with pytest.raises(ValueError, match="divisible by `factor`=3"):
        SuperResolutionBatches(_patches(), 4, 3)
    with pytest.raises(ValueError, match="rank 4"):
        SuperResolutionBatches(_patches()[0], 4, 2)
    with pytest.raises(ValueError, match="prefetch"):
        SuperResolutionBatches(_patches(), 4, 2, prefetch=0)
    with pytest.raises(ValueError, match="`prefetch`"):
        SuperResolutionBatches(_patches(), 4, 2, prefetch=1.5)
    with pytest.raises(ValueError, match="`factor` must be an integer >= 1"):
        SuperResolutionBatches(_patches(), 4, 0)


def test_two_processes_build_the_global_batch_from_their_own_rows(tmp_path):
    outputs = worker.run_two_processes("superres", str(tmp_path / "p"))
    got = [dict(np.load(out + ".npz")) for out in outputs]
    # One process, the same patches and seed: the global batches the two processes must assemble together.
    single = SuperResolutionBatches(worker.superres_patches(), 4, 2, seed=1, prefetch=2)
    for i in range(3):
        batch = next(single)
        for key in ("value", "context"):
            want = np.asarray(batch[key])
            for process, record in enumerate(got):
                # Exact: the same uint8 pixels through the same jitted float32 arithmetic.
                np.testing.assert_array_equal(record[f"{key}_{i}"], want)
                # Each process holds (and read) only its half of the global batch.
                np.testing.assert_array_equal(record[f"local_{key}_{i}"], want[2 * process:2 * process + 2])
    for out in outputs:
        with open(out) as f:
            error = json.load(f)["odd_error"]
        assert "`batch_size` (3)" in error and "processes (2)" in error, error
