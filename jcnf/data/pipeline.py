"""Super-resolution batches: shuffled high-resolution patches, pairs made and prefetched on device."""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping, Optional

import jax
import numpy as np
from jax.sharding import Mesh

from jcnf._checks import check_int
from jcnf.data.arrays import ArrayBatches
from jcnf.data.images import check_images, make_pairs
from jcnf.sharding import batch_sharding, check_batch_size, make_mesh, shard_batch


class SuperResolutionBatches:
    """Endless batches {"value": [B, H, W, C], "context": [B, H/f, W/f, C]} on device.

    The uint8 patches are shuffled by `ArrayBatches` (so the position is
    resumable: `get_state`/`set_state`, the protocol `jcnf.train.fit` uses),
    copied to the mesh as uint8 (4x less traffic than float32), and turned
    into pairs by one jitted `make_pairs` on device. `prefetch` batches are
    kept in flight: JAX dispatches copies and computations asynchronously,
    so the next batches are prepared while the current step runs.

    With several processes each process holds the same `patches` (or the
    same file, memory-mapped) and reads only its own `batch_size /
    process_count` rows of each global batch; the global batch is assembled
    from every process's rows on the mesh (`jcnf.sharding.shard_batch`).

    Args:
      patches: high-resolution patches, uint8 [N, H, W, C].
      batch_size: global batch size B, divisible by the number of processes
        and of devices on the mesh.
      factor: downsampling factor f (H and W divisible by it).
      seed: shuffling seed.
      prefetch: batches kept in flight (>= 1).
      mesh: where the batches go (default `make_mesh()`, all devices).
    """

    def __init__(self, patches: np.ndarray, batch_size: int, factor: int, seed: int = 0, prefetch: int = 2,
                 mesh: Optional[Mesh] = None):
        check_images("patches", patches)
        if patches.dtype != np.uint8:
            raise ValueError(f"`patches` must be uint8 (8-bit pixels); got dtype {patches.dtype}.")
        check_int("factor", factor)
        if patches.shape[1] % factor or patches.shape[2] % factor:
            raise ValueError(f"`patches` height and width must be divisible by `factor`={factor}; got shape "
                             f"{tuple(patches.shape)}.")
        check_int("prefetch", prefetch)
        self._mesh = make_mesh() if mesh is None else mesh
        # ArrayBatches checks the batch against the process count, this the device count.
        self._batches = ArrayBatches({"patch": patches}, batch_size, seed=seed)
        check_batch_size(batch_size, self._mesh)
        self._sharding = batch_sharding(self._mesh)
        self._make = jax.jit(lambda x: make_pairs(x, factor), out_shardings=self._sharding)
        self._prefetch = prefetch
        self._queue: deque[tuple[dict, dict]] = deque()

    def _fill(self) -> None:
        while len(self._queue) < self._prefetch:
            position = self._batches.get_state()
            # This process's rows of the global batch, placed on its devices of the global array.
            patch = shard_batch(next(self._batches), self._mesh)["patch"]
            self._queue.append((position, self._make(patch)))

    def __iter__(self) -> "SuperResolutionBatches":
        return self

    def __next__(self) -> dict[str, jax.Array]:
        self._fill()
        batch = self._queue.popleft()[1]
        self._fill()
        return batch

    def get_state(self) -> dict[str, Any]:
        """The position of the next batch to be returned (prefetched ones are not counted as used)."""
        return self._queue[0][0] if self._queue else self._batches.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Moves to the position `get_state` returned; prefetched batches are dropped."""
        self._queue.clear()
        self._batches.set_state(state)
