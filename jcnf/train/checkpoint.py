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
one. The unreadable checkpoint is never deleted; when the resumed run saves
that step again, the old directory is moved aside to `<step>.unreadable`.
A checkpoint of another model or optimizer is refused with a `ValueError`
listing what differs, before anything is restored.

Orbax refuses zero-size arrays, and every jcnf flow carries one (the shape
marker `[0, *event_shape]` that remembers the value's shape). Such leaves
carry no data, only their shape, so they are saved as a scalar placeholder
and restored from the template state, which has the same shapes.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Optional

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from jcnf._checks import check_int
from jcnf.train.state import TrainState

_FIELDS = ("step", "params", "opt_state", "rng", "skipped", "skip_run", "ema_params")
_SHOWN = 5  # entries of each kind listed in a mismatch message


def checkpoint_path(directory: str | os.PathLike) -> epath.Path:
    """`directory` as an absolute `epath.Path`; a remote one (`gs://...`) is kept exactly as given."""
    path = epath.Path(directory)
    return path if path.is_absolute() else path.absolute()


def _to_tree(state: TrainState) -> dict[str, Any]:
    tree = {name: getattr(state, name) for name in _FIELDS}
    return jax.tree.map(lambda x: jnp.zeros((), x.dtype, device=x.sharding) if x.size == 0 else x, tree)


def _key_name(key: Any) -> str:
    # Dicts, sequences and named tuples are saved as nested dicts and lists:
    # compare by the plain name or index of each level.
    for attribute in ("key", "idx", "name"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """{"params/flow/...": shape} of every leaf (arrays or orbax array metadata)."""
    leaves = jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))
    return {"/".join(_key_name(key) for key in path): tuple(leaf.shape) for path, leaf in leaves}


def _listed(names: list[str]) -> str:
    more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _check_compatible(stored: Any, template_tree: dict[str, Any], where: str) -> None:
    """Raises a `ValueError` listing the differences when the stored tree is not the template's.

    Args:
      stored: the checkpoint's tree metadata (orbax's item metadata of "state").
      template_tree: `_to_tree(template)`, with the same placeholders.
      where: the checkpoint's path, for the message.
    """
    saved, wanted = _shapes(stored), _shapes(template_tree)
    # Parameters first: they say most directly which model the checkpoint is of.
    order = {name: i for i, name in enumerate(("params", "ema_params", "opt_state"))}
    rank = lambda path: (order.get(path.split("/")[0], len(order)), path)  # noqa: E731
    missing = sorted(set(wanted) - set(saved), key=rank)
    extra = sorted(set(saved) - set(wanted), key=rank)
    reshaped = sorted((path for path in set(saved) & set(wanted) if saved[path] != wanted[path]), key=rank)
    if not (missing or extra or reshaped):
        return
    parts = [f"The checkpoint {where} does not match this model and optimizer (its state differs from the "
             f"template's)."]
    if missing:
        parts.append(f"Missing from the checkpoint ({len(missing)}): {_listed(missing)}.")
    if extra:
        parts.append(f"Not in this model's state ({len(extra)}): {_listed(extra)}.")
    if reshaped:
        parts.append(f"Shapes differ ({len(reshaped)}): " + _listed(
            [f"{path} {saved[path]} in the checkpoint vs {wanted[path]}" for path in reshaped]) + ".")
    raise ValueError(" ".join(parts))


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

    def save(self, step: int, state: TrainState, data_state: Optional[dict] = None) -> None:
        """Saves `state` and the data position `data_state` (JSON-able) as checkpoint `step`.

        A checkpoint already at `step` (one `restore` could not read, which the
        resumed run has now reached again) is moved aside, not deleted.
        """
        if step in self._manager.all_steps():
            self._set_aside(step)
        args = ocp.args.Composite(state=ocp.args.StandardSave(_to_tree(state)),
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

    def restore(self, template: TrainState, step: Optional[int] = None) -> tuple[TrainState, dict]:
        """Restores checkpoint `step` (default: the newest readable one) onto the template's shapes and shardings.

        Without `step`, a checkpoint that cannot be read is reported with a
        warning (its step, path and the error) and the next older one is
        tried; nothing is deleted.

        Args:
          template: a state of the same model and optimizer (e.g. a fresh
            `create_state`); supplies the tree structure, the static fields,
            the shardings and the zero-size leaves.
          step: which checkpoint.

        Returns:
          The restored state and the saved data position.

        Raises:
          FileNotFoundError: no complete checkpoint, or none that can be read.
          ValueError: the checkpoint holds another model's or optimizer's state.
        """
        candidates = sorted(self._manager.all_steps(), reverse=True) if step is None else [step]
        if not candidates:
            raise FileNotFoundError(f"No complete checkpoint in {self.directory}.")
        template_tree = _to_tree(template)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template_tree)
        failures = []
        for candidate in candidates:
            where = f"step {candidate} ({self.directory / str(candidate)})"
            try:
                stored = self._stored_tree(candidate)
            except Exception as err:  # noqa: BLE001 - whatever fails to read makes the checkpoint unusable
                failures.append(self._unreadable(where, err, fall_back=step is None))
                continue
            # Outside the try: another model's checkpoint is the caller's error, not a storage fault.
            _check_compatible(stored, template_tree, where)
            try:
                restored = self._manager.restore(candidate, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
            except Exception as err:  # noqa: BLE001
                failures.append(self._unreadable(where, err, fall_back=step is None))
                continue
            full = {name: getattr(template, name) for name in _FIELDS}
            tree = jax.tree.map(lambda original, loaded: original if original.size == 0 else loaded,
                                full, restored["state"])
            return template.replace(**tree), dict(restored["data"] or {})
        raise FileNotFoundError(f"No checkpoint in {self.directory} can be read: " + "; ".join(failures) + ".")

    def _stored_tree(self, step: int) -> Any:
        """The orbax tree metadata of checkpoint `step`'s state (paths, shapes, dtypes)."""
        metadata = self._manager.item_metadata(step)
        stored = None if metadata is None else metadata["state"]
        if stored is None:
            raise OSError("its tree metadata is missing")
        return stored

    @staticmethod
    def _unreadable(where: str, err: Exception, fall_back: bool) -> str:
        reason = f"{type(err).__name__}: {err}"
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
