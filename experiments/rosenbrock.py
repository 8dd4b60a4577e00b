"""Preconditioned vs from-scratch variational inference on the 2D Rosenbrock toy problem.

Siahkoohi et al. (2021), "Preconditioned training of normalizing flows for
variational inference in inverse problems" (arXiv:2101.03709), section 2: prior x1 ~ N(0, 1),
x2 | x1 ~ N(x1^2, 0.5). A ConditionalRealNVP q(x | y) is trained by maximum
likelihood on low-fidelity pairs (denoising, y = x + eps, sigma 0.4) with
`jcnf.inverse.fit_amortized` (z-scored pairs, early stopping). For the
high-fidelity observation y_obs = A x_true + eps (x_true = (2, 4), A close to
the identity), the posterior is fitted by reverse KL twice: preconditioned
(starting from a copy of the amortized flow, 80 steps) and from scratch (400
steps, then on to measure how long scratch takes to match). The exact
posterior is normalized on a fine grid. Because constant-rate runs end on a
noisy plateau, both methods are also trained with the rate annealed to 0 over
each of several budgets, and the speed-up at matched exact KL is reported
(`annealed_budgets` in results.json, budget_sweep.png).

    python -m experiments.rosenbrock --out out/rosenbrock
    python -m experiments.rosenbrock --config experiments/configs/rosenbrock.py:paper --out out/rosenbrock_paper
    python -m experiments.rosenbrock apply --run out/rosenbrock --input y.npy --output out/y --refine 80

Saved models: OUT/model/ is the amortized flow q(x | y) (context: an observation y, shape [2]);
OUT/refined_model/ is its preconditioned refinement for the run's y_obs (the same context). `apply`
samples the amortized flow at a new observation (a .npy of shape [2], e.g. the run's OUT/y_obs.npy):
samples.npy, mean.npy, std.npy;
with `--refine STEPS` it also refines a copy for that observation (refined_*.npy, refined_model/).

Settings: experiments/configs/rosenbrock.py (default, paper, smoke); `--config.KEY=VALUE` overrides one.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from etils import epath

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jcnf  # noqa: E402
from experiments import _apply, _hosts  # noqa: E402
from experiments._budgets import budget_sweep, check_sweep, plot_budgets  # noqa: E402
from experiments._config import parse_command_line  # noqa: E402
from experiments._figures import save  # noqa: E402
from experiments._grid_posterior import GridPosterior, grid_posterior, kl_from_samples_to_grid  # noqa: E402
from experiments._speedup import speedup  # noqa: E402
from jcnf import inverse  # noqa: E402
from jcnf.flows import StandardizedFlow  # noqa: E402

X_TRUE = (2.0, 4.0)

# Seed of `paper_toy_operator`: a fixed draw, so every run of the 2D toy
# problem sees the same matrix A.
PAPER_TOY_SEED = 2021


@jax.jit
def _toy_matrix(rng: jax.Array) -> jax.Array:
    # Drawn flat and reshaped: XLA:CPU compiles threefry for small multi-axis shapes much more slowly.
    unnormalized = jax.random.normal(rng, (4,), jnp.float32).reshape(2, 2) + 3.0 * jnp.eye(2, dtype=jnp.float32)
    return unnormalized / jnp.linalg.norm(unnormalized, ord=2)


def rosenbrock_operator(rng: jax.Array) -> inverse.LinearOperator:
    """The toy problem's A = (randn(2, 2) + 3 I) / ||randn(2, 2) + 3 I||_2, a dense operator [2] -> [2].

    Dividing by the spectral norm makes ||A||_2 = 1; adding 3 I keeps A close
    to a multiple of the identity and well conditioned.
    """
    return inverse.dense(_toy_matrix(rng))


def paper_toy_operator() -> inverse.LinearOperator:
    """`rosenbrock_operator` of a fixed key (seed 2021): the same A in every run."""
    return rosenbrock_operator(jax.random.PRNGKey(PAPER_TOY_SEED))


def reference_posterior(log_density, resolution: int) -> GridPosterior:
    """The exact posterior on a grid: a wide coarse pass finds it, a fine grid of +-7 std holds it."""
    coarse = grid_posterior(log_density, ((-6.0, 6.0), (-4.0, 16.0)), 256)
    std = np.sqrt(np.diag(np.asarray(coarse.cov)))
    bounds = [(float(m - 7 * s), float(m + 7 * s)) for m, s in zip(np.asarray(coarse.mean), std, strict=False)]
    return grid_posterior(log_density, bounds, resolution)


def sample_metrics(samples: np.ndarray, reference: GridPosterior) -> dict:
    mean, cov = samples.mean(0), np.cov(samples.T)
    ref_mean, ref_cov = np.asarray(reference.mean), np.asarray(reference.cov)
    return {"kl_reference_to_samples": float(kl_from_samples_to_grid(jnp.asarray(samples), reference, bins=30)),
            "mean": mean.tolist(), "cov": cov.tolist(),
            "mean_error": float(np.linalg.norm(mean - ref_mean)),
            "cov_relative_error": float(np.linalg.norm(cov - ref_cov) / np.linalg.norm(ref_cov))}


def apply(argv: list[str]) -> dict:
    """The posterior at the observation of `--input` (a .npy of shape [2]), optionally refined."""
    command = _apply.parse_apply(argv, "rosenbrock", __doc__,
                                 lambda parser: _apply.add_posterior_options(parser, 2000))
    y_obs = _apply.read_array(command.input, command.trained.context_shape, "an observation y")

    def refinement() -> _apply.Refinement:
        config = _apply.run_config(command, "rosenbrock")
        return _apply.Refinement(paper_toy_operator(), config.data.noise_std, inverse.rosenbrock_log_prob,
                                 num_samples=config.train.batch, learning_rate=config.vi.lr)

    return _apply.posterior_apply(command, jnp.asarray(y_obs), jnp.asarray(y_obs)[None], refinement)


def main(argv: list[str] | None = None) -> dict:
    apply_argv = _apply.split_apply(argv)
    if apply_argv is not None:
        return apply(apply_argv)
    command = parse_command_line(argv, "rosenbrock", __doc__)
    _hosts.start(command.distributed)
    config = command.config
    check_sweep(config.sweep)
    out = _hosts.output_dir(command.out)
    start = time.time()
    key = jax.random.PRNGKey(config.seed)
    prior_key, noise_key, obs_key, init_key, sample_key = jax.random.split(key, 5)

    # Low fidelity: denoising pairs from the prior.
    x = inverse.rosenbrock_sample(prior_key, config.data.pairs)
    y = x + config.data.noise_std * jax.random.normal(noise_key, (2 * config.data.pairs,)).reshape(config.data.pairs, 2)
    # The amortized posterior q(x | y) in one call: z-scored pairs, a validation split, early stopping.
    posterior = inverse.fit_amortized(np.asarray(x), np.asarray(y), model=jcnf.ConditionalRealNVP(
        blocks=config.model.blocks, hidden=config.model.hidden), batch_size=config.train.batch,
        learning_rate=config.train.lr, max_epochs=config.train.epochs, patience=config.train.patience,
        reductions=config.train.reductions, seed=config.seed)
    if _hosts.is_writer():
        jcnf.save_model(out / "model", posterior)
        epath.Path(_hosts.metrics_file(out, "low_fidelity")).write_text(
            "".join(json.dumps(record) + "\n" for record in posterior.metadata["history"]))
    amortized = posterior.params
    # Every reverse-KL run, preconditioned or from scratch, trains the same flow in the problem's units: the
    # amortized flow's standardization is part of the model, so the two starts differ only in their parameters.
    model = StandardizedFlow.from_trained(posterior)
    low_seconds = time.time() - start

    # High fidelity: one observation through the paper's A.
    operator = paper_toy_operator()
    x_true = jnp.array([X_TRUE])
    y_obs = operator.apply(x_true)[0] + config.data.noise_std * jax.random.normal(obs_key, (2,))
    log_posterior = inverse.posterior_log_density(operator, y_obs, config.data.noise_std, inverse.rosenbrock_log_prob)
    reference = reference_posterior(log_posterior, config.eval.grid)

    def build_step(optimizer: optax.GradientTransformation) -> inverse.PosteriorStep:
        return inverse.posterior_step(model, operator, config.data.noise_std, inverse.rosenbrock_log_prob,
                                      num_samples=config.train.batch, optimizer=optimizer)

    # Built once, each compiled once: every run below, whatever its start and seed, reuses one of these.
    constant_rate = build_step(jcnf.train.default_optimizer(config.vi.lr))
    annealed = {budget: build_step(jcnf.train.default_optimizer(config.vi.lr, total_steps=budget))
                for budget in sorted(set(config.sweep.preconditioned) | set(config.sweep.scratch))}

    def run(name, params, steps: int, step: inverse.PosteriorStep = constant_rate,
            **options) -> inverse.ReverseKLResult:
        # Every run is checkpointed: a rerun with the same --out resumes it.
        options = {"eval_samples": config.vi.eval_samples, "seed": config.seed,
                   "metrics_path": name and _hosts.metrics_file(out, name),
                   "checkpoint_dir": name and _hosts.checkpoint_dir(out, name), **options}
        # The TrainedModel as the model: a saved refinement keeps the amortized flow's standardization.
        return inverse.fit_reverse_kl(posterior, params, y_obs, operator, config.data.noise_std,
                                      inverse.rosenbrock_log_prob, steps=steps, step=step,
                                      num_latents=config.vi.latents, eval_every=config.vi.eval_every,
                                      **options)

    def scratch_init(seed: int):
        """The same network freshly initialized (ActNorm on standard-normal values)."""
        rng = init_key if seed == 0 else jax.random.fold_in(init_key, seed)
        value = jax.random.normal(rng, (2 * config.train.batch,)).reshape(config.train.batch, 2)
        return model.init(rng, value, jnp.broadcast_to(y_obs, (config.train.batch, 2)))["params"]

    clock = time.time()
    preconditioned = run("preconditioned", inverse.precondition(amortized), config.vi.preconditioned_steps,
                         model_dir=str(out / "refined_model"))
    preconditioned_seconds = time.time() - clock
    clock = time.time()
    scratch = run("scratch", scratch_init(0), config.vi.scratch_steps)
    scratch_seconds = time.time() - clock
    # The longer run repeats the first scratch_steps exactly (same seed and latents) and goes on.
    scratch_long = (scratch if config.vi.scratch_max_steps <= config.vi.scratch_steps
                    else run("scratch_long", scratch_init(0), config.vi.scratch_max_steps))
    speed = speedup(preconditioned.objective_history, scratch_long.objective_history, window=config.vi.smooth)
    log_z = float(reference.log_normalizer)  # KL(q || posterior) = objective + log Z
    kl_latents = jax.random.normal(jax.random.PRNGKey(config.seed + 1), (2 * config.sweep.kl_latents,)).reshape(-1, 2)
    clock = time.time()
    # A constant-rate run ends on a plateau set by Adam's noise, so the crossing time above moves with that
    # noise. Runs annealed to lr 0 over their own budget end where the budget takes them instead.
    starts = {"preconditioned": lambda seed: inverse.precondition(amortized), "scratch": scratch_init}
    sweep = budget_sweep(
        lambda method, budget, seed: run(None, starts[method](seed), budget, annealed[budget], seed=config.seed + seed,
                                         eval_samples=0, progress=False, checkpoint_dir=_hosts.checkpoint_dir(
                                             out, f"annealed_{method}_{budget}_seed{seed}")).params,
        # KL(q || exact posterior)
        lambda params: float(constant_rate.objective(_hosts.to_host(params), kl_latents, y_obs[None], y_obs)) + log_z,
        {"preconditioned": sorted(config.sweep.preconditioned), "scratch": sorted(config.sweep.scratch)},
        seeds=config.sweep.seeds) if config.sweep.preconditioned else None
    sweep_seconds = time.time() - clock

    context = jnp.broadcast_to(y_obs, (config.eval.samples, 2))
    sampler = jax.jit(lambda params, rng, context: model.apply({"params": params}, rng, context, method="sample"))
    # The trained parameters are replicated over the global mesh: one host copy, sampled on this process's device.
    flows = _hosts.to_host({"amortized_low_fidelity": amortized, "preconditioned": preconditioned.params,
                            "scratch": scratch.params, "scratch_long": scratch_long.params})
    samples = {name: np.asarray(sampler(params, sample_key, context)) for name, params in flows.items()}
    samples["reference_grid"] = np.asarray(reference.sample(sample_key, config.eval.samples))
    metrics = {name: sample_metrics(s, reference) for name, s in samples.items()}

    results = {
        "config": config.to_dict(),
        "y_obs": np.asarray(y_obs).tolist(), "operator_A": np.asarray(operator.params["matrix"]).tolist(),
        "reference": {"mean": np.asarray(reference.mean).tolist(), "cov": np.asarray(reference.cov).tolist(),
                      "bounds": reference.bounds, "resolution": reference.resolution},
        "posterior_metrics": metrics,
        "final_objective": {"preconditioned": float(preconditioned.objective_history[-1, 1]),
                            "scratch": float(scratch.objective_history[-1, 1]),
                            "scratch_long": float(scratch_long.objective_history[-1, 1])},
        # KL(q || exact posterior) = objective + log Z, at the start and end of each run.
        "reverse_kl_nats": {name: {"start": float(run.objective_history[0, 1] + log_z),
                                   "end": float(run.objective_history[-1, 1] + log_z)}
                            for name, run in (("preconditioned", preconditioned), ("scratch", scratch),
                                              ("scratch_long", scratch_long))},
        "log_normalizer": log_z,
        "speedup": speed,
        # The same question under annealed schedules: each run decays lr to 0 over its own budget;
        # "objective" there is the exact KL(q || posterior) in nats.
        "annealed_budgets": sweep,
        "seconds": {"low_fidelity": low_seconds, "preconditioned": preconditioned_seconds,
                    "scratch": scratch_seconds, "annealed_budgets": sweep_seconds, "total": time.time() - start},
        "device": str(jax.devices()[0]),
    }
    results["claims"] = claims(results)
    plot_curves(out, preconditioned, scratch_long, speed)
    plot_samples(out, reference, samples)
    if sweep:
        plot_budgets(out, sweep, "KL(q || exact posterior), nats")
    _hosts.write_outputs(out, config, results)
    if _hosts.is_writer():
        _apply.write_npy(out / "y_obs.npy", y_obs)  # the run's observation, an example input of `apply`
    if _hosts.is_writer():
        print(json.dumps({k: results[k] for k in ("reverse_kl_nats", "speedup", "claims", "seconds")}, indent=2))
        if sweep:
            print(json.dumps(sweep["matched_speedup"], indent=2))
    return results


def claims(results: dict) -> dict[str, dict]:
    """The paper's claims checked on this run's figures: {claim_id: {"claim", "holds", "evidence"}}."""
    speed, metrics = results["speedup"], results["posterior_metrics"]
    reached = speed["speedup"] is not None
    factor = speed["speedup"] if reached else speed["speedup_lower_bound"]
    out = {"preconditioning_5x_faster": {
        "claim": "Preconditioned VI reaches the objective of training from scratch at least 5x sooner "
                 "(constant learning rate).",
        "holds": bool(factor >= 5.0),
        "evidence": (f"{factor:.1f}x" if reached else f"scratch never reached it: > {factor:.1f}x")
                    + f" ({speed['preconditioned_steps']} preconditioned iterations)"}}
    kl = {name: metrics[name]["kl_reference_to_samples"] for name in ("preconditioned", "scratch")}
    out["preconditioned_posterior_no_worse"] = {
        "claim": "At the same number of iterations, the preconditioned posterior is at least as close to the "
                 "exact one as the posterior trained from scratch.",
        "holds": bool(kl["preconditioned"] <= kl["scratch"]),
        "evidence": f"histogram KL(exact || samples) {kl['preconditioned']:.3f} vs {kl['scratch']:.3f} nats"}
    sweep = results["annealed_budgets"]
    if sweep and sweep["matched_speedup"]:
        rows = sweep["matched_speedup"]
        values = [r["speedup"] if r["speedup"] is not None else r["speedup_lower_bound"] for r in rows]
        out["preconditioning_5x_faster_annealed"] = {
            "claim": "The same 5x at matched budgets, each run annealing its learning rate to 0 over its budget.",
            # An "at_most" speed-up is an upper bound, which cannot establish a factor.
            "holds": bool(all(v >= 5.0 and r["kind"] != "at_most" for v, r in zip(values, rows, strict=True))),
            "evidence": ", ".join(f"{v:.1f}x ({r['kind']}) at {r['preconditioned_budget']}"
                                  for v, r in zip(values, rows, strict=True)) + " iterations"}
    return out


def plot_curves(out: epath.Path, preconditioned, scratch, speed: dict) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, column, title in ((axes[0], "objective_history", "objective on fixed latents"),
                              (axes[1], "loss_history", "training loss (window mean)")):
        for result, label in ((preconditioned, "preconditioned"), (scratch, "from scratch")):
            history = getattr(result, column)
            ax.plot(history[:, 0], history[:, 1], label=label)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlabel("iteration")
        ax.set_title(title)
        lo = min(preconditioned.objective_history[:, 1].min(), scratch.objective_history[:, 1].min())
        ax.set_ylim(lo - 0.5, lo + 15)
        ax.legend()
    axes[0].axhline(speed["target"], color="gray", ls=":", lw=1)
    save(fig, out / "loss_curves.png", dpi=120)


def plot_samples(out: epath.Path, reference, samples: dict) -> None:
    names = ["reference_grid", "amortized_low_fidelity", "preconditioned", "scratch"]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4), sharex=True, sharey=True)
    (lo1, hi1), (lo2, hi2) = reference.bounds
    for ax, name in zip(axes, names, strict=False):
        ax.imshow(np.asarray(reference.density).T, origin="lower", extent=(lo1, hi1, lo2, hi2), aspect="auto",
                  cmap="Greys")
        ax.scatter(samples[name][:2000, 0], samples[name][:2000, 1], s=1, alpha=0.4, color="tab:red")
        ax.set_title(name)
        ax.set_xlim(lo1, hi1)
        ax.set_ylim(lo2, hi2)
    save(fig, out / "posterior_samples.png", dpi=100)


if __name__ == "__main__":
    _hosts.run_script(main)
