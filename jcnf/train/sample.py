"""`sample_step`: a jitted, sharded sampler of a trained flow."""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array
from jax.sharding import Mesh

from jcnf.sharding import batch_sharding, make_mesh, raw_key, shard_batch, state_sharding
from jcnf.train.state import TrainState, place_state


def sample_step(model: nn.Module, mesh: Optional[Mesh] = None, use_ema: bool = False) -> Callable[..., Array]:
    """A jitted sampler `values = sample(state, rng, context, temperature=1.0)`.

    One sample per context row; the context [B, ...] (B divisible by the
    device count) is split over the mesh and so are the samples
    [B, *event_shape]. The temperature is traced: changing it does not
    recompile.
    """
    mesh = make_mesh() if mesh is None else mesh
    replicated, split = state_sharding(mesh), batch_sharding(mesh)

    def sample(state: TrainState, rng: Array, context: Array, temperature: Array) -> Array:
        return model.apply(state.variables(use_ema), rng, context, temperature=temperature, method="sample")

    jitted = jax.jit(sample, in_shardings=(replicated, replicated, split, replicated), out_shardings=split)

    def step(state: TrainState, rng: Array, context: Any, temperature: float = 1.0) -> Array:
        context = shard_batch({"context": context}, mesh)["context"]
        return jitted(place_state(state, mesh), jax.device_put(raw_key(rng), replicated), context,
                      jax.device_put(jnp.float32(temperature), replicated))

    return step
