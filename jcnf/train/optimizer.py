"""The default optimizer: Adam with global-norm clipping, linear warm-up and cosine decay."""

from __future__ import annotations

import functools
from typing import Optional

import optax


def default_optimizer(learning_rate: float = 1e-3, clip_norm: Optional[float] = 1.0, warmup: int = 0,
                      total_steps: Optional[int] = None, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """Adam(W) with gradient clipping and a warm-up/cosine schedule, as one `optax.chain`.

    Flows are trained with small batches of high-variance gradients early on
    (ActNorm starts exactly normalized, couplings near identity), so a short
    linear warm-up and clipping by global norm keep the first steps stable.

    Args:
      learning_rate: peak learning rate.
      clip_norm: clip gradients to this global norm; None disables clipping.
      warmup: steps of linear warm-up from 0 to `learning_rate`.
      total_steps: when given, cosine-decay to 0 at this step; otherwise the
        rate stays constant after warm-up.
      weight_decay: decoupled weight decay (AdamW); 0 gives Adam.

    Returns:
      An `optax.GradientTransformation`; the same object for the same
      (hashable) arguments, so train states built with it share their
      structure and a jitted step compiled for one serves the others.
    """
    if not 0 < learning_rate < float("inf"):
        raise ValueError(f"`learning_rate` must be finite and > 0; got {learning_rate}.")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"`clip_norm` must be None (no clipping) or > 0; got {clip_norm}.")
    if not weight_decay >= 0:
        raise ValueError(f"`weight_decay` must be >= 0; got {weight_decay}.")
    if warmup < 0 or (total_steps is not None and total_steps <= warmup):
        raise ValueError(f"Need 0 <= warmup < total_steps; got warmup={warmup}, total_steps={total_steps}.")
    arguments = (learning_rate, clip_norm, warmup, total_steps, weight_decay)
    try:
        hash(arguments)
    except TypeError:  # e.g. an array learning rate: build an optimizer of its own.
        return _build_optimizer(*arguments)
    return _cached_optimizer(*arguments)


def _build_optimizer(learning_rate: float, clip_norm: Optional[float], warmup: int, total_steps: Optional[int],
                     weight_decay: float) -> optax.GradientTransformation:
    """`default_optimizer` after its checks, built anew."""
    if total_steps is not None:
        schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup, total_steps)
    elif warmup:
        schedule = optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup),
                                         optax.constant_schedule(learning_rate)], [warmup])
    else:
        schedule = learning_rate
    parts = [] if clip_norm is None else [optax.clip_by_global_norm(clip_norm)]
    parts.append(optax.adamw(schedule, weight_decay=weight_decay) if weight_decay else optax.adam(schedule))
    return optax.chain(*parts)


# The optimizer lives in `TrainState.tx`, a static field: a new but identical
# object per call would change the state's tree structure and retrace every
# jitted step. optax transformations are immutable tuples of pure functions,
# so sharing one is safe; typed keeps 1 and 1.0 apart.
_cached_optimizer = functools.lru_cache(maxsize=64, typed=True)(_build_optimizer)
