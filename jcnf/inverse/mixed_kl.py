"""Reverse KL plus a forward-KL anchor on reference samples: a remedy for over-confident posteriors.

Reverse KL, E_q[log q - log p], is mode-seeking: q pays nothing for the
mass of the posterior it misses, so a flow trained by it alone tends to be
narrower than the posterior. The forward KL to a reference r, E_r[-log q]
(+ a constant), punishes exactly that missing mass. With the amortized
low-fidelity posterior q_theta(x | y_obs) as the reference the loss is

    L(phi) = E_z[log q_phi(T(z)) - log p(T(z) | y_obs)] + weight * E_{x ~ q_theta}[-log q_phi(x | y_obs)],

reverse KL to the posterior plus `weight` times the negative log-likelihood
of the trained flow on samples of the amortized one: fresh reference samples
each step, drawn from the frozen amortized parameters at the same context.

    step = jcnf.inverse.mixed_kl_step(model, forward_op, noise_std, log_prior, amortized, weight=0.1)
    hi = jcnf.inverse.fit_reverse_kl(model, jcnf.inverse.precondition(amortized), y_obs, forward_op,
                                     noise_std, log_prior, steps=80, context=context, step=step)

The returned `PosteriorStep` trains on L, while its evaluation objective
stays the reverse-KL objective of `posterior_step`, so runs with and without
the anchor are compared on the same scale.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import Array
from jax.sharding import Mesh

from jcnf.inverse.latent import LatentCorrectedFlow
from jcnf.inverse.objective import LogDensity
from jcnf.inverse.posterior_step import ForwardOp, PosteriorStep, posterior_step


def mixed_kl_step(model: Union[nn.Module, LatentCorrectedFlow], forward_op: ForwardOp, noise_std: float,
                  log_prior: LogDensity, reference_params: Any, *, weight: float, num_samples: int = 64,
                  optimizer: Optional[optax.GradientTransformation] = None, learning_rate: float = 1e-3,
                  mesh: Optional[Mesh] = None) -> PosteriorStep:
    """A `posterior_step` whose train step adds `weight` * the NLL of reference samples to the reverse KL.

    Args:
      model: the flow being trained (a jcnf flow, or a `LatentCorrectedFlow`).
      forward_op: the high-fidelity operator F, as in `posterior_step`.
      noise_std: noise standard deviation of the observations, > 0.
      log_prior: x [B, *event] -> log p_prior(x) [B]; jittable, compiled in.
      reference_params: parameters of `model` whose samples at the step's
        context are the reference, e.g. the amortized flow's (frozen: no
        gradient reaches them). Compiled into the step as constants.
      weight: the forward-KL weight, >= 0; 0 trains plain reverse KL.
      num_samples: latents per step, and reference samples per step.
      optimizer: the optax transformation, as in `posterior_step`.
      learning_rate: Adam's rate of the default optimizer.
      mesh: device mesh (default all devices).

    Returns:
      A `PosteriorStep` for `fit_reverse_kl(..., step=step)`. Train metrics:
      "loss" (L above), "log_q", "log_density" (as `reverse_kl_step`) and
      "reference_nll" (E_r[-log q_phi], the anchor before weighting).
    """
    if not (isinstance(weight, (int, float)) and weight >= 0):
        raise ValueError(f"`weight` must be a number >= 0 (the forward-KL weight); got {weight!r}.")
    def anchor(variables: dict, rng: Array, context: Array) -> tuple[Array, dict[str, Array]]:
        # As in `flow_log_prior`: the barrier keeps XLA from constant-folding the frozen flow.
        frozen = jax.lax.optimization_barrier(jax.lax.stop_gradient(reference_params))
        samples = jax.lax.stop_gradient(model.apply({"params": frozen}, jax.random.fold_in(rng, 1), context,
                                                    method="sample"))
        reference_nll = -jnp.mean(model.apply(variables, samples, context, method="log_prob"))
        return weight * reference_nll, {"reference_nll": reference_nll}

    return posterior_step(model, forward_op, noise_std, log_prior, num_samples=num_samples, optimizer=optimizer,
                          learning_rate=learning_rate, mesh=mesh, extra_loss=anchor)
