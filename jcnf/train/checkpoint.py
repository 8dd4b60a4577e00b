"""Checkpoints of the train state and the data position, with orbax-checkpoint.

Each checkpoint is a directory `<checkpoint_dir>/<step>/` holding two items:
"state" (the `TrainState`'s arrays as a plain nested dict, orbax's standard
format, readable without jcnf) and "data" (the data iterator's position as
JSON). Orbax writes a checkpoint into a temporary directory and renames it
when complete, so a run killed at any moment leaves only complete
checkpoints; `keep` bounds how many are kept. Saving is asynchronous: the
arrays are copied to host memory before `save` returns and written in the
background while training goes on. With several processes every process
calls `save` and `restore` (orbax coordinates them); the data position is
written by process 0, so each process's iterator must be at the same
position, as `ArrayBatches` are.

Orbax refuses zero-size arrays, and every jcnf flow carries one (the shape
marker `[0, *event_shape]` that remembers the value's shape). Such leaves
carry no data, only their shape, so they are saved as a scalar placeholder
and restored from the template state, which has the same shapes.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jcnf._checks import check_int
from jcnf.train.state import TrainState

_FIELDS = ("step", "params", "opt_state", "rng", "skipped", "skip_run", "ema_params")


def _to_tree(state: TrainState) -> dict[str, Any]:
    tree = {name: getattr(state, name) for name in _FIELDS}
    return jax.tree.map(lambda x: jnp.zeros((), x.dtype, device=x.sharding) if x.size == 0 else x, tree)


class Checkpointer:
    """Periodic, atomic checkpoints in one directory, keeping the last `keep`.

    Args:
      directory: where the step directories go (created if missing).
      keep: number of most recent checkpoints kept.
      asynchronous: write in a background thread (call `wait()` or `close()`).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3, asynchronous: bool = True):
        check_int("keep", keep)
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True,
                                               enable_async_checkpointing=asynchronous)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def latest_step(self) -> Optional[int]:
        """The step of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of all complete checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: TrainState, data_state: Optional[dict] = None) -> None:
        """Saves `state` and the data position `data_state` (JSON-able) as checkpoint `step`."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(_to_tree(state)),
                                  data=ocp.args.JsonSave(data_state or {}))
        self._manager.save(step, args=args, force=True)

    def restore(self, template: TrainState, step: Optional[int] = None) -> tuple[TrainState, dict]:
        """Restores checkpoint `step` (default: the latest) onto the template's shapes and shardings.

        Args:
          template: a state of the same model and optimizer (e.g. a fresh
            `create_state`); supplies the tree structure, the static fields,
            the shardings and the zero-size leaves.
          step: which checkpoint.

        Returns:
          The restored state and the saved data position.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No complete checkpoint in {self.directory}.")
        template_tree = _to_tree(template)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template_tree)
        restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                       data=ocp.args.JsonRestore()))
        full = {name: getattr(template, name) for name in _FIELDS}
        tree = jax.tree.map(lambda original, loaded: original if original.size == 0 else loaded,
                            full, restored["state"])
        return template.replace(**tree), dict(restored["data"] or {})

    def wait(self) -> None:
        """Blocks until background writes have finished."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending writes and releases the manager."""
        self._manager.close()
