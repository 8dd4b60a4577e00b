"""`TrainStep`: the jitted, sharded, guarded train step that every objective builds.

Every train step has the form `state, metrics = step(state, batch)`: the
state is replicated over the mesh; the batch is a dict whose entries are
either split over the mesh's "data" axis along their leading (batch) axis or,
for the step's `fixed_keys` (a reverse-KL step's context and target),
replicated. The returned `metrics` are device scalars; fetching them is the
caller's choice (`fit` does it every `log_every` steps), so the inner loop
never waits on the host.

Train steps donate their input state (`donate=True`): its buffers are reused
for the output, halving the memory of params and optimizer state. Do not use
a state again after passing it to a step; keep `jax.device_get(state)` if a
copy is needed.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
from jax import Array
from jax.sharding import Mesh

from jcnf._checks import check_int
from jcnf.sharding import make_mesh, shard_batch, state_sharding
from jcnf.train.guard import LossFn, Metrics, apply_loss
from jcnf.train.state import TrainState, check_batch_keys, place_state

Batch = Mapping[str, Any]
Update = Callable[[TrainState, dict], tuple[TrainState, Metrics]]


def _same(a: Any, b: Any) -> bool:
    """Whether two pytrees hold the very same leaves (an identity check: no device-to-host comparison)."""
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    return tree_a == tree_b and all(x is y for x, y in zip(leaves_a, leaves_b, strict=True))


def _stack(batches: Sequence[Any]) -> Any:
    """Stacks N per-step inputs (pytrees of one structure) leaf-wise into [N, ...] (inside jit)."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *batches)


class TrainStep:
    """A jitted, sharded, guarded train step for one objective, built once and kept by the caller.

    `state, metrics = step(state, batch)` runs one optimizer step;
    `state, metrics = step.run(state, [batch_1, ..., batch_n])` runs n steps
    in one dispatch (a `lax.scan` inside one jitted call), with every step's
    metrics stacked [n]; `step.run(state, batch, num_steps=n)` runs n steps
    on one batch (a reverse-KL step drawing fresh latents each step). Both
    give the same parameters as n single calls; `run` saves n - 1 round trips
    between Python and the device, which is what bounds the speed of small
    models. Each n (and each set of batch keys) compiles once.

    Entries under `fixed_keys` are the same in every step of a dispatch (an
    observation, a target operator): they are replicated over the mesh and
    passed to the scan once instead of being stacked n times. Every other
    entry is split over the mesh along its leading axis and stacked per step.
    Arrays already placed with the wanted sharding are not moved again.

    Args:
      update: `update(state, batch) -> (state, metrics)`, traced inside jit.
      mesh: the device mesh.
      donate: reuse the input state's buffers for the output.
      required_keys: batch keys checked (with a clear error) before tracing.
      fixed_keys: batch keys replicated rather than split, fixed within a dispatch.
      check_batch: optional `check_batch(batch, name)` raising a ValueError
        (naming `name`) for a bad batch, called on the host before tracing.
    """

    def __init__(self, update: Update, mesh: Mesh, donate: bool = True, required_keys: tuple[str, ...] = (),
                 fixed_keys: tuple[str, ...] = (), check_batch: Optional[Callable[[Batch, str], None]] = None):
        self.mesh, self.required_keys, self.fixed_keys = mesh, tuple(required_keys), tuple(fixed_keys)
        self._check_batch = check_batch
        self._replicated = replicated = state_sharding(mesh)
        donated = (0,) if donate else ()
        # The batch's shardings are those `_place` gave it (split or replicated per key).
        self._single = jax.jit(update, out_shardings=(replicated, replicated), donate_argnums=donated)

        def many(state: TrainState, per_step: tuple[dict, ...], fixed: dict, length: int) -> tuple[TrainState, Any]:
            # Each per-step batch arrives split over "data" and is stacked inside the
            # program, so multi-host placement is the same as for one step.
            return jax.lax.scan(lambda carry, batch: update(carry, {**fixed, **batch}), state, _stack(per_step),
                                length=length)

        self._many = jax.jit(many, out_shardings=(replicated, replicated), donate_argnums=donated,
                             static_argnums=3)

    def _check(self, batch: Batch, name: str) -> None:
        check_batch_keys(batch, self.required_keys, name)
        if self._check_batch is not None:
            self._check_batch(batch, name)

    def _split(self, batch: Batch) -> tuple[dict, dict]:
        """(the entries split over the mesh, the fixed ones) of a batch, each placed on the mesh."""
        per_step = {key: value for key, value in batch.items() if key not in self.fixed_keys}
        fixed = {key: value for key, value in batch.items() if key in self.fixed_keys}
        # The fixed entries may be any pytree (arrays, a LinearOperator, None); their leaves become inputs.
        # Leaves already replicated (placed once by the caller) skip device_put, which costs ~20 us a call.
        leaves, tree = jax.tree.flatten(fixed)
        if not all(isinstance(leaf, jax.Array) and leaf.sharding == self._replicated for leaf in leaves):
            fixed = jax.device_put(jax.tree.unflatten(tree, [jnp.asarray(leaf) for leaf in leaves]), self._replicated)
        return shard_batch(per_step, self.mesh) if per_step else {}, fixed

    def __call__(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        """One optimizer step on `batch`; returns the new state and metrics (device scalars)."""
        self._check(batch, "batch")
        per_step, fixed = self._split(batch)
        return self._single(place_state(state, self.mesh), {**fixed, **per_step})

    def run(self, state: TrainState, batches: Sequence[Batch] | Batch,
            num_steps: Optional[int] = None) -> tuple[TrainState, Metrics]:
        """Several steps in one dispatch; metrics are stacked along a leading step axis.

        Args:
          state: the train state.
          batches: one batch per step, all with the same keys and the same
            array objects under `fixed_keys`; or, with `num_steps`, one
            batch used for every step.
          num_steps: the number of steps on the single batch `batches`.

        Returns:
          The state after the steps and the metrics, each of shape [steps].
        """
        if num_steps is not None:
            if not isinstance(batches, Mapping):
                raise ValueError(f"`num_steps` ({num_steps}) repeats one batch dict; with a list of batches "
                                 f"(one per step) leave it out; got {type(batches).__name__}.")
            check_int("num_steps", num_steps)
            batches = [batches] * num_steps
        if isinstance(batches, Mapping) or not isinstance(batches, Sequence) or not batches:
            raise ValueError(f"`batches` must be a non-empty list of per-step batches (one dict per step), or one "
                             f"dict with `num_steps`; got {type(batches).__name__}.")
        for i, batch in enumerate(batches):
            self._check(batch, f"batches[{i}]")
        first = batches[0]
        for i, batch in enumerate(batches[1:], 1):
            # A scan needs one structure: a batch without (say) "z" cannot join batches with it.
            if set(batch) != set(first):
                raise ValueError(f"Every batch of one dispatch must have the same keys: `batches[{i}]` has "
                                 f"{sorted(batch)}, `batches[0]` has {sorted(first)}.")
            changed = [key for key in self.fixed_keys if key in first and not _same(batch[key], first[key])]
            if changed:
                raise ValueError(f"`batches[{i}]` holds other objects under the fixed keys {changed} than "
                                 f"`batches[0]`: a dispatch runs with one {changed[0]!r}; pass the same object "
                                 f"in every batch, or dispatch separately.")
        placed = [self._split(batch)[0] for batch in batches]
        _, fixed = self._split({key: first[key] for key in self.fixed_keys if key in first})
        return self._many(place_state(state, self.mesh), tuple(placed), fixed, len(batches))


def make_train_step(loss_fn: LossFn, mesh: Optional[Mesh] = None, donate: bool = True,
                    required_keys: tuple[str, ...] = (), fixed_keys: tuple[str, ...] = (),
                    check_batch: Optional[Callable[[Batch, str], None]] = None) -> TrainStep:
    """A jitted, sharded, guarded step for any objective: `state, metrics = step(state, batch)`.

    Args:
      loss_fn: `loss_fn(params, rng, batch) -> (loss, metrics)`, with `params`
        the state's dict {"flow": ..., ...}, a fresh key per step and the
        global batch; `metrics` a dict of scalars added to the step's.
      mesh: device mesh (default: `make_mesh()`, all devices).
      donate: reuse the input state's buffers for the output.
      required_keys: batch keys checked (with a clear error) before tracing.
      fixed_keys: batch keys replicated over the mesh instead of split, the
        same for every step of a `run` (see `TrainStep`).
      check_batch: optional host-side check `check_batch(batch, name)`.

    Returns:
      A `TrainStep`; its metrics hold "loss", "grad_norm", "skipped" and
      loss_fn's. `step.run(state, batches)` runs several steps per dispatch.
    """
    mesh = make_mesh() if mesh is None else mesh

    def update(state: TrainState, batch: dict) -> tuple[TrainState, Array]:
        return apply_loss(state, loss_fn, batch)

    return TrainStep(update, mesh, donate, required_keys, fixed_keys, check_batch)
