"""Device mesh, shardings and multi-host setup for data-parallel training.

Data parallelism is a sharding annotation (docs/architecture.md): a
`jax.sharding.Mesh` over all devices with one axis named "data"; every batch
is split along its leading axis over that axis (`NamedSharding(mesh,
P("data"))`) and the train state is replicated (`NamedSharding(mesh, P())`).
`jax.jit` with these in/out shardings inserts the gradient all-reduce, so the
same step runs on one CPU, 8 fake CPU devices and a multi-host TPU pod.

Multi-host: call `initialize_distributed()` first thing in the script. Each
process then feeds only its own shard of the global batch (a numpy array of
`global_batch / process_count` rows); `shard_batch` assembles the global
`jax.Array` with `jax.make_array_from_process_local_data`. Every process must
hold the same parameters, which `create_state` guarantees by initializing
under `jit` on the global example batch.

Sharding parameters of large models (FSDP / tensor parallelism): the steps
take the state's sharding from `state_sharding(mesh)`, a replicated
`NamedSharding`. For a model too large to replicate, build a 2-D mesh
(`Mesh(devices.reshape(n_data, n_model), ("data", "model"))`), annotate the
large kernels with `flax.linen.with_partitioning(init, (None, "model"))`, and
use `flax.linen.get_sharding(nn.get_partition_spec(abstract_state), mesh)` as
the state's in/out sharding in place of `state_sharding(mesh)`; batches keep
`P("data")`, and XLA inserts the all-gathers. The steps do not take that
sharding as an argument yet: `state_sharding` is the one function that
`create_state`, `place_state`, `make_train_step`, `mle_eval_step`,
`reverse_kl_step` and `sample_step` call for it, so that is where the change
goes (a replicated state is what this release tests).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A 1-D mesh with a "data" axis over `devices` (default: all devices of all processes).

    Args:
      devices: the devices to train on, e.g. `jax.devices()[:1]` for one device.

    Returns:
      A `jax.sharding.Mesh` of shape {"data": len(devices)}.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("`devices` must name at least one device; got an empty sequence.")
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def state_sharding(mesh: Mesh) -> NamedSharding:
    """Replicates the train state (params, optimizer state, rng) on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Splits each batch array along its leading axis over the mesh's "data" axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def data_axis_size(mesh: Mesh) -> int:
    """Number of devices the batch is split over."""
    if DATA_AXIS not in mesh.shape:
        raise ValueError(f"`mesh` must have an axis named {DATA_AXIS!r}; got axes {tuple(mesh.axis_names)}.")
    return mesh.shape[DATA_AXIS]


def check_batch_size(global_batch: int, mesh: Mesh) -> None:
    """Raises a `ValueError` unless `global_batch` splits evenly over the mesh's "data" axis."""
    _check_divisible(global_batch, data_axis_size(mesh), "global batch size", "devices on the mesh's 'data' axis")


def _check_divisible(size: int, devices: int, what: str, over: str) -> None:
    if size % devices:
        lower = max(devices, size // devices * devices)
        raise ValueError(f"The {what} ({size}) must be divisible by the number of {over} ({devices}); "
                         f"use e.g. {lower} or {lower + devices}.")


def raw_key(rng: Array) -> Array:
    """Key data (uint32 [2]) of a new-style typed key; raw keys pass through.

    Raw key data is what the train state keeps and replicates over the mesh:
    it checkpoints as a plain integer array on every orbax version.
    """
    if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(rng)
    return jnp.asarray(rng)


def shard_batch(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    """Places a batch on the mesh, split along the leading axis.

    Numpy (or other host) arrays are this process's rows of the global batch:
    with one process that is the whole batch; with several, each process
    passes its own `global_batch / process_count` rows. A `jax.Array` already
    sharded as `batch_sharding(mesh)` passes through untouched.

    Args:
      batch: dict of arrays with a common leading batch axis.
      mesh: the training mesh.

    Returns:
      The same keys, as global `jax.Array`s sharded over the "data" axis.
    """
    if not isinstance(batch, Mapping):
        raise ValueError(f"`batch` must be a dict of arrays with a leading batch axis; got {type(batch).__name__}.")
    target = batch_sharding(mesh)
    sizes = {key: np.shape(x)[0] if np.ndim(x) else None for key, x in batch.items()}
    for key, size in sizes.items():
        if size is None:
            raise ValueError(f"`batch[{key!r}]` must have a leading batch axis; got a scalar.")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"All arrays in `batch` must share the leading (batch) axis; got sizes {sizes}.")
    out = {}
    for key, x in batch.items():
        if isinstance(x, jax.Array) and x.sharding == target:
            out[key] = x
        elif isinstance(x, jax.Array) or jax.process_count() == 1:
            check_batch_size(np.shape(x)[0], mesh)
            out[key] = jax.device_put(x if isinstance(x, jax.Array) else np.asarray(x), target)
        else:
            local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
            _check_divisible(np.shape(x)[0], local_devices, "per-process batch size", "this process's devices")
            out[key] = jax.make_array_from_process_local_data(target, np.asarray(x))
    return out


def initialize_distributed(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> bool:
    """Joins a multi-process JAX job when the arguments or the environment describe one.

    Call it once, first thing in a training script (before any other JAX
    call). The job is described by, in order of precedence:

    * the arguments;
    * the environment variables `JAX_COORDINATOR_ADDRESS` ("host:port" of
      process 0), `JCNF_NUM_PROCESSES` and `JCNF_PROCESS_ID`;
    * `JCNF_DISTRIBUTED=auto`: let `jax.distributed.initialize()` detect the
      cluster itself (Cloud TPU pods, SLURM, Open MPI, Kubernetes).

    With none of these it does nothing: a single-process run.

    Returns:
      True when this process is part of a multi-process job after the call.
    """
    if jax.distributed.is_initialized():
        return True
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and "JCNF_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["JCNF_NUM_PROCESSES"])
    if process_id is None and "JCNF_PROCESS_ID" in os.environ:
        process_id = int(os.environ["JCNF_PROCESS_ID"])
    if coordinator_address is not None:
        if num_processes is None or process_id is None:
            raise ValueError("A coordinator address was given; also set `num_processes` and `process_id` "
                             "(or JCNF_NUM_PROCESSES and JCNF_PROCESS_ID).")
        _initialize(coordinator_address, num_processes, process_id)
        return True
    if os.environ.get("JCNF_DISTRIBUTED", "").lower() == "auto":
        _initialize()
        return True
    return False


def _initialize(*args) -> None:
    try:
        jax.distributed.initialize(*args)
    except RuntimeError as err:
        raise RuntimeError(f"{err} Call jcnf.sharding.initialize_distributed() first thing in the script, before "
                           "creating any array or model.") from err
