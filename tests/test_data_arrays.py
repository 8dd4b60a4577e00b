"""jcnf.data.arrays: ArrayBatches shuffles per epoch, resumes exactly, splits over processes."""

import numpy as np
import pytest

from jcnf.data import ArrayBatches


def _arrays(n=10):
    return {"value": np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32),
            "context": np.arange(n, dtype=np.float32)[:, None]}


def test_epochs_are_permutations_with_the_remainder_dropped():
    batches = ArrayBatches(_arrays(10), batch_size=3, seed=1)
    assert batches.batches_per_epoch == 3
    for _ in range(2):
        rows = np.concatenate([next(batches)["context"][:, 0] for _ in range(3)])
        assert len(set(rows.tolist())) == 9 and rows.max() <= 9
    batch = next(batches)
    assert batch["value"].shape == (3, 2) and np.array_equal(batch["value"][:, 0], batch["context"][:, 0])


def test_get_state_set_state_resumes_the_same_sequence():
    batches = ArrayBatches(_arrays(), batch_size=4, seed=3)
    for _ in range(3):
        next(batches)
    position = batches.get_state()
    expected = [next(batches)["context"] for _ in range(5)]
    fresh = ArrayBatches(_arrays(), batch_size=4, seed=3)
    fresh.set_state(position)
    for want in expected:
        np.testing.assert_array_equal(next(fresh)["context"], want)
    with pytest.raises(ValueError, match="seed"):
        ArrayBatches(_arrays(), batch_size=4, seed=4).set_state(position)


def test_processes_get_disjoint_halves_of_the_global_batch():
    whole = next(ArrayBatches(_arrays(), batch_size=4, seed=0, process_index=0, process_count=1))
    halves = [next(ArrayBatches(_arrays(), batch_size=4, seed=0, process_index=i, process_count=2))
              for i in range(2)]
    np.testing.assert_array_equal(np.concatenate([h["context"] for h in halves]), whole["context"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        ArrayBatches(_arrays(4), batch_size=5)
    with pytest.raises(ValueError, match="`batch_size`"):
        ArrayBatches(_arrays(4), batch_size=2.0)
    with pytest.raises(ValueError, match="leading"):
        ArrayBatches({"value": np.zeros((4, 2)), "context": np.zeros((3, 1))}, batch_size=2)
    with pytest.raises(ValueError, match="processes"):
        ArrayBatches(_arrays(), batch_size=3, process_index=0, process_count=2)
