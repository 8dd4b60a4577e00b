"""`fit_reverse_kl`: variational inference for one observation, on the training engine.

    lo = jcnf.train.fit(model, {"value": x, "context": y}, steps=2000, batch_size=64)
    hi_init = jcnf.inverse.precondition(lo.params["flow"])
    hi = jcnf.inverse.fit_reverse_kl(model, hi_init, y_obs, forward_op, noise_std, log_prior, steps=80)
    samples = model.apply({"params": hi.params}, rng, jnp.repeat(y_obs[None], 1000, 0), method="sample")

The loop is `jcnf.train.fit` driving `jcnf.train.reverse_kl_step`: one jitted
step compiled once, a progress bar, JSON-lines metrics, orbax checkpoints and
resumption, the non-finite guard. The objective is minimized over latents
that are either drawn fresh each step or, as in the paper's code, a fixed
set reshuffled every epoch.

Besides the training loss (a noisy one-batch estimate), the loop can record
the objective on a fixed set of evaluation latents: a deterministic
function of the parameters, which makes runs comparable step by step (see
`steps_to_reach`).

Compiled once across calls: the observation and the context are inputs of
the jitted step and evaluation objective, not constants, and both are kept
in a small cache keyed on the model, forward operator and prior (by
identity) and on noise_std, num_samples and the mesh. Fitting several
observations, or one observation preconditioned and then from scratch,
with the same objects traces and compiles each function once (per shape
and optimizer; `jcnf.train.default_optimizer` returns one object per
setting).
"""

from __future__ import annotations

import functools
import itertools
import os
from typing import Any, Callable, NamedTuple, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from jax.sharding import Mesh

from jcnf._checks import check_int, describe
from jcnf.data.arrays import ArrayBatches
from jcnf.flows.base import trained_event_shape
from jcnf.flows.push import push_latents
from jcnf.inverse.latent import FROZEN, trainable_mask
from jcnf.inverse.objective import LogDensity, check_posterior_inputs, observation_log_density
from jcnf.inverse.operators import LinearOperator
from jcnf.inverse.precondition import precondition
from jcnf.sharding import make_mesh, raw_key
from jcnf.train.checkpoint import Checkpointer
from jcnf.train.loop import fit
from jcnf.train.optimizer import default_optimizer
from jcnf.train.state import TrainState, state_from_params
from jcnf.train.steps import reverse_kl_step_factory


class ReverseKLResult(NamedTuple):
    """What `fit_reverse_kl` returns.

    Attributes:
      params: the trained flow parameters (the tree under "params").
      loss_history: [num_logs, 2], rows (step, mean training loss over the
        `log_every` steps up to it).
      objective_history: [num_evals, 2], rows (step, objective on the fixed
        evaluation latents), step 0 included; empty without evaluation.
      state: the final `jcnf.train.TrainState`.
      history: every record `jcnf.train.fit` logged.
    """

    params: Any
    loss_history: np.ndarray
    objective_history: np.ndarray
    state: TrainState
    history: list


def event_shape_of(params: Any) -> tuple[int, ...]:
    """The value's shape [*event] remembered by a jcnf flow's (or latent correction's) parameters."""
    if isinstance(params, dict) and "shift" in params and FROZEN in params:
        return tuple(params["shift"].shape)
    return trained_event_shape(params)


def _mean_objective(model: Any, log_density: Callable[..., Array], params: Any, z: Array, context: Array,
                    *target: Array) -> Array:
    """E_z[log q(T(z)) - log_density(T(z), *target)] over the rows of z [N, *event]: KL(q || posterior) + const."""
    rows = jnp.broadcast_to(context, (z.shape[0],) + context.shape[1:])
    value, log_q = push_latents(model, {"params": params}, z, rows)
    return jnp.mean(log_q - log_density(value, *target))


def objective_fn(model: Any, log_density: LogDensity, z: Array, context: Array) -> Callable[[Any], Array]:
    """A jitted `objective(params)`: the reverse-KL objective on fixed latents z [N, *event]."""
    z, context = jnp.asarray(z), jnp.asarray(context)
    # z and context are arguments, not closed-over constants, so XLA does not constant-fold the flow.
    jitted = jax.jit(lambda params, z, context: _mean_objective(model, log_density, params, z, context))
    return lambda params: jitted(params, z, context)


class _Same:
    """A cache key that compares its object by identity; holding the object keeps its id from being reused."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _Same) and other.value is self.value


def _cached(cached_fn: Any, *args: Any) -> Any:
    """`cached_fn(*args)` through its lru_cache, or uncached when an argument is not hashable (an array)."""
    try:
        hash(args)
    except TypeError:
        return cached_fn.__wrapped__(*args)
    return cached_fn(*args)


# Few entries: each keeps its model and prior (and a non-linear operator) alive,
# a flow prior with its parameters, along with their compiled executables;
# `clear_compile_cache` drops them.
@functools.lru_cache(maxsize=4)
def _compiled_functions(model: _Same, forward_op: Optional[_Same], log_prior: _Same, noise_std: float,
                        num_samples: int, mesh: Mesh) -> tuple[Callable, Callable]:
    """The step factory `step_for(context, (y_obs, operator))` and the jitted `objective(params, z, context, y_obs,
    operator)`.

    A `LinearOperator` (forward_op None here) is a pytree and arrives as an
    input with y_obs, so its arrays are never compiled in as constants; a
    function operator is part of the key and of the compiled program.
    """

    def log_density(x: Array, y_obs: Array, operator: Optional[LinearOperator]) -> Array:
        return observation_log_density(operator if forward_op is None else forward_op.value, noise_std,
                                       log_prior.value)(x, y_obs)

    step_for = reverse_kl_step_factory(model.value, log_density, num_samples, mesh)
    objective = jax.jit(functools.partial(_mean_objective, model.value, log_density))
    return step_for, objective


def clear_compile_cache() -> None:
    """Forgets the steps and objectives `fit_reverse_kl` compiled, and the objects their cache keeps alive.

    Calls with the same model, operator, prior, noise_std, num_samples, mesh
    and optimizer reuse one compilation; the cache holds a few of them, each
    keeping its model, prior and executables in memory until evicted or
    cleared here.
    """
    _compiled_functions.cache_clear()
    _freezing_optimizer.cache_clear()


@functools.lru_cache(maxsize=16)
def _freezing_optimizer(optimizer: optax.GradientTransformation, label_leaves: tuple[str, ...],
                        label_treedef: Any) -> optax.GradientTransformation:
    """`optimizer` on the leaves labelled "train", zero updates on those labelled "frozen"."""
    labels = jax.tree.unflatten(label_treedef, label_leaves)
    return optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)


def fit_reverse_kl(model: Union[nn.Module, Any], params: Any, y_obs: Array,
                   forward_op: Union[LinearOperator, Callable[[Array], Array]], noise_std: float,
                   log_prior: LogDensity, *, steps: int, context: Optional[Array] = None,
                   num_samples: int = 64, num_latents: Optional[int] = None,
                   learning_rate: float = 1e-3, optimizer: Optional[optax.GradientTransformation] = None,
                   eval_samples: int = 0, eval_every: int = 10, rng: Optional[Array] = None, seed: int = 0,
                   mesh: Optional[Mesh] = None, checkpoint_dir: Optional[Union[str, os.PathLike]] = None,
                   checkpoint_every: int = 1000, metrics_path: Optional[Union[str, os.PathLike]] = None,
                   log_every: int = 10, progress: bool = True) -> ReverseKLResult:
    """Trains q_phi(x) = model(x | context) toward p(x | y_obs) by reverse KL.

    Minimizes E_z[ ||F(T(z)) - y_obs||^2 / (2 noise_std^2) - log_prior(T(z))
    - log|det dT/dz| ] with the flow's context fixed. `params` is not modified
    or consumed: the loop trains its own copy. Parameters under a top-level
    "frozen" key (`latent_correction`) are not trained and have no optimizer
    state.

    Args:
      model: the flow (a jcnf flow, or a `LatentCorrectedFlow`).
      params: the starting parameters: `precondition(amortized_params)` for the
        preconditioned run, a fresh `model.init(...)["params"]` from scratch.
      y_obs: the observation, shape [*observation_shape].
      forward_op: the high-fidelity operator F.
      noise_std: noise standard deviation of y_obs, > 0.
      log_prior: x [B, *event] -> log p_prior(x) [B], e.g.
        `rosenbrock_log_prob` or `flow_log_prior(model, amortized_params, context)`.
      steps: optimizer steps.
      context: the flow's context for y_obs, shape [1, ...]; default
        `y_obs[None]` (a flow conditioned on the observation itself).
      num_samples: latents per step (the batch).
      num_latents: when given, train on this fixed set of latents, reshuffled
        every epoch (the paper's code: 1000); otherwise fresh latents per step.
      learning_rate: Adam's rate with the default optimizer
        (`jcnf.train.default_optimizer`, clipping at global norm 1).
      optimizer: an optax transformation replacing the default.
      eval_samples: size of the fixed set of evaluation latents; 0 disables
        the objective history.
      eval_every: steps between objective evaluations.
      rng: key of the training latents and of the evaluation latents
        (default `PRNGKey(seed)`).
      seed: seeds the default rng and the reshuffling of fixed latents.
      mesh: device mesh (default all devices); num_samples must divide over it.
      checkpoint_dir, checkpoint_every: orbax checkpoints; a run resumes from
        the latest checkpoint there.
      metrics_path: JSON-lines metrics file.
      log_every: steps between fetches of the training loss.
      progress: show a progress bar.

    Returns:
      A `ReverseKLResult` (params, loss_history, objective_history, state, history).

    Repeated calls with the same model, forward_op, log_prior (the same
    objects), noise_std, num_samples, mesh and optimizer reuse one compiled
    step and evaluation objective, whatever y_obs, context, params and seed.
    """
    check_int("steps", steps)
    check_int("num_samples", num_samples)
    if num_latents is not None:
        check_int("num_latents", num_latents, num_samples)  # each step draws num_samples of the latents
    check_int("eval_samples", eval_samples, 0)
    event_shape = event_shape_of(params)
    y_obs = check_posterior_inputs(forward_op, y_obs, noise_std, log_prior)
    context = y_obs[None] if context is None else jnp.asarray(context)
    if context.ndim < 2 or context.shape[0] != 1:
        raise ValueError(f"`context` must be the context of one observation with a leading axis of 1, [1, ...]; "
                         f"got {describe(context)}.")
    mesh = make_mesh() if mesh is None else mesh
    linear = isinstance(forward_op, LinearOperator)
    step_for, objective = _cached(_compiled_functions, _Same(model), None if linear else _Same(forward_op),
                                  _Same(log_prior), noise_std, num_samples, mesh)
    target = (y_obs, forward_op if linear else None)
    rng = jax.random.PRNGKey(seed) if rng is None else rng
    train_rng, latent_rng, eval_rng = jax.random.split(rng, 3)

    optimizer = default_optimizer(learning_rate) if optimizer is None else optimizer
    if isinstance(params, dict) and FROZEN in params:
        labels = {"flow": jax.tree.map(lambda trainable: "train" if trainable else "frozen", trainable_mask(params))}
        # One object per (optimizer, labels), like default_optimizer's, so the state's structure repeats.
        label_leaves, label_treedef = jax.tree.flatten(labels)
        optimizer = _cached(_freezing_optimizer, optimizer, tuple(label_leaves), label_treedef)
    # A copy: the train step donates its input state, which must not delete the caller's arrays.
    start_params = {"flow": precondition(params)}
    state = state_from_params(start_params, optimizer, raw_key(train_rng))
    step_fn = step_for(context, target)

    if num_latents is None:
        batches = itertools.repeat({})
    else:
        latents = jax.random.normal(latent_rng, (num_latents * int(np.prod(event_shape)),))
        batches = ArrayBatches({"z": np.asarray(latents).reshape((num_latents,) + event_shape)}, num_samples,
                               seed=seed)

    eval_fn = None
    objective_rows = []
    if eval_samples:
        eval_z = jax.random.normal(eval_rng, (eval_samples * int(np.prod(event_shape)),))
        eval_z = eval_z.reshape((eval_samples,) + event_shape)
        # The same rule as `fit`: a run resumes only from a complete checkpoint.
        resuming = checkpoint_dir is not None and Checkpointer(checkpoint_dir).latest_step() is not None
        if not resuming:
            objective_rows.append((0, float(objective(start_params["flow"], eval_z, context, *target))))

        def eval_fn(state: TrainState) -> dict[str, float]:
            return {"objective": float(objective(state.params["flow"], eval_z, context, *target))}

    result = fit(model, batches, steps, state=state, step_fn=step_fn, mesh=mesh, eval_fn=eval_fn,
                 eval_every=eval_every, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                 metrics_path=metrics_path, log_every=log_every, progress=progress)
    loss_rows = [(record["step"], record["loss"]) for record in result.history if "loss" in record]
    objective_rows += [(record["step"], record["eval_objective"]) for record in result.history
                       if "eval_objective" in record]
    return ReverseKLResult(params=result.state.params["flow"],
                           loss_history=np.asarray(loss_rows, np.float64).reshape(-1, 2),
                           objective_history=np.asarray(objective_rows, np.float64).reshape(-1, 2),
                           state=result.state, history=result.history)


def steps_to_reach(objective_history: np.ndarray, target: float) -> Optional[int]:
    """The first step whose objective is <= target, or None if no step reached it.

    Args:
      objective_history: [n, 2] rows (step, objective), steps increasing.
      target: the objective to reach.
    """
    history = np.asarray(objective_history)
    if history.ndim != 2 or history.shape[1] != 2 or not len(history):
        raise ValueError(f"`objective_history` must have shape [n, 2] (step, objective) with n >= 1 (pass "
                         f"`eval_samples` > 0 to `fit_reverse_kl` to record one); got {describe(history)}.")
    reached = np.nonzero(history[:, 1] <= target)[0]
    return int(history[reached[0], 0]) if reached.size else None


def smooth_history(objective_history: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average of the objective over `window` evaluations (the first rows average fewer).

    Args:
      objective_history: [n, 2] rows (step, objective).
      window: evaluations averaged, >= 1 (1 returns the history unchanged).

    Returns:
      [n, 2] rows (step, mean objective of this and the window - 1 previous evaluations).
    """
    history = np.asarray(objective_history, np.float64)
    if history.ndim != 2 or history.shape[1] != 2 or not len(history):
        raise ValueError(f"`objective_history` must have shape [n, 2] (step, objective) with n >= 1 (pass "
                         f"`eval_samples` > 0 to `fit_reverse_kl` to record one); got {describe(history)}.")
    if window < 1:
        raise ValueError(f"`window` must be >= 1; got {window}.")
    sums = np.cumsum(np.concatenate([[0.0], history[:, 1]]))
    index = np.arange(1, len(history) + 1)
    first = np.maximum(index - window, 0)
    return np.stack([history[:, 0], (sums[index] - sums[first]) / (index - first)], axis=1)


def speedup(preconditioned_history: np.ndarray, scratch_history: np.ndarray, window: int = 1) -> dict[str, Any]:
    """Speed-up of preconditioning: scratch steps to reach the preconditioned final objective / its steps.

    With `window` > 1 both histories are first smoothed by `smooth_history`,
    so the target is the preconditioned run's final plateau rather than its
    last noisy value, and a single lucky evaluation of the scratch run does
    not count as reaching it.

    Returns:
      {"target": the preconditioned run's final (smoothed) objective, "preconditioned_steps",
       "scratch_steps" (None if never reached), "speedup" (None if never
       reached), "speedup_lower_bound" (scratch's last step / preconditioned
       steps, a bound when the target was not reached), "window"}.
    """
    preconditioned_history = smooth_history(preconditioned_history, window)
    scratch_history = smooth_history(scratch_history, window)
    target = float(preconditioned_history[-1, 1])
    preconditioned_steps = int(preconditioned_history[-1, 0])
    scratch_steps = steps_to_reach(scratch_history, target)
    return {"target": target, "preconditioned_steps": preconditioned_steps, "scratch_steps": scratch_steps,
            "speedup": None if scratch_steps is None else scratch_steps / preconditioned_steps,
            "speedup_lower_bound": float(scratch_history[-1, 0]) / preconditioned_steps, "window": window}
