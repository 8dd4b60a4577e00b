"""The train state: parameters, optimizer state, step, rng, EMA and skip counters.

`state.params` is a dict of parameter trees, one per trained module:
`params["flow"]` holds the flow's parameters (what `model.init` returns under
"params") and, when the dequantizer is a Flax module,
`params["dequantizer"]` holds its own. One optimizer and one EMA cover the
whole dict, so a checkpoint, a preconditioning copy or a sharding annotation
treats every trained parameter alike. `state.variables()` gives the flow's
variables in the form `model.apply` expects.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training import train_state
from jax import Array
from jax.sharding import Mesh

from jcnf.dequantize.base import Dequantizer, apply_dequantizer, init_dequantizer
from jcnf.sharding import batch_sharding, make_mesh, raw_key, shard_batch, state_sharding


class TrainState(train_state.TrainState):
    """Everything a train step reads and writes; a pytree, replicated over the mesh.

    Flax's `TrainState` (step, params, tx, opt_state and `apply_gradients`)
    plus the training key, the non-finite guard's counters and an EMA.
    `apply_fn` is None: the steps take the model as an argument.

    Attributes:
      step: number of steps taken (skipped ones included), int32 [].
      params: {"flow": flow params, "dequantizer": ... (module dequantizers only)}.
      opt_state: the optimizer's state for `params`.
      rng: raw `jax.random` key data, uint32 [2]; split once per step.
      skipped: total steps whose loss, gradients, updates or optimizer state were not finite, int32 [].
      skip_run: current run of consecutive skipped steps, int32 [].
      ema_params: exponential moving average of `params`, or None.
      tx: the optax optimizer (static: part of the tree's structure, not its leaves).
      ema_decay: the EMA's decay, or None without EMA (static).
    """

    rng: Array
    skipped: Array
    skip_run: Array
    ema_params: Optional[dict]
    ema_decay: Optional[float] = struct.field(pytree_node=False, default=None)

    def params_for(self, use_ema: bool = False) -> dict:
        """`params`, or `ema_params` when `use_ema` (a ValueError if this state keeps no EMA)."""
        if not use_ema:
            return self.params
        if self.ema_params is None:
            raise ValueError("`use_ema=True` but the state keeps no EMA; create it with "
                             "`create_state(..., ema_decay=0.999)`.")
        return self.ema_params

    def variables(self, use_ema: bool = False) -> dict:
        """The flow's variables `{"params": ...}` for `model.apply`, from the EMA when `use_ema`."""
        return {"params": self.params_for(use_ema)["flow"]}


def count_params(tree: Any) -> int:
    """Number of scalar entries in a parameter tree (e.g. `state.params["flow"]`).

    Leaves may be arrays or `jax.ShapeDtypeStruct`s, so the size of a model
    can be read from `jax.eval_shape(model.init, ...)` without allocating it.
    """
    return int(sum(math.prod(np.shape(leaf)) for leaf in jax.tree.leaves(tree)))


def check_batch_keys(batch: Mapping[str, Any], keys: tuple[str, ...], name: str = "batch") -> None:
    """Raises a `ValueError` naming the missing keys of a batch dict."""
    if not isinstance(batch, Mapping):
        raise ValueError(f"`{name}` must be a dict with keys {keys}; got {type(batch).__name__}.")
    missing = [key for key in keys if key not in batch]
    if missing:
        raise ValueError(f"`{name}` must have keys {keys}; missing {missing} (got keys {sorted(batch)}).")


def create_state(model: nn.Module, optimizer: optax.GradientTransformation, rng: Array,
                 example_batch: Mapping[str, Any], *, ema_decay: Optional[float] = None,
                 dequantizer: Optional[Dequantizer] = None, mesh: Optional[Mesh] = None) -> TrainState:
    """Initializes the flow (with ActNorm's data-dependent init) and the optimizer, under jit.

    Initialization runs jitted on the mesh with the example batch sharded like
    a training batch, so ActNorm's statistics come from the *global* batch and
    every process of a multi-host job ends with identical parameters.

    Args:
      model: a jcnf flow (or any Flax module with `init(rng, value, context)`).
      optimizer: an optax transformation, e.g. `default_optimizer(1e-3)`.
      rng: a `jax.random` key; split into init, dequantizer and training keys.
      example_batch: {"value": [B, ...], "context": [B, ...]}, a typical
        training batch (B divisible by the number of devices).
      ema_decay: keep an EMA of the parameters with this decay (e.g. 0.999).
      dequantizer: the dequantizer the steps will use. A Flax module gets its
        parameters initialized into `params["dequantizer"]`; either kind is
        applied to the example values before the flow's init, so ActNorm
        sees the data as training will.
      mesh: the device mesh (default: `make_mesh()`, all devices).

    Returns:
      A `TrainState` at step 0, replicated over the mesh.
    """
    check_batch_keys(example_batch, ("value", "context"), "example_batch")
    if ema_decay is not None and not 0.0 < ema_decay < 1.0:
        raise ValueError(f"`ema_decay` must be in (0, 1); got {ema_decay}.")
    mesh = make_mesh() if mesh is None else mesh
    batch = shard_batch(example_batch, mesh)
    replicated = state_sharding(mesh)

    def init(rng: Array, batch: dict) -> TrainState:
        flow_rng, dequantizer_rng, noise_rng, train_rng = jax.random.split(rng, 4)
        params = {}
        value = batch["value"]
        if dequantizer is not None:
            dequantizer_params = init_dequantizer(dequantizer, dequantizer_rng, value, batch)
            if dequantizer_params is not None:
                params["dequantizer"] = dequantizer_params
            value, _ = apply_dequantizer(dequantizer, params, noise_rng, value, batch)
        variables = model.init(flow_rng, value, batch["context"])
        extra = sorted(set(variables) - {"params"})
        if extra:
            raise ValueError(f"jcnf.train supports models whose only variables are 'params'; "
                             f"this model also has {extra}.")
        params["flow"] = variables["params"]
        return state_from_params(params, optimizer, train_rng, ema_decay=ema_decay)

    init = jax.jit(init, in_shardings=(replicated, batch_sharding(mesh)), out_shardings=replicated)
    return init(jax.device_put(raw_key(rng), replicated), batch)


def state_from_params(params: dict, optimizer: optax.GradientTransformation, rng: Array, *,
                      ema_decay: Optional[float] = None) -> TrainState:
    """A `TrainState` at step 0 around an existing parameter tree: fresh optimizer state, no skips.

    Args:
      params: {"flow": ..., optionally "dequantizer": ...}, as in `TrainState.params`.
      optimizer: the optax transformation to train them with.
      rng: the training key (a raw `jax.random` key array).
      ema_decay: keep an EMA of the parameters, starting at `params`.
    """
    return TrainState(step=jnp.zeros((), jnp.int32), apply_fn=None, params=params, opt_state=optimizer.init(params),
                      rng=rng, skipped=jnp.zeros((), jnp.int32), skip_run=jnp.zeros((), jnp.int32),
                      ema_params=params if ema_decay is not None else None, tx=optimizer, ema_decay=ema_decay)


def place_state(state: TrainState, mesh: Mesh) -> TrainState:
    """Replicates `state` over `mesh` unless it is already (one cheap check per call)."""
    if not isinstance(state, TrainState):
        raise ValueError(f"`state` must be a jcnf.train.TrainState (from `create_state`); "
                         f"got {type(state).__name__}.")
    replicated = state_sharding(mesh)
    if isinstance(state.step, jax.Array) and state.step.sharding == replicated:
        return state
    return jax.device_put(state, replicated)
