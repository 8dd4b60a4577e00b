"""`fit`: the training loop, with progress bar, JSON-lines (and TensorBoard) metrics, hooks and checkpoints.

The inner loop only dispatches: `step(state, batch)` returns device arrays
and the loop goes on to the next batch without waiting. The host reads
metrics (and the skip counters) every `log_every` steps in one transfer;
evaluation, sampling and checkpoints run on their own periods and sync
there too.

Multi-host: every process runs `fit` with its own shard of the data (see
`ArrayBatches`); only process 0 draws the progress bar and writes the
metrics files; all processes take part in checkpoints, evaluation and sample
hooks (a hook that writes files should do so on process 0 only).
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Optional

import flax.linen as nn
import jax
import numpy as np
import optax
from jax import Array
from jax.sharding import Mesh

from jcnf._checks import check_int
from jcnf._progress import progress_bar
from jcnf.data.arrays import ArrayBatches
from jcnf.dequantize.base import Dequantizer
from jcnf.flows.saved import save_model
from jcnf.sharding import make_mesh
from jcnf.train.checkpoint import Checkpointer
from jcnf.train.optimizer import default_optimizer
from jcnf.train.state import TrainState, create_state
from jcnf.train.steps import mle_step
from jcnf.train.writers import MetricsLog, TensorBoardLog


class FitResult(NamedTuple):
    """What `fit` returns: the final state and the logged records (`state, history = fit(...)`)."""

    state: TrainState
    history: list[dict[str, Any]]

    @property
    def params(self) -> dict:
        """The flow's final parameters, `state.params["flow"]`.

        What `model.apply({"params": ...})`, `jcnf.inverse.precondition` and
        `jcnf.save_model` take; a learned dequantizer's are in `state.params`.
        """
        return self.state.params["flow"]


class TooManySkippedSteps(RuntimeError):
    """Raised by `fit` when too many consecutive steps had a non-finite loss or gradient."""


def _window_mean(window: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Mean of each metric over the steps since the last log (host arrays), ignoring non-finite entries."""
    stacked = {key: np.stack([metrics[key] for metrics in window]) for key in window[0]}
    means = {}
    for key, values in stacked.items():
        finite = values[np.isfinite(values)]
        means[key] = float(finite.mean()) if finite.size else float("nan")
    means["skipped"] = float(np.sum(stacked["skipped"])) if "skipped" in stacked else 0.0
    return means


def _per_step(window: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Splits the stacked metrics of multi-step dispatches ([n] per key) into one dict per step."""
    steps = []
    for metrics in window:
        first = next(iter(metrics.values()), None)
        if first is not None and np.ndim(first) == 1:
            steps += [{key: value[i] for key, value in metrics.items()} for i in range(len(first))]
        else:
            steps.append(metrics)
    return steps


def _fast_forward(batches: Iterator, count: int) -> None:
    for _ in range(count):
        next(batches)


def fit(model: nn.Module, data: Mapping[str, Any] | tuple | Iterator[Mapping[str, Any]], steps: int, *,
        state: Optional[TrainState] = None, optimizer: Optional[optax.GradientTransformation] = None,
        rng: Optional[Array] = None, seed: int = 0, batch_size: Optional[int] = None,
        step_fn: Optional[Callable] = None, dequantizer: Optional[Dequantizer] = None,
        ema_decay: Optional[float] = None, mesh: Optional[Mesh] = None,
        eval_fn: Optional[Callable[[TrainState], Mapping[str, float]]] = None, eval_every: int = 1000,
        sample_fn: Optional[Callable[[TrainState, int], None]] = None, sample_every: int = 1000,
        checkpoint_dir: Optional[str | os.PathLike] = None, checkpoint_every: int = 1000, keep: int = 3,
        metrics_path: Optional[str | os.PathLike] = None, tensorboard_dir: Optional[str | os.PathLike] = None,
        log_every: int = 100, max_consecutive_skips: int = 20, progress: bool = True,
        steps_per_dispatch: int = 1, model_dir: Optional[str | os.PathLike] = None) -> FitResult:
    """Trains until `state.step == steps`, resuming from `checkpoint_dir` when it holds a checkpoint.

    The simplest call trains a flow by maximum likelihood on arrays:

        result = jcnf.train.fit(model, {"value": x, "context": y}, steps=5000, batch_size=64)
        state, history = result

    Args:
      model: the flow.
      data: the training pairs as a dict of arrays {"value": [N, ...],
        "context": [N, ...]} or a tuple (value, context), shuffled into batches
        of `batch_size` by `ArrayBatches`; or an iterator of batch dicts. An
        iterator with `get_state`/`set_state` resumes exactly; any other is
        fast-forwarded on resume (see `jcnf.data.arrays`).
      steps: the total number of steps to reach (a resumed run continues to it).
      state: a state to continue from; default `create_state` on the first
        batch with `optimizer` (default `default_optimizer(1e-3)`), `rng`
        (default `PRNGKey(seed)`), `dequantizer`, `ema_decay` and `mesh`
        (`optimizer`, `rng` and `ema_decay` are used only to create the
        state; `dequantizer` and `mesh` also configure the default `step_fn`).
      optimizer: the optax transformation of a new state.
      rng: the key of a new state (default `PRNGKey(seed)`).
      seed: seeds the default rng and the shuffling of array data.
      batch_size: global batch size, required when `data` is arrays.
      step_fn: `state, metrics = step_fn(state, batch)`; default
        `mle_step(model, mesh, dequantizer)`.
      dequantizer: the dequantizer of a new state and of the default step.
      ema_decay: keep an EMA of the parameters in a new state.
      mesh: the device mesh (default: all devices).
      eval_fn: `eval_fn(state) -> {name: float}`, every `eval_every` steps and
        at the end; logged with an "eval_" prefix.
      eval_every: steps between evaluations.
      sample_fn: `sample_fn(state, step)`, every `sample_every` steps and at the end.
      sample_every: steps between calls of `sample_fn`.
      checkpoint_dir: save a checkpoint every `checkpoint_every` steps and at
        the end, keeping the last `keep`.
      checkpoint_every: steps between checkpoints.
      keep: number of checkpoints kept.
      metrics_path: JSON-lines file of logged records.
      tensorboard_dir: also write the logged records as TensorBoard scalars
        there (process 0; needs `tensorboardX`, the `tensorboard` extra).
      log_every: steps between metric fetches (the loop's only host syncs besides the
        eval, sample and checkpoint periods).
      max_consecutive_skips: raise `TooManySkippedSteps` when, at a log
        point, the current run of skipped (non-finite) steps is this long.
      progress: show a tqdm progress bar (process 0 only).
      steps_per_dispatch: run this many optimizer steps per call into the
        device (one jitted `lax.scan`, `step_fn.run(state, batches)`), which
        removes the per-step dispatch cost that dominates small models. The
        parameters are those of single steps; every step's metrics are kept.
        Log, eval, sample and checkpoint points stay at their exact steps.
      model_dir: at the end, save the trained flow there (`jcnf.save_model`,
        process 0 only) with the value and context shapes of the training
        batches; `jcnf.load_model(model_dir)` gives it back as a `TrainedModel`.

    Returns:
      `FitResult(state, history)`; `history` holds the logged records
      (dicts with "step" and the window means of the metrics).
    """
    check_int("steps", steps, 0)
    for name, period in [("log_every", log_every), ("checkpoint_every", checkpoint_every),
                         ("eval_every", eval_every), ("sample_every", sample_every),
                         ("max_consecutive_skips", max_consecutive_skips), ("steps_per_dispatch", steps_per_dispatch)]:
        check_int(name, period)
    mesh = make_mesh() if mesh is None else mesh
    if isinstance(data, tuple) and len(data) == 2 and all(hasattr(x, "shape") for x in data):
        data = {"value": data[0], "context": data[1]}
    if isinstance(data, Mapping):
        if batch_size is None:
            raise ValueError("`batch_size` is required when `data` is a dict of arrays.")
        batches = ArrayBatches(data, batch_size, seed=seed)
    else:
        batches = iter(data)
    resumable = hasattr(batches, "get_state") and hasattr(batches, "set_state")

    state_given = state is not None
    if state is None:
        # Initialize on the first batch without losing it for training.
        if resumable:
            position = batches.get_state()
            first = next(batches)
            batches.set_state(position)
        else:
            first = next(batches)
            batches = itertools.chain([first], batches)
        rng = jax.random.PRNGKey(seed) if rng is None else rng
        state = create_state(model, optimizer or default_optimizer(1e-3), rng, first, ema_decay=ema_decay,
                             dequantizer=dequantizer, mesh=mesh)
    step_fn = mle_step(model, mesh, dequantizer) if step_fn is None else step_fn
    if steps_per_dispatch > 1 and not callable(getattr(step_fn, "run", None)):
        raise ValueError(f"`steps_per_dispatch`={steps_per_dispatch} needs a `step_fn` with a "
                         "`run(state, batches)` method (a `jcnf.train.TrainStep`, as `mle_step` and "
                         f"`make_train_step` return); got {type(step_fn).__name__}.")

    checkpointer = None if checkpoint_dir is None else Checkpointer(checkpoint_dir, keep)
    consumed = 0  # batches drawn from `batches`, for iterators without get_state
    if checkpointer is not None and checkpointer.latest_step() is not None:
        state, data_state = checkpointer.restore(state)
        if resumable and "iterator" in data_state:
            batches.set_state(data_state["iterator"])
        else:
            consumed = int(data_state.get("consumed", 0))
            _fast_forward(batches, consumed)
    start = int(state.step)
    writers = [MetricsLog(metrics_path, resume_step=start), TensorBoardLog(tensorboard_dir, resume_step=start)]
    history: list[dict[str, Any]] = []

    def data_position() -> dict:
        return {"iterator": batches.get_state()} if resumable else {"consumed": consumed}

    def record(values: dict[str, Any]) -> None:
        history.append(values)
        for writer in writers:
            writer.write(values)

    bar = progress_bar(steps, initial=start, log_every=log_every, disable=not progress or jax.process_index() != 0)
    window: list[dict[str, Array]] = []
    clock = time.perf_counter()
    periods = [log_every] + [period for period, hook in ((eval_every, eval_fn), (sample_every, sample_fn),
                                                         (checkpoint_every, checkpointer)) if hook is not None]

    example: list[Mapping[str, Any]] = [] if state_given else [first]

    def next_batch(step: int) -> Mapping[str, Any]:
        nonlocal consumed
        try:
            batch = next(batches)
        except StopIteration:
            raise ValueError(f"`data` ran out of batches at step {step} of {steps}.") from None
        consumed += 1
        if not example:
            example.append(batch)
        return batch

    def chunk_size(done: int) -> int:
        # Several steps per dispatch only when no log, eval, sample or checkpoint
        # point falls strictly inside the chunk, so every periodic action still
        # happens at its exact step; otherwise single steps until aligned.
        size = min(steps_per_dispatch, steps - done)
        if size < steps_per_dispatch or any((done + size) // p - done // p > (1 if (done + size) % p == 0 else 0)
                                            for p in periods):
            return 1
        return size

    step = start
    try:
        while step < steps:
            size = chunk_size(step)
            if size == 1:
                state, metrics = step_fn(state, next_batch(step + 1))
                window.append(metrics)
            else:
                chunk = [next_batch(step + i + 1) for i in range(size)]
                state, stacked = step_fn.run(state, chunk)
                # Every step's metrics are kept; they are split on the host at the next log point.
                window.append(stacked)
            step += size
            last = step == steps
            if step % log_every == 0 or last:
                # One transfer (and the loop's one wait) per log point.
                window, skipped_total, skip_run = jax.device_get((window, state.skipped, state.skip_run))
                window = _per_step(window)
                values = {"step": step, **_window_mean(window)}
                now = time.perf_counter()
                values["steps_per_s"] = len(window) / (now - clock)
                window, clock = [], now
                values["skipped_total"] = int(skipped_total)
                record(values)
                bar.set_postfix(loss=f"{values['loss']:.4g}", skipped=values["skipped_total"])
                skip_run = int(skip_run)
                if skip_run >= max_consecutive_skips:
                    raise TooManySkippedSteps(
                        f"{skip_run} consecutive steps up to step {step} had a non-finite loss or gradient and "
                        f"were skipped (limit {max_consecutive_skips}); params are those of step "
                        f"{step - skip_run}. Check the data for NaN/inf, lower the learning rate or clip "
                        f"gradients (default_optimizer(clip_norm=...)).")
            if eval_fn is not None and (step % eval_every == 0 or last):
                record({"step": step, **{f"eval_{key}": float(value) for key, value in eval_fn(state).items()}})
            if sample_fn is not None and (step % sample_every == 0 or last):
                sample_fn(state, step)
            if checkpointer is not None and (step % checkpoint_every == 0 or last):
                checkpointer.save(step, state, data_position())
            bar.update(size)
    finally:
        bar.close()
        for writer in writers:
            writer.close()
        if checkpointer is not None:
            checkpointer.close()
    result = FitResult(state, history)
    if model_dir is not None:
        _save_trained(model, result.params, example[0] if example else next(batches, None), model_dir)
    return result


def _save_trained(model: nn.Module, params: Any, batch: Optional[Mapping[str, Any]],
                  model_dir: str | os.PathLike) -> None:
    """Saves the flow with the shapes of one training batch's value and context (process 0)."""
    if not isinstance(batch, Mapping) or not {"value", "context"} <= set(batch):
        raise ValueError("`model_dir` needs training batches with 'value' and 'context' (their shapes are saved "
                         f"with the model); got a batch of type {type(batch).__name__}.")
    if jax.process_index() == 0:
        save_model(model_dir, model, params, value_shape=np.shape(batch["value"])[1:],
                   context_shape=np.shape(batch["context"])[1:])
