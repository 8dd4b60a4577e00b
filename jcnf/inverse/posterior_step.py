"""`posterior_step`: the compiled functions of `fit_reverse_kl`, built once and kept by the caller.

    step = jcnf.inverse.posterior_step(model, forward_op, noise_std, log_prior, num_samples=64)
    for y_obs in observations:
        hi = jcnf.inverse.fit_reverse_kl(model, jcnf.inverse.precondition(amortized), y_obs, forward_op,
                                         noise_std, log_prior, steps=80, step=step)

A `PosteriorStep` holds one jitted reverse-KL train step and one jitted
evaluation objective for a (model, forward operator, noise_std, prior,
num_samples, optimizer, mesh). The observation, the context, the starting
params, the seed and a `LinearOperator`'s arrays are inputs of both
functions, not constants compiled into them: every fit with one step traces
and compiles each function once per shape. A function operator and the prior
are compiled in as they are: build a new step for new ones rather than
changing their data in place.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import Array
from jax.sharding import Mesh

from jcnf.flows.push import push_latents
from jcnf.inverse.latent import LatentCorrectedFlow, trainable_mask
from jcnf.inverse.linear_operator import LinearOperator
from jcnf.inverse.objective import LogDensity, check_noise_and_prior, observation_log_density
from jcnf.sharding import make_mesh
from jcnf.train.optimizer import default_optimizer
from jcnf.train.reverse_kl import reverse_kl_step

ForwardOp = Union[LinearOperator, Callable[[Array], Array]]


@dataclasses.dataclass(frozen=True, eq=False)
class PosteriorStep:
    """The jitted train step and evaluation objective of reverse-KL inference for one posterior family.

    Build with `posterior_step`, pass to `fit_reverse_kl(..., step=step)`.

    Attributes:
      model, forward_op, noise_std, log_prior: the problem the functions were
        built for; `fit_reverse_kl` checks that its arguments match them.
      num_samples: latents per train step.
      mesh: the device mesh the train step shards over.
      optimizer: the optax transformation of the states that `train` updates.
      train: `state, metrics = train(state, {"context": context, "target": target})`
        (and optionally "z"), a `jcnf.train.reverse_kl_step` of the log
        posterior; `target` from `target(y_obs)`.
      objective_fn: jitted `(params, z [N, *event], context [1, ...], *target) -> scalar`.
    """

    model: Any
    forward_op: ForwardOp
    noise_std: float
    log_prior: LogDensity
    num_samples: int
    mesh: Mesh
    optimizer: optax.GradientTransformation
    train: Callable[..., Any]
    objective_fn: Callable[..., Array]

    def target(self, y_obs: Array, forward_op: Optional[ForwardOp] = None) -> tuple[Array, Optional[LinearOperator]]:
        """The functions' inputs for one observation: (y_obs, the `LinearOperator`), or (y_obs, None).

        Args:
          y_obs: the observation, shape [*observation_shape].
          forward_op: a `LinearOperator` of the kind the step was built for
            (its arrays may differ), or the step's own function operator;
            default the step's operator.
        """
        return jnp.asarray(y_obs), self._operator_input(self.forward_op if forward_op is None else forward_op)

    def _operator_input(self, forward_op: ForwardOp) -> Optional[LinearOperator]:
        """The operator as an input of the compiled functions (None: the function compiled in), or ValueError."""
        linear = isinstance(forward_op, LinearOperator)
        if linear != isinstance(self.forward_op, LinearOperator) or (not linear and forward_op is not self.forward_op):
            raise ValueError(f"`forward_op` must be a LinearOperator when the step was built with one, and the very "
                             f"function the step was built with otherwise (it is compiled in); got {forward_op!r} "
                             f"for a step built with {self.forward_op!r}.")
        return forward_op if linear else None

    def objective(self, params: Any, z: Array, context: Array, y_obs: Array,
                  forward_op: Optional[ForwardOp] = None) -> Array:
        """E_z[log q(T(z) | context) - log posterior(T(z))] over fixed latents: KL(q || posterior) + const.

        Args:
          params: the flow's parameters (the tree under "params").
          z: latents, shape [N, *event_shape].
          context: the flow's context for y_obs, shape [1, ...].
          y_obs: the observation, shape [*observation_shape].
          forward_op: as in `target`.

        Returns:
          A scalar; deterministic in params, so runs compare step by step.
        """
        return self.objective_fn(params, jnp.asarray(z), jnp.asarray(context), *self.target(y_obs, forward_op))

    def check_problem(self, model: Any, forward_op: ForwardOp, noise_std: float, log_prior: LogDensity) -> None:
        """Raises ValueError unless the arguments are those the step was built for."""
        if model is not self.model:
            raise ValueError("`step` was built for another model: pass the model given to `posterior_step`.")
        if log_prior is not self.log_prior:
            raise ValueError("`step` was built for another `log_prior` (it is compiled in): pass the same function.")
        if noise_std != self.noise_std:
            raise ValueError(f"`noise_std` ({noise_std}) differs from the step's ({self.noise_std}); build a step "
                             f"for each noise level.")
        self._operator_input(forward_op)


def _mean_objective(model: Any, log_density: Callable[..., Array], params: Any, z: Array, context: Array,
                    *target: Any) -> Array:
    """E_z[log q(T(z)) - log_density(T(z), *target)] over the rows of z [N, *event]: KL(q || posterior) + const."""
    rows = jnp.broadcast_to(context, (z.shape[0],) + context.shape[1:])
    value, log_q = push_latents(model, {"params": params}, z, rows)
    return jnp.mean(log_q - log_density(value, *target))


def _freezing(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """`optimizer` on the trainable leaves of {"flow": params}, zero updates and no state under "frozen"."""

    def labels(params: dict) -> dict:
        return {"flow": jax.tree.map(lambda trainable: "train" if trainable else "frozen",
                                     trainable_mask(params["flow"]))}

    return optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)


def posterior_step(model: Union[nn.Module, LatentCorrectedFlow], forward_op: ForwardOp, noise_std: float,
                   log_prior: LogDensity, *, num_samples: int = 64,
                   optimizer: Optional[optax.GradientTransformation] = None, learning_rate: float = 1e-3,
                   mesh: Optional[Mesh] = None, extra_loss: Optional[Callable] = None) -> PosteriorStep:
    """Builds (without compiling yet) the functions `fit_reverse_kl` runs for one posterior family.

    The log posterior is log N(y_obs; F(x), noise_std^2 I) + log_prior(x),
    with y_obs (and a `LinearOperator` F) an input of each call.

    Args:
      model: the flow (a jcnf flow, or a `LatentCorrectedFlow`).
      forward_op: the high-fidelity operator F: a `LinearOperator` (its arrays
        are inputs, so any operator of the same kind and shapes can be used
        with the step), or a jittable function of x [B, ...] (compiled in).
      noise_std: noise standard deviation of the observations, > 0.
      log_prior: x [B, *event] -> log p_prior(x) [B]; jittable, compiled in.
      num_samples: latents per step; divisible by the mesh's device count.
      optimizer: the optax transformation (default
        `jcnf.train.default_optimizer(learning_rate)`, clipping at global norm 1).
        For a `LatentCorrectedFlow` it is applied to all but the "frozen"
        parameters, which get zero updates and no optimizer state.
      learning_rate: Adam's rate of the default optimizer.
      mesh: device mesh (default all devices).
      extra_loss: a term added to the training loss only (the objective stays
        the reverse KL); see `jcnf.train.reverse_kl_step`.

    Returns:
      A `PosteriorStep`: pass it to `fit_reverse_kl(..., step=step)` for every
      observation, starting point and seed of this problem.
    """
    check_noise_and_prior(noise_std, log_prior)
    mesh = make_mesh() if mesh is None else mesh
    function_op = None if isinstance(forward_op, LinearOperator) else forward_op

    def log_density(x: Array, y_obs: Array, operator: Optional[LinearOperator]) -> Array:
        return observation_log_density(function_op if operator is None else operator, noise_std, log_prior)(x, y_obs)

    optimizer = default_optimizer(learning_rate) if optimizer is None else optimizer
    if isinstance(model, LatentCorrectedFlow):
        optimizer = _freezing(optimizer)
    return PosteriorStep(model=model, forward_op=forward_op, noise_std=noise_std, log_prior=log_prior,
                         num_samples=num_samples, mesh=mesh, optimizer=optimizer,
                         train=reverse_kl_step(model, log_density, num_samples, mesh, extra_loss=extra_loss),
                         objective_fn=jax.jit(functools.partial(_mean_objective, model, log_density)))
