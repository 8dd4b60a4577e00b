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

The directory may be local or remote (`gs://bucket/run`): paths go through
`etils.epath`, which orbax also uses.

A complete checkpoint can still be unreadable (a storage fault, files
overwritten): `restore` then warns and falls back to the newest readable
one; with several processes, the newest one that every process can read, so
all resume from the same step. Other errors (out of memory, sharding) are
not taken for unreadable data and propagate. The unreadable checkpoint is never deleted; when the resumed run saves
that step again, the old directory is moved aside to `<step>.unreadable`.
A checkpoint of another model or optimizer is refused with a `ValueError`
listing what differs, before anything is restored.

Orbax refuses zero-size arrays, and every jcnf flow carries one (the shape
marker `[0, *event_shape]` that remembers the value's shape). Such leaves
carry no data, only their shape, so they are saved as a scalar placeholder
and restored from the template state, which has the same shapes.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from jcnf._checks import check_int
from jcnf._trees import shape_differences
from jcnf.train.state import TrainState

_FIELDS = ("step", "params", "opt_state", "rng", "skipped", "skip_run", "ema_params")


def checkpoint_path(directory: str | os.PathLike) -> epath.Path:
    """`directory` as an absolute `epath.Path`; a remote one (`gs://...`) is kept exactly as given."""
    path = epath.Path(directory)
    return path if path.is_absolute() else path.absolute()


def _to_tree(state: TrainState, extra: Any = None) -> dict[str, Any]:
    tree = _full_tree(state, extra)
    return jax.tree.map(lambda x: jnp.zeros((), x.dtype, device=x.sharding) if x.size == 0 else x, tree)


def _full_tree(state: TrainState, extra: Any = None) -> dict[str, Any]:
    """The saved fields of `state` as a dict, plus `extra` under "extra" when given."""
    tree = {name: getattr(state, name) for name in _FIELDS}
    return tree if extra is None else {**tree, "extra": extra}


def _check_compatible(stored: Any, template_tree: dict[str, Any], where: str) -> None:
    """Raises a `ValueError` listing the differences when the stored tree is not the template's.

    Args:
      stored: the checkpoint's tree metadata (orbax's item metadata of "state").
      template_tree: `_to_tree(template)`, with the same placeholders.
      where: the checkpoint's path, for the message.
    """
    # Parameters first: they say most directly which model the checkpoint is of.
    order = {name: i for i, name in enumerate(("params", "ema_params", "opt_state"))}
    rank = lambda path: (order.get(path.split("/")[0], len(order)), path)  # noqa: E731
    differences = shape_differences(stored, template_tree, "the checkpoint", "this model's state", rank)
    if not differences:
        return
    parts = [f"The checkpoint {where} does not match this model and optimizer (its state differs from the "
             f"template's).", *differences]
    raise ValueError(" ".join(parts))


# What a missing or corrupt checkpoint raises: orbax's missing files and items, undecodable JSON
# metadata, and tensorstore's status errors for missing or damaged array files (ValueErrors whose
# message starts with the status code). Everything else (out of memory, sharding errors) propagates.
_UNREADABLE = (FileNotFoundError, NotADirectoryError, KeyError, json.JSONDecodeError, UnicodeDecodeError)
_STORAGE_STATUS = ("NOT_FOUND:", "DATA_LOSS:", "OUT_OF_RANGE:", "FAILED_PRECONDITION:")


def _unreadable_reason(err: Exception) -> str:
    """`"ErrorType: message"` when `err` says the checkpoint's data cannot be read; otherwise re-raises it."""
    if isinstance(err, _UNREADABLE) or (isinstance(err, ValueError) and str(err).startswith(_STORAGE_STATUS)):
        return f"{type(err).__name__}: {err}"
    raise err


def _from_process_0(steps: list[int]) -> list[int]:
    """Process 0's list of steps, on every process (each may list a shared directory at another moment)."""
    count = int(multihost_utils.broadcast_one_to_all(np.int32(len(steps))))
    padded = np.zeros((count,), np.int32)
    padded[:min(count, len(steps))] = steps[:count]
    return [int(step) for step in multihost_utils.broadcast_one_to_all(padded)]


def _processes_failing(failed: bool) -> list[int]:
    """The indices of the processes where `failed` is true (one all-gather when there are several)."""
    if jax.process_count() == 1:
        return [0] if failed else []
    flags = np.asarray(multihost_utils.process_allgather(np.int32(failed))).reshape(-1)
    return [int(index) for index in np.flatnonzero(flags)]


class Checkpointer:
    """Periodic, atomic checkpoints in one directory, keeping the last `keep`.

    Args:
      directory: where the step directories go (created if missing); a local
        path or a remote one such as `gs://bucket/run`.
      keep: number of most recent checkpoints kept.
      asynchronous: write in a background thread (call `wait()` or `close()`).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3, asynchronous: bool = True):
        check_int("keep", keep)
        self.directory = checkpoint_path(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True,
                                               enable_async_checkpointing=asynchronous)
        # Handlers named up front, so that a fresh manager can read a checkpoint's metadata before any restore.
        handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> Optional[int]:
        """The step of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of all complete checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: TrainState, data_state: Optional[dict] = None, extra: Any = None) -> None:
        """Saves `state` and the data position `data_state` (JSON-able) as checkpoint `step`.

        `extra`, a pytree of arrays (e.g. the best parameters so far), is
        saved beside the state; restore it with `restore(..., extra=template)`.

        A checkpoint already at `step` (one `restore` could not read, which the
        resumed run has now reached again) is moved aside, not deleted.
        """
        if step in self._manager.all_steps():
            self._set_aside(step)
        args = ocp.args.Composite(state=ocp.args.StandardSave(_to_tree(state, extra)),
                                  data=ocp.args.JsonSave(data_state or {}))
        self._manager.save(step, args=args, force=True)

    def _set_aside(self, step: int) -> None:
        self._manager.wait_until_finished()
        source = self.directory / str(step)
        target = self.directory / f"{step}.unreadable"
        suffix = 1
        while target.exists():
            target, suffix = self.directory / f"{step}.unreadable-{suffix}", suffix + 1
        if jax.process_index() == 0:
            source.rename(target)
            warnings.warn(f"Checkpoint step {step} at {source} was moved to {target} before being written again.",
                          stacklevel=3)
        multihost_utils.sync_global_devices(f"jcnf checkpoint: step {step} set aside")
        self._manager.reload()

    def restore(self, template: TrainState, step: Optional[int] = None, extra: Any = None) -> tuple[Any, ...]:
        """Restores checkpoint `step` (default: the newest readable one) onto the template's shapes and shardings.

        Without `step`, a checkpoint that cannot be read is reported with a
        warning (its step, path and the error) and the next older one is
        tried; nothing is deleted. Only unreadable data falls back (missing
        files, corrupt JSON or array files: see `_UNREADABLE`); any other
        error (out of memory, a sharding error) propagates.

        With several processes, process 0's list of checkpoints is the one
        every process walks, and a checkpoint is taken only when every
        process has read it: all processes restore the same step even when
        one of them cannot read the newest.

        Args:
          template: a state of the same model and optimizer (e.g. a fresh
            `create_state`); supplies the tree structure, the static fields,
            the shardings and the zero-size leaves.
          step: which checkpoint.
          extra: a template of the `extra` tree saved with the state, if any.

        Returns:
          The restored state and the saved data position, and with `extra`
          the restored extra tree: `(state, position)` or `(state, position, extra)`.

        Raises:
          FileNotFoundError: no complete checkpoint, or none that can be read.
          ValueError: the checkpoint holds another model's or optimizer's state.
        """
        candidates = sorted(self._manager.all_steps(), reverse=True) if step is None else [step]
        if jax.process_count() > 1:
            candidates = _from_process_0(candidates)
        if not candidates:
            raise FileNotFoundError(f"No complete checkpoint in {self.directory}.")
        template_tree = _to_tree(template, extra)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template_tree)
        failures = []
        for candidate in candidates:
            where = f"step {candidate} ({self.directory / str(candidate)})"
            restored, error = self._read(candidate, template_tree, abstract, where)
            unreadable_on = _processes_failing(error is not None)
            if unreadable_on:
                reason = error if error is not None else f"unreadable on process(es) {unreadable_on}"
                failures.append(self._unreadable(where, reason, fall_back=step is None))
                continue
            state_tree, data = restored
            # Zero-size leaves were saved as placeholders: they come from the template.
            tree = jax.tree.map(lambda original, loaded: original if original.size == 0 else loaded,
                                _full_tree(template, extra), state_tree)
            restored_extra = tree.pop("extra", None)
            result = (template.replace(**tree), dict(data or {}))
            return result if extra is None else (*result, restored_extra)
        raise FileNotFoundError(f"No checkpoint in {self.directory} can be read: " + "; ".join(failures) + ".")

    def _read(self, step: int, template_tree: dict, abstract: Any, where: str) -> tuple[Any, Optional[str]]:
        """((state tree, data position), None), or (None, the reason) when this process cannot read `step`.

        Reads through orbax's item handlers rather than the manager, whose
        restore ends in a barrier: a process that fails to read must not
        leave the others waiting there, so the processes agree afterwards.
        """
        path = self.directory / str(step)
        try:
            stored = ocp.StandardCheckpointHandler().metadata(path / "state")
        except Exception as err:  # noqa: BLE001 - filtered by _unreadable_reason, which re-raises the rest
            return None, _unreadable_reason(err)
        # Outside the try: another model's checkpoint is the caller's error, not a storage fault.
        _check_compatible(stored, template_tree, where)
        try:
            state_tree = ocp.StandardCheckpointHandler().restore(path / "state",
                                                                 args=ocp.args.StandardRestore(abstract))
            data = ocp.JsonCheckpointHandler().restore(path / "data", args=ocp.args.JsonRestore())
        except Exception as err:  # noqa: BLE001 - as above
            return None, _unreadable_reason(err)
        return (state_tree, data), None

    @staticmethod
    def _unreadable(where: str, reason: str, fall_back: bool) -> str:
        if len(reason) > 300:
            reason = reason[:300] + "..."
        message = f"checkpoint {where} cannot be read ({reason})"
        if fall_back:
            warnings.warn(f"The {message}; trying the next older one. It is kept as it is.", stacklevel=3)
        return message

    def wait(self) -> None:
        """Blocks until background writes have finished."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending writes and releases the manager."""
        self._manager.close()
