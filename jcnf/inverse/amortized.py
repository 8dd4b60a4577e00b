"""`fit_amortized`: a neural posterior estimate q(theta | x) from simulated pairs, in one call.

    posterior = jcnf.inverse.fit_amortized(theta, x, bounds=(lower, upper))
    samples = posterior.sample(rng, x_obs, num_samples=10_000)     # [10000, batch, d]

The recipe: z-score the parameters and the observations, hold out a
validation fraction, and train the candidate flows (a spline MAF and, from
three dimensions up, an affine MAF, side by side on the same batches) by
maximum likelihood with Adam, starting at a high learning rate; the
candidate with the lowest validation loss is returned.

Every step also updates an exponential moving average of the parameters
(`ema_decay`; by default over about two epochs' steps, at most the last 100).
The average is what is validated, kept and returned: at a high rate the
iterates wander from batch to batch, their validation loss jumps by tenths
of a nat between epochs, and whether one epoch looks best is chance; their
average is both better and smooth. With the single reduction after 3
stalled epochs, it lowered the held-out loss of fresh simulations (mean of
three or four seeds) against the iterates under the previous schedule (two
reductions after 5): by 0.02 to 0.12 nats per row on all five benchmark
tasks at 10,000 simulations, and by up to 0.16 on four of them at 1,000
(the Gaussian mixture's was unchanged).

Whenever a candidate's validation loss has not improved for `patience`
epochs, its training goes back to its best parameters (and their optimizer
state) and continues at `reduction_factor` times the rate; after
`reductions` reductions, the next `patience` epochs without improvement end
it, and the best parameters are kept; so does a reduction after which the
loss never improved. A high rate finds sharp posteriors (two moons'
crescents) in few epochs; the reduction, from the best point so far, stops
the overfitting that a constant high rate brings where data are scarce for
the dimension (10-D Gaussians at 10,000 simulations).
Candidates that are not expected to win stop early: once each has had a
reduction, all but the best stop, and a candidate stops when a finished one
beats it. With a box prior, the flows model logit-mapped parameters, so
samples lie inside the box with an exact density.

Each candidate's epoch is one jitted `lax.scan` over its batches, gathered on
the device from the training arrays, followed by its validation loss; the host
reads one validation loss per candidate per epoch. The epochs are compiled
ahead of time, while a second thread initializes the candidates; the active
candidates' epochs then run one after the other. Training runs on one local
device: simulation budgets fit in its memory, and every process of a
multi-process job then trains the same model on the same pairs, whatever the
number of devices.
"""

from __future__ import annotations

import numbers
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from jcnf import _checks
from jcnf._progress import progress_bar
from jcnf.flows.base import ConditionalFlow
from jcnf.flows.maf import ConditionalMAF
from jcnf.flows.trained import Standardization, TrainedModel
from jcnf.sharding import make_mesh

# The train package's public names: their modules move as the engine grows, these stay.
from jcnf.train import TrainState, apply_loss, create_state

# `ema_decay="auto"` averages over two epochs' steps, and over at most about 100 steps: at 1,000 simulations
# (7 steps per epoch) a longer average lagged behind the overfitting of 10-D posteriors, while at 10,000 the
# cap is reached and the average is over the last 1.4 epochs.
MAX_EMA_DECAY = 0.99


def default_posterior_flows(value_dim: int, embedding: Optional[nn.Module] = None) -> tuple[ConditionalFlow, ...]:
    """The flows `fit_amortized` trains side by side unless given one.

    A spline MAF (4 blocks, MADEs of width 64, 8 bins) fits multi-modal and
    curved posteriors. From three dimensions up, an affine MAF (4 blocks,
    width 32) joins it: it is exact for Gaussian posteriors whose mean and
    covariance vary smoothly with the observation and, having far fewer
    parameters, overfits less where simulations are scarce for the
    dimension; its step costs a fifth of the spline's or less. In one or two
    dimensions the spline has data enough, and the second candidate would
    only add its compilation and steps to the training time. The validation
    loss picks between candidates.
    """
    spline = ConditionalMAF(blocks=4, hidden=64, transformer="spline", num_bins=8, embedding=embedding)
    if value_dim <= 2:
        return (spline,)
    return spline, ConditionalMAF(blocks=4, hidden=32, transformer="affine", embedding=embedding)


def _describe(model: nn.Module) -> str:
    """A short name of a candidate flow for the metadata, e.g. "ConditionalMAF(transformer='spline')"."""
    transformer = getattr(model, "transformer", None)
    return type(model).__name__ + (f"(transformer={transformer!r})" if transformer is not None else "")


def _check_bounds(bounds: Any, value: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"`bounds` must be a pair (lower, upper) of arrays [{value.shape[1]}]; got {bounds!r}.")
    lower, upper = (np.broadcast_to(np.asarray(b, np.float64), value.shape[1:]).copy() for b in bounds)
    if not np.all(np.isfinite(lower) & np.isfinite(upper)) or not np.all(lower < upper):
        raise ValueError(f"`bounds` must have finite lower < upper in every dimension; got lower {lower.tolist()}, "
                         f"upper {upper.tolist()}.")
    outside = int(np.sum(np.any((value < lower) | (value > upper), axis=1)))
    if outside:
        raise ValueError(f"`value` has {outside} row(s) outside `bounds`; the posterior's support is the box.")
    return lower, upper


def _to_unbounded(value: np.ndarray, bounds: Optional[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    if bounds is None:
        return value
    lower, upper = bounds
    # Rows on the boundary (a prior's draw of exactly `lower`) would map to -inf: move them in by a
    # millionth of the width, far below any posterior's resolution.
    margin = 1e-6 * (upper - lower)
    unit = (np.clip(value, lower + margin, upper - margin) - lower) / (upper - lower)
    # BoxLogit's forward map, in float64 on the host: the data are mapped once, before training.
    return np.log(unit) - np.log1p(-unit)


def _location_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation over all axes but the last; constant features get scale 1."""
    axes = tuple(range(x.ndim - 1))
    loc, scale = x.mean(axes), x.std(axes)
    return loc, np.where(scale > 1e-8 * np.maximum(1.0, np.abs(loc)), scale, 1.0)


def _optimizer(learning_rate: float, clip_norm: Optional[float]) -> optax.GradientTransformation:
    """Adam (after clipping) whose rate is a value in the optimizer state, so a reduction needs no recompile."""
    if not 0 < learning_rate < float("inf"):
        raise ValueError(f"`learning_rate` must be finite and > 0; got {learning_rate}.")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"`clip_norm` must be None (no clipping) or > 0; got {clip_norm}.")
    adam = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
    return adam if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), adam)


def _scale_learning_rate(state: TrainState, factor: float) -> TrainState:
    """`state` with its optimizer's rate multiplied by `factor` (the moments are kept)."""
    def is_injected(node: Any) -> bool:
        return isinstance(node, optax.InjectStatefulHyperparamsState)

    def scale(node: Any) -> Any:
        if not is_injected(node):
            return node
        return node._replace(hyperparams={**node.hyperparams,
                                          "learning_rate": node.hyperparams["learning_rate"] * factor})

    return state.replace(opt_state=jax.tree.map(scale, state.opt_state, is_leaf=is_injected))


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    held_out = min(max(1, int(round(fraction * n))), n - 1)
    return order[held_out:], order[:held_out]


def _trainer(model: nn.Module):
    """One candidate's jitted epoch: a `lax.scan` of optimizer steps, then the validation loss.

    The validation loss is part of the same program, so an epoch is one dispatch. `fit_amortized` compiles
    it ahead of time, once per candidate (the rate is a value in the optimizer state, so a reduction needs
    no recompile).
    """
    def loss_fn(params: dict, rng: Array, batch: dict) -> tuple[Array, dict]:
        del rng
        return -jnp.mean(model.apply({"params": params["flow"]}, batch["value"], batch["context"])), {}

    @jax.jit
    def epoch(state: TrainState, value: Array, context: Array, order: Array, validation_value: Array,
              validation_context: Array) -> tuple[TrainState, Array, Array]:
        def body(state: TrainState, rows: Array) -> tuple[TrainState, Array]:
            state, metrics = apply_loss(state, loss_fn, {"value": value[rows], "context": context[rows]})
            return state, metrics["loss"]
        state, train_losses = jax.lax.scan(body, state, order)
        # The moving average when the state keeps one: it is what is kept and returned.
        params = state.params_for(use_ema=state.ema_params is not None)
        validation_loss, _ = loss_fn(params, None, {"value": validation_value, "context": validation_context})
        return state, jnp.mean(train_losses), validation_loss

    return epoch


def _prepare(models: Sequence[nn.Module], optimizer: optax.GradientTransformation, keys: Sequence[Array],
             example: dict, mesh: Any, data: tuple, ema_decay: Optional[float]) -> tuple[list, list]:
    """Each candidate's initial state and compiled epoch.

    The initializations run on a second thread while the epochs compile (lowered from the states' shapes,
    so they need not wait for them). On a 2-core CPU this took 3.6 s against 4.0 s one after the other for
    the 2-D spline MAF, and 6.6 s against 7.1 s for the 10-D spline and affine MAFs; more threads gained
    nothing (two compilations at once each took 1.4 to 1.7 times as long).
    """
    def initial_state(model: nn.Module, key: Array) -> TrainState:
        return create_state(model, optimizer, key, example, mesh=mesh, ema_decay=ema_decay)

    def compiled_epoch(model: nn.Module, key: Array):
        shapes = jax.eval_shape(lambda: initial_state(model, key))
        return _trainer(model).lower(shapes, *data).compile()

    pairs = list(zip(models, keys, strict=True))
    with ThreadPoolExecutor(max_workers=1) as pool:
        states = pool.submit(lambda: [initial_state(m, k) for m, k in pairs])
        epochs = [compiled_epoch(m, k) for m, k in pairs]
        return states.result(), epochs


def _drop_losers(schedules: list) -> None:
    """Stops the candidates that are no longer expected to win.

    A candidate stops once a finished one holds a lower validation loss than its best so far; and, once
    every candidate has had its rate reduced at least once (each has converged at its first rate), all but
    the one with the lowest validation loss stop (successive halving's first rung).
    """
    finished = min((schedule.best_loss for schedule in schedules if schedule.done), default=np.inf)
    leader = min(schedule.best_loss for schedule in schedules)
    compared = all(schedule.reduced > 0 or schedule.done for schedule in schedules)
    for schedule in schedules:
        schedule.done = schedule.done or schedule.best_loss > finished or (compared and schedule.best_loss > leader)


class _Schedule:
    """One candidate's rate schedule on the host: its best state, its reductions and when it stops."""

    def __init__(self, state: TrainState, learning_rate: float):
        self.best_loss, self.best_state, self.best_epoch = np.inf, state, 0
        self.rate, self.reduced, self.last_change = learning_rate, 0, 0
        self.done, self.history = False, []

    def update(self, index: int, state: TrainState, train_loss: float, loss: float, patience: int,
               reductions: int, reduction_factor: float) -> TrainState:
        """Records epoch `index`; returns the state to continue from (on a reduction, the best one)."""
        self.history.append({"epoch": index, "train_loss": train_loss, "validation_loss": loss,
                             "learning_rate": self.rate})
        if loss < self.best_loss:
            self.best_loss, self.best_state, self.best_epoch = loss, state, index
        elif index - max(self.best_epoch, self.last_change) >= patience:
            # The last reduction is spent, or the previous one found nothing better: a smaller rate from the
            # same best point would move less still.
            if self.reduced == reductions or (self.reduced and self.best_epoch <= self.last_change):
                self.done = True
                return self.best_state
            # Back to the best point, at a lower rate: the epochs since it were overfitting or noise.
            self.reduced, self.last_change, self.rate = self.reduced + 1, index, self.rate * reduction_factor
            return _scale_learning_rate(self.best_state, reduction_factor)
        return state


def fit_amortized(value: Any, context: Any, *,
                  model: Optional[Union[ConditionalFlow, Sequence[ConditionalFlow]]] = None,
                  embedding: Optional[nn.Module] = None, bounds: Optional[Sequence[Any]] = None,
                  standardize: bool = True, validation_fraction: float = 0.1, patience: int = 3,
                  reductions: int = 1, reduction_factor: float = 0.2, max_epochs: int = 500,
                  batch_size: int = 128, learning_rate: float = 5e-3, clip_norm: Optional[float] = 5.0,
                  seed: int = 0, progress: bool = False,
                  ema_decay: Union[float, str, None] = "auto") -> TrainedModel:
    """Trains an amortized posterior q(value | context) on simulated pairs; returns it in the user's units.

    Args:
      value: the simulated parameters theta, [n, d].
      context: the simulated observations x, [n, f]; with an `embedding` (or a
        `model` that has one), [n, ...] as that network reads it.
      model: the flow to train, in standardized units, or a sequence of
        candidate flows trained side by side (the one with the lowest
        validation loss is returned); default
        `default_posterior_flows(d, embedding)`.
      embedding: a summary network for the default flows (ignored with `model`).
      bounds: (lower, upper), each [d] or a scalar, of a box prior: the flow
        models logit((value - lower) / (upper - lower)) and its samples lie
        inside the box. Every row of `value` must lie in the box.
      standardize: z-score the (logit-mapped) value and the context's last
        axis with the training rows' mean and standard deviation.
      validation_fraction: the fraction of rows held out, in (0, 1).
      patience: epochs without a better validation loss before the rate is
        reduced (from the best parameters), or, after the last reduction,
        training stops (>= 1).
      reductions: at most how many times the rate is reduced before the next
        `patience` epochs without improvement stop training (>= 0; 0 is plain
        early stopping at a constant rate). Training also stops when
        `patience` epochs after a reduction bring no improvement.
      reduction_factor: the rate's factor at each reduction, in (0, 1).
      max_epochs: at most this many epochs.
      batch_size: rows per optimizer step, at most the training rows (the last partial batch of an
        epoch is dropped).
      learning_rate: Adam's starting rate.
      clip_norm: clip gradients to this global norm; None disables clipping.
      seed: seeds the split, the initialization and the shuffling.
      progress: show a progress bar over epochs.
      ema_decay: the per-step decay of the parameters' exponential moving
        average, which is validated, kept and returned: "auto" (an average
        over about two epochs' steps, at most 100: 1 - 1 / (2 * steps per
        epoch), capped at 0.99), a number in (0, 1), or None to validate and
        return the iterates themselves.

    Returns:
      A `jcnf.TrainedModel` holding the flow, the parameters (their moving
      average unless `ema_decay` is None) of the epoch with the best
      validation loss, the `Standardization` and the bounds;
      `posterior.sample(rng, x_obs, num_samples=n)` gives [n, batch, d] and
      `posterior.log_prob(theta, x)` [batch], both in the user's units. Its
      metadata records the per-epoch losses and rates ("history", nats per row
      in standardized units) and "best_epoch" of the returned flow, and, per
      candidate, its "best_validation_loss", "best_epoch" and "epochs"
      ("candidates", with the returned one's index "chosen"). For reverse-KL
      fine-tuning pass
      it to `jcnf.inverse.fit_reverse_kl` as the model.

    Raises:
      ValueError: naming the argument, for shapes, non-finite data, a
        validation fraction outside (0, 1), patience < 1, reductions < 0, a
        reduction factor or an `ema_decay` outside (0, 1), or bounds with
        lower >= upper or rows outside them.
    """
    value_np = np.asarray(value, np.float64)
    context_np = np.asarray(context, np.float64)
    if value_np.ndim != 2 or value_np.shape[1] < 1:
        raise ValueError(f"`value` must have shape [n, d] (the simulated parameters); got "
                         f"{_checks.describe(value)}.")
    if context_np.ndim < 2 or context_np.shape[0] != value_np.shape[0]:
        raise ValueError(f"`context` must have shape [n, f] (or [n, ...] with an embedding) with the n of `value` "
                         f"({value_np.shape[0]}); got {_checks.describe(context)}.")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"`validation_fraction` must be in (0, 1); got {validation_fraction}.")
    _checks.check_int("patience", patience)
    _checks.check_int("reductions", reductions, minimum=0)
    if not 0.0 < reduction_factor < 1.0:
        raise ValueError(f"`reduction_factor` must be in (0, 1); got {reduction_factor}.")
    if not (ema_decay is None or ema_decay == "auto" or (isinstance(ema_decay, numbers.Real)
                                                         and 0.0 < ema_decay < 1.0)):
        raise ValueError(f"`ema_decay` must be \"auto\", None (no average) or in (0, 1); got {ema_decay!r}.")
    _checks.check_int("max_epochs", max_epochs)
    _checks.check_int("batch_size", batch_size)
    for name, array in (("value", value_np), ("context", context_np)):
        _checks.check_finite(name, array)
    box = _check_bounds(bounds, value_np)
    train_rows, validation_rows = _split(len(value_np), validation_fraction, np.random.default_rng(seed))
    # A small simulation budget trains on full batches of what it has, as sbi does.
    batch_size = min(batch_size, len(train_rows))

    unbounded = _to_unbounded(value_np, box)
    # Statistics of the training rows only: the validation loss stays an honest held-out estimate.
    if standardize:
        value_loc, value_scale = _location_scale(unbounded[train_rows])
        context_loc, context_scale = _location_scale(context_np[train_rows])
    else:
        value_loc, value_scale = np.zeros(value_np.shape[1]), np.ones(value_np.shape[1])
        context_loc, context_scale = np.zeros(context_np.shape[-1]), np.ones(context_np.shape[-1])
    device = jax.local_devices()[0]
    scaled_value = jax.device_put(((unbounded - value_loc) / value_scale).astype(np.float32), device)
    scaled_context = jax.device_put(((context_np - context_loc) / context_scale).astype(np.float32), device)

    if model is None:
        models = default_posterior_flows(value_np.shape[1], embedding)
    elif isinstance(model, nn.Module):
        models = (model,)
    else:
        models = tuple(model)
        if not models or not all(isinstance(m, nn.Module) for m in models):
            raise ValueError(f"`model` must be a flow or a non-empty sequence of flows; got {model!r}.")
    optimizer = _optimizer(learning_rate, clip_norm)
    train_value, train_context = scaled_value[train_rows], scaled_context[train_rows]
    validation_value, validation_context = scaled_value[validation_rows], scaled_context[validation_rows]
    example = {"value": train_value[:batch_size], "context": train_context[:batch_size]}
    mesh = make_mesh([device])
    # The first candidate keeps the key a single flow has always had, so a flow given alone trains as before.
    keys = [jax.random.PRNGKey(seed)] + [jax.random.fold_in(jax.random.PRNGKey(seed), i) for i in range(1, len(models))]
    shuffle = np.random.default_rng(seed + 1)
    batches = len(train_rows) // batch_size
    if ema_decay == "auto":
        ema_decay = min(MAX_EMA_DECAY, 1.0 - 1.0 / (2 * batches))
    ema_decay = None if ema_decay is None else float(ema_decay)
    # Every epoch's order has this shape: the programs compile for it once.
    order_shape = jax.ShapeDtypeStruct((batches, batch_size), jnp.int32)
    states, epochs = _prepare(models, optimizer, keys, example, mesh,
                              (train_value, train_context, order_shape, validation_value, validation_context),
                              ema_decay)

    schedules = [_Schedule(state, learning_rate) for state in states]
    bar = progress_bar(max_epochs, disable=not progress)
    for index in range(1, max_epochs + 1):
        # Drop the last partial batch, so every epoch has one shape and compiles once.
        order = shuffle.permutation(len(train_rows))[:batches * batch_size].reshape(batches, batch_size)
        order = jax.device_put(order.astype(np.int32), device)
        for i, schedule in enumerate(schedules):
            if schedule.done:
                continue
            # One candidate at a time: reading its losses waits for its epoch before the next one starts.
            # Small programs running at once on a CPU slow each other down more than they gain.
            new_state, train_loss, validation_loss = epochs[i](states[i], train_value, train_context, order,
                                                               validation_value, validation_context)
            states[i] = schedule.update(index, new_state, float(train_loss), float(validation_loss), patience,
                                        reductions, reduction_factor)
        bar.update(1)
        _drop_losers(schedules)
        if all(schedule.done for schedule in schedules):
            break
    bar.close()

    chosen = int(np.argmin([schedule.best_loss for schedule in schedules]))
    model, best = models[chosen], schedules[chosen]
    standardization = Standardization(value_loc, value_scale, context_loc, context_scale) if standardize else None
    metadata = {"history": best.history, "best_epoch": best.best_epoch, "validation_fraction": validation_fraction,
                "patience": patience, "reductions": reductions, "reduction_factor": reduction_factor,
                "batch_size": batch_size, "learning_rate": learning_rate, "ema_decay": ema_decay, "seed": seed,
                "chosen": chosen,
                "candidates": [{"flow": _describe(m), "best_validation_loss": schedule.best_loss,
                                "best_epoch": schedule.best_epoch, "epochs": len(schedule.history)}
                               for m, schedule in zip(models, schedules, strict=True)]}
    params = best.best_state.params_for(use_ema=ema_decay is not None)["flow"]
    return TrainedModel(model, jax.device_get(params), standardization=standardization, bounds=box,
                        metadata=metadata, value_shape=value_np.shape[1:], context_shape=context_np.shape[1:])
