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
Reverse KL is mode-seeking, so its posteriors tend to be over-confident; a
fourth run, the remedy, starts preconditioned and adds a forward-KL anchor,
`weight` * the NLL of the trained flow on samples of the amortized posterior
(`jcnf.inverse.mixed_kl_step`). Every posterior's coverage (the fraction of
pixels whose truth lies within 1, 2, 3 std of the posterior mean) is reported.

    python -m experiments.seismic --out out/seismic              # 64x64, CPU, minutes
    python -m experiments.seismic --config experiments/configs/seismic.py:paper --out out/seismic256   # a GPU
    python -m experiments.seismic apply --run out/seismic --input y.npy --output out/y --refine 40

Saved models: OUT/model/ is the amortized flow q(x | F^T y) (context: the back-projection F^T y);
OUT/refined_model/ is its preconditioned refinement for the run's observation. `apply` takes a new
observation y (a .npy in the operator's output space, like the run's OUT/y_obs.npy; the operator is
the run's, rebuilt from its config) and writes the amortized posterior's samples.npy, mean.npy,
std.npy and mean.png / std.png; with `--refine STEPS` also a refined copy's (refined_*,
refined_model/), with the amortized flow as prior.

Settings: experiments/configs/seismic.py (default, paper, smoke); `--config.KEY=VALUE` overrides one.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from etils import epath

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jcnf  # noqa: E402
from experiments import _apply, _hosts  # noqa: E402
from experiments._budgets import budget_sweep, check_sweep, plot_budgets  # noqa: E402
from experiments._config import parse_command_line  # noqa: E402
from experiments._figures import save  # noqa: E402
from experiments._speedup import speedup  # noqa: E402
from jcnf import inverse, metrics  # noqa: E402
from jcnf.data import seismic  # noqa: E402

GAUSSIAN_COVERAGE = {"1": 0.683, "2": 0.954, "3": 0.997}  # erf(k / sqrt 2): a calibrated Gaussian posterior


def posterior_summary(samples: np.ndarray, truth: np.ndarray) -> dict:
    """SNR of the mean, coverage and std statistics of posterior samples [S, H, W, 1] against truth [H, W, 1]."""
    mean, std = samples.mean(0), samples.std(0)
    coverage = np.asarray(metrics.posterior_coverage(samples, truth, ks=(1.0, 2.0, 3.0)))
    return {"snr_db_of_mean": float(metrics.snr_db(mean[None], truth[None])[0]),
            "coverage": {k: float(c) for k, c in zip(GAUSSIAN_COVERAGE, coverage, strict=True)},
            "mean_std": float(std.mean()), "rmse_of_mean": float(np.sqrt(np.mean((mean - truth) ** 2)))}


def seismic_operator(config) -> inverse.LinearOperator:
    """The run's operator: 50% of a random convolution, drawn from the first of the run's five keys."""
    op_key = jax.random.split(jax.random.PRNGKey(config.seed), 5)[0]
    shape = (config.data.size, config.data.size, 1)
    return inverse.random_convolution_subsample(op_key, shape, config.data.keep)


def apply(argv: list[str]) -> dict:
    """The posterior of the section behind the observation of `--input`, optionally refined."""
    command = _apply.parse_apply(argv, "seismic", __doc__, lambda parser: _apply.add_posterior_options(parser, 64))
    config = _apply.run_config(command, "seismic")
    operator = seismic_operator(config)
    if (config.data.size, config.data.size, 1) != command.trained.value_shape:
        raise ValueError(f"The config's sections ({config.data.size}x{config.data.size}) are not the model's "
                         f"{command.trained.value_shape}: pass the run directory the model came from (`--run`).")
    y_obs = jnp.asarray(_apply.read_array(command.input, operator.output_shape,
                                          "an observation y (the operator's output)"))
    context = operator.adjoint(y_obs[None])
    trained = command.trained

    def refinement() -> _apply.Refinement:
        log_prior = inverse.flow_log_prior(trained.model, trained.params, context)
        return _apply.Refinement(operator, config.data.noise_high, log_prior, num_samples=config.vi.samples,
                          learning_rate=config.vi.lr)

    def draw(prefix: str, mean: np.ndarray, std: np.ndarray) -> list:
        # Whitened sections: +-2.5 spans the grey scale, as in posterior.png.
        return [_apply.write_png(command.output / f"{prefix}mean.png", (np.clip(mean, -2.5, 2.5) + 2.5) / 5.0),
                _apply.write_png(command.output / f"{prefix}std.png", _apply.std_image(std))]

    return _apply.posterior_apply(command, y_obs, context, refinement, draw)


def main(argv: list[str] | None = None) -> dict:
    apply_argv = _apply.split_apply(argv)
    if apply_argv is not None:
        return apply(apply_argv)
    command = parse_command_line(argv, "seismic", __doc__)
    _hosts.start(command.distributed)
    config = command.config
    check_sweep(config.sweep)
    out = _hosts.output_dir(command.out)
    start = time.time()
    key = jax.random.PRNGKey(config.seed)
    _, noise_key, obs_key, init_key, sample_key = jax.random.split(key, 5)  # the first: seismic_operator
    shape = (config.data.size, config.data.size, 1)

    # Low fidelity: pairs (x, F^T y) from the "low" family; the flow sees the back-projection as context.
    operator = seismic_operator(config)
    x_low = seismic.whiten(seismic.synthetic_seismic_images(config.seed, config.data.train_images, config.data.size,
                                                            "low"))
    y_low = operator.apply(jnp.asarray(x_low))
    y_low = y_low + config.data.noise_low * jax.random.normal(noise_key, (y_low.size,)).reshape(y_low.shape)
    context_low = np.asarray(operator.adjoint(y_low))
    model = jcnf.ConditionalGlow(levels=config.model.levels, blocks=config.model.blocks, hidden=config.model.hidden,
                                 context_features=config.model.context_features, encoder_blocks=1)
    low = jcnf.train.fit(model, {"value": x_low, "context": context_low}, steps=config.train.steps,
                         batch_size=config.train.batch, optimizer=jcnf.train.default_optimizer(config.train.lr),
                         seed=config.seed,
                         log_every=max(1, min(50, config.train.steps)),
                         validation_fraction=config.train.validation_fraction,
                         eval_every=max(1, min(config.train.eval_every, config.train.steps)),
                         patience=config.train.patience,
                         metrics_path=_hosts.metrics_file(out, "low_fidelity"),
                         checkpoint_dir=_hosts.checkpoint_dir(out, "low_fidelity"), model_dir=str(out / "model"))
    amortized = low.params
    low_seconds = time.time() - start

    # High fidelity: one section of the shifted family, noisier data, the same operator.
    x_true = seismic.whiten(seismic.synthetic_seismic_images(config.seed + 10_000, 1, config.data.size, "high"))[0]
    y_clean = operator.apply(jnp.asarray(x_true)[None])[0]
    y_obs = y_clean + config.data.noise_high * jax.random.normal(obs_key, y_clean.shape)
    context = operator.adjoint(y_obs[None])
    log_prior = inverse.flow_log_prior(model, amortized, context)

    def build_step(flow, optimizer) -> inverse.PosteriorStep:
        return inverse.posterior_step(flow, operator, config.data.noise_high, log_prior, num_samples=config.vi.samples,
                                      optimizer=optimizer)

    # Built once, each compiled once: every run below, whatever its start and seed, reuses one of these.
    corrected_model, corrected_init = inverse.latent_correction(model, amortized)
    constant_rate = build_step(model, jcnf.train.default_optimizer(config.vi.lr))
    corrected_step = build_step(corrected_model, jcnf.train.default_optimizer(config.vi.latent_lr))
    # The remedy: the preconditioned start and optimizer, plus the forward-KL anchor on amortized samples.
    anchored_step = inverse.mixed_kl_step(model, operator, config.data.noise_high, log_prior, amortized,
                                          weight=config.vi.anchor_weight, num_samples=config.vi.samples,
                                          optimizer=jcnf.train.default_optimizer(config.vi.lr))
    annealed = {budget: build_step(model, jcnf.train.default_optimizer(config.vi.lr, total_steps=budget))
                for budget in sorted(set(config.sweep.preconditioned) | set(config.sweep.scratch))}

    def run(name: str, flow, params, steps: int, step: inverse.PosteriorStep, record: bool = True,
            **options) -> tuple[inverse.ReverseKLResult, float]:
        clock = time.time()
        options = {"eval_samples": config.vi.eval_samples, "seed": config.seed,
                   "metrics_path": _hosts.metrics_file(out, name) if record else None,
                   "checkpoint_dir": _hosts.checkpoint_dir(out, name), **options}
        result = inverse.fit_reverse_kl(flow, params, y_obs, operator, config.data.noise_high, log_prior, steps=steps,
                                        context=context, step=step, eval_every=config.vi.eval_every,
                                        log_every=config.vi.eval_every, **options)
        return result, time.time() - clock

    def scratch_init(seed: int):
        """The same Glow freshly initialized (ActNorm on standard-normal values)."""
        rng = init_key if seed == 0 else jax.random.fold_in(init_key, seed)
        batch = config.train.batch
        value = jax.random.normal(rng, (batch * int(np.prod(shape)),)).reshape((batch,) + shape)
        return model.init(rng, value, jnp.broadcast_to(context, (config.train.batch,) + shape))["params"]

    preconditioned, preconditioned_seconds = run("preconditioned", model, inverse.precondition(amortized),
                                                 config.vi.preconditioned_steps, constant_rate,
                                                 model_dir=str(out / "refined_model"))
    scratch, scratch_seconds = run("scratch", model, scratch_init(0), config.vi.scratch_max_steps, constant_rate)
    corrected, corrected_seconds = run("latent_correction", corrected_model, corrected_init,
                                       config.vi.preconditioned_steps, corrected_step)
    anchored, anchored_seconds = run("forward_kl_anchor", model, inverse.precondition(amortized),
                                     config.vi.preconditioned_steps, anchored_step)
    speed = speedup(preconditioned.objective_history, scratch.objective_history, window=config.vi.smooth)

    # Runs annealed to lr 0 over their own budget; the final objective on a larger fixed set of latents.
    clock = time.time()
    final_count = config.sweep.final_eval_samples
    final_z = jax.random.normal(jax.random.PRNGKey(config.seed + 1), (final_count * int(np.prod(shape)),))
    final_z = final_z.reshape((final_count,) + shape)
    starts = {"preconditioned": lambda seed: inverse.precondition(amortized), "scratch": scratch_init}
    sweep = budget_sweep(
        lambda method, budget, seed: run(f"annealed_{method}_{budget}_seed{seed}", model, starts[method](seed),
                                         budget, annealed[budget], record=False, eval_samples=0,
                                         seed=config.seed + seed, progress=False)[0].params,
        lambda params: constant_rate.objective(_hosts.to_host(params), final_z, context, y_obs),
        {"preconditioned": sorted(config.sweep.preconditioned), "scratch": sorted(config.sweep.scratch)},
        seeds=config.sweep.seeds) if config.sweep.preconditioned else None
    sweep_seconds = time.time() - clock

    rows = jnp.broadcast_to(context, (config.eval.posterior_samples,) + shape)
    # One jitted sampler per model: the three Glow parameter trees share a structure and a compilation.
    samplers = {id(flow): jax.jit(lambda p, key, rows, flow=flow: flow.apply({"params": p}, key, rows,
                                                                             method="sample"))
                for flow in (model, corrected_model)}
    # The trained parameters are replicated over the global mesh: one host copy, sampled on this process's device.
    flows = {"amortized_low_fidelity": (model, amortized), "preconditioned": (model, preconditioned.params),
             "scratch": (model, scratch.params), "latent_correction": (corrected_model, corrected.params),
             "forward_kl_anchor": (model, anchored.params)}
    flows = {name: (flow, _hosts.to_host(params)) for name, (flow, params) in flows.items()}
    samples = {name: np.asarray(samplers[id(flow)](params, sample_key, rows)) for name, (flow, params) in flows.items()}
    summaries = {name: posterior_summary(s, x_true) for name, s in samples.items()}
    back_projection = np.asarray(context[0])
    summaries["back_projection_F^T_y"] = {"snr_db_of_mean": float(metrics.snr_db(back_projection[None],
                                                                                  x_true[None])[0])}

    results = {
        "config": config.to_dict(),
        "posterior": summaries,
        "gaussian_coverage": GAUSSIAN_COVERAGE,
        # The reverse-KL objective on fixed latents (the anchored run trains on more than this).
        "final_objective": {"preconditioned": float(preconditioned.objective_history[-1, 1]),
                            "scratch": float(scratch.objective_history[-1, 1]),
                            "latent_correction": float(corrected.objective_history[-1, 1]),
                            "forward_kl_anchor": float(anchored.objective_history[-1, 1])},
        "initial_objective": {"preconditioned": float(preconditioned.objective_history[0, 1]),
                              "scratch": float(scratch.objective_history[0, 1])},
        "speedup": speed,
        # The amortized flow's held-out NLL (nats per section) and the step whose parameters were kept.
        "low_fidelity": {"best_step": None if low.best_step is None else int(low.best_step),
                         "steps_run": int(low.state.step),
                         "best_validation_nll": min((float(r["val_loss"]) for r in low.history if "val_loss" in r),
                                                    default=None)},
        # Runs annealed over each budget; "objective" is the reverse-KL objective (no exact normalizer here).
        "annealed_budgets": sweep,
        "seconds": {"low_fidelity": low_seconds, "preconditioned": preconditioned_seconds,
                    "scratch": scratch_seconds, "latent_correction": corrected_seconds,
                    "forward_kl_anchor": anchored_seconds,
                    "annealed_budgets": sweep_seconds,
                    "total": time.time() - start},
        "device": str(jax.devices()[0]),
    }
    results["claims"] = claims(summaries, sweep, config)
    plot_curves(out, {"preconditioned": preconditioned, "from scratch": scratch, "latent correction": corrected,
                      "forward-KL anchor": anchored}, speed)
    plot_images(out, x_true, back_projection, samples)
    if sweep:
        plot_budgets(out, sweep, "reverse-KL objective (KL + const)",
                     log_y=min(r["objective"] for r in sweep["runs"]) > 0)
    _hosts.write_outputs(out, config, results)
    if _hosts.is_writer():
        _apply.write_npy(out / "y_obs.npy", y_obs)  # the run's observation, an example input of `apply`
    if _hosts.is_writer():
        print(json.dumps({k: results[k] for k in ("posterior", "speedup", "seconds", "claims")}, indent=2))
        if sweep:
            print(json.dumps(sweep["matched_speedup"], indent=2))
    return results


def claims(summaries: dict, sweep: dict | None, config) -> dict:
    """The paper's claims and ours, each with a verdict and the figures behind it."""
    size = f"{config.data.size}x{config.data.size}"
    coverage = {name: summary["coverage"]["2"] for name, summary in summaries.items() if "coverage" in summary}
    plain, anchored = coverage["preconditioned"], coverage["forward_kl_anchor"]
    result = {
        "remedy_improves_coverage": {
            "claim": "Adding a forward-KL anchor on amortized samples to reverse KL improves the posterior's 2-std "
                     "coverage over plain (preconditioned) reverse KL.",
            "holds": anchored > plain,
            "evidence": f"{size}, fraction of pixels within 2 std (calibrated: 0.954): "
                        + ", ".join(f"{name} {value:.3f}" for name, value in coverage.items())
                        + f"; anchor weight {config.vi.anchor_weight}"},
    }
    if sweep:
        rows = sweep["matched_speedup"]

        def at_least_5x(row: dict) -> bool:
            # Not reached within the scratch budgets: the lower bound decides; "at_most" is an upper bound.
            if row["kind"] == "not_reached":
                return row["speedup_lower_bound"] >= 5.0
            return row["kind"] == "interpolated" and row["speedup"] >= 5.0

        def shown(row: dict) -> str:
            if row["kind"] == "not_reached":
                return f">={row['speedup_lower_bound']:.1f}x at {row['preconditioned_budget']} it"
            bound = "<=" if row["kind"] == "at_most" else ""
            return f"{bound}{row['speedup']:.1f}x at {row['preconditioned_budget']} it"

        result["speedup_5x"] = {
            "claim": "Preconditioning reaches the objective of training from scratch at least 5x faster "
                     "(Siahkoohi et al. 2021: 5x at 256x256).",
            "holds": all(at_least_5x(row) for row in rows),
            "evidence": f"{size}, runs annealed over each budget, scratch iterations to match / preconditioned "
                        f"budget: " + ", ".join(shown(row) for row in rows) + f" ({config.sweep.seeds} seed(s))"}
    return result


def plot_curves(out: epath.Path, runs: dict, speed: dict) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, result in runs.items():
        ax.plot(result.objective_history[:, 0], result.objective_history[:, 1], label=label)
    ax.axhline(speed["target"], color="gray", ls=":", lw=1)
    ax.set_yscale("symlog")
    ax.set_xlabel("iteration")
    ax.set_ylabel("reverse-KL objective (fixed latents)")
    ax.legend()
    save(fig, out / "loss_curves.png", dpi=120)


def plot_images(out: epath.Path, truth: np.ndarray, back_projection: np.ndarray, samples: dict) -> None:
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
    save(fig, out / "posterior.png", dpi=80)


if __name__ == "__main__":
    _hosts.run_script(main)
