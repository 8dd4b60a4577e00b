"""A shuffling batch iterator over in-memory arrays, with a resumable position.

The data-position protocol used by `fit` for exact resumption is the one of
grain's iterators: an iterator that has `get_state() -> dict` (JSON-able) and
`set_state(dict)` is checkpointed with the train state and put back at the
same batch on resume. `ArrayBatches` implements it; so does any
`grain.DatasetIterator`. An iterator without the two methods is resumed by
drawing and discarding as many batches as it had given before the
checkpoint, which is exact only for an iterator that replays the same
sequence when created again.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from jcnf._checks import check_int


def example_arrays(arrays: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
    """`arrays` as numpy arrays, and their shared number of examples (the leading axis).

    Raises:
      ValueError: `arrays` is not a non-empty dict, or its arrays differ in length.
    """
    if not isinstance(arrays, Mapping) or not arrays:
        raise ValueError("`arrays` must be a non-empty dict of arrays with a shared leading axis.")
    arrays = {key: np.asarray(x) for key, x in arrays.items()}
    sizes = {key: x.shape[0] if x.ndim else None for key, x in arrays.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(f"All arrays must share the leading (example) axis; got sizes {sizes}.")
    return arrays, next(iter(sizes.values()))

class ArrayBatches:
    """Endless shuffled batches {key: array[batch_size, ...]} from a dict of equal-length arrays.

    Each epoch is a fresh permutation drawn from `(seed, epoch)`, so the
    sequence of batches is a function of the seed alone and the position is
    two integers. The last incomplete batch of an epoch is dropped: every
    batch has the same shape and the step compiles once.

    With several processes, `batch_size` is the global batch and each process
    yields its own `batch_size / process_count` consecutive rows of it, which
    `shard_batch` assembles into the global array.

    Args:
      arrays: dict of arrays sharing the leading axis (e.g. {"value", "context"}).
      batch_size: global batch size.
      seed: seed of the shuffling.
      process_index: this process's index (default `jax.process_index()`).
      process_count: number of processes (default `jax.process_count()`).
    """

    def __init__(self, arrays: Mapping[str, Any], batch_size: int, seed: int = 0,
                 process_index: int | None = None, process_count: int | None = None):
        self._arrays, self._num_examples = example_arrays(arrays)
        check_int("batch_size", batch_size)
        if not 1 <= batch_size <= self._num_examples:
            raise ValueError(f"`batch_size` must be in [1, {self._num_examples}] (the number of examples); "
                             f"got {batch_size}.")
        self._process_index = jax.process_index() if process_index is None else process_index
        self._process_count = jax.process_count() if process_count is None else process_count
        if batch_size % self._process_count:
            raise ValueError(f"`batch_size` ({batch_size}) must be divisible by the number of processes "
                             f"({self._process_count}).")
        self.batch_size = batch_size
        self.seed = seed
        self._epoch = 0
        self._index = 0
        self._order = self._permutation(0)

    @property
    def batches_per_epoch(self) -> int:
        """Full batches in one epoch (the last incomplete one is dropped)."""
        return self._num_examples // self.batch_size

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self._num_examples)

    def __iter__(self) -> "ArrayBatches":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._index >= self.batches_per_epoch:
            self._epoch += 1
            self._index = 0
            self._order = self._permutation(self._epoch)
        local = self.batch_size // self._process_count
        start = self._index * self.batch_size + self._process_index * local
        rows = self._order[start:start + local]
        self._index += 1
        return {key: x[rows] for key, x in self._arrays.items()}

    def get_state(self) -> dict[str, int]:
        """The position: the next batch is batch `index` of epoch `epoch`."""
        return {"seed": self.seed, "epoch": self._epoch, "index": self._index}

    def set_state(self, state: Mapping[str, int]) -> None:
        """Moves to a position from `get_state`."""
        if state["seed"] != self.seed:
            raise ValueError(f"The saved data position is for seed {state['seed']}, this iterator has "
                             f"seed {self.seed}.")
        self._epoch, self._index = int(state["epoch"]), int(state["index"])
        self._order = self._permutation(self._epoch)
