"""Super-resolution x2 with a conditional flow against a factorized baseline (Winkler et al. 2019).

p(high-res | low-res) is modelled by a ConditionalGlow (context encoder,
uniform or variational dequantization) and by the paper's baseline, a
factorized discretized-logistic mixture per sub-pixel from the same kind of
context encoder, with about the same parameter count, trained on the same
patches for the same number of steps. By default both models predict the
residual from the upsampled low-res image (`SuperResolutionGlow`, the
baseline's `context_skip`): bicubic with one back-projection step, so every
block keeps its low-res mean (`model.skip`, or "nearest"); `model.context_skip`
false turns that off for both. On held-out photographs it reports test bits/dim
of both (the CNF's is the dequantization bound, an upper bound on its
discrete bits/dim; the baseline's is exact), PSNR/SSIM of CNF samples at
temperatures {0, 0.5, 0.8, 1.0}, of the baseline's mode and of bicubic
upsampling, and draws them side by side (samples.png).

    python -m experiments.superres --out out/superres              # CPU default, minutes
    python -m experiments.superres --config experiments/configs/superres.py:paper \
        --config.data.tfds_dir=~/tensorflow_datasets --out out/superres_paper   # paper size, ImageNet32

Settings: experiments/configs/superres.py (default, paper, smoke); `--config.KEY=VALUE` overrides one.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import jcnf
from experiments import _hosts
from experiments._config import parse_command_line
from experiments._figures import image_grid
from jcnf import data as jdata
from jcnf import metrics
from jcnf.baselines import DiscretizedLogisticBaseline
from jcnf.dequantize import VariationalDequantizer
from jcnf.train import (
    count_params,
    default_optimizer,
    fit,
    mle_eval_step,
    no_dequantization,
    sample_step,
    uniform_dequantization,
)

TEMPERATURES = (0.0, 0.5, 0.8, 1.0)


def load_patches(data, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test high-resolution patches, uint8 [N, P, P, 3], from disjoint images (`data`: config.data)."""
    rng = np.random.default_rng(seed)
    if data.source not in ("photos", "folder", "tfds"):
        raise ValueError(f"`data.source` must be 'photos', 'folder' or 'tfds'; got {data.source!r}.")
    if data.source == "tfds":
        data_dir = data.tfds_dir or None
        train = jdata.load_tfds_images(data.tfds_name, "train", data_dir, max_examples=data.train_patches)
        test = jdata.load_tfds_images(data.tfds_name, "validation", data_dir, max_examples=data.test_patches)
        if train.shape[1] != data.patch:
            raise ValueError(f"`data.patch` {data.patch} must match the dataset's image size {train.shape[1]}.")
        return train, test
    if data.source == "folder":
        if not data.train_folder or not data.test_folder:
            raise ValueError("`data.source` 'folder' needs `data.train_folder` and `data.test_folder` "
                             "(different images).")
        train_photos = jdata.load_image_folder(data.train_folder)
        test_photos = jdata.load_image_folder(data.test_folder)
    else:
        train_photos, test_photos = jdata.load_sample_photos("train"), jdata.load_sample_photos("test")
    train = jdata.random_patches(train_photos, data.patch, data.train_patches, rng)
    test = jdata.grid_patches(test_photos, data.patch)
    test = test[rng.permutation(len(test))[:data.test_patches]]
    return train, test


def matched_baseline(model, target: int, example: dict) -> DiscretizedLogisticBaseline:
    """The baseline whose head width gives the parameter count closest to `target` (bisection).

    `model` is config.model.
    """
    def make(hidden: int) -> DiscretizedLogisticBaseline:
        return DiscretizedLogisticBaseline(hidden=hidden, head_blocks=2, num_mixtures=model.mixtures,
                                           context_features=model.context_features,
                                           encoder_blocks=model.encoder_blocks, encoder=model.encoder,
                                           context_skip=model.context_skip, skip=model.skip)

    def size(hidden: int) -> int:
        shapes = jax.eval_shape(make(hidden).init, jax.random.PRNGKey(0), example["value"], example["context"])
        return count_params(shapes["params"])

    low, high = 1, 4 * max(model.hidden, 8)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if size(middle) <= target else (low, middle)
    return make(min((low, high), key=lambda h: abs(size(h) - target)))


def test_bits_per_dim(eval_step, state, pairs: dict, batch: int) -> float:
    """Mean test bits/dim over full batches of the test pairs."""
    count = (len(pairs["value"]) // batch) * batch
    if count == 0:
        raise ValueError(f"need at least one full batch of test pairs: `data.test_patches` ({len(pairs['value'])}) "
                         f"< `train.batch` ({batch}).")
    # Device scalars, fetched once at the end.
    values = [eval_step(state, {k: v[i:i + batch] for k, v in pairs.items()})["bits_per_dim"]
              for i in range(0, count, batch)]
    return float(jnp.mean(jnp.stack(values)))


def image_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean PSNR and SSIM of host images [N, H, W, C]."""
    return {"psnr": float(jnp.mean(metrics.psnr(predicted, truth))),
            "ssim": float(jnp.mean(metrics.ssim(predicted, truth)))}


def draw(path, columns: dict[str, np.ndarray], examples: int) -> None:
    """One row per example, one column per entry of `columns` (title -> images [N, H, W, C])."""
    image_grid([[(images[row], title if row == 0 else "") for title, images in columns.items()]
                for row in range(examples)], path, panel_size=(1.6, 1.6), dpi=120)


def main(argv: list[str] | None = None) -> dict:
    command = parse_command_line(argv, "superres", __doc__)
    _hosts.start(command.distributed)
    config = command.config
    data, model_config, train = config.data, config.model, config.train
    out = _hosts.output_dir(command.out)
    start = time.time()
    train_patches, test_patches = load_patches(data, config.seed)
    # Device arrays holding the global value on every process: the mesh-sharded steps split them (host numpy
    # would be taken as this process's share of the batch).
    test = jax.jit(lambda x: jdata.make_pairs(x, data.factor))(test_patches)
    batches = lambda seed: jdata.SuperResolutionBatches(train_patches, train.batch, data.factor, seed=seed)  # noqa: E731
    example = {k: v[:train.batch] for k, v in test.items()}

    glow = jcnf.flows.SuperResolutionGlow if model_config.context_skip else jcnf.ConditionalGlow
    skip = {"skip": model_config.skip} if model_config.context_skip else {}
    flow = glow(levels=model_config.levels, steps=model_config.flow_steps, hidden=model_config.hidden,
                context_features=model_config.context_features, encoder_blocks=model_config.encoder_blocks,
                encoder=model_config.encoder, **skip)
    if model_config.dequantization not in ("uniform", "variational"):
        raise ValueError(f"`model.dequantization` must be 'uniform' or 'variational'; got "
                         f"{model_config.dequantization!r}.")
    if model_config.dequantization == "variational":
        dequantizer = VariationalDequantizer(levels=1, steps=2, hidden=max(model_config.hidden // 2, 8),
                                             context_features=max(model_config.context_features // 2, 8))
    else:
        dequantizer = uniform_dequantization(jdata.NUM_BINS)
    flow_size = count_params(jax.eval_shape(flow.init, jax.random.PRNGKey(0), example["value"],
                                            example["context"])["params"])
    baseline = matched_baseline(model_config, flow_size, example)

    results: dict = {"config": config.to_dict(), "device": str(jax.devices()[0]),
                     "train_patches": int(len(train_patches)), "test_patches": int(len(test_patches))}
    trained = {}
    for name, model, dq in (("cnf", flow, dequantizer), ("baseline", baseline, no_dequantization)):
        clock = time.time()
        optimizer = default_optimizer(train.lr, clip_norm=1.0, warmup=min(50, train.steps // 10),
                                      total_steps=train.steps + 1)
        state, history = fit(model, batches(config.seed), train.steps, optimizer=optimizer, dequantizer=dq,
                             seed=config.seed, log_every=max(train.steps // 10, 1),
                             metrics_path=_hosts.metrics_file(out, name))
        trained[name] = state
        results[name] = {"params": count_params(state.params["flow"]),
                         "params_dequantizer": count_params(state.params.get("dequantizer", {})),
                         "train_seconds": time.time() - clock,
                         "train_bits_per_dim_last": history[-1]["bits_per_dim"],
                         "test_bits_per_dim": test_bits_per_dim(mle_eval_step(model, dequantizer=dq), state, test,
                                                                train.batch)}

    truth = np.asarray(test["value"])
    rng = jax.random.PRNGKey(config.seed + 1)
    columns = {f"low-res /{data.factor}": np.asarray(jax.image.resize(test["context"], truth.shape, "nearest")),
               "bicubic": np.asarray(jdata.bicubic_upsample(test["context"], data.factor))}
    results["bicubic"] = image_scores(columns["bicubic"], truth)
    sample_baseline = sample_step(baseline)
    # Samples are split over the global mesh: gathered from every process before any host-side score.
    columns["baseline mode"] = _hosts.to_host(sample_baseline(trained["baseline"], rng, test["context"], 0.0))
    results["baseline"].update(mode=image_scores(columns["baseline mode"], truth))
    sample_flow = sample_step(flow)
    results["cnf"]["samples"] = {}
    for temperature in TEMPERATURES:
        # A flow sample is a dequantized value; its 8-bit image is the bin it falls in.
        sample = _hosts.to_host(jdata.quantize(sample_flow(trained["cnf"], rng, test["context"], temperature)))
        columns[f"CNF T={temperature:g}"] = sample
        results["cnf"]["samples"][f"{temperature:g}"] = image_scores(sample, truth)
    columns["ground truth"] = truth
    results["cnf_beats_baseline_bpd"] = results["cnf"]["test_bits_per_dim"] < results["baseline"]["test_bits_per_dim"]
    results["total_seconds"] = time.time() - start
    draw(out / "samples.png", columns, min(config.eval.figure_examples, len(truth)))
    _hosts.write_outputs(out, config, results)
    if _hosts.is_writer():
        print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=2))
    return results


if __name__ == "__main__":
    main()
