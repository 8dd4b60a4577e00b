"""Simulation-based-inference tasks for the neural-posterior-estimation benchmark, in JAX.

Each task follows its definition in sbibm (Lueckmann et al. 2021, "Benchmarking
simulation-based inference"), so C2ST figures are comparable with published ones:

- `two_moons`: theta in U[-1, 1]^2, x in R^2, a crescent pair; reference on a dense grid.
- `slcp`: theta in U[-3, 3]^5, x = 4 draws of a 2-D Gaussian whose mean, scales
  and correlation are functions of theta (8 numbers); reference by long MCMC.
- `gaussian_linear`: theta ~ N(0, 0.1 I_10), x ~ N(theta, 0.1 I_10); exact Gaussian posterior.
- `gaussian_mixture`: theta in U[-10, 10]^2, x ~ 0.5 N(theta, I) + 0.5 N(theta, 0.01 I);
  the posterior is that mixture centred on x, cut to the box: exact by rejection.
- `gaussian_linear_uniform`: theta in U[-1, 1]^10, x ~ N(theta, 0.1 I_10); the posterior
  is N(x, 0.1 I) cut to the box, which factorizes: exact by per-coordinate truncated normals.

Simulators take an explicit key: `simulate_one(key, theta[d]) -> x[dx]` is a
pure function that `jax.vmap` maps, and `simulate(key, theta[n, d])` is that map
over `n` split keys.

Observations come from fixed seeds in two disjoint sets: `observations(num,
"evaluation")` are the ones results are reported on, `observations(num,
"tuning")` are the ones any default (architecture, learning rate, epochs) may be
chosen on. Evaluation observations must never inform a choice: a default picked
by looking at them would flatter the estimator that was tuned.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from benchmarks._mcmc import random_walk_metropolis

# Seeds of observation i: PRNGKey(base + i). Training simulations use other keys (benchmarks.npe).
OBSERVATION_SEEDS = {"evaluation": 1_000_000, "tuning": 2_000_000}
# Two-moons grid cells per axis over the prior box [-1, 1]^2: a cell is 0.001 wide, a tenth of the
# crescent's radial standard deviation (0.01), so the grid resolves its width with ~10 cells per std.
TWO_MOONS_GRID = 2000
TWO_MOONS_RADIUS, TWO_MOONS_RADIUS_STD = 0.1, 0.01


class Reference(NamedTuple):
    """Reference posterior samples [n, theta_dim] (numpy) and how they were made (JSON-ready)."""

    samples: np.ndarray
    info: dict


@dataclasses.dataclass(frozen=True)
class Task:
    """A simulation-based-inference task: prior, simulator, observations and reference posterior.

    Attributes:
      name: the task's sbibm name.
      theta_dim: number of parameters.
      x_dim: number of simulated data.
      bounds: (low, high) of a box prior on every parameter, or None.
      prior_sampler: (key, n) -> theta [n, theta_dim].
      simulator: (key, theta [theta_dim]) -> x [x_dim], one simulation.
      reference_sampler: (key, x_obs [x_dim], n) -> Reference.
    """

    name: str
    theta_dim: int
    x_dim: int
    bounds: Optional[tuple[float, float]]
    prior_sampler: Callable[[Array, int], Array]
    simulator: Callable[[Array, Array], Array]
    reference_sampler: Callable[[Array, Array, int], Reference]

    def prior_sample(self, key: Array, n: int) -> Array:
        """Draws theta from the prior: shape [n, theta_dim]."""
        return self.prior_sampler(key, n)

    def simulate_one(self, key: Array, theta: Array) -> Array:
        """One simulation: theta [theta_dim] -> x [x_dim] (vmappable over key and theta)."""
        return self.simulator(key, theta)

    def simulate(self, key: Array, theta: Array) -> Array:
        """Simulates every row of theta [n, theta_dim] with its own key: x [n, x_dim]."""
        if theta.ndim != 2 or theta.shape[1] != self.theta_dim:
            raise ValueError(f"`theta` must have shape [n, {self.theta_dim}] for {self.name}; got shape "
                             f"{tuple(theta.shape)}.")
        return jax.vmap(self.simulator)(jax.random.split(key, theta.shape[0]), theta)

    def observations(self, num: int, split: str = "evaluation") -> tuple[Array, Array]:
        """The first `num` observations of a fixed set: true theta [num, theta_dim] and x_obs [num, x_dim].

        Args:
          num: how many.
          split: "evaluation" (report results on these) or "tuning" (choose defaults on these only).
        """
        if split not in OBSERVATION_SEEDS:
            raise ValueError(f"`split` must be one of {sorted(OBSERVATION_SEEDS)}; got {split!r}.")
        thetas, xs = [], []
        for i in range(num):
            prior_key, simulator_key = jax.random.split(jax.random.PRNGKey(OBSERVATION_SEEDS[split] + i))
            theta = self.prior_sample(prior_key, 1)[0]
            thetas.append(theta)
            xs.append(self.simulate_one(simulator_key, theta))
        return jnp.stack(thetas), jnp.stack(xs)

    def reference_posterior(self, key: Array, x_obs: Array, n: int) -> Reference:
        """Draws n samples [n, theta_dim] of p(theta | x_obs) for x_obs [x_dim], exact where a closed form exists."""
        x_obs = jnp.asarray(x_obs, jnp.float32)
        if x_obs.shape != (self.x_dim,):
            raise ValueError(f"`x_obs` must have shape [{self.x_dim}] for {self.name}; got shape "
                             f"{tuple(x_obs.shape)}.")
        return self.reference_sampler(key, x_obs, n)

    def in_bounds(self, theta: Array) -> Array:
        """Whether each row of theta [n, theta_dim] lies in the prior's support: [n] bool."""
        if self.bounds is None:
            return jnp.ones(theta.shape[0], bool)
        low, high = self.bounds
        return jnp.all((theta >= low) & (theta <= high), axis=-1)


def _uniform_prior(dim: int, low: float, high: float) -> Callable[[Array, int], Array]:
    return lambda key, n: jax.random.uniform(key, (n, dim), minval=low, maxval=high)


def _numpy_rng(key: Array) -> np.random.Generator:
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


# Two moons.

def _two_moons_shift(theta: Array) -> Array:
    return jnp.stack([-jnp.abs(theta[..., 0] + theta[..., 1]) / math.sqrt(2),
                      (-theta[..., 0] + theta[..., 1]) / math.sqrt(2)], axis=-1)


def _two_moons_simulator(key: Array, theta: Array) -> Array:
    angle_key, radius_key = jax.random.split(key)
    angle = jax.random.uniform(angle_key, minval=-math.pi / 2, maxval=math.pi / 2)
    radius = TWO_MOONS_RADIUS + TWO_MOONS_RADIUS_STD * jax.random.normal(radius_key)
    point = jnp.stack([radius * jnp.cos(angle) + 0.25, radius * jnp.sin(angle)])
    return point + _two_moons_shift(theta)


def two_moons_log_likelihood(theta: Array, x: Array) -> Array:
    """Two moons' log p(x | theta) in closed form: theta [..., 2], x [2] -> [...].

    x - shift(theta) - (0.25, 0) is the point (r cos a, r sin a) with
    a ~ U(-pi/2, pi/2) and r ~ N(0.1, 0.01^2); its density in the plane is
    N(r) / (pi r) on the half plane of positive first coordinate.
    """
    # x's offset written out to theta's rank: broadcasts are explicit (rank promotion raises in the tests).
    offset = (x - jnp.array([0.25, 0.0])).reshape((1,) * (theta.ndim - 1) + (2,))
    u = offset - _two_moons_shift(theta)
    radius = jnp.linalg.norm(u, axis=-1)
    log_radius = (-0.5 * ((radius - TWO_MOONS_RADIUS) / TWO_MOONS_RADIUS_STD) ** 2
                  - math.log(TWO_MOONS_RADIUS_STD * math.sqrt(2 * math.pi)))
    return jnp.where(u[..., 0] > 0, log_radius - jnp.log(radius) - math.log(math.pi), -jnp.inf)


def two_moons_exact_posterior(key: Array, x_obs: Array, n: int) -> np.ndarray:
    """Exact two-moons posterior samples [n, 2] by inverting the simulator (sbibm's method).

    The map theta -> shift(theta) is a rotation on each side of theta_0 +
    theta_1 = 0 (unit Jacobian), so drawing the simulator's noise point p and
    solving shift(theta) = x_obs - p, with either sign of theta_0 + theta_1
    equally likely, gives the posterior before the prior's box; points
    outside the box are rejected.
    """
    rng = _numpy_rng(key)
    kept, count = [], 0
    while count < n:
        m = 2 * n
        angle = rng.uniform(-math.pi / 2, math.pi / 2, m)
        radius = TWO_MOONS_RADIUS + TWO_MOONS_RADIUS_STD * rng.standard_normal(m)
        q = np.asarray(x_obs, np.float64) - np.stack([radius * np.cos(angle) + 0.25, radius * np.sin(angle)], -1)
        total, difference = -math.sqrt(2) * q[:, 0], math.sqrt(2) * q[:, 1]  # |t0 + t1| and t1 - t0
        total = total * rng.choice([-1.0, 1.0], m)
        theta = np.stack([(total - difference) / 2, (total + difference) / 2], -1)
        theta = theta[(-math.sqrt(2) * q[:, 0] >= 0) & np.all(np.abs(theta) <= 1, axis=-1)]
        kept.append(theta)
        count += len(theta)
    return np.concatenate(kept)[:n]


def _two_moons_grid_log_posterior(x_obs: Array, cells: int) -> tuple[np.ndarray, np.ndarray]:
    centres = -1 + (np.arange(cells) + 0.5) * 2 / cells
    grid = jnp.stack(jnp.meshgrid(jnp.asarray(centres, jnp.float32), jnp.asarray(centres, jnp.float32),
                                  indexing="ij"), -1)
    return centres, np.asarray(jax.jit(two_moons_log_likelihood)(grid, x_obs), np.float64)


def _grid_mean(centres: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    return np.array([np.sum(probabilities.sum(1) * centres), np.sum(probabilities.sum(0) * centres)])


def _two_moons_reference(key: Array, x_obs: Array, n: int, cells: int = TWO_MOONS_GRID) -> Reference:
    """Samples of the posterior on a cells x cells grid over the prior box: a cell by its mass, then uniformly in it."""
    centres, log_posterior = _two_moons_grid_log_posterior(x_obs, cells)
    probabilities = np.exp(log_posterior - log_posterior.max())
    probabilities /= probabilities.sum()
    rng = _numpy_rng(key)
    flat = np.searchsorted(np.cumsum(probabilities.ravel()), rng.uniform(size=n) * (1 - 1e-12))
    width = 2 / cells
    theta = np.stack([centres[flat // cells], centres[flat % cells]], -1) + rng.uniform(-width / 2, width / 2, (n, 2))
    # Resolution checks: the mean on a grid of half the resolution agrees with this one's, and the
    # mass the box cuts off shows as mass in the outermost ring of cells.
    coarse_centres, coarse_log = _two_moons_grid_log_posterior(x_obs, cells // 2)
    coarse = np.exp(coarse_log - coarse_log.max())
    coarse /= coarse.sum()
    ring = probabilities.copy()
    ring[1:-1, 1:-1] = 0
    info = {"method": "grid", "exact": False, "cells_per_axis": cells, "cell_width": width,
            "cells_per_radial_std": TWO_MOONS_RADIUS_STD / width,
            "edge_ring_mass": float(ring.sum()),
            "mean_change_at_half_resolution": float(np.max(np.abs(
                _grid_mean(centres, probabilities) - _grid_mean(coarse_centres, coarse))))}
    return Reference(theta, info)


def two_moons() -> Task:
    """Two moons (sbibm's definition)."""
    return Task("two_moons", 2, 2, (-1.0, 1.0), _uniform_prior(2, -1.0, 1.0), _two_moons_simulator,
                _two_moons_reference)


# SLCP.

SLCP_DRAWS = 4


def _slcp_mean_and_factor(theta: Array) -> tuple[Array, Array]:
    """The Gaussian's mean [2] and its covariance's Cholesky factor [2, 2] from theta [5]."""
    scale_1, scale_2 = theta[2] ** 2, theta[3] ** 2
    correlation = jnp.tanh(theta[4])
    factor = jnp.array([[scale_1, 0.0], [correlation * scale_2, scale_2 * jnp.sqrt(1 - correlation ** 2)]])
    return theta[:2], factor


def _slcp_simulator(key: Array, theta: Array) -> Array:
    mean, factor = _slcp_mean_and_factor(theta)
    return (mean[None] + jax.random.normal(key, (SLCP_DRAWS, 2)) @ factor.T).reshape(-1)


def slcp_log_likelihood(theta: Array, x: Array) -> Array:
    """SLCP's log p(x | theta): theta [5], x [8] -> []."""
    mean, _ = _slcp_mean_and_factor(theta)
    scale_1, scale_2 = theta[2] ** 2, theta[3] ** 2
    correlation = jnp.tanh(theta[4])
    # log sqrt(1 - tanh(t)^2) = -log cosh(t), written to stay finite for large |t|.
    log_sqrt_one_minus = -(jnp.abs(theta[4]) + jnp.log1p(jnp.exp(-2 * jnp.abs(theta[4]))) - math.log(2))
    d = x.reshape(SLCP_DRAWS, 2) - mean[None]
    z1 = d[:, 0] / scale_1
    z2 = (d[:, 1] - correlation * scale_2 * z1) / (scale_2 * jnp.exp(log_sqrt_one_minus))
    log_det = jnp.log(scale_1) + jnp.log(scale_2) + log_sqrt_one_minus
    return jnp.sum(-0.5 * (z1 ** 2 + z2 ** 2)) - SLCP_DRAWS * (log_det + math.log(2 * math.pi))


def slcp_folded_log_posterior(theta: Array, x: Array) -> Array:
    """Unnormalized log p(theta | x) of SLCP on the folded box (theta_2, theta_3 in [0, 3]), -inf outside."""
    inside = jnp.all(jnp.abs(theta) <= 3) & (theta[2] >= 0) & (theta[3] >= 0)
    return jnp.where(inside, slcp_log_likelihood(theta, x), -jnp.inf)


def importance_initial_points(key: Array, log_density: Callable[[Array, Array], Array], data: Array,
                              proposal: Array, chains: int) -> Array:
    """Chains' starting points [chains, d]: `proposal` [m, d] resampled by weight exp(log_density(., data))."""
    log_w = jax.vmap(log_density, (0, None))(proposal, data)
    return proposal[jax.random.categorical(key, log_w, shape=(chains,))]


@dataclasses.dataclass(frozen=True)
class MCMCSettings:
    """The SLCP reference's sampler: chains x draws_per_chain >= the samples asked for.

    Attributes:
      chains: parallel chains.
      thin: steps between kept draws.
      warmup_rounds: adaptation rounds (proposal covariance and scale).
      round_steps: steps per adaptation round.
      proposals: prior draws resampled by likelihood for the starting points.
    """

    chains: int = 100
    thin: int = 100
    warmup_rounds: int = 20
    round_steps: int = 500
    proposals: int = 200_000


def _slcp_reference(key: Array, x_obs: Array, n: int, settings: MCMCSettings = MCMCSettings()) -> Reference:
    """SLCP posterior by random-walk Metropolis on the folded posterior, signs restored at random.

    The likelihood depends on theta_2 and theta_3 only through their squares
    and the prior box is symmetric, so the posterior is the same in the four
    sign quadrants of (theta_2, theta_3). Chains run on the folded posterior
    (theta_2, theta_3 >= 0), where a random walk does not have to cross
    between modes, and every draw then gets independent random signs: the
    four modes get exactly equal mass.
    """
    init_key, chain_key, sign_key, pick_key = jax.random.split(key, 4)
    proposal = jax.random.uniform(jax.random.fold_in(init_key, 0), (settings.proposals, 5), minval=-3, maxval=3)
    proposal = proposal.at[:, 2:4].set(jnp.abs(proposal[:, 2:4]))
    initial = importance_initial_points(init_key, slcp_folded_log_posterior, x_obs, proposal, settings.chains)
    per_chain = -(-n // settings.chains)
    draws, info = random_walk_metropolis(chain_key, slcp_folded_log_posterior, x_obs, initial,
                                         num_samples=max(per_chain, 4),
                                         thin=settings.thin, warmup_rounds=settings.warmup_rounds,
                                         round_steps=settings.round_steps)
    pooled = draws.reshape(-1, 5)
    pooled = pooled[np.asarray(jax.random.permutation(pick_key, len(pooled)))[:n]]
    signs = np.asarray(jax.random.rademacher(sign_key, (n, 2)), np.float64)
    pooled[:, 2:4] *= signs
    info.pop("split_rhat"), info.pop("ess_bulk")
    return Reference(pooled, {"method": "random-walk Metropolis on the sign-folded posterior", "exact": False,
                              "converged": info["max_split_rhat"] < 1.01, **info})


def slcp() -> Task:
    """Simple likelihood, complex posterior (sbibm's SLCP)."""
    return Task("slcp", 5, 2 * SLCP_DRAWS, (-3.0, 3.0), _uniform_prior(5, -3.0, 3.0), _slcp_simulator,
                _slcp_reference)


# Gaussian tasks with exact posteriors.

GAUSSIAN_LINEAR_VARIANCE = 0.1  # prior and noise variance of gaussian_linear


def gaussian_linear(dim: int = 10) -> Task:
    """Gaussian linear (sbibm): theta ~ N(0, 0.1 I), x ~ N(theta, 0.1 I); posterior N(x / 2, 0.05 I)."""
    std = math.sqrt(GAUSSIAN_LINEAR_VARIANCE)

    def reference(key: Array, x_obs: Array, n: int) -> Reference:
        samples = x_obs[None] / 2 + math.sqrt(GAUSSIAN_LINEAR_VARIANCE / 2) * jax.random.normal(key, (n, dim))
        return Reference(np.asarray(samples, np.float64), {"method": "exact Gaussian", "exact": True})

    return Task("gaussian_linear", dim, dim, None, lambda key, n: std * jax.random.normal(key, (n, dim)),
                lambda key, theta: theta + std * jax.random.normal(key, theta.shape), reference)


def gaussian_linear_uniform(dim: int = 10) -> Task:
    """Gaussian linear uniform (sbibm): theta ~ U[-1, 1]^dim, x ~ N(theta, 0.1 I); posterior N(x, 0.1 I) in the box."""
    std = math.sqrt(GAUSSIAN_LINEAR_VARIANCE)

    def reference(key: Array, x_obs: Array, n: int) -> Reference:
        # The truncated Gaussian factorizes over coordinates, so each is an exact truncated normal.
        z = jax.random.truncated_normal(key, (-1 - x_obs[None]) / std, (1 - x_obs[None]) / std, (n, dim))
        samples = np.clip(np.asarray(x_obs[None] + std * z, np.float64), -1.0, 1.0)
        return Reference(samples, {"method": "exact truncated Gaussian", "exact": True})

    return Task("gaussian_linear_uniform", dim, dim, (-1.0, 1.0), _uniform_prior(dim, -1.0, 1.0),
                lambda key, theta: theta + std * jax.random.normal(key, theta.shape), reference)


MIXTURE_SCALES = (1.0, 0.1)  # the two equally likely noise scales of gaussian_mixture


def _mixture_simulator(key: Array, theta: Array) -> Array:
    component_key, noise_key = jax.random.split(key)
    scale = jnp.where(jax.random.bernoulli(component_key), MIXTURE_SCALES[1], MIXTURE_SCALES[0])
    return theta + scale * jax.random.normal(noise_key, theta.shape)


def _mixture_reference(key: Array, x_obs: Array, n: int) -> Reference:
    """The mixture 0.5 N(x, I) + 0.5 N(x, 0.01 I) (the likelihood read as a density of theta) cut to the box."""
    rng = _numpy_rng(key)
    kept, count, drawn = [], 0, 0
    while count < n:
        scale = np.where(rng.uniform(size=(2 * n, 1)) < 0.5, MIXTURE_SCALES[1], MIXTURE_SCALES[0])
        theta = np.asarray(x_obs, np.float64) + scale * rng.standard_normal((2 * n, 2))
        drawn += 2 * n
        theta = theta[np.all(np.abs(theta) <= 10, axis=-1)]
        kept.append(theta)
        count += len(theta)
    return Reference(np.concatenate(kept)[:n], {"method": "exact, rejection from the untruncated mixture",
                                                "exact": True, "acceptance": count / drawn})


def gaussian_mixture() -> Task:
    """Gaussian mixture (sbibm): theta ~ U[-10, 10]^2, x ~ 0.5 N(theta, I) + 0.5 N(theta, 0.01 I)."""
    return Task("gaussian_mixture", 2, 2, (-10.0, 10.0), _uniform_prior(2, -10.0, 10.0), _mixture_simulator,
                _mixture_reference)


TASKS: dict[str, Callable[[], Task]] = {"two_moons": two_moons, "slcp": slcp, "gaussian_linear": gaussian_linear,
                                        "gaussian_mixture": gaussian_mixture,
                                        "gaussian_linear_uniform": gaussian_linear_uniform}


def get_task(name: str) -> Task:
    """The task called `name` (one of TASKS).

    Raises:
      ValueError: naming the unknown task and the known ones.
    """
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; known tasks: {sorted(TASKS)}.")
    return TASKS[name]()
