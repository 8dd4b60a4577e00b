"""Validation for `fit`: a held-out negative log-likelihood, the best parameters so far, early stopping.

`fit(..., validation=...)` or `fit(..., validation_fraction=...)` evaluates
the mean NLL of the held-out pairs every `eval_every` steps, keeps a copy of
the parameters with the lowest one, and stops when `patience` evaluations in
a row brought no improvement. The tracker's counters travel in the
checkpoint's data position and the best parameters beside the state, so a
resumed run continues exactly.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jcnf._checks import check_int
from jcnf.dequantize.base import Dequantizer
from jcnf.sharding import data_axis_size
from jcnf.train.mle import mle_eval_step
from jcnf.train.state import TrainState, check_batch_keys


def split_validation(data: Mapping[str, Any], fraction: float, seed: int) -> tuple[dict, dict]:
    """Splits a dict of arrays into (training, validation) rows by a seeded permutation.

    Args:
      data: {"value": [N, ...], "context": [N, ...], ...}.
      fraction: the share of rows held out, in (0, 1).
      seed: seeds the permutation (the same on every process).

    Returns:
      The training and the validation dicts; at least one row in each.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"`validation_fraction` must be a number in (0, 1); got {fraction!r}.")
    num_rows = len(next(iter(data.values())))
    if num_rows < 2:
        raise ValueError(f"`validation_fraction` needs at least 2 rows of `data` to split; got {num_rows}.")
    held_out = min(max(1, round(fraction * num_rows)), num_rows - 1)
    order = np.random.default_rng(seed).permutation(num_rows)
    take = lambda rows: {key: np.asarray(x)[rows] for key, x in data.items()}  # noqa: E731
    return take(order[held_out:]), take(order[:held_out])


class ValidationTracker:
    """The held-out NLL, the best parameters so far and the early-stopping count of one `fit`.

    The held-out rows are evaluated in global chunks of `batch_size` (the last
    one trimmed to a multiple of the device count), each process feeding its
    own rows of every chunk; the loss is the mean over the evaluated rows.

    Args:
      model: the flow.
      validation: {"value": [M, ...], "context": [M, ...]}, on every process.
      batch_size: rows per evaluation chunk (the training batch size).
      mesh: the device mesh.
      dequantizer: as in training; its noise is drawn from a fixed key, so
        evaluations of one state agree.
      patience: stop after this many evaluations without improvement, or
        None to never stop early.
      start_params: the parameters before training: the best ones until the
        first evaluation.
    """

    def __init__(self, model: nn.Module, validation: Mapping[str, Any], batch_size: int, mesh: Mesh,
                 dequantizer: Optional[Dequantizer], patience: Optional[int], start_params: dict):
        check_batch_keys(validation, ("value", "context"), "validation")
        if patience is not None:
            check_int("patience", patience)
        self.patience = patience
        self._evaluate = mle_eval_step(model, mesh, dequantizer)
        processes, devices = jax.process_count(), data_axis_size(mesh)
        rows = len(np.asarray(validation["value"]))
        sizes = [batch_size] * (rows // batch_size)
        if rows % batch_size >= devices:
            sizes.append(rows % batch_size - rows % batch_size % devices)
        if not sizes:
            raise ValueError(f"`validation` must have at least as many rows as devices ({devices}); got {rows}.")
        self._chunks, start = [], 0
        for size in sizes:
            per_process = size // processes
            first = start + jax.process_index() * per_process
            self._chunks.append(({key: np.asarray(x)[first:first + per_process] for key, x in validation.items()},
                                 size))
            start += size
        self.best_params = jax.tree.map(jnp.copy, start_params)
        self.best_loss: Optional[float] = None
        self.best_step: Optional[int] = None
        self.since_best = 0

    def loss(self, state: TrainState) -> float:
        """The mean held-out NLL (nats) of `state.params`."""
        losses = [(float(self._evaluate(state, chunk)["loss"]), size) for chunk, size in self._chunks]
        return math.fsum(loss * size for loss, size in losses) / sum(size for _, size in losses)

    def update(self, state: TrainState, step: int) -> float:
        """Evaluates `state` at `step`, keeps its params if they are the best so far; returns the loss."""
        loss = self.loss(state)
        if self.best_loss is None or loss < self.best_loss:
            # A copy: the train step donates (and so deletes) the state's buffers.
            self.best_params = jax.tree.map(jnp.copy, state.params)
            self.best_loss, self.best_step, self.since_best = loss, step, 0
        else:
            self.since_best += 1
        return loss

    @property
    def should_stop(self) -> bool:
        """Whether `patience` evaluations in a row brought no improvement."""
        return self.patience is not None and self.since_best >= self.patience

    def position(self) -> dict[str, Any]:
        """The counters, JSON-able, for the checkpoint's data position."""
        return {"best_loss": self.best_loss, "best_step": self.best_step, "since_best": self.since_best}

    def set_position(self, position: Mapping[str, Any], best_params: dict) -> None:
        """Restores the counters of `position()` and the best params saved beside the state."""
        self.best_loss, self.best_step = position["best_loss"], position["best_step"]
        self.since_best, self.best_params = int(position["since_best"]), best_params
