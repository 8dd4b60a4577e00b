"""Multi-host plumbing of the experiment scripts: joining the job, host copies of global arrays, writing outputs.

On a pod every process runs the same script. Training arrays live on the
global mesh, so a host-side metric first gathers them
(`multihost_utils.process_allgather`); every process then holds the same
numbers, and process 0 alone writes files. Paths go through `etils.epath`,
so an output directory may be `gs://bucket/run`.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

import jcnf


def start(mode: str) -> None:
    """Joins the multi-process job per `mode` ("auto", "on" or "off"); call before any other JAX call."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"`distributed` must be 'auto', 'on' or 'off'; got {mode!r}.")
    if mode == "off":
        return
    joined = jcnf.sharding.initialize_distributed()
    if mode == "on" and not joined:
        jax.distributed.initialize()  # no job in the environment variables: let JAX detect the cluster


def is_writer() -> bool:
    """Whether this process writes the outputs: process 0 of the job."""
    return jax.process_index() == 0


def to_host(tree: Any) -> Any:
    """`tree` with every array as a numpy array holding its global value (gathered from all processes)."""
    def fetch(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree_util.tree_map(fetch, tree)


def output_dir(out: str) -> epath.Path:
    """The output directory as an `epath.Path`, created by the writing process."""
    path = epath.Path(out)
    if is_writer():
        path.mkdir(parents=True, exist_ok=True)
    return path


def metrics_file(out: epath.Path, name: str) -> str:
    """Path of a JSON-lines metrics file in `out` (the training loops write it from process 0 only)."""
    return str(out / f"{name}_metrics.jsonl")


def write_json(path: epath.Path, value: Any) -> None:
    """`value` as indented JSON at `path`, by process 0 only; numpy scalars become floats."""
    if is_writer():
        path.write_text(json.dumps(value, indent=2, default=float))


def write_outputs(out: epath.Path, config, results: dict) -> None:
    """results.json and the resolved config.json side by side, by process 0 only."""
    write_json(out / "config.json", config.to_dict())
    write_json(out / "results.json", results)


def checkpoint_dir(out: epath.Path, name: str) -> str:
    """`<out>/checkpoints/<name>` with process 0's `out`, the same string on every process.

    Every process writes its shards of a checkpoint into one directory (orbax
    coordinates them), so all must name the same one even when each was given
    its own `--out`; on a pod `--out` is one shared path (`gs://...`) anyway.
    """
    path = str(out / "checkpoints" / name)
    if jax.process_count() == 1:
        return path
    encoded = np.frombuffer(path.encode(), np.uint8)
    length = int(multihost_utils.broadcast_one_to_all(np.int32(len(encoded))))
    padded = np.zeros(length, np.uint8)
    padded[:min(length, len(encoded))] = encoded[:length]
    return bytes(np.asarray(multihost_utils.broadcast_one_to_all(padded))).decode()
