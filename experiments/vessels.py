r"""Retinal vessel segmentation with a conditional flow and half-infinite dequantization.

Trains a ConditionalGlow on binary vessel masks given a fundus image, with
`BinaryDequantizer` lifting each label to its half-line (Winkler et al. 2019),
and a factorized Bernoulli baseline with the same encoder, steps and batch.
Both are scored inside the field of view on held-out images: the soft image
(mean of N binarized samples for the flow, sigmoid of the logits for the
baseline) by max F1, AUC-PR, ROC-AUC and expected calibration error; every
sample by its precision and recall. Finally both models segment the fundus
photograph scikit-image ships (no mask: a qualitative figure).

    python -m experiments.vessels --out out/vessels                     # synthetic, CPU, minutes
    python -m experiments.vessels --config experiments/configs/vessels.py:paper \
        --config.data.drive_dir=~/downloads --out out/vessels_drive       # DRIVE at full size, GPU

Settings: experiments/configs/vessels.py (default, paper, smoke); `--config.KEY=VALUE` overrides one.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage
from skimage import data as skdata
from skimage import transform as sktransform

import jcnf
from experiments import _hosts
from experiments._config import parse_command_line
from experiments._figures import image_grid, pyplot, save
from jcnf import metrics
from jcnf.baselines import FactorizedBernoulli
from jcnf.data.fundus import fundus_context, random_crops, synthetic_fundus
from jcnf.dequantize import BinaryDequantizer, binarize

# --------------------------------------------------------------------------
# Data.
# --------------------------------------------------------------------------


def _pad_to_multiple(array: np.ndarray, multiple: int) -> np.ndarray:
    """Zero-pads [N, H, W, C] at the bottom and right to multiples of `multiple`."""
    height, width = array.shape[1:3]
    pad = ((0, 0), (0, -height % multiple), (0, -width % multiple), (0, 0))
    return np.pad(array, pad)


def _load(config) -> tuple[dict, dict]:
    """Training crops {"value", "context"} and full test images {"value", "context", "fov", "image"}."""
    data = config.data
    rng = np.random.default_rng(config.seed)
    if data.source not in ("synthetic", "drive"):
        raise ValueError(f"`data.source` must be 'synthetic' or 'drive'; got {data.source!r}.")
    if data.source == "synthetic":
        train = synthetic_fundus(rng, data.train_images, data.size)
        test = synthetic_fundus(rng, data.test_images, data.size)
    else:
        from jcnf.data.drive import load_drive
        train = load_drive("train", data.tfds_dir or None, data.drive_dir or None)
        test = load_drive("test", data.tfds_dir or None, data.drive_dir or None)
        test = {key: value[:data.test_images] for key, value in test.items()}
    multiple = 2 ** config.model.levels
    prepared = []
    for split in (train, test):
        prepared.append({"value": _pad_to_multiple(split["vessels"] * split["fov"], multiple),
                         "context": _pad_to_multiple(fundus_context(split["image"], split["fov"]), multiple),
                         "fov": _pad_to_multiple(split["fov"], multiple).astype(bool),
                         "image": _pad_to_multiple(split["image"], multiple)})
    crops = random_crops(rng, {"value": prepared[0]["value"], "context": prepared[0]["context"]},
                         data.crop, data.crops)
    return crops, prepared[1]


# --------------------------------------------------------------------------
# Models.
# --------------------------------------------------------------------------


def _train(model, crops, config, out, name, dequantizer=None):
    train = config.train
    result = jcnf.train.fit(model, crops, steps=train.steps, batch_size=train.batch, seed=config.seed,
                            optimizer=jcnf.train.default_optimizer(train.lr, warmup=min(100, train.steps // 10 + 1)),
                            dequantizer=dequantizer, metrics_path=_hosts.metrics_file(out, name),
                            log_every=max(1, min(100, train.steps // 4)))
    return result.state, result.history


def _draws(sample, variables, context, num_samples, rng):
    """[S, ...] stacked draws of `sample(variables, key, context)` (jitted), fetched to the host once."""
    return np.asarray(jnp.stack([sample(variables, key, context) for key in jax.random.split(rng, num_samples)]))


def _flow_samples(model, flow_params, context, num_samples, rng):
    """Binarized flow samples [S, B, H, W, 1]."""
    # The flow was trained on crops; the same parameters apply to whole images. They are replicated over the
    # global mesh: one host copy, sampled on this process's device.
    params = jcnf.flows.with_event_shape(model, _hosts.to_host(flow_params), context.shape[1:3] + (1,))
    # Parameters and context are arguments, not closed-over constants, which
    # XLA would try to constant-fold through the whole network.
    sample = jax.jit(lambda params, key, context: binarize(model.apply({"params": params}, key, context,
                                                                       method="sample")))
    return _draws(sample, params, context, num_samples, rng)


def _flow_test_bpp(model, dequantizer, state, batch, rng, draws=4):
    """Negative ELBO in bits per pixel on the test batch, mean over `draws` dequantization draws."""
    # The flow was trained on crops; the same parameters score whole images.
    flow_params = jcnf.flows.with_event_shape(model, state.params["flow"], batch["value"].shape[1:])
    state = state.replace(params={**state.params, "flow": flow_params})
    evaluate = jcnf.train.mle_eval_step(model, dequantizer=dequantizer)
    return float(np.mean([float(evaluate(state, batch, key)["bits_per_dim"]) for key in jax.random.split(rng, draws)]))


# --------------------------------------------------------------------------
# Scores.
# --------------------------------------------------------------------------


def _components(binary_images: np.ndarray) -> float:
    """Mean number of 8-connected foreground components per image [N, H, W, 1]."""
    structure = np.ones((3, 3), bool)
    return float(np.mean([ndimage.label(image[..., 0], structure)[1] for image in binary_images]))


def _score(soft, samples, labels, fov) -> dict:
    """Soft-image metrics and per-sample precision / recall, all inside the FOV."""
    f1, threshold = metrics.max_f1(labels, soft, fov)
    per_sample = np.array([metrics.precision_recall_f1(labels, sample, fov) for sample in samples])
    per_image = np.array([[metrics.precision_recall_f1(labels[b], sample[b], fov[b])[:2]
                           for b in range(labels.shape[0])] for sample in samples])
    precision, recall = per_sample[:, 0], per_sample[:, 1]
    return {
        "max_f1": f1, "max_f1_threshold": threshold,
        "auc_pr": metrics.average_precision(labels, soft, fov),
        "roc_auc": metrics.roc_auc(labels, soft, fov),
        "ece": metrics.expected_calibration_error(labels, soft, num_bins=10, mask=fov),
        "sample_precision_mean": float(precision.mean()), "sample_precision_std": float(precision.std()),
        "sample_recall_mean": float(recall.mean()), "sample_recall_std": float(recall.std()),
        "sample_f1_mean": float(per_sample[:, 2].mean()),
        # Distance of the samples from the ground truth's own point (1, 1) in PR space.
        "sample_distance_to_truth": float(np.mean(np.hypot(1.0 - precision, 1.0 - recall))),
        "sample_vessel_fraction": float(np.mean([sample[fov].mean() for sample in samples])),
        "truth_vessel_fraction": float(labels[fov].mean()),
        # Structure, which pixel-wise precision and recall do not see: a
        # sample of independent pixels breaks vessels into many fragments.
        "sample_components_per_image": float(np.mean([_components(sample * fov) for sample in samples])),
        "truth_components_per_image": _components(labels * fov),
        "_per_image_pr": per_image,
    }


# --------------------------------------------------------------------------
# Figures.
# --------------------------------------------------------------------------


def _figure_pr(soft_by_model, labels, fov, scores, path):
    fig, ax = pyplot().subplots(figsize=(5, 5))
    for (name, soft), colour in zip(soft_by_model.items(), ("C0", "C1"), strict=False):
        precision, recall, _ = metrics.precision_recall_curve(labels, soft, fov)
        ax.plot(recall, precision, colour, label=f"{name} (AP {scores[name]['auc_pr']:.3f})")
        best = np.argmax(2 * precision * recall / np.maximum(precision + recall, 1e-12))
        ax.plot(recall[best], precision[best], "o", color=colour, ms=8,
                label=f"{name} max F1 {scores[name]['max_f1']:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="Soft images, inside the FOV")
    ax.legend(loc="lower left")
    save(fig, path)


def _figure_scatter(scores, path):
    fig, ax = pyplot().subplots(figsize=(5, 5))
    for name, colour in zip(scores, ("C0", "C1"), strict=False):
        pr = scores[name]["_per_image_pr"].reshape(-1, 2)
        ax.scatter(pr[:, 1], pr[:, 0], s=6, alpha=0.4, color=colour, label=f"{name} samples (per image)")
        ax.plot(scores[name]["sample_recall_mean"], scores[name]["sample_precision_mean"], "X", color=colour,
                ms=12, mec="k", label=f"{name} mean")
    ax.plot(1, 1, "k*", ms=14, label="ground truth")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title="Samples in PR space")
    ax.legend(loc="lower left", fontsize=8)
    save(fig, path)


def _figure_samples(test, flow_samples, baseline_samples, path, images=3, per_model=4):
    rows = []
    for row in range(min(images, test["value"].shape[0])):
        panels = [(test["image"][row], "image"), (test["value"][row, ..., 0], "truth")]
        panels += [(flow_samples[s, row, ..., 0], f"CNF {s}") for s in range(per_model)]
        panels += [(baseline_samples[s, row, ..., 0], f"factorized {s}") for s in range(per_model)]
        rows.append(panels)
    image_grid(rows, path, fontsize=7)


def _figure_soft(test, soft_by_model, path, images=4):
    rows = []
    for row in range(min(images, test["value"].shape[0])):
        panels = [(test["image"][row], "image"), (test["value"][row, ..., 0], "truth")]
        panels += [(soft[row, ..., 0], f"{name} soft") for name, soft in soft_by_model.items()]
        rows.append(panels)
    image_grid(rows, path, cmap="magma", panel_size=(1.75, 1.8))


def _real_retina(size: int, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's fundus photograph at `size` pixels: image [1, S, S, 3] in [0, 1], FOV [1, S, S, 1]."""
    photo = skdata.retina().astype(np.float64) / 255.0
    image = sktransform.resize(photo, (size, size), anti_aliasing=True)
    # The FOV is the bright disc on a black surround; its red channel separates them.
    fov = sktransform.resize(photo[..., 0] > 0.1, (size, size), order=0)[..., None]
    return (_pad_to_multiple(image[None].astype(np.float32), multiple),
            _pad_to_multiple(fov[None], multiple).astype(bool))


def _figure_retina(image, flow_soft, flow_sample, baseline_soft, path):
    image_grid([[(image, "skimage.data.retina()"), (flow_soft, "CNF soft image"), (flow_sample, "one CNF sample"),
                 (baseline_soft, "factorized soft image")]], path, cmap="magma", panel_size=(3.25, 3.6), fontsize=12)


# --------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    command = parse_command_line(argv, "vessels", __doc__)
    _hosts.start(command.distributed)
    config = command.config
    model_config = config.model
    out = _hosts.output_dir(command.out)
    start = time.time()
    crops, test = _load(config)
    labels, fov = test["value"] > 0.5, test["fov"]

    flow = jcnf.ConditionalGlow(levels=model_config.levels, steps=model_config.flow_steps, hidden=model_config.hidden,
                                context_features=model_config.context_features,
                                encoder_blocks=model_config.encoder_blocks)
    dequantizer = BinaryDequantizer(hidden=model_config.dequantizer_hidden)
    baseline = FactorizedBernoulli(features=model_config.baseline_features, blocks=model_config.baseline_blocks,
                                   hidden=model_config.baseline_features, positive_weight=model_config.positive_weight)

    clock = time.time()
    flow_state, flow_history = _train(flow, crops, config, out, "cnf", dequantizer)
    flow_seconds = time.time() - clock
    clock = time.time()
    baseline_state, baseline_history = _train(baseline, crops, config, out, "baseline")
    baseline_seconds = time.time() - clock

    rng = jax.random.PRNGKey(config.seed + 1)
    sample_rng, baseline_rng, bound_rng, retina_rng = jax.random.split(rng, 4)
    context = jnp.asarray(test["context"])
    flow_samples = _flow_samples(flow, flow_state.params["flow"], context, config.eval.samples, sample_rng)
    baseline_variables = {"params": _hosts.to_host(baseline_state.params["flow"])}
    baseline_soft = np.asarray(baseline.apply(baseline_variables, context, method="probabilities"))
    draw = jax.jit(lambda variables, key, context: baseline.apply(variables, key, context, method="sample"))
    baseline_samples = _draws(draw, baseline_variables, context, config.eval.samples, baseline_rng)
    flow_soft = flow_samples.mean(axis=0)
    soft_by_model = {"CNF": flow_soft, "factorized": baseline_soft}
    scores = {"CNF": _score(flow_soft, flow_samples, labels, fov),
              "factorized": _score(baseline_soft, baseline_samples, labels, fov)}

    test_batch = {"value": jnp.asarray(test["value"]), "context": context}
    test_bpp_cnf = _flow_test_bpp(flow, dequantizer, flow_state, test_batch, bound_rng)
    test_bpp_baseline = float(jcnf.train.mle_eval_step(baseline)(baseline_state, test_batch)["bits_per_dim"])

    _figure_pr(soft_by_model, labels, fov, scores, out / "pr_curves.png")
    _figure_scatter(scores, out / "pr_scatter.png")
    _figure_samples(test, flow_samples, baseline_samples, out / "samples.png")
    _figure_soft(test, soft_by_model, out / "soft_images.png")
    if config.eval.retina_size:
        image, retina_fov = _real_retina(config.eval.retina_size, 2 ** model_config.levels)
        retina_context = jnp.asarray(fundus_context(image, retina_fov))
        retina_samples = _flow_samples(flow, flow_state.params["flow"], retina_context, min(config.eval.samples, 16),
                                       retina_rng)
        retina_baseline = np.asarray(baseline.apply(baseline_variables, retina_context, method="probabilities"))
        mask = retina_fov[0, ..., 0]
        _figure_retina(image[0], retina_samples.mean(0)[0, ..., 0] * mask, retina_samples[0, 0, ..., 0] * mask,
                       retina_baseline[0, ..., 0] * mask, out / "retina.png")

    cnf, fac = scores["CNF"], scores["factorized"]
    results = {
        "config": config.to_dict(),
        "test_bits_per_pixel": {"CNF_negative_elbo": test_bpp_cnf, "factorized_nll": test_bpp_baseline},
        "train_bits_per_pixel_last": {"CNF": flow_history[-1].get("bits_per_dim") if flow_history else None,
                                      "factorized": baseline_history[-1].get("bits_per_dim")
                                      if baseline_history else None},
        "scores": {name: {key: value for key, value in entry.items() if not key.startswith("_")}
                   for name, entry in scores.items()},
        "claims": {
            "cnf_samples_closer_to_truth_in_pr": cnf["sample_distance_to_truth"] < fac["sample_distance_to_truth"],
            "cnf_ece_lower": cnf["ece"] < fac["ece"],
            "cnf_sample_components_closer_to_truth": (
                abs(cnf["sample_components_per_image"] - cnf["truth_components_per_image"])
                < abs(fac["sample_components_per_image"] - fac["truth_components_per_image"])),
        },
        "parameters": {"CNF_flow": jcnf.train.count_params(flow_state.params["flow"]),
                       "CNF_dequantizer": jcnf.train.count_params(flow_state.params["dequantizer"]),
                       "factorized": jcnf.train.count_params(baseline_state.params["flow"])},
        "train_seconds": {"CNF": flow_seconds, "factorized": baseline_seconds},
        "total_seconds": time.time() - start,
        "device": str(jax.devices()[0]),
    }
    _hosts.write_outputs(out, config, results)
    if _hosts.is_writer():
        print(json.dumps({key: results[key] for key in ("test_bits_per_pixel", "scores", "claims", "total_seconds")},
                         indent=2, default=float))
    return results


if __name__ == "__main__":
    main()
