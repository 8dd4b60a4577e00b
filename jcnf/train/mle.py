"""Maximum likelihood: the jitted train step `mle_step` and the evaluation `mle_eval_step`."""

from __future__ import annotations

import math
from typing import Callable, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array
from jax.sharding import Mesh

from jcnf.dequantize.base import Dequantizer, apply_dequantizer
from jcnf.dequantize.uniform import no_dequantization
from jcnf.distributions.units import nats_to_bits_per_dim
from jcnf.sharding import batch_sharding, make_mesh, raw_key, shard_batch, state_sharding
from jcnf.train.guard import Metrics
from jcnf.train.state import TrainState, check_batch_keys, place_state
from jcnf.train.step import Batch, TrainStep, make_train_step


def _flow_log_prob(model: nn.Module, dequantizer: Dequantizer, params: dict, rng: Array,
                   batch: Mapping[str, Array]) -> Array:
    """Log p(value | context) per item [B], of the dequantized value, plus the dequantizer's correction."""
    value, log_correction = apply_dequantizer(dequantizer, params, rng, batch["value"], batch)
    log_prob = model.apply({"params": params["flow"]}, value, batch["context"], method="log_prob")
    return log_prob + log_correction


def _nll_metrics(log_prob: Array, value: Array) -> tuple[Array, Metrics]:
    loss = -jnp.mean(log_prob)
    # Bits per dimension divides by every entry of one item's value (H*W*C for images).
    return loss, {"bits_per_dim": nats_to_bits_per_dim(loss, math.prod(value.shape[1:]))}


def mle_step(model: nn.Module, mesh: Optional[Mesh] = None, dequantizer: Optional[Dequantizer] = None,
             donate: bool = True) -> TrainStep:
    """A jitted maximum-likelihood step `state, metrics = step(state, batch)`.

    The loss is the mean negative log-likelihood in nats,
    `-mean(log p(dequantize(value) | context) + log_correction)`.

    Args:
      model: the flow (`state.params["flow"]` are its parameters).
      mesh: device mesh (default: `make_mesh()`, all devices).
      dequantizer: `(rng, value, batch) -> (value, log_correction [B])` or a
        Flax module of that signature (see `jcnf.dequantize`); default
        `no_dequantization` for continuous data. Use
        `uniform_dequantization(256)` for 8-bit data scaled to [0, 1).
      donate: reuse the input state's buffers for the output.

    Returns:
      `step(state, batch)` with batch {"value": [B, ...], "context": [B, ...]}
      (B divisible by the mesh's device count; more keys allowed), giving the
      new state and metrics {"loss", "bits_per_dim", "grad_norm", "skipped"}
      as device scalars.
    """
    dequantizer = no_dequantization if dequantizer is None else dequantizer

    def loss_fn(params: dict, rng: Array, batch: dict) -> tuple[Array, Metrics]:
        return _nll_metrics(_flow_log_prob(model, dequantizer, params, rng, batch), batch["value"])

    return make_train_step(loss_fn, mesh, donate, ("value", "context"))


def mle_eval_step(model: nn.Module, mesh: Optional[Mesh] = None, dequantizer: Optional[Dequantizer] = None,
                  use_ema: bool = False) -> Callable[..., Metrics]:
    """A jitted evaluation `metrics = evaluate(state, batch, rng=None)`; the state is not changed.

    Returns metrics {"loss", "bits_per_dim"} on the batch, from the EMA
    parameters when `use_ema`. `rng` draws the dequantization noise (default
    a fixed key, so repeated evaluations of one state agree).
    """
    mesh = make_mesh() if mesh is None else mesh
    dequantizer = no_dequantization if dequantizer is None else dequantizer
    replicated = state_sharding(mesh)

    def evaluate(state: TrainState, batch: dict, rng: Array) -> Metrics:
        params = state.params_for(use_ema)  # raises while tracing when the state keeps no EMA
        loss, metrics = _nll_metrics(_flow_log_prob(model, dequantizer, params, rng, batch), batch["value"])
        return {"loss": loss, **metrics}

    jitted = jax.jit(evaluate, in_shardings=(replicated, batch_sharding(mesh), replicated), out_shardings=replicated)

    def step(state: TrainState, batch: Batch, rng: Optional[Array] = None) -> Metrics:
        check_batch_keys(batch, ("value", "context"))
        rng = jax.random.PRNGKey(0) if rng is None else raw_key(rng)
        return jitted(place_state(state, mesh), shard_batch(batch, mesh), jax.device_put(rng, replicated))

    return step
