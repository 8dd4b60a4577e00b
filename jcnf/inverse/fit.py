"""`fit_reverse_kl`: variational inference for one observation, on the training engine.

    lo = jcnf.train.fit(model, {"value": x, "context": y}, steps=2000, batch_size=64)
    hi_init = jcnf.inverse.precondition(lo.params)
    hi = jcnf.inverse.fit_reverse_kl(model, hi_init, y_obs, forward_op, noise_std, log_prior, steps=80)
    samples = model.apply({"params": hi.params}, rng, jnp.repeat(y_obs[None], 1000, 0), method="sample")

The loop is `jcnf.train.fit` driving the jitted reverse-KL step of a
`PosteriorStep`: a progress bar, JSON-lines metrics, orbax checkpoints and
resumption, the non-finite guard. The objective is minimized over latents
that are either drawn fresh each step or, as in the paper's code, a fixed
set reshuffled every epoch.

Besides the training loss (a noisy one-batch estimate), the loop can record
the objective on a fixed set of evaluation latents: a deterministic
function of the parameters, which makes runs comparable step by step.

Compilation is explicit: without `step`, each call builds its own
`posterior_step` and compiles it. To fit several observations, starting
points or seeds with one compilation, build the step once and pass it:

    step = jcnf.inverse.posterior_step(model, forward_op, noise_std, log_prior, num_samples=64)
    for y_obs in observations:
        hi = jcnf.inverse.fit_reverse_kl(model, hi_init, y_obs, forward_op, noise_std, log_prior, steps=80,
                                         step=step)
"""

from __future__ import annotations

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
from jcnf.flows.saved import save_model
from jcnf.flows.standardized import StandardizedFlow
from jcnf.flows.trained import TrainedModel
from jcnf.inverse.latent import FROZEN
from jcnf.inverse.linear_operator import LinearOperator
from jcnf.inverse.objective import LogDensity, check_posterior_inputs
from jcnf.inverse.posterior_step import PosteriorStep, posterior_step
from jcnf.inverse.precondition import precondition
from jcnf.sharding import raw_key, shard_batch, state_sharding
from jcnf.train.checkpoint import Checkpointer
from jcnf.train.loop import fit
from jcnf.train.state import TrainState, state_from_params


class _GlobalLatents:
    """Batches {**fixed, "z": [num_samples, *event]} of fixed latents as global arrays on the mesh, resumable.

    Every process holds the same latents and the same shuffle (`ArrayBatches`
    with one seed), takes its own rows of each batch, and `shard_batch`
    assembles the global batch: the step sees num_samples latents, the same
    ones as on one process.
    """

    def __init__(self, batches: ArrayBatches, mesh: Mesh, fixed: dict[str, Any]):
        self._batches, self._mesh, self._fixed = batches, mesh, fixed

    def __iter__(self) -> "_GlobalLatents":
        return self

    def __next__(self) -> dict[str, Any]:
        return {**self._fixed, **shard_batch(next(self._batches), self._mesh)}

    def get_state(self) -> dict[str, int]:
        return self._batches.get_state()

    def set_state(self, state: dict[str, int]) -> None:
        self._batches.set_state(state)


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


def _user_units_flow(trained: TrainedModel, step: Optional[PosteriorStep]) -> nn.Module:
    """The module form of a TrainedModel's flow; with `step`, the one that step was built for."""
    if (trained.standardization is None or not trained.standardization.arrays()) and trained.bounds is None:
        return trained.model  # already in the user's units
    if step is None:
        return StandardizedFlow.from_trained(trained)
    if not isinstance(step.model, StandardizedFlow) or step.model.flow is not trained.model:
        raise ValueError("`step` was built for another model: with a TrainedModel as `model`, build the step for "
                         "`jcnf.flows.StandardizedFlow.from_trained(trained)` and pass that flow as `model`.")
    return step.model


def event_shape_of(params: Any) -> tuple[int, ...]:
    """The value's shape [*event] remembered by a jcnf flow's (or latent correction's) parameters."""
    if isinstance(params, dict) and "shift" in params and FROZEN in params:
        return tuple(params["shift"].shape)
    return trained_event_shape(params)


def fit_reverse_kl(model: Union[nn.Module, Any], params: Any, y_obs: Array,
                   forward_op: Union[LinearOperator, Callable[[Array], Array]], noise_std: float,
                   log_prior: LogDensity, *, steps: int, context: Optional[Array] = None,
                   num_samples: Optional[int] = None, num_latents: Optional[int] = None,
                   learning_rate: Optional[float] = None, optimizer: Optional[optax.GradientTransformation] = None,
                   eval_samples: int = 0, eval_every: int = 10, rng: Optional[Array] = None, seed: int = 0,
                   mesh: Optional[Mesh] = None, step: Optional[PosteriorStep] = None,
                   checkpoint_dir: Optional[Union[str, os.PathLike]] = None,
                   checkpoint_every: int = 1000, metrics_path: Optional[Union[str, os.PathLike]] = None,
                   log_every: int = 10, progress: bool = True, steps_per_dispatch: int = 1,
                   model_dir: Optional[Union[str, os.PathLike]] = None) -> ReverseKLResult:
    """Trains q_phi(x) = model(x | context) toward p(x | y_obs) by reverse KL.

    Minimizes E_z[ ||F(T(z)) - y_obs||^2 / (2 noise_std^2) - log_prior(T(z))
    - log|det dT/dz| ] with the flow's context fixed. `params` is not modified
    or consumed: the loop trains its own copy. For a `LatentCorrectedFlow`
    the parameters under its top-level "frozen" key are not trained and have
    no optimizer state.

    Args:
      model: the flow (a jcnf flow, or a `LatentCorrectedFlow`), or the
        `jcnf.TrainedModel` that `fit_amortized` returns. A TrainedModel's flow
        was trained on standardized (and, with bounds, logit-mapped) values and
        contexts: it is trained here through those same maps
        (`jcnf.flows.StandardizedFlow.from_trained`), so `y_obs`, `context`,
        `forward_op` and `log_prior` all stay in the user's units, and the
        returned params are again the flow's:
        `TrainedModel(trained.model, result.params, standardization=trained.standardization,
        bounds=trained.bounds)` is the fine-tuned posterior.
      params: the starting parameters: `precondition(amortized_params)` for the
        preconditioned run (`precondition(trained.params)` for a TrainedModel),
        a fresh `model.init(...)["params"]` from scratch.
      y_obs: the observation, shape [*observation_shape].
      forward_op: the high-fidelity operator F.
      noise_std: noise standard deviation of y_obs, > 0.
      log_prior: x [B, *event] -> log p_prior(x) [B], e.g.
        `rosenbrock_log_prob` or `flow_log_prior(model, amortized_params, context)`.
      steps: optimizer steps.
      context: the flow's context for y_obs, shape [1, ...]; default
        `y_obs[None]` (a flow conditioned on the observation itself).
      num_samples: latents per step (the batch); default 64.
      num_latents: when given, train on this fixed set of latents, reshuffled
        every epoch (the paper's code: 1000); otherwise fresh latents per step.
      learning_rate: Adam's rate with the default optimizer
        (`jcnf.train.default_optimizer`, clipping at global norm 1); default 1e-3.
      optimizer: an optax transformation replacing the default.
      eval_samples: size of the fixed set of evaluation latents; 0 disables
        the objective history.
      eval_every: steps between objective evaluations.
      rng: key of the training latents and of the evaluation latents
        (default `PRNGKey(seed)`).
      seed: seeds the default rng and the reshuffling of fixed latents.
      mesh: device mesh (default all devices); num_samples must divide over it.
      step: a `posterior_step(model, forward_op, noise_std, log_prior, ...)`
        built earlier, whose compiled train step and objective this call
        reuses; it fixes num_samples, the optimizer and the mesh, so those
        (and learning_rate) are not passed with it. Default: a step built for
        this call alone, from num_samples, learning_rate, optimizer and mesh.
      checkpoint_dir: orbax checkpoints go here; a run resumes from the
        latest checkpoint there.
      checkpoint_every: steps between checkpoints.
      metrics_path: JSON-lines metrics file.
      log_every: steps between fetches of the training loss.
      progress: show a progress bar.
      steps_per_dispatch: optimizer steps per call into the device (one
        jitted `lax.scan`); small problems, where dispatch dominates, train
        several times faster with 10 or more. Same parameters as single steps.
      model_dir: at the end, save the trained flow (or latent correction)
        there (`jcnf.save_model`, process 0 only), with the value's event shape
        and the context's shape; `jcnf.load_model(model_dir)` samples the
        posterior given `context`.

    Returns:
      A `ReverseKLResult` (params, loss_history, objective_history, state, history).

    Raises:
      jcnf.train.Preempted: a process received SIGTERM; as in `jcnf.train.fit`,
        every process saved a checkpoint (with `checkpoint_dir`) at one step,
        and the same call resumes from it.

    One compilation across observations: y_obs, context, params, seed and a
    `LinearOperator`'s arrays are inputs of the step's jitted functions, so
    calls passing the same `step` trace and compile the train step and the
    evaluation objective once (per shape); calls without `step` compile anew.
    """
    check_int("steps", steps)
    trained = model if isinstance(model, TrainedModel) else None
    if trained is not None:
        # A fit_amortized posterior: train its flow through its standardization and bounds (user units).
        model = _user_units_flow(trained, step)
    if step is None:
        step = posterior_step(model, forward_op, noise_std, log_prior, num_samples=64 if num_samples is None
                              else num_samples, optimizer=optimizer,
                              learning_rate=1e-3 if learning_rate is None else learning_rate, mesh=mesh)
    else:
        step.check_problem(model, forward_op, noise_std, log_prior)
        given = {"num_samples": num_samples, "learning_rate": learning_rate, "optimizer": optimizer, "mesh": mesh}
        for name, value in given.items():
            if value is not None:
                raise ValueError(f"`{name}` is fixed by `step` (set it in `posterior_step`); pass `{name}` or "
                                 f"`step`, not both.")
    num_samples = step.num_samples
    if num_latents is not None:
        check_int("num_latents", num_latents, num_samples)  # each step draws num_samples of the latents
    check_int("eval_samples", eval_samples, 0)
    event_shape = event_shape_of(params)
    y_obs = check_posterior_inputs(forward_op, y_obs, noise_std, log_prior)
    context = y_obs[None] if context is None else jnp.asarray(context)
    if context.ndim < 2 or context.shape[0] != 1:
        raise ValueError(f"`context` must be the context of one observation with a leading axis of 1, [1, ...]; "
                         f"got {describe(context)}.")
    target = step.target(y_obs, forward_op)
    rng = jax.random.PRNGKey(seed) if rng is None else rng
    train_rng, latent_rng, eval_rng = jax.random.split(rng, 3)

    # A copy: the train step donates its input state, which must not delete the caller's arrays.
    start_params = {"flow": precondition(params)}
    state = state_from_params(start_params, step.optimizer, raw_key(train_rng))

    # The observation is placed on the mesh once; every batch carries the same placed arrays.
    fixed = jax.device_put(jax.tree.map(jnp.asarray, {"context": context, "target": target}),
                           state_sharding(step.mesh))
    if num_latents is None:
        batches = itertools.repeat(fixed)
    else:
        latents = jax.random.normal(latent_rng, (num_latents * int(np.prod(event_shape)),))
        batches = _GlobalLatents(ArrayBatches({"z": np.asarray(latents).reshape((num_latents,) + event_shape)},
                                              num_samples, seed=seed), step.mesh, fixed)

    eval_fn = None
    objective_rows = []
    if eval_samples:
        eval_z = jax.random.normal(eval_rng, (eval_samples * int(np.prod(event_shape)),))
        eval_z = eval_z.reshape((eval_samples,) + event_shape)
        # The same rule as `fit`: a run resumes only from a complete checkpoint.
        resuming = checkpoint_dir is not None and Checkpointer(checkpoint_dir).latest_step() is not None
        if not resuming:
            objective_rows.append((0, float(step.objective_fn(start_params["flow"], eval_z, context, *target))))

        def eval_fn(state: TrainState) -> dict[str, float]:
            return {"objective": float(step.objective_fn(state.params["flow"], eval_z, context, *target))}

    result = fit(model, batches, steps, state=state, step_fn=step.train, mesh=step.mesh, eval_fn=eval_fn,
                 eval_every=eval_every, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                 metrics_path=metrics_path, log_every=log_every, progress=progress,
                 steps_per_dispatch=steps_per_dispatch)
    loss_rows = [(record["step"], record["loss"]) for record in result.history if "loss" in record]
    objective_rows += [(record["step"], record["eval_objective"]) for record in result.history
                       if "eval_objective" in record]
    if model_dir is not None and jax.process_index() == 0:
        if trained is not None:
            save_model(model_dir, TrainedModel(trained.model, result.params, standardization=trained.standardization,
                                               bounds=trained.bounds, value_shape=event_shape,
                                               context_shape=context.shape[1:]))
        else:
            save_model(model_dir, model, result.params, value_shape=event_shape, context_shape=context.shape[1:])
    return ReverseKLResult(params=result.params,
                           loss_history=np.asarray(loss_rows, np.float64).reshape(-1, 2),
                           objective_history=np.asarray(objective_rows, np.float64).reshape(-1, 2),
                           state=result.state, history=result.history)
