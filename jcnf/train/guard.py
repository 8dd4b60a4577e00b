"""The non-finite guard: one optimizer step that is skipped, and counted, when anything it produced is not finite.

Every train step updates its state through `apply_loss`, so the guard, the
EMA and the skip counters behave the same for each objective. A step is
skipped when the loss, a gradient, an update or the new optimizer state holds
a NaN or an infinity: a finite gradient can still overflow Adam's second
moment (g**2 > 3.4e38 for |g| > 1.8e19 in float32), which then zeroes every
later update of that parameter without any NaN reaching the loss or the
gradients. A skipped step keeps the old params, optimizer state and EMA,
still advances `step` and `rng`, and increments `state.skipped` and
`state.skip_run`; the metrics report `skipped = 1`.

`optax.apply_if_finite` does not serve: it checks only the gradients (not
the loss, the updates or the new optimizer state), keeps its counters inside
the optimizer state and leaves the EMA to the caller.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from jax import Array

from jcnf.train.state import TrainState

Metrics = dict[str, Array]
LossFn = Callable[[dict, Array, Mapping[str, Any]], tuple[Array, Metrics]]


def all_finite(tree: Any) -> Array:
    """Whether every entry of every leaf is finite, from one scalar reduction.

    A NaN or an infinity anywhere makes the sum of `leaf * 0` NaN, and a finite
    tree sums to 0 however large its entries (a norm could overflow). One
    scalar flag keeps the guard's selects from tying every leaf's update to a
    separate per-leaf reduction, which made XLA's compile time grow steeply
    with the number of leaves.

    Args:
      tree: a pytree of float arrays (non-float leaves, such as Adam's int32
        step count, are always finite and are left out).

    Returns:
      A bool scalar.
    """
    leaves = [leaf for leaf in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    if not leaves:
        return jnp.array(True)
    return jnp.isfinite(sum(jnp.sum(leaf * 0) for leaf in leaves))


def apply_loss(state: TrainState, loss_fn: LossFn, batch: Mapping[str, Any]) -> tuple[TrainState, Metrics]:
    """One guarded optimizer step on `loss_fn(params, rng, batch) -> (loss, aux_metrics)`; runs inside jit.

    Args:
      state: the train state (its `params` are differentiated).
      loss_fn: the objective; `aux_metrics` is a dict of scalars.
      batch: the step's inputs, passed to `loss_fn` unchanged.

    Returns:
      The new state (the old one's params, optimizer state and EMA when the
      step is skipped) and the metrics {"loss", "grad_norm", "skipped",
      *aux_metrics}.
    """
    rng, step_rng = jax.random.split(state.rng)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, step_rng, batch)
    updated = state.apply_gradients(grads=grads)
    # The new params stand for the updates: finite old params plus finite updates
    # are finite unless the sum overflows, which must be caught too.
    finite = all_finite((loss, grads, updated.params, updated.opt_state))

    # A select, not a branch: both sides are already computed, and jnp.where
    # keeps the step a single straight-line program that shards trivially.
    def keep_if_bad(new: Any, old: Any) -> Any:
        return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

    params = keep_if_bad(updated.params, state.params)
    ema_params = state.ema_params
    if ema_params is not None:
        decay = state.ema_decay
        ema_params = keep_if_bad(jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params),
                                 ema_params)
    skipped = jnp.logical_not(finite).astype(jnp.int32)
    new_state = updated.replace(params=params, opt_state=keep_if_bad(updated.opt_state, state.opt_state), rng=rng,
                                ema_params=ema_params, skipped=state.skipped + skipped,
                                skip_run=jnp.where(finite, 0, state.skip_run + 1))
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "skipped": skipped.astype(jnp.float32), **aux}
    return new_state, metrics
