"""Many parallel random-walk Metropolis chains in JAX, and their convergence diagnostics.

The reference posteriors of tasks without a closed form (SLCP) come from
here: all chains advance together in one `lax.scan` (one vmapped density
call per step), the Gaussian proposal's covariance is adapted during
warm-up from the pooled chain states, and only post-warm-up draws, thinned,
are kept. Diagnostics follow Vehtari et al. (2021, "Rank-normalization,
folding, and localization"): rank-normalized split R-hat and the bulk
effective sample size over all chains.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from scipy import stats

TARGET_ACCEPTANCE = 0.234  # optimal for random-walk Metropolis in moderate dimension (Roberts et al. 1997)


LogDensity = Callable[[Array, Array], Array]  # (theta [dim], data [...]) -> []


@partial(jax.jit, static_argnums=(1, 6, 7))
def _metropolis_steps(key: Array, log_density: LogDensity, data: Array, position: Array, log_p: Array,
                      chol: Array, steps: int, thin: int) -> tuple[Array, Array, Array, Array]:
    """`steps` * `thin` Metropolis steps of every chain, keeping every `thin`-th state.

    `data` is an argument rather than a closure constant, so one compiled
    program serves every observation of a task.

    Returns the kept states [steps, chains, dim], the final position and
    log-density, and the mean acceptance rate.
    """

    def one_step(carry, step_key):
        position, log_p = carry
        noise_key, accept_key = jax.random.split(step_key)
        proposal = position + jax.random.normal(noise_key, position.shape) @ chol.T
        proposal_log_p = jax.vmap(log_density, (0, None))(proposal, data)
        # A proposal with a non-finite density (outside the support) is rejected.
        log_ratio = jnp.where(jnp.isfinite(proposal_log_p), proposal_log_p - log_p, -jnp.inf)
        accept = jnp.log(jax.random.uniform(accept_key, log_p.shape)) < log_ratio
        position = jnp.where(accept[:, None], proposal, position)
        return (position, jnp.where(accept, proposal_log_p, log_p)), accept.mean()

    def kept_step(carry, kept_key):
        carry, accepted = jax.lax.scan(one_step, carry, jax.random.split(kept_key, thin))
        return carry, (carry[0], accepted.mean())

    (position, log_p), (kept, accepted) = jax.lax.scan(kept_step, (position, log_p), jax.random.split(key, steps))
    return kept, position, log_p, accepted.mean()


def random_walk_metropolis(key: Array, log_density: LogDensity, data: Array, initial: Array, *, num_samples: int,
                           thin: int = 10, warmup_rounds: int = 10, round_steps: int = 200,
                           initial_scale: float = 0.1) -> tuple[np.ndarray, dict]:
    """Parallel adaptive random-walk Metropolis.

    Warm-up runs `warmup_rounds` rounds of `round_steps` steps; after each,
    the proposal covariance becomes the pooled covariance of that round's
    states times a scale that moves the acceptance rate toward 0.234. The
    proposal is then frozen (the chains are Markov with a fixed kernel) and
    `num_samples` states per chain are kept, `thin` steps apart.

    Pooling the chains' states assumes they explore one mode; a target with
    symmetric modes is run on its folded (one-mode) version by its caller.

    Args:
      key: PRNG key.
      log_density: unnormalized log-density of one point given the data,
        (theta [dim], data) -> []; -inf (or any non-finite value) outside the
        support. Pass the same function object for every call (a module-level
        function) to reuse its compilation.
      data: the observation the density is conditioned on.
      initial: starting points, one per chain, shape [chains, dim], each of
        finite density.
      num_samples: states kept per chain after warm-up.
      thin: steps between kept states.
      warmup_rounds: adaptation rounds.
      round_steps: steps per adaptation round.
      initial_scale: proposal standard deviation of the first round.

    Returns:
      The draws [chains, num_samples, dim] (numpy float64) and a dict with the
      acceptance rates and the diagnostics of `diagnostics`.

    Raises:
      ValueError: `initial` is not [chains, dim] with chains >= 2, or a start has no finite density.
    """
    initial = jnp.asarray(initial, jnp.float32)
    if initial.ndim != 2 or initial.shape[0] < 2:
        raise ValueError(f"`initial` must have shape [chains >= 2, dim]; got shape {tuple(initial.shape)}.")
    chains, dim = initial.shape
    log_p = jax.vmap(log_density, (0, None))(initial, data)
    if not bool(jnp.all(jnp.isfinite(log_p))):
        raise ValueError("`initial` holds points where `log_density` is not finite.")
    chol = initial_scale * jnp.eye(dim)
    scale = 2.38 / np.sqrt(dim)  # the optimal Gaussian-target scale of the state covariance
    position = initial
    warmup_acceptance = []
    for round_index in range(warmup_rounds):
        kept, position, log_p, acceptance = _metropolis_steps(jax.random.fold_in(key, round_index), log_density,
                                                              data, position, log_p, chol, round_steps, 1)
        acceptance = float(acceptance)
        warmup_acceptance.append(acceptance)
        scale *= float(np.exp(acceptance - TARGET_ACCEPTANCE))
        states = np.asarray(kept, np.float64).reshape(-1, dim)
        # A jitter keeps the factor defined when a coordinate has not moved yet.
        covariance = np.cov(states, rowvar=False) + 1e-10 * np.eye(dim)
        chol = jnp.asarray(scale * np.linalg.cholesky(covariance), jnp.float32)
    kept, _, _, acceptance = _metropolis_steps(jax.random.fold_in(key, warmup_rounds), log_density, data, position,
                                               log_p, chol, num_samples, thin)
    draws = np.swapaxes(np.asarray(kept, np.float64), 0, 1)
    info = {"chains": int(chains), "draws_per_chain": int(num_samples), "thin": int(thin),
            "warmup_steps": int(warmup_rounds * round_steps), "warmup_acceptance_last": warmup_acceptance[-1]
            if warmup_acceptance else None, "acceptance": float(acceptance), **diagnostics(draws)}
    return draws, info


def _rank_normalize(draws: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks (Blom's offset), same shape [chains, draws]."""
    ranks = stats.rankdata(draws, method="average").reshape(draws.shape)
    return stats.norm.ppf((ranks - 0.375) / (draws.size + 0.25))


def _split(draws: np.ndarray) -> np.ndarray:
    """Each chain's first and second halves as separate chains: [chains, n] -> [2 * chains, n // 2]."""
    half = draws.shape[1] // 2
    return np.concatenate([draws[:, :half], draws[:, half:2 * half]])


def _rhat(draws: np.ndarray) -> float:
    """Classic R-hat (Gelman et al.) of [chains, n] draws."""
    n = draws.shape[1]
    within = draws.var(axis=1, ddof=1).mean()
    between = n * draws.mean(axis=1).var(ddof=1)
    return float(np.sqrt(((n - 1) / n * within + between / n) / within))


def _ess(draws: np.ndarray) -> float:
    """Multi-chain effective sample size of [chains, n] draws (Geyer's initial monotone sequence)."""
    chains, n = draws.shape
    centred = draws - draws.mean(axis=1, keepdims=True)
    size = 2 ** int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(centred, size, axis=1)
    autocovariance = np.fft.irfft(spectrum * np.conj(spectrum), size, axis=1)[:, :n] / n
    chain_variance = autocovariance[:, 0] * n / (n - 1)
    within = chain_variance.mean()
    pooled = (n - 1) / n * within + draws.mean(axis=1).var(ddof=1)
    rho = 1 - (within - autocovariance.mean(axis=0)) / pooled
    rho[0] = 1.0
    # Sums of consecutive pairs are positive and decreasing for a reversible chain; stop at the first
    # non-positive pair and enforce monotonicity (Geyer 1992).
    pairs = rho[:-1:2] + rho[1::2]
    positive = np.argmax(pairs <= 0) if np.any(pairs <= 0) else len(pairs)
    pairs = np.minimum.accumulate(pairs[:positive])
    tau = -1 + 2 * pairs.sum()
    return float(chains * n / max(tau, 1.0 / np.log10(chains * n)))


def diagnostics(draws: np.ndarray) -> dict:
    """Rank-normalized split R-hat and bulk ESS of every coordinate.

    Args:
      draws: [chains, n, dim] with n >= 4.

    Returns:
      {"split_rhat": [dim], "ess_bulk": [dim], "max_split_rhat", "min_ess_bulk"}.
    """
    draws = np.asarray(draws, np.float64)
    if draws.ndim != 3 or draws.shape[1] < 4:
        raise ValueError(f"`draws` must have shape [chains, n >= 4, dim]; got shape {draws.shape}.")
    rhat, ess = [], []
    for coordinate in np.moveaxis(draws, -1, 0):
        split = _split(_rank_normalize(coordinate))
        rhat.append(_rhat(split))
        ess.append(_ess(split))
    return {"split_rhat": rhat, "ess_bulk": ess, "max_split_rhat": max(rhat), "min_ess_bulk": min(ess)}
