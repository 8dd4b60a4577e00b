r"""Retinal vessel segmentation with a conditional flow and half-infinite dequantization.

Trains a ConditionalGlow on binary vessel masks given a fundus image, with
`BinaryDequantizer` lifting each label to its half-line (Winkler et al. 2019),
and a factorized Bernoulli baseline with the same data, steps and batch. The
default data are `jcnf.data.annotators.structured_fundus`: several annotators
per image whose labels disagree in structured ways (whole faint capillaries
present or absent, per-segment widths), so the true p(y | x) does not
factorize over pixels. Both models are scored inside the field of view on
held-out images against the first annotator: test bits per pixel; every
sample's precision and recall, compared with the second annotator's;
connected components per sample; how often a sample holds each faint
capillary against its true probability; and the soft image (mean of
binarized samples for the flow, sigmoid of the logits for the baseline) by
max F1, AUC-PR, ROC-AUC and calibration error. Finally both models segment the
fundus photograph scikit-image ships (no mask: a qualitative figure).

    python -m experiments.vessels --out out/vessels                     # structured synthetic, CPU, minutes
    python -m experiments.vessels --config.data.source=synthetic --out out/vessels_noise  # pixel-noise control
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
from experiments import _vessels_figures as figures
from experiments._config import parse_command_line
from jcnf import metrics
from jcnf.baselines import FactorizedBernoulli
from jcnf.data.annotators import structured_fundus
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
    """Training crops {"value", "context"} and full test images.

    The test dict holds "value" (first annotator), "context", "fov", "image",
    "second" (second annotator, or None), "annotations" [A, N, H, W, 1] (every
    annotation there is) and, for structured data, "capillary_cores" [N, K, H, W]
    and "capillary_presence" [N, K].
    """
    data = config.data
    rng = np.random.default_rng(config.seed)
    if data.source not in ("structured", "synthetic", "drive"):
        raise ValueError(f"`data.source` must be 'structured', 'synthetic' or 'drive'; got {data.source!r}.")
    if data.source == "structured":
        train, test = (structured_fundus(rng, count, data.size, data.annotators, data.capillaries)
                       for count in (data.train_images, data.test_images))
        # Every training annotation is one (image, label) pair: the model sees the label distribution.
        annotators = train["vessels"].shape[1]
        train = {"vessels": train["vessels"].reshape((-1,) + train["vessels"].shape[2:]),
                 **{key: np.repeat(train[key], annotators, axis=0) for key in ("image", "fov")}}
        annotations = np.moveaxis(test["vessels"], 1, 0)
        test = {**test, "vessels": annotations[0], "second": annotations[1], "annotations": annotations}
    elif data.source == "synthetic":
        train = synthetic_fundus(rng, data.train_images, data.size)
        test = synthetic_fundus(rng, data.test_images, data.size)
        test = {**test, "second": None, "annotations": test["vessels"][None]}
    else:
        from jcnf.data.drive import load_drive
        train = load_drive("train", data.tfds_dir or None, data.drive_dir or None)
        test = load_drive("test", data.tfds_dir or None, data.drive_dir or None)
        test = {key: value[:data.test_images] for key, value in test.items()}
        second = test["vessels_2nd"] if test["has_2nd"].all() else None
        test = {**test, "second": second, "annotations": test["vessels"][None]}
    multiple = 2 ** config.model.levels
    pad = lambda array: _pad_to_multiple(array, multiple)  # noqa: E731
    prepared = []
    for split in (train, test):
        prepared.append({"value": pad(split["vessels"] * split["fov"]),
                         "context": pad(fundus_context(split["image"], split["fov"])),
                         "fov": pad(split["fov"]).astype(bool), "image": pad(split["image"])})
    crops = random_crops(rng, {"value": prepared[0]["value"], "context": prepared[0]["context"]},
                         data.crop, data.crops)
    test_out = prepared[1]
    test_out["second"] = None if test["second"] is None else pad(test["second"] * test["fov"])
    test_out["annotations"] = np.stack([pad(a * test["fov"]) for a in test["annotations"]])
    if "capillary_cores" in test:
        test_out["capillary_cores"] = np.moveaxis(pad(np.moveaxis(test["capillary_cores"], 1, -1)), -1, 1)
        test_out["capillary_presence"] = test["capillary_presence"]
    return crops, test_out


# --------------------------------------------------------------------------
# Models.
# --------------------------------------------------------------------------


def _train(model, crops, config, out, name, dequantizer=None):
    train = config.train
    result = jcnf.train.fit(model, crops, steps=train.steps, batch_size=train.batch, seed=config.seed,
                            optimizer=jcnf.train.default_optimizer(train.lr, warmup=min(100, train.steps // 10 + 1)),
                            dequantizer=dequantizer, metrics_path=_hosts.metrics_file(out, name),
                            checkpoint_dir=_hosts.checkpoint_dir(out, name) if train.checkpoints else None,
                            log_every=max(1, min(100, train.steps // 4)))
    return result.state, result.history


def _draws(sample, variables, context, num_samples, rng):
    """[S, ...] stacked draws of `sample(variables, key, context)` (jitted), fetched to the host once."""
    return np.asarray(jnp.stack([sample(variables, key, context) for key in jax.random.split(rng, num_samples)]))


def _flow_sampler(model):
    """Jitted binarized sampling (params, key, context) -> [B, H, W, 1], built once so equal shapes compile once."""
    # Parameters and context are arguments, not closed-over constants, which
    # XLA would try to constant-fold through the whole network.
    return jax.jit(lambda params, key, context: binarize(model.apply({"params": params}, key, context,
                                                                     method="sample")))


def _flow_samples(model, sample, flow_params, context, num_samples, rng):
    """Binarized flow samples [S, B, H, W, 1] drawn by `sample` (`_flow_sampler(model)`)."""
    # The flow was trained on crops; the same parameters apply to whole images. They are replicated over the
    # global mesh: one host copy, sampled on this process's device.
    params = jcnf.flows.with_event_shape(model, _hosts.to_host(flow_params), context.shape[1:3] + (1,))
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


def _capillary_frequency(samples: np.ndarray, cores: np.ndarray) -> np.ndarray:
    """[N, K] fraction of samples [S, N, H, W, 1] that mark most of capillary k's core [N, K, H, W]."""
    marked = np.einsum("snhw,nkhw->snk", samples[..., 0].astype(np.float64), cores.astype(np.float64))
    return np.mean(marked >= 0.5 * np.maximum(cores.sum(axis=(2, 3)), 1), axis=0)


def _score(soft, samples, test) -> dict:
    """Soft-image metrics, per-sample precision / recall and structure, all inside the FOV.

    `samples` [S, N, H, W, 1] are scored against the first annotator; their
    per-image (precision, recall) points are compared with the second
    annotator's (or with the truth's own point (1, 1) when there is none).
    """
    labels, fov = test["value"] > 0.5, test["fov"]
    f1, threshold = metrics.max_f1(labels, soft, fov)
    per_image = np.array([[metrics.precision_recall_f1(labels[b], sample[b], fov[b])[:2]
                           for b in range(labels.shape[0])] for sample in samples])  # [S, N, 2]
    if test["second"] is None:
        reference = np.ones(per_image.shape[1:])
    else:
        reference = np.array([metrics.precision_recall_f1(labels[b], test["second"][b] > 0.5, fov[b])[:2]
                              for b in range(labels.shape[0])])
    precision, recall = per_image[..., 0], per_image[..., 1]
    scores = {
        "max_f1": f1, "max_f1_threshold": threshold,
        "auc_pr": metrics.average_precision(labels, soft, fov),
        "roc_auc": metrics.roc_auc(labels, soft, fov),
        "ece": metrics.expected_calibration_error(labels, soft, num_bins=10, mask=fov),
        "sample_precision_mean": float(precision.mean()), "sample_recall_mean": float(recall.mean()),
        "reference_precision_mean": float(reference[:, 0].mean()),
        "reference_recall_mean": float(reference[:, 1].mean()),
        # Distance in PR space from each sample's point to the second annotator's point on the same image.
        "sample_distance_to_reference": float(np.mean(np.hypot(*np.moveaxis(per_image - reference, -1, 0)))),
        "sample_vessel_fraction": float(np.mean([sample[fov].mean() for sample in samples])),
        "truth_vessel_fraction": float(np.mean([a[fov].mean() for a in test["annotations"]])),
        # Structure, which pixel-wise precision and recall do not see: a
        # sample of independent pixels breaks vessels into many fragments.
        "sample_components_per_image": float(np.mean([_components(sample * fov) for sample in samples])),
        "truth_components_per_image": float(np.mean([_components(a * fov) for a in test["annotations"]])),
        "_per_image_pr": per_image, "_reference_pr": reference,
    }
    if "capillary_cores" in test:
        # Capillaries an annotation can be read on: a core of at least 3 pixels no other vessel covers.
        valid = test["capillary_cores"].sum(axis=(2, 3)) >= 3
        frequency = _capillary_frequency(samples, test["capillary_cores"])[valid]
        presence = test["capillary_presence"][valid]
        scores.update({"capillaries_scored": int(valid.sum()),
                       "capillary_calibration_error": float(np.mean(np.abs(frequency - presence)))
                       if valid.any() else None,
                       "capillary_sample_frequency_mean": float(frequency.mean()) if valid.any() else None,
                       "capillary_presence_mean": float(presence.mean()) if valid.any() else None,
                       "_capillary": np.stack([presence, frequency], axis=-1)})
    return scores


# --------------------------------------------------------------------------
# Real photograph.
# --------------------------------------------------------------------------


def _real_retina(size: int, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's fundus photograph at `size` pixels: image [1, S, S, 3] in [0, 1], FOV [1, S, S, 1]."""
    photo = skdata.retina().astype(np.float64) / 255.0
    image = sktransform.resize(photo, (size, size), anti_aliasing=True)
    # The FOV is the bright disc on a black surround; its red channel separates them.
    fov = sktransform.resize(photo[..., 0] > 0.1, (size, size), order=0)[..., None]
    return (_pad_to_multiple(image[None].astype(np.float32), multiple),
            _pad_to_multiple(fov[None], multiple).astype(bool))


def _claims(scores: dict, bpp_cnf: float, bpp_factorized: float, reference_name: str) -> dict:
    """The paper's claims, each with its verdict on this run and the figures behind it."""
    cnf, fac = scores["CNF"], scores["factorized"]
    components = {name: abs(entry["sample_components_per_image"] - entry["truth_components_per_image"])
                  for name, entry in scores.items()}
    claims = {
        "cnf_samples_closer_to_second_annotator_in_pr": {
            "claim": "The CNF's samples lie closer to the second annotator in precision-recall space than a "
                     "factorized model's.",
            "holds": bool(cnf["sample_distance_to_reference"] < fac["sample_distance_to_reference"]),
            "evidence": f"mean PR distance of a sample to the {reference_name}: CNF "
                        f"{cnf['sample_distance_to_reference']:.3f}, "
                        f"factorized {fac['sample_distance_to_reference']:.3f}"},
        "cnf_better_bits_per_pixel": {
            "claim": "The CNF models the label distribution better than a factorized model (fewer test bits "
                     "per pixel).",
            "holds": bool(bpp_cnf < bpp_factorized),
            "evidence": f"test bits/pixel: CNF {bpp_cnf:.4f} (negative ELBO, an upper bound), "
                        f"factorized {bpp_factorized:.4f} (exact NLL)"},
        "cnf_components_closer_to_truth": {
            "claim": "The CNF's samples come closer to the true labels' number of connected vessel pieces than "
                     "a factorized model's, whose independent pixels fragment vessels.",
            "holds": bool(components["CNF"] < components["factorized"]),
            "evidence": f"components per sample: CNF {cnf['sample_components_per_image']:.1f}, factorized "
                        f"{fac['sample_components_per_image']:.1f}, truth {cnf['truth_components_per_image']:.1f}"},
    }
    if cnf.get("capillary_calibration_error") is not None:
        claims["cnf_segment_calibration_better"] = {
            "claim": "The CNF's samples hold each faint capillary as often as it is truly present (segment-level "
                     "calibration), better than a factorized model's.",
            "holds": bool(cnf["capillary_calibration_error"] < fac["capillary_calibration_error"]),
            "evidence": f"mean |sample frequency - true probability| over {cnf['capillaries_scored']} capillaries: "
                        f"CNF {cnf['capillary_calibration_error']:.3f}, factorized "
                        f"{fac['capillary_calibration_error']:.3f}"}
    return claims


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

    flow = jcnf.ConditionalGlow(levels=model_config.levels, blocks=model_config.blocks, hidden=model_config.hidden,
                                context_features=model_config.context_features,
                                encoder_blocks=model_config.encoder_blocks,
                                full_resolution_context=model_config.full_resolution_context)
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
    flow_sampler = _flow_sampler(flow)
    flow_samples = _flow_samples(flow, flow_sampler, flow_state.params["flow"], context, config.eval.samples,
                                 sample_rng)
    baseline_variables = {"params": _hosts.to_host(baseline_state.params["flow"])}
    baseline_soft = np.asarray(baseline.apply(baseline_variables, context, method="probabilities"))
    draw = jax.jit(lambda variables, key, context: baseline.apply(variables, key, context, method="sample"))
    baseline_samples = _draws(draw, baseline_variables, context, config.eval.samples, baseline_rng)
    flow_soft = flow_samples.mean(axis=0)
    soft_by_model = {"CNF": flow_soft, "factorized": baseline_soft}
    scores = {"CNF": _score(flow_soft, flow_samples, test), "factorized": _score(baseline_soft, baseline_samples, test)}

    test_batch = {"value": jnp.asarray(test["value"]), "context": context}
    test_bpp_cnf = _flow_test_bpp(flow, dequantizer, flow_state, test_batch, bound_rng)
    test_bpp_baseline = float(jcnf.train.mle_eval_step(baseline)(baseline_state, test_batch)["bits_per_dim"])

    reference_name = "ground truth" if test["second"] is None else "second annotator (per image)"
    if _hosts.is_writer():
        figures.pr(soft_by_model, test["value"] > 0.5, test["fov"], scores, out / "pr_curves.png")
        figures.scatter(scores, out / "pr_scatter.png", reference_name)
        figures.samples(test, flow_samples, baseline_samples, out / "samples.png")
        figures.soft(test, soft_by_model, out / "soft_images.png")
        if "capillary_cores" in test:
            figures.capillaries(scores, out / "capillaries.png")
    if config.eval.retina_size:
        image, retina_fov = _real_retina(config.eval.retina_size, 2 ** model_config.levels)
        retina_context = jnp.asarray(fundus_context(image, retina_fov))
        retina_samples = _flow_samples(flow, flow_sampler, flow_state.params["flow"], retina_context,
                                       min(config.eval.samples, 16), retina_rng)
        retina_baseline = np.asarray(baseline.apply(baseline_variables, retina_context, method="probabilities"))
        mask = retina_fov[0, ..., 0]
        if _hosts.is_writer():
            figures.retina(image[0], retina_samples.mean(0)[0, ..., 0] * mask, retina_samples[0, 0, ..., 0] * mask,
                           retina_baseline[0, ..., 0] * mask, out / "retina.png")

    results = {
        "config": config.to_dict(),
        "test_bits_per_pixel": {"CNF_negative_elbo": test_bpp_cnf, "factorized_nll": test_bpp_baseline},
        "train_bits_per_pixel_last": {"CNF": flow_history[-1].get("bits_per_dim") if flow_history else None,
                                      "factorized": baseline_history[-1].get("bits_per_dim")
                                      if baseline_history else None},
        "scores": {name: {key: value for key, value in entry.items() if not key.startswith("_")}
                   for name, entry in scores.items()},
        "claims": _claims(scores, test_bpp_cnf, test_bpp_baseline, reference_name),
        "parameters": {"CNF_flow": jcnf.train.count_params(flow_state.params["flow"]),
                       "CNF_dequantizer": jcnf.train.count_params(flow_state.params["dequantizer"]),
                       "factorized": jcnf.train.count_params(baseline_state.params["flow"])},
        "seconds": {"train_CNF": flow_seconds, "train_factorized": baseline_seconds, "total": time.time() - start},
        "device": str(jax.devices()[0]),
    }
    _hosts.write_outputs(out, config, results)
    if _hosts.is_writer():
        print(json.dumps({key: results[key] for key in ("test_bits_per_pixel", "scores", "claims", "seconds")},
                         indent=2, default=float))
    return results


if __name__ == "__main__":
    main()
