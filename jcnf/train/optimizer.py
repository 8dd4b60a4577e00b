"""The default optimizer: Adam with global-norm clipping, linear warm-up and cosine decay."""

from __future__ import annotations

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
      An `optax.GradientTransformation`, a new object per call. The optimizer
      is a static part of a `TrainState`: states built with one object share
      a jitted step's compilation, so build the optimizer once and keep it
      with the step (as `jcnf.inverse.posterior_step` does).
    """
    if not 0 < learning_rate < float("inf"):
        raise ValueError(f"`learning_rate` must be finite and > 0; got {learning_rate}.")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"`clip_norm` must be None (no clipping) or > 0; got {clip_norm}.")
    if not weight_decay >= 0:
        raise ValueError(f"`weight_decay` must be >= 0; got {weight_decay}.")
    if warmup < 0 or (total_steps is not None and total_steps <= warmup):
        raise ValueError(f"Need 0 <= warmup < total_steps; got warmup={warmup}, total_steps={total_steps}.")
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

