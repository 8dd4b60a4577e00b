"""Reverse KL: the jitted train step `reverse_kl_step` toward an unnormalized target density."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array
from jax.sharding import Mesh

from jcnf._checks import check_int
from jcnf.flows.push import push_latents
from jcnf.sharding import batch_sharding, data_axis_size, make_mesh
from jcnf.train.guard import Metrics
from jcnf.train.step import TrainStep, make_train_step

ExtraLoss = Callable[[dict, Array, Array], tuple[Array, Metrics]]


def reverse_kl_step(model: nn.Module, log_density_fn: Callable[..., Array], num_samples: int,
                    mesh: Optional[Mesh] = None, donate: bool = True,
                    extra_loss: Optional[ExtraLoss] = None) -> TrainStep:
    """A jitted reverse-KL step `state, metrics = step(state, {"context": y, "target": (...), "z": ...})`.

    Minimizes `E_z[log q(T(z) | y) - log_density_fn(T(z), *target)]`, which
    is KL(q || p) up to p's unknown normalizer, reparameterized through the
    flow's inverse T = latent -> value with the context `y` fixed.

    The step is jitted once here; the context and the target are entries of
    every batch, not constants compiled into it, so one step serves every
    observation of a shape (and every optimizer, compiled once each): build
    it once and keep it.

    Args:
      model: the flow q(value | context).
      log_density_fn: unnormalized target log-density
        `log_density_fn(values, *target)`, values [N, *event] -> [N], e.g.
        the log posterior log p(y_obs | x) + log p(x). Must be jittable.
      num_samples: N, samples per step; divisible by the mesh's device count.
      mesh: device mesh (default: all devices); the samples are split over it.
      donate: reuse the input state's buffers for the output.
      extra_loss: optional `extra_loss(variables, rng, context) -> (term, metrics)`
        with the flow's variables, the step's key and the broadcast context
        [N, ...]: `term` (a scalar) is added to the loss and `metrics` (dict
        of scalars) are logged with the step's, e.g. the forward-KL anchor of
        `jcnf.inverse.mixed_kl_step`.

    Returns:
      A `jcnf.train.TrainStep` whose batches hold "context": the fixed
      context, one row [1, ...] broadcast over the samples, or already
      [num_samples, ...]; optionally "target": a tuple of pytrees (arrays, a
      `LinearOperator`, None) passed to `log_density_fn` after the values,
      e.g. `(y_obs,)`; and optionally "z": latents [N, *event_shape] (e.g. a
      fixed set reshuffled each epoch) pushed through `inverse_and_log_det`.
      Without "z" the step draws N latents from `state.rng` through
      `sample_and_log_prob`. "context" and "target" are replicated and fixed
      within a dispatch: `step.run(state, batch, num_steps=n)` runs n steps
      on fresh latents, `step.run(state, [batch_with_z, ...])` one per set of
      latents. Metrics: "loss", "log_q", "log_density" (sample means),
      "grad_norm", "skipped".
    """
    mesh = make_mesh() if mesh is None else mesh
    if num_samples < 1 or num_samples % data_axis_size(mesh):
        raise ValueError(f"`num_samples` ({num_samples}) must be a positive multiple of the number of devices on "
                         f"the mesh's 'data' axis ({data_axis_size(mesh)}).")
    check_int("num_samples", num_samples)
    if extra_loss is not None and not callable(extra_loss):
        raise ValueError("`extra_loss` must be a function (variables, rng, context) -> (scalar, metrics) or None; "
                         f"got {type(extra_loss).__name__}.")
    split = batch_sharding(mesh)

    def loss_fn(params: dict, rng: Array, batch: Mapping[str, Any]) -> tuple[Array, Metrics]:
        variables = {"params": params["flow"]}
        # Splitting the broadcast context over "data" splits the samples drawn from it.
        sample_context = jax.lax.with_sharding_constraint(
            jnp.broadcast_to(batch["context"], (num_samples,) + batch["context"].shape[1:]), split)
        if "z" in batch:
            value, log_q = push_latents(model, variables, batch["z"], sample_context)
        else:
            value, log_q = model.apply(variables, rng, sample_context, method="sample_and_log_prob")
        log_density = log_density_fn(value, *batch.get("target", ()))
        if log_density.shape != log_q.shape:
            raise ValueError(f"`log_density_fn` must return shape {tuple(log_q.shape)} (one value per sample); "
                             f"got {tuple(log_density.shape)}.")
        loss = jnp.mean(log_q - log_density)
        metrics = {"log_q": jnp.mean(log_q), "log_density": jnp.mean(log_density)}
        if extra_loss is not None:
            term, extra_metrics = extra_loss(variables, rng, sample_context)
            loss = loss + term
            metrics.update(extra_metrics)
        return loss, metrics

    def check_batch(batch: Mapping[str, Any], name: str) -> None:
        context = batch["context"]
        if jnp.ndim(context) < 1 or jnp.shape(context)[0] not in (1, num_samples):
            raise ValueError(f"`{name}['context']` must have a leading axis of 1 (one observation) or num_samples="
                             f"{num_samples}; got shape {tuple(jnp.shape(context))}.")
        if not isinstance(batch.get("target", ()), tuple):
            raise ValueError(f"`{name}['target']` must be a tuple of the arguments of `log_density_fn` after the "
                             f"values; got {type(batch['target']).__name__}.")
        if "z" in batch and jnp.shape(batch["z"])[:1] != (num_samples,):
            raise ValueError(f"`{name}['z']` must have num_samples={num_samples} rows; "
                             f"got shape {tuple(jnp.shape(batch['z']))}.")

    return make_train_step(loss_fn, mesh, donate, required_keys=("context",), fixed_keys=("context", "target"),
                           check_batch=check_batch)
