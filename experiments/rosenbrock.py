"""Preconditioned vs from-scratch variational inference on the 2D Rosenbrock toy problem.

Siahkoohi et al. (2021), "Preconditioned training of normalizing flows for
variational inference in inverse problems" (arXiv:2101.03709), section 2: prior x1 ~ N(0, 1),
x2 | x1 ~ N(x1^2, 0.5). A ConditionalRealNVP q(x | y) is trained by maximum
likelihood on low-fidelity pairs (denoising, y = x + eps, sigma 0.4). For the
high-fidelity observation y_obs = A x_true + eps (x_true = (2, 4), A close to
the identity), the posterior is fitted by reverse KL twice: preconditioned
(starting from a copy of the amortized flow, 80 steps) and from scratch (400
steps, then on to measure how long scratch takes to match). The exact
posterior is normalized on a fine grid. Because constant-rate runs end on a
noisy plateau, both methods are also trained with the rate annealed to 0 over
each of several budgets, and the speed-up at matched exact KL is reported
(`annealed_budgets` in results.json, budget_sweep.png).

    python -m experiments.rosenbrock --out out/rosenbrock
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jcnf  # noqa: E402
from experiments._budgets import add_budget_args, budget_sweep, parse_budget_args, plot_budgets  # noqa: E402
from experiments._grid_posterior import GridPosterior, grid_posterior, kl_from_samples_to_grid  # noqa: E402
from experiments._speedup import speedup  # noqa: E402
from jcnf import inverse  # noqa: E402

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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/rosenbrock")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-std", type=float, default=0.4)
    parser.add_argument("--pairs", type=int, default=5000, help="low-fidelity training pairs")
    parser.add_argument("--epochs", type=int, default=25, help="low-fidelity epochs (lr x0.9 per epoch)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--latents", type=int, default=1000, help="fixed latents of reverse-KL training")
    parser.add_argument("--preconditioned-steps", type=int, default=80)
    parser.add_argument("--scratch-steps", type=int, default=400, help="the paper's from-scratch budget")
    parser.add_argument("--scratch-max-steps", type=int, default=2000,
                        help="longer scratch run that measures the steps to match the preconditioned objective")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--eval-samples", type=int, default=4096)
    parser.add_argument("--smooth", type=int, default=3,
                        help="evaluations averaged before comparing objectives (speed-up)")
    add_budget_args(parser, preconditioned="10,20,40,80", scratch="20,40,80,160,400", seeds=2)
    parser.add_argument("--kl-latents", type=int, default=65536,
                        help="latents of the exact-KL estimate (objective + log Z) at the end of each sweep run")
    parser.add_argument("--samples", type=int, default=20000, help="posterior samples per flow for the metrics")
    parser.add_argument("--grid", type=int, default=512, help="reference grid cells per axis")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long configuration for tests")
    args = parser.parse_args(argv)
    parse_budget_args(parser, args)
    if args.smoke:
        args.pairs, args.epochs, args.layers, args.hidden = 512, 2, 1, 8
        args.preconditioned_steps, args.scratch_steps, args.scratch_max_steps = 10, 50, 50
        args.latents, args.eval_samples, args.samples, args.grid = 256, 256, 2000, 128
        args.sweep_preconditioned, args.sweep_scratch, args.sweep_seeds, args.kl_latents = [5], [5, 10], 1, 4096
    return args


def reference_posterior(log_density, resolution: int) -> GridPosterior:
    """The exact posterior on a grid: a wide coarse pass finds it, a fine grid of +-7 std holds it."""
    coarse = grid_posterior(log_density, ((-6.0, 6.0), (-4.0, 16.0)), 256)
    std = np.sqrt(np.diag(np.asarray(coarse.cov)))
    bounds = [(float(m - 7 * s), float(m + 7 * s)) for m, s in zip(np.asarray(coarse.mean), std)]
    return grid_posterior(log_density, bounds, resolution)


def sample_metrics(samples: np.ndarray, reference: GridPosterior) -> dict:
    mean, cov = samples.mean(0), np.cov(samples.T)
    ref_mean, ref_cov = np.asarray(reference.mean), np.asarray(reference.cov)
    return {"kl_reference_to_samples": float(kl_from_samples_to_grid(jnp.asarray(samples), reference, bins=30)),
            "mean": mean.tolist(), "cov": cov.tolist(),
            "mean_error": float(np.linalg.norm(mean - ref_mean)),
            "cov_relative_error": float(np.linalg.norm(cov - ref_cov) / np.linalg.norm(ref_cov))}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    key = jax.random.PRNGKey(args.seed)
    prior_key, noise_key, obs_key, init_key, sample_key = jax.random.split(key, 5)

    # Low fidelity: denoising pairs from the prior.
    x = inverse.rosenbrock_sample(prior_key, args.pairs)
    y = x + args.noise_std * jax.random.normal(noise_key, (2 * args.pairs,)).reshape(args.pairs, 2)
    model = jcnf.ConditionalRealNVP(layers=args.layers, hidden=args.hidden)
    steps_per_epoch = args.pairs // args.batch
    schedule = optax.exponential_decay(args.lr, steps_per_epoch, 0.9, staircase=True)
    low = jcnf.train.fit(model, {"value": np.asarray(x), "context": np.asarray(y)}, steps=args.epochs * steps_per_epoch,
                         batch_size=args.batch, optimizer=optax.adam(schedule), seed=args.seed, log_every=100,
                         metrics_path=os.path.join(args.out, "low_fidelity_metrics.jsonl"))
    amortized = low.params["flow"]
    low_seconds = time.time() - start

    # High fidelity: one observation through the paper's A.
    operator = paper_toy_operator()
    x_true = jnp.array([X_TRUE])
    y_obs = operator.apply(x_true)[0] + args.noise_std * jax.random.normal(obs_key, (2,))
    log_posterior = inverse.posterior_log_density(operator, y_obs, args.noise_std, inverse.rosenbrock_log_prob)
    reference = reference_posterior(log_posterior, args.grid)

    def build_step(optimizer: optax.GradientTransformation) -> inverse.PosteriorStep:
        return inverse.posterior_step(model, operator, args.noise_std, inverse.rosenbrock_log_prob,
                                      num_samples=args.batch, optimizer=optimizer)

    # Built once, each compiled once: every run below, whatever its start and seed, reuses one of these.
    constant_rate = build_step(jcnf.train.default_optimizer(args.lr))
    annealed = {budget: build_step(jcnf.train.default_optimizer(args.lr, total_steps=budget))
                for budget in sorted(set(args.sweep_preconditioned) | set(args.sweep_scratch))}

    def run(name, params, steps: int, step: inverse.PosteriorStep = constant_rate,
            **options) -> inverse.ReverseKLResult:
        options = {"eval_samples": args.eval_samples, "seed": args.seed,
                   "metrics_path": name and os.path.join(args.out, f"{name}_metrics.jsonl"), **options}
        return inverse.fit_reverse_kl(model, params, y_obs, operator, args.noise_std, inverse.rosenbrock_log_prob,
                                      steps=steps, step=step, num_latents=args.latents, eval_every=args.eval_every,
                                      **options)

    def scratch_init(seed: int):
        """The same network freshly initialized (ActNorm on standard-normal values)."""
        rng = init_key if seed == 0 else jax.random.fold_in(init_key, seed)
        value = jax.random.normal(rng, (2 * args.batch,)).reshape(args.batch, 2)
        return model.init(rng, value, jnp.broadcast_to(y_obs, (args.batch, 2)))["params"]

    clock = time.time()
    preconditioned = run("preconditioned", inverse.precondition(amortized), args.preconditioned_steps)
    preconditioned_seconds = time.time() - clock
    clock = time.time()
    scratch = run("scratch", scratch_init(0), args.scratch_steps)
    scratch_seconds = time.time() - clock
    # The longer run repeats the first scratch_steps exactly (same seed and latents) and goes on.
    scratch_long = (scratch if args.scratch_max_steps <= args.scratch_steps
                    else run("scratch_long", scratch_init(0), args.scratch_max_steps))
    speed = speedup(preconditioned.objective_history, scratch_long.objective_history, window=args.smooth)
    log_z = float(reference.log_normalizer)  # KL(q || posterior) = objective + log Z
    kl_latents = jax.random.normal(jax.random.PRNGKey(args.seed + 1), (2 * args.kl_latents,)).reshape(-1, 2)
    clock = time.time()
    # A constant-rate run ends on a plateau set by Adam's noise, so the crossing time above moves with that
    # noise. Runs annealed to lr 0 over their own budget end where the budget takes them instead.
    starts = {"preconditioned": lambda seed: inverse.precondition(amortized), "scratch": scratch_init}
    sweep = budget_sweep(
        lambda method, budget, seed: run(None, starts[method](seed), budget, annealed[budget], seed=args.seed + seed,
                                         eval_samples=0, progress=False).params,
        # KL(q || exact posterior)
        lambda params: float(constant_rate.objective(params, kl_latents, y_obs[None], y_obs)) + log_z,
        {"preconditioned": args.sweep_preconditioned, "scratch": args.sweep_scratch},
        seeds=args.sweep_seeds) if args.sweep_preconditioned else None
    sweep_seconds = time.time() - clock

    context = jnp.broadcast_to(y_obs, (args.samples, 2))
    sampler = jax.jit(lambda params, rng, context: model.apply({"params": params}, rng, context, method="sample"))
    flows = {"amortized_low_fidelity": amortized, "preconditioned": preconditioned.params,
             "scratch": scratch.params, "scratch_long": scratch_long.params}
    samples = {name: np.asarray(sampler(params, sample_key, context)) for name, params in flows.items()}
    samples["reference_grid"] = np.asarray(reference.sample(sample_key, args.samples))
    metrics = {name: sample_metrics(s, reference) for name, s in samples.items()}

    results = {
        "config": vars(args),
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
        "meets_5x_bar": bool(speed["speedup_lower_bound" if speed["speedup"] is None else "speedup"] >= 5.0),
        "preconditioned_no_worse_than_scratch": bool(
            metrics["preconditioned"]["kl_reference_to_samples"] <= metrics["scratch"]["kl_reference_to_samples"]),
        "seconds": {"low_fidelity": low_seconds, "preconditioned": preconditioned_seconds,
                    "scratch": scratch_seconds, "annealed_budgets": sweep_seconds, "total": time.time() - start},
        "device": str(jax.devices()[0]),
    }
    plot_curves(args.out, preconditioned, scratch_long, speed)
    plot_samples(args.out, reference, samples)
    if sweep:
        plot_budgets(args.out, sweep, "KL(q || exact posterior), nats")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps({k: results[k] for k in ("reverse_kl_nats", "speedup", "meets_5x_bar", "seconds")}, indent=2))
    if sweep:
        print(json.dumps(sweep["matched_speedup"], indent=2))
    return results


def plot_curves(out: str, preconditioned, scratch, speed: dict) -> None:
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
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss_curves.png"), dpi=120)
    plt.close(fig)


def plot_samples(out: str, reference, samples: dict) -> None:
    names = ["reference_grid", "amortized_low_fidelity", "preconditioned", "scratch"]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4), sharex=True, sharey=True)
    (lo1, hi1), (lo2, hi2) = reference.bounds
    for ax, name in zip(axes, names):
        ax.imshow(np.asarray(reference.density).T, origin="lower", extent=(lo1, hi1, lo2, hi2), aspect="auto",
                  cmap="Greys")
        ax.scatter(samples[name][:2000, 0], samples[name][:2000, 1], s=1, alpha=0.4, color="tab:red")
        ax.set_title(name)
        ax.set_xlim(lo1, hi1)
        ax.set_ylim(lo2, hi2)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "posterior_samples.png"), dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
