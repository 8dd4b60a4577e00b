"""Seismic compressed sensing: preconditioned vs from-scratch variational inference with a conditional Glow.

Siahkoohi et al. (2021), "Preconditioned training of normalizing flows for
variational inference in inverse problems" (arXiv:2101.03709), section 2, at a CPU-sized scale. The
unknown is a whitened seismic-like section (generated: folded, faulted layers
convolved with a Ricker wavelet); the operator keeps 50% of a random
convolution (Romberg). A ConditionalGlow q(x | F^T y) is trained by maximum
likelihood on low-fidelity pairs (one family of sections, noise 0.02). For one
high-fidelity observation (a section of a shifted family, noise 0.1) the
posterior, with the frozen amortized flow as prior, is fitted by reverse KL:
preconditioned (a copy of the amortized flow), from scratch, and by latent
correction (the amortized flow frozen, an affine map of its latent trained).

    python -m experiments.seismic --out out/seismic              # 32x32, CPU, minutes
    python -m experiments.seismic --out out/seismic256 --paper   # 256x256, a GPU
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

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jcnf  # noqa: E402
from experiments._budgets import add_budget_args, budget_sweep, parse_budget_args, plot_budgets  # noqa: E402
from experiments._speedup import speedup  # noqa: E402
from jcnf import inverse, metrics  # noqa: E402
from jcnf.data import seismic  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/seismic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=32, help="image height = width")
    parser.add_argument("--keep", type=float, default=0.5, help="fraction of random-convolution samples kept")
    parser.add_argument("--noise-low", type=float, default=0.02)
    parser.add_argument("--noise-high", type=float, default=0.1)
    parser.add_argument("--train-images", type=int, default=512)
    parser.add_argument("--low-steps", type=int, default=400, help="low-fidelity maximum-likelihood steps")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--flow-steps", type=int, default=4, help="Glow steps per level")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--context-features", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--latent-lr", type=float, default=1e-2,
                        help="learning rate of latent correction (it trains only 2 * H * W numbers)")
    parser.add_argument("--smooth", type=int, default=2,
                        help="evaluations averaged before comparing objectives (speed-up)")
    parser.add_argument("--vi-samples", type=int, default=8, help="latents per reverse-KL step")
    parser.add_argument("--preconditioned-steps", type=int, default=60)
    parser.add_argument("--scratch-max-steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--eval-samples", type=int, default=32)
    parser.add_argument("--posterior-samples", type=int, default=128)
    add_budget_args(parser, preconditioned="15,30,60", scratch="30,60,120,300", seeds=1)
    parser.add_argument("--final-eval-samples", type=int, default=256,
                        help="latents of the final-objective estimate at the end of each sweep run")
    parser.add_argument("--paper", action="store_true",
                        help="the paper's scale: 256x256, a larger Glow, longer training (for a GPU)")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long configuration for tests")
    args = parser.parse_args(argv)
    parse_budget_args(parser, args)
    if args.paper:
        args.size, args.train_images, args.low_steps, args.batch = 256, 2048, 5000, 4
        args.levels, args.flow_steps, args.hidden, args.context_features = 4, 8, 64, 32
        args.preconditioned_steps, args.scratch_max_steps, args.lr = 500, 5000, 1e-4
        args.eval_every, args.posterior_samples = 50, 256
        args.sweep_preconditioned, args.sweep_scratch = [125, 250, 500], [250, 500, 1000, 2500, 5000]
    if args.smoke:
        args.size, args.train_images, args.low_steps, args.batch = 8, 16, 5, 8
        args.levels, args.flow_steps, args.hidden, args.context_features = 1, 1, 4, 4
        args.vi_samples, args.preconditioned_steps, args.scratch_max_steps = 4, 4, 12
        args.eval_every, args.eval_samples, args.posterior_samples = 4, 8, 16
        args.sweep_preconditioned, args.sweep_scratch, args.sweep_seeds, args.final_eval_samples = [2], [2, 4], 1, 8
    return args


def posterior_summary(samples: np.ndarray, truth: np.ndarray) -> dict:
    """SNR of the mean, calibration and std statistics of posterior samples [S, H, W, 1] against truth [H, W, 1]."""
    mean, std = samples.mean(0), samples.std(0)
    return {"snr_db_of_mean": float(metrics.snr_db(mean[None], truth[None])[0]),
            "fraction_within_2_std": float(metrics.calibration_within_k_std(mean, std, truth, 2.0)),
            "mean_std": float(std.mean()), "rmse_of_mean": float(np.sqrt(np.mean((mean - truth) ** 2)))}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    key = jax.random.PRNGKey(args.seed)
    op_key, noise_key, obs_key, init_key, sample_key = jax.random.split(key, 5)
    shape = (args.size, args.size, 1)

    # Low fidelity: pairs (x, F^T y) from the "low" family; the flow sees the back-projection as context.
    operator = inverse.random_convolution_subsample(op_key, shape, args.keep)
    x_low = seismic.whiten(seismic.synthetic_seismic_images(args.seed, args.train_images, args.size, "low"))
    y_low = operator.apply(jnp.asarray(x_low))
    y_low = y_low + args.noise_low * jax.random.normal(noise_key, (y_low.size,)).reshape(y_low.shape)
    context_low = np.asarray(operator.adjoint(y_low))
    model = jcnf.ConditionalGlow(levels=args.levels, steps=args.flow_steps, hidden=args.hidden,
                                 context_features=args.context_features, encoder_blocks=1)
    low = jcnf.train.fit(model, {"value": x_low, "context": context_low}, steps=args.low_steps,
                         batch_size=args.batch, optimizer=jcnf.train.default_optimizer(args.lr), seed=args.seed,
                         log_every=max(1, min(50, args.low_steps)),
                         metrics_path=os.path.join(args.out, "low_fidelity_metrics.jsonl"))
    amortized = low.params["flow"]
    low_seconds = time.time() - start

    # High fidelity: one section of the shifted family, noisier data, the same operator.
    x_true = seismic.whiten(seismic.synthetic_seismic_images(args.seed + 10_000, 1, args.size, "high"))[0]
    y_clean = operator.apply(jnp.asarray(x_true)[None])[0]
    y_obs = y_clean + args.noise_high * jax.random.normal(obs_key, y_clean.shape)
    context = operator.adjoint(y_obs[None])
    log_prior = inverse.flow_log_prior(model, amortized, context)

    def build_step(flow, optimizer) -> inverse.PosteriorStep:
        return inverse.posterior_step(flow, operator, args.noise_high, log_prior, num_samples=args.vi_samples,
                                      optimizer=optimizer)

    # Built once, each compiled once: every run below, whatever its start and seed, reuses one of these.
    corrected_model, corrected_init = inverse.latent_correction(model, amortized)
    constant_rate = build_step(model, jcnf.train.default_optimizer(args.lr))
    corrected_step = build_step(corrected_model, jcnf.train.default_optimizer(args.latent_lr))
    annealed = {budget: build_step(model, jcnf.train.default_optimizer(args.lr, total_steps=budget))
                for budget in sorted(set(args.sweep_preconditioned) | set(args.sweep_scratch))}

    def run(name, flow, params, steps: int, step: inverse.PosteriorStep,
            **options) -> tuple[inverse.ReverseKLResult, float]:
        clock = time.time()
        options = {"eval_samples": args.eval_samples, "seed": args.seed,
                   "metrics_path": name and os.path.join(args.out, f"{name}_metrics.jsonl"), **options}
        result = inverse.fit_reverse_kl(flow, params, y_obs, operator, args.noise_high, log_prior, steps=steps,
                                        context=context, step=step, eval_every=args.eval_every,
                                        log_every=args.eval_every, **options)
        return result, time.time() - clock

    def scratch_init(seed: int):
        """The same Glow freshly initialized (ActNorm on standard-normal values)."""
        rng = init_key if seed == 0 else jax.random.fold_in(init_key, seed)
        value = jax.random.normal(rng, (args.batch * int(np.prod(shape)),)).reshape((args.batch,) + shape)
        return model.init(rng, value, jnp.broadcast_to(context, (args.batch,) + shape))["params"]

    preconditioned, preconditioned_seconds = run("preconditioned", model, inverse.precondition(amortized),
                                                 args.preconditioned_steps, constant_rate)
    scratch, scratch_seconds = run("scratch", model, scratch_init(0), args.scratch_max_steps, constant_rate)
    corrected, corrected_seconds = run("latent_correction", corrected_model, corrected_init,
                                       args.preconditioned_steps, corrected_step)
    speed = speedup(preconditioned.objective_history, scratch.objective_history, window=args.smooth)

    # Runs annealed to lr 0 over their own budget; the final objective on a larger fixed set of latents.
    clock = time.time()
    final_z = jax.random.normal(jax.random.PRNGKey(args.seed + 1), (args.final_eval_samples * int(np.prod(shape)),))
    final_z = final_z.reshape((args.final_eval_samples,) + shape)
    starts = {"preconditioned": lambda seed: inverse.precondition(amortized), "scratch": scratch_init}
    sweep = budget_sweep(
        lambda method, budget, seed: run(None, model, starts[method](seed), budget, annealed[budget], eval_samples=0,
                                         seed=args.seed + seed, progress=False)[0].params,
        lambda params: constant_rate.objective(params, final_z, context, y_obs),
        {"preconditioned": args.sweep_preconditioned, "scratch": args.sweep_scratch},
        seeds=args.sweep_seeds) if args.sweep_preconditioned else None
    sweep_seconds = time.time() - clock

    rows = jnp.broadcast_to(context, (args.posterior_samples,) + shape)
    # One jitted sampler per model: the three Glow parameter trees share a structure and a compilation.
    samplers = {id(flow): jax.jit(lambda p, key, rows, flow=flow: flow.apply({"params": p}, key, rows,
                                                                             method="sample"))
                for flow in (model, corrected_model)}
    flows = {"amortized_low_fidelity": (model, amortized), "preconditioned": (model, preconditioned.params),
             "scratch": (model, scratch.params), "latent_correction": (corrected_model, corrected.params)}
    samples = {name: np.asarray(samplers[id(flow)](params, sample_key, rows)) for name, (flow, params) in flows.items()}
    summaries = {name: posterior_summary(s, x_true) for name, s in samples.items()}
    back_projection = np.asarray(context[0])
    summaries["back_projection_F^T_y"] = {"snr_db_of_mean": float(metrics.snr_db(back_projection[None],
                                                                                  x_true[None])[0])}

    results = {
        "config": vars(args),
        "posterior": summaries,
        "final_objective": {"preconditioned": float(preconditioned.objective_history[-1, 1]),
                            "scratch": float(scratch.objective_history[-1, 1]),
                            "latent_correction": float(corrected.objective_history[-1, 1])},
        "initial_objective": {"preconditioned": float(preconditioned.objective_history[0, 1]),
                              "scratch": float(scratch.objective_history[0, 1])},
        "speedup": speed,
        # Runs annealed over each budget; "objective" is the reverse-KL objective (no exact normalizer here).
        "annealed_budgets": sweep,
        "seconds": {"low_fidelity": low_seconds, "preconditioned": preconditioned_seconds,
                    "scratch": scratch_seconds, "latent_correction": corrected_seconds,
                    "annealed_budgets": sweep_seconds,
                    "total": time.time() - start},
        "device": str(jax.devices()[0]),
    }
    plot_curves(args.out, {"preconditioned": preconditioned, "from scratch": scratch,
                           "latent correction": corrected}, speed)
    plot_images(args.out, x_true, back_projection, samples)
    if sweep:
        plot_budgets(args.out, sweep, "reverse-KL objective (KL + const)",
                     log_y=min(r["objective"] for r in sweep["runs"]) > 0)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps({k: results[k] for k in ("posterior", "speedup", "seconds")}, indent=2))
    if sweep:
        print(json.dumps(sweep["matched_speedup"], indent=2))
    return results


def plot_curves(out: str, runs: dict, speed: dict) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, result in runs.items():
        ax.plot(result.objective_history[:, 0], result.objective_history[:, 1], label=label)
    ax.axhline(speed["target"], color="gray", ls=":", lw=1)
    ax.set_yscale("symlog")
    ax.set_xlabel("iteration")
    ax.set_ylabel("reverse-KL objective (fixed latents)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss_curves.png"), dpi=120)
    plt.close(fig)


def plot_images(out: str, truth: np.ndarray, back_projection: np.ndarray, samples: dict) -> None:
    names = list(samples)
    fig, axes = plt.subplots(3, len(names) + 1, figsize=(3 * (len(names) + 1), 9))
    axes[0, 0].imshow(truth[..., 0], cmap="gray", vmin=-2.5, vmax=2.5)
    axes[0, 0].set_title("true section")
    axes[1, 0].imshow(back_projection[..., 0], cmap="gray")
    axes[1, 0].set_title("F^T y_obs")
    axes[2, 0].axis("off")
    for column, name in enumerate(names, start=1):
        mean, std = samples[name].mean(0)[..., 0], samples[name].std(0)[..., 0]
        axes[0, column].imshow(mean, cmap="gray", vmin=-2.5, vmax=2.5)
        axes[0, column].set_title(f"{name}\nposterior mean")
        image = axes[1, column].imshow(std, cmap="magma")
        axes[1, column].set_title("pointwise std")
        fig.colorbar(image, ax=axes[1, column], fraction=0.046)
        image = axes[2, column].imshow(np.abs(mean - truth[..., 0]), cmap="magma")
        axes[2, column].set_title("|error| of mean")
        fig.colorbar(image, ax=axes[2, column], fraction=0.046)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(os.path.join(out, "posterior.png"), dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
