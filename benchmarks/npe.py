"""Neural posterior estimation: jcnf's amortized posterior against flowjax on the sbibm tasks, by C2ST.

For each task and simulation budget, the (theta, x) pairs are simulated once
and every estimator trains on the same pairs, z-scored with the training
set's mean and standard deviation (the samples are mapped back before
scoring). Each estimator then draws `--posterior-samples` samples for each
evaluation observation; samples outside a box prior are rejected and redrawn
(sbi's default for every estimator alike; the rejected fraction is reported as
leakage), and the C2ST accuracy against the task's reference posterior is
recorded (0.5 is indistinguishable, 1.0 fully separated). Training time is
wall-clock from the first simulation-free call to trained parameters that
are ready (`block_until_ready`), compilation included, as a user waits for it:
JAX's caches are cleared before every fit, so no fit reuses a program that
an earlier task with the same shapes compiled (a fresh process would not
have it either).

Estimators, on the same simulations and the same clock:

- jcnf: `jcnf.inverse.fit_amortized(value=theta, context=x, bounds=box)` with
  its defaults (spline and affine MAF candidates; see its docstring for the
  schedule), as a user calls it; `--jcnf-options` passes keyword arguments
  to try others.
- flowjax: `flowjax.flows.coupling_flow` with rational-quadratic spline
  transformers (`--blocks` layers of width `--hidden` and depth `--depth`,
  `--bins` knots on [-`--spline-bound`, `--spline-bound`]), trained by
  `flowjax.train.fit_to_data` with Adam at `--learning-rate`, batches of
  `--batch-size`, `--val-fraction` held out, stopping after `--patience`
  epochs without a better held-out loss (at most `--max-epochs`) and keeping
  the best parameters: the protocol of sbibm's flow baselines.
- sbi: skipped unless importable (it needs PyTorch).

Observations are the tasks' evaluation set; the tuning set (see
benchmarks.npe_tasks) is the only one any default here may be chosen on.

    python -m benchmarks.npe                                   # CPU-sized default run
    python -m benchmarks.npe --tasks two_moons,slcp --budgets 1000,10000,100000 --observations 10
    python -m benchmarks.npe --table                           # print the README table of the JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Optional, Protocol

import jax
import jax.numpy as jnp
import numpy as np

import jcnf
from benchmarks._common import environment, write_json
from benchmarks.npe_tasks import TASKS, Task, get_task
from experiments.readme_tables import npe_table
from jcnf.metrics import c2st

DEFAULT_JSON = "benchmarks/results/npe_cpu.json"
TRAINING_SEED = 0  # simulations for training use keys from this seed; observations use their own (npe_tasks)


@dataclasses.dataclass(frozen=True)
class Settings:
    """The peer's training protocol and the scoring of every estimator (written to the JSON)."""

    batch_size: int = 256
    learning_rate: float = 1e-3
    max_epochs: int = 200
    patience: int = 5
    val_fraction: float = 0.1
    blocks: int = 8
    hidden: int = 64
    depth: int = 2
    bins: int = 8
    spline_bound: float = 4.0
    posterior_samples: int = 10_000
    c2st_folds: int = 5


class Posterior(Protocol):
    """A trained amortized posterior of z-scored theta given z-scored x."""

    def sample(self, rng: jax.Array, context: jax.Array, num_samples: int) -> jax.Array:
        """Samples [num_samples, batch, theta_dim] for context [batch, x_dim]."""


class Standardizer:
    """Z-scoring with the training set's mean and standard deviation, per column."""

    def __init__(self, data: np.ndarray):
        self.mean = data.mean(axis=0)
        self.std = np.where(data.std(axis=0) > 0, data.std(axis=0), 1.0)

    def forward(self, data: np.ndarray) -> np.ndarray:
        """Raw [n, d] -> z-scored float32 [n, d]."""
        return ((data - self.mean) / self.std).astype(np.float32)

    def inverse(self, data: np.ndarray) -> np.ndarray:
        """Z-scored [n, d] -> raw float64 [n, d]."""
        return np.asarray(data, np.float64) * self.std + self.mean


def fit_jcnf(theta: np.ndarray, x: np.ndarray, seed: int, options: Optional[dict] = None,
             bounds: Optional[tuple[np.ndarray, np.ndarray]] = None) -> tuple[Posterior, dict]:
    """`jcnf.inverse.fit_amortized` with its defaults (and `options`), as a user calls it.

    `bounds` is the prior's box in the z-scored units of `theta`, passed to
    `fit_amortized` (unless `options` names its own) so it keeps its samples
    in the support.
    """
    options = {"seed": seed, **(options or {})}
    if bounds is not None:
        options.setdefault("bounds", bounds)
    posterior = jcnf.inverse.fit_amortized(value=jnp.asarray(theta), context=jnp.asarray(x), **options)
    jax.block_until_ready(jax.tree.leaves(getattr(posterior, "params", None)))
    metadata = getattr(posterior, "metadata", None) or {}
    history = metadata.get("history", [])
    info = {"epochs": len(history),
            "best_val_loss": min((row["validation_loss"] for row in history), default=None)}
    if "candidates" in metadata:
        info["candidates"] = metadata["candidates"]
        info["chosen"] = metadata["candidates"][metadata["chosen"]]["flow"]
    return posterior, info


class FlowjaxPosterior:
    """A flowjax conditional flow's samples as [num_samples, batch, dim]."""

    def __init__(self, flow: Any):
        import equinox

        self.flow = flow
        self._sample = equinox.filter_jit(lambda flow, rng, context, n: flow.sample(rng, (n,), condition=context))

    def sample(self, rng: jax.Array, context: jax.Array, num_samples: int) -> jax.Array:
        """Samples [num_samples, batch, dim] for context [batch, x_dim]."""
        # flowjax takes typed keys only; the benchmark passes raw ones, as jcnf does.
        typed = rng if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(rng)
        return self._sample(self.flow, typed, context, num_samples)


def fit_flowjax(theta: np.ndarray, x: np.ndarray, seed: int, settings: Settings) -> tuple[Posterior, dict]:
    """The spline coupling flow of flowjax, trained by its `fit_to_data` (its split, patience and best-loss rule)."""
    import equinox
    from flowjax.bijections import RationalQuadraticSpline
    from flowjax.distributions import Normal
    from flowjax.flows import coupling_flow
    from flowjax.train import fit_to_data

    build_key, train_key = jax.random.split(jax.random.key(seed))
    flow = coupling_flow(build_key, base_dist=Normal(jnp.zeros(theta.shape[1])),
                         transformer=RationalQuadraticSpline(knots=settings.bins, interval=settings.spline_bound),
                         cond_dim=x.shape[1], flow_layers=settings.blocks, nn_width=settings.hidden,
                         nn_depth=settings.depth)
    flow, losses = fit_to_data(train_key, flow, (jnp.asarray(theta), jnp.asarray(x)),
                               learning_rate=settings.learning_rate, max_epochs=settings.max_epochs,
                               max_patience=settings.patience, batch_size=settings.batch_size,
                               val_prop=settings.val_fraction, show_progress=False)
    jax.block_until_ready(equinox.filter(flow, equinox.is_array))
    return FlowjaxPosterior(flow), {"epochs": len(losses["val"]), "best_val_loss": float(min(losses["val"]))}


def _sbi_available() -> Optional[str]:
    try:
        import sbi  # noqa: F401
    except ImportError as error:
        return f"sbi not importable ({error})"
    return "sbi is importable but not wired into this benchmark yet"


def sample_in_support(posterior: Posterior, task: Task, rng: jax.Array, context: np.ndarray, n: int,
                      standardizer: Standardizer, max_rounds: int = 20) -> tuple[np.ndarray, float]:
    """Draws n samples [n, theta_dim] in the prior's support (rejecting the rest), and the rejected fraction."""
    kept, drawn, count = [], 0, 0
    for round_index in range(max_rounds):
        draw = posterior.sample(jax.random.fold_in(rng, round_index), jnp.asarray(context[None]), num_samples=n)
        theta = standardizer.inverse(np.asarray(jax.block_until_ready(draw))[:, 0])
        drawn += len(theta)
        theta = theta[np.all(np.isfinite(theta), axis=-1) & np.asarray(task.in_bounds(jnp.asarray(theta)))]
        kept.append(theta)
        count += len(theta)
        if count >= n:
            break
    return np.concatenate(kept)[:n], 1 - count / drawn


def run_task(task: Task, budgets: list[int], observations: int, settings: Settings, estimators: list[str],
             jcnf_options: dict, record: dict, json_path: Optional[str], observation_set: str = "evaluation") -> None:
    """Trains every estimator at every budget on `task` and scores it on `observation_set`'s observations."""
    _, x_obs = task.observations(observations, observation_set)
    x_obs = np.asarray(x_obs, np.float64)
    references = []
    for i in range(observations):
        start = time.perf_counter()
        reference = task.reference_posterior(jax.random.PRNGKey(10_000 + i), x_obs[i], settings.posterior_samples)
        references.append(reference.samples)
        record["references"].setdefault(task.name, []).append(
            {"observation": i, "seconds": round(time.perf_counter() - start, 2), **reference.info})
        print(f"{task.name}: reference {i} ({reference.info['method']}) in {time.perf_counter() - start:.1f} s",
              flush=True)
    fits: dict[str, Callable] = {"jcnf": lambda t, c, s, box: fit_jcnf(t, c, s, jcnf_options, box),
                                 "flowjax": lambda t, c, s, box: fit_flowjax(t, c, s, settings)}
    for budget in budgets:
        prior_key, simulator_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(TRAINING_SEED), budget))
        theta = np.asarray(task.prior_sample(prior_key, budget), np.float64)
        x = np.asarray(task.simulate(simulator_key, jnp.asarray(theta, jnp.float32)), np.float64)
        theta_scale, x_scale = Standardizer(theta), Standardizer(x)
        theta_z, x_z = theta_scale.forward(theta), x_scale.forward(x)
        # The box in z units, rounded to float32 as theta_z is (monotone rounding keeps every row inside).
        box = None if task.bounds is None else tuple(theta_scale.forward(np.full((1, task.theta_dim), b))[0]
                                                     for b in task.bounds)
        for name in estimators:
            row: dict[str, Any] = {"task": task.name, "budget": budget, "estimator": name}
            if name == "sbi":
                row["skipped"] = _sbi_available()
                record["results"].append(row)
                write_json(json_path, record)
                continue
            # Compilation is part of the time: without this, a later task with the same shapes (the mixture
            # after two moons, Gaussian linear uniform after Gaussian linear) reuses what an earlier fit compiled.
            jax.clear_caches()
            start = time.perf_counter()
            posterior, info = fits[name](theta_z, x_z, TRAINING_SEED, box)
            row["train_s"] = round(time.perf_counter() - start, 2)
            row.update(info)
            scores, leakage, sample_s = [], [], []
            for i in range(observations):
                start = time.perf_counter()
                samples, leaked = sample_in_support(posterior, task, jax.random.PRNGKey(20_000 + i),
                                                    x_scale.forward(x_obs[i]), settings.posterior_samples,
                                                    theta_scale)
                sample_s.append(round(time.perf_counter() - start, 2))
                leakage.append(leaked)
                scores.append(c2st(references[i], samples, seed=0, folds=settings.c2st_folds)
                              if len(samples) >= 2 * settings.c2st_folds else None)
            row.update({"c2st": scores, "c2st_mean": float(np.mean(scores)) if None not in scores else None,
                        "leakage": leakage, "sample_s": sample_s})
            record["results"].append(row)
            print(f"{task.name:>24} {budget:>7} {name:>8}: C2ST {row['c2st_mean']} (per observation "
                  f"{[round(s, 3) for s in scores if s is not None]}), train {row['train_s']} s, "
                  f"{row.get('epochs', '?')} epochs", flush=True)
            write_json(json_path, record)


def _git_commit() -> Optional[str]:
    """The checkout's commit, with "+changes" when tracked files differ from it (None outside git)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                 capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("+changes" if changes.stdout.strip() else "")


def _versions() -> dict:
    versions = {}
    for package in ("flowjax", "equinox", "scikit-learn", "sbi"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="two_moons,slcp", help=f"comma-separated, of {sorted(TASKS)}")
    parser.add_argument("--budgets", default="1000,10000", help="comma-separated simulation budgets")
    parser.add_argument("--observations", type=int, default=3, help="observations per task")
    parser.add_argument("--observation-set", default="evaluation", choices=["evaluation", "tuning"],
                        help="report on the evaluation set; choose defaults on the tuning set only")
    parser.add_argument("--estimators", default="jcnf,flowjax,sbi")
    parser.add_argument("--jcnf-options", default="{}", help="JSON keyword arguments for fit_amortized")
    for field in dataclasses.fields(Settings):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    parser.add_argument("--json", default=DEFAULT_JSON)
    parser.add_argument("--table", action="store_true", help="print the README table of --json and exit")
    args = parser.parse_args(argv)
    if args.table:
        with open(args.json) as f:
            record = json.load(f)
        print(npe_table(record))
        return record
    settings = Settings(**{field.name: getattr(args, field.name) for field in dataclasses.fields(Settings)})
    tasks = [get_task(name) for name in args.tasks.split(",")]
    budgets = [int(b) for b in args.budgets.split(",")]
    estimators = args.estimators.split(",")
    unknown = sorted(set(estimators) - {"jcnf", "flowjax", "sbi"})
    if unknown:
        raise ValueError(f"`--estimators` must name jcnf, flowjax or sbi; got {unknown}.")
    record = {"benchmark": "npe", "complete": False, "environment": {**environment(), **_versions()},
              "git_commit": _git_commit(),
              "settings": dataclasses.asdict(settings), "tasks": [task.name for task in tasks], "budgets": budgets,
              "observations": args.observations, "observation_set": args.observation_set,
              "tuning": "none: the settings are sbibm's and the libraries' defaults, chosen on no observation",
              "jcnf_estimator": "jcnf.inverse.fit_amortized",
              "jcnf_options": json.loads(args.jcnf_options), "command": " ".join(sys.argv[1:] if argv is None
                                                                                 else argv),
              "references": {}, "results": []}
    for task in tasks:
        run_task(task, budgets, args.observations, settings, estimators, record["jcnf_options"], record, args.json,
                 args.observation_set)
    record["complete"] = True
    write_json(args.json, record)
    print(npe_table(record))
    return record


if __name__ == "__main__":
    main()
