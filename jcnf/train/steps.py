"""Jitted, sharded train, eval and sample steps.

Every train step has the form `state, metrics = step(state, batch)`: the
state is replicated over the mesh, the batch (a dict of arrays with a leading
batch axis) is split over the mesh's "data" axis, and `jax.jit` with those
in/out shardings compiles the step once. The returned `metrics` are device
scalars; fetching them is the caller's choice (`fit` does it every
`log_every` steps), so the inner loop never waits on the host.

Train steps donate their input state (`donate=True`): its buffers are reused
for the output, halving the memory of params and optimizer state. Do not use
a state again after passing it to a step; keep `jax.device_get(state)` if a
copy is needed.

Non-finite guard: when the loss or any gradient is NaN or infinite, the
step keeps the old params, optimizer state and EMA, still advances `step`
and `rng`, and increments `state.skipped` and `state.skip_run`; the metrics
report `skipped = 1`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import Array
from jax.sharding import Mesh

from jcnf._checks import check_int
from jcnf.dequantize.base import Dequantizer, apply_dequantizer
from jcnf.dequantize.uniform import no_dequantization
from jcnf.distributions.units import nats_to_bits_per_dim
from jcnf.flows.push import push_latents
from jcnf.sharding import batch_sharding, data_axis_size, make_mesh, raw_key, shard_batch, state_sharding
from jcnf.train.state import TrainState, check_batch_keys, place_state

Batch = Mapping[str, Any]
Metrics = dict[str, Array]
LossFn = Callable[[dict, Array, dict], tuple[Array, Metrics]]



def _all_finite(tree: Any) -> Array:
    """Whether every entry of every leaf is finite, from one scalar reduction.

    A NaN or an infinity anywhere makes the sum of `leaf * 0` NaN, and a finite
    tree sums to 0 however large its entries (a norm could overflow). One
    scalar flag keeps the guard's selects from tying every leaf's update to a
    separate per-leaf reduction, which made XLA's compile time grow steeply
    with the number of leaves.
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.array(True)
    return jnp.isfinite(sum(jnp.sum(leaf * 0) for leaf in leaves))


def apply_loss(state: TrainState, loss_fn: LossFn, batch: dict) -> tuple[TrainState, Metrics]:
    """One guarded optimizer step on `loss_fn(params, rng, batch) -> (loss, aux_metrics)`.

    Shared by every train step so the non-finite guard, EMA and counters
    behave the same for each objective. Runs inside jit.
    """
    rng, step_rng = jax.random.split(state.rng)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, step_rng, batch)
    finite = _all_finite((loss, grads))
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    # A select, not a branch: both sides are already computed, and jnp.where
    # keeps the step a single straight-line program that shards trivially.
    def keep_if_bad(new: Any, old: Any) -> Any:
        return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

    params = keep_if_bad(params, state.params)
    ema_params = state.ema_params
    if ema_params is not None:
        decay = state.ema_decay
        ema_params = keep_if_bad(jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params),
                                 ema_params)
    skipped = jnp.logical_not(finite).astype(jnp.int32)
    new_state = state.replace(step=state.step + 1, params=params,
                              opt_state=keep_if_bad(opt_state, state.opt_state), rng=rng,
                              ema_params=ema_params, skipped=state.skipped + skipped,
                              skip_run=jnp.where(finite, 0, state.skip_run + 1))
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
               "skipped": skipped.astype(jnp.float32), **aux}
    return new_state, metrics


def _stack(batches: Sequence[Any]) -> Any:
    """Stacks N per-step inputs (pytrees of one structure) leaf-wise into [N, ...] (inside jit)."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *batches)


def _check_dispatch(batches: Sequence[Any], name: str = "batches") -> None:
    if isinstance(batches, Mapping) or not isinstance(batches, Sequence) or not batches:
        raise ValueError(f"`{name}` must be a non-empty list of per-step batches (one dict per step); "
                         f"got {type(batches).__name__}.")


class TrainStep:
    """A jitted, sharded, guarded train step for one objective, built once and kept by the caller.

    `state, metrics = step(state, batch)` runs one optimizer step;
    `state, metrics = step.run(state, [batch_1, ..., batch_n])` runs n steps
    in one dispatch (a `lax.scan` inside one jitted call), with every step's
    metrics stacked [n]. Both give the same parameters as n single calls; the
    second saves n - 1 round trips between Python and the device, which is
    what bounds the speed of small models. Each n compiles once.
    """

    def __init__(self, update: Callable[[TrainState, dict], tuple[TrainState, Metrics]], mesh: Mesh,
                 donate: bool, required_keys: tuple[str, ...]):
        self.mesh = mesh
        self.required_keys = required_keys
        replicated, split = state_sharding(mesh), batch_sharding(mesh)
        donated = (0,) if donate else ()
        self._single = jax.jit(update, in_shardings=(replicated, split), out_shardings=(replicated, replicated),
                               donate_argnums=donated)
        # Each batch arrives split over "data" and is stacked inside the program,
        # so multi-host placement is the same as for one step.
        self._multi = jax.jit(lambda state, batches: jax.lax.scan(update, state, _stack(batches)),
                              in_shardings=(replicated, split), out_shardings=(replicated, replicated),
                              donate_argnums=donated)

    def __call__(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        """One optimizer step on `batch` (split over the mesh); returns the new state and metrics."""
        check_batch_keys(batch, self.required_keys)
        return self._single(place_state(state, self.mesh), shard_batch(batch, self.mesh))

    def run(self, state: TrainState, batches: Sequence[Batch]) -> tuple[TrainState, Metrics]:
        """Runs len(batches) steps in one dispatch; metrics are stacked along a leading step axis."""
        _check_dispatch(batches)
        for batch in batches:
            check_batch_keys(batch, self.required_keys)
        placed = tuple(shard_batch(batch, self.mesh) for batch in batches)
        return self._multi(place_state(state, self.mesh), placed)


def make_train_step(loss_fn: LossFn, mesh: Optional[Mesh] = None, donate: bool = True,
                    required_keys: tuple[str, ...] = ()) -> TrainStep:
    """A jitted, sharded, guarded step for any objective: `state, metrics = step(state, batch)`.

    Args:
      loss_fn: `loss_fn(params, rng, batch) -> (loss, metrics)`, with `params`
        the state's dict {"flow": ..., ...}, a fresh key per step and the
        global batch; `metrics` a dict of scalars added to the step's.
      mesh: device mesh (default: `make_mesh()`, all devices).
      donate: reuse the input state's buffers for the output.
      required_keys: batch keys checked (with a clear error) before tracing.

    Returns:
      A `TrainStep`; its metrics hold "loss", "grad_norm", "skipped" and
      loss_fn's. `step.run(state, batches)` runs several steps per dispatch.
    """
    mesh = make_mesh() if mesh is None else mesh
    return TrainStep(lambda state, batch: apply_loss(state, loss_fn, batch), mesh, donate, required_keys)


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


def reverse_kl_step(model: nn.Module, log_density_fn: Callable[..., Array], num_samples: int,
                    mesh: Optional[Mesh] = None, donate: bool = True,
                    extra_loss: Optional[Callable[[dict, Array, Array], tuple[Array, Metrics]]] = None,
                    ) -> "ReverseKLStep":
    """A jitted reverse-KL step `state, metrics = step(state, context, target=(), batch=None)`.

    Minimizes `E_z[log q(T(z) | y) - log_density_fn(T(z), *target)]`, which
    is KL(q || p) up to p's unknown normalizer, reparameterized through the
    flow's inverse T = latent -> value with the context `y` fixed.

    The step is jitted once here; the context and the target are inputs of
    every call, not constants compiled into it, so one step serves every
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
      `step(state, context, target=(), batch=None)`. `context` is the fixed
      context, one row [1, ...] broadcast over the samples, or already
      [num_samples, ...]; `target` a tuple of pytrees (arrays, a
      `LinearOperator`, None) passed to `log_density_fn` after the values,
      e.g. `(y_obs,)`. The step draws N latents from `state.rng` through
      `sample_and_log_prob`, or, when `batch` has key "z" (latents
      [N, *event_shape], e.g. a fixed set reshuffled each epoch), pushes
      those through `inverse_and_log_det`. Metrics: "loss", "log_q",
      "log_density" (sample means), "grad_norm", "skipped".
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

    def loss_fn(params: dict, rng: Array, batch: dict) -> tuple[Array, Metrics]:
        variables = {"params": params["flow"]}
        # Splitting the broadcast context over "data" splits the samples drawn from it.
        sample_context = jax.lax.with_sharding_constraint(
            jnp.broadcast_to(batch["context"], (num_samples,) + batch["context"].shape[1:]), split)
        if "z" in batch:
            value, log_q = push_latents(model, variables, batch["z"], sample_context)
        else:
            value, log_q = model.apply(variables, rng, sample_context, method="sample_and_log_prob")
        log_density = log_density_fn(value, *batch["target"])
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

    return ReverseKLStep(lambda state, batch: apply_loss(state, loss_fn, batch), mesh, num_samples, donate)


class ReverseKLStep:
    """The jitted reverse-KL step that `reverse_kl_step` builds; see there.

    `state, metrics = step(state, context, target=(), batch=None)` runs one
    step; `step.run(state, context, target=(), batches=None, num_steps=None)`
    runs several in one dispatch: over `batches` (a list of {"z": ...}
    dicts), or `num_steps` steps drawing fresh latents. Metrics are stacked
    along a leading step axis.
    """

    def __init__(self, update: Callable[[TrainState, dict], tuple[TrainState, Metrics]], mesh: Mesh,
                 num_samples: int, donate: bool):
        self.mesh, self.num_samples = mesh, num_samples
        replicated, split = state_sharding(mesh), batch_sharding(mesh)
        fixed = {"context": replicated, "target": replicated}
        donated = (0,) if donate else ()

        def jit(fn, inputs_sharding, **kwargs):
            return jax.jit(fn, in_shardings=(replicated, inputs_sharding), out_shardings=(replicated, replicated),
                           donate_argnums=donated, **kwargs)

        def many_from_rng(state, inputs, num_steps):
            return jax.lax.scan(lambda carry, _: update(carry, inputs), state, None, length=num_steps)

        def many_from_z(state, inputs):
            zs = _stack(inputs["z"])
            fixed_inputs = {key: value for key, value in inputs.items() if key != "z"}
            return jax.lax.scan(lambda carry, z: update(carry, {**fixed_inputs, "z": z}), state, zs)

        self._from_rng = jit(update, fixed)
        self._from_z = jit(update, {**fixed, "z": split})
        self._many_from_rng = jax.jit(many_from_rng, in_shardings=(replicated, fixed),
                                      out_shardings=(replicated, replicated), donate_argnums=donated,
                                      static_argnums=2)
        self._many_from_z = jit(many_from_z, {**fixed, "z": split})

    def _inputs(self, context: Array, target: tuple[Any, ...]) -> dict:
        context = jnp.asarray(context)
        if context.ndim < 1 or context.shape[0] not in (1, self.num_samples):
            raise ValueError(f"`context` must have a leading axis of 1 (one observation) or num_samples="
                             f"{self.num_samples}; got shape {tuple(context.shape)}.")
        # The target may hold any pytree (arrays, a LinearOperator, None); its leaves become inputs.
        return jax.device_put({"context": context, "target": jax.tree.map(jnp.asarray, tuple(target))},
                              state_sharding(self.mesh))

    def _latents(self, batch: Batch, name: str) -> Array:
        z = batch["z"]
        if z.shape[0] != self.num_samples:
            raise ValueError(f"`{name}['z']` must have num_samples={self.num_samples} rows; "
                             f"got shape {tuple(z.shape)}.")
        return shard_batch({"z": z}, self.mesh)["z"]

    def __call__(self, state: TrainState, context: Array, target: tuple[Any, ...] = (),
                 batch: Optional[Batch] = None) -> tuple[TrainState, Metrics]:
        """One reverse-KL step for this context and target; returns the new state and metrics."""
        return self._step(state, self._inputs(context, target), batch)

    def run(self, state: TrainState, context: Array, target: tuple[Any, ...] = (),
            batches: Optional[Sequence[Batch]] = None,
            num_steps: Optional[int] = None) -> tuple[TrainState, Metrics]:
        """Several steps in one dispatch: one per batch of latents, or `num_steps` on fresh latents."""
        return self._run(state, self._inputs(context, target), batches, num_steps)

    def bind(self, context: Array, target: tuple[Any, ...] = ()) -> "BoundReverseKLStep":
        """This step for one context and target, placed on the mesh once: `fit`'s `step(state, batch)`."""
        return BoundReverseKLStep(self, self._inputs(context, target))

    def _step(self, state: TrainState, inputs: dict, batch: Optional[Batch]) -> tuple[TrainState, Metrics]:
        state = place_state(state, self.mesh)
        if batch is None or "z" not in batch:
            return self._from_rng(state, inputs)
        return self._from_z(state, {**inputs, "z": self._latents(batch, "batch")})

    def _run(self, state: TrainState, inputs: dict, batches: Optional[Sequence[Batch]],
             num_steps: Optional[int]) -> tuple[TrainState, Metrics]:
        state = place_state(state, self.mesh)
        if batches is not None and all("z" in batch for batch in batches):
            _check_dispatch(batches)
            zs = tuple(self._latents(batch, "batches[i]") for batch in batches)
            return self._many_from_z(state, {**inputs, "z": zs})
        count = len(batches) if batches is not None else num_steps
        check_int("num_steps", count)
        return self._many_from_rng(state, inputs, count)


class BoundReverseKLStep:
    """A `ReverseKLStep` with its context and target already on the mesh (`ReverseKLStep.bind`).

    `state, metrics = step(state, batch=None)` and `step.run(state, batches)`:
    the interface of `TrainStep`, so `fit` drives it, one or several steps
    per dispatch, without moving the observation to the device every step.
    """

    def __init__(self, step: ReverseKLStep, inputs: dict):
        self._reverse_kl, self._inputs = step, inputs

    def __call__(self, state: TrainState, batch: Optional[Batch] = None) -> tuple[TrainState, Metrics]:
        """One step on `batch` (its "z", or fresh latents); returns the new state and metrics."""
        return self._reverse_kl._step(state, self._inputs, batch)

    def run(self, state: TrainState, batches: Sequence[Batch]) -> tuple[TrainState, Metrics]:
        """len(batches) steps in one dispatch; metrics stacked along a leading step axis."""
        return self._reverse_kl._run(state, self._inputs, batches, None)


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
