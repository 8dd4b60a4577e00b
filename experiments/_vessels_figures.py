"""Figures of experiments.vessels: PR curves and sample scatter, capillary calibration, samples, soft images."""

from __future__ import annotations

import numpy as np

from experiments._figures import image_grid, pyplot, save
from jcnf import metrics

# --------------------------------------------------------------------------


def pr(soft_by_model, labels, fov, scores, path):
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


def scatter(scores, path, reference_name):
    fig, ax = pyplot().subplots(figsize=(5, 5))
    for name, colour in zip(scores, ("C0", "C1"), strict=False):
        pr = scores[name]["_per_image_pr"].reshape(-1, 2)
        ax.scatter(pr[:, 1], pr[:, 0], s=6, alpha=0.4, color=colour, label=f"{name} samples (per image)")
        ax.plot(scores[name]["sample_recall_mean"], scores[name]["sample_precision_mean"], "X", color=colour,
                ms=12, mec="k", label=f"{name} mean")
    reference = next(iter(scores.values()))["_reference_pr"]
    ax.plot(reference[:, 1], reference[:, 0], "k*", ms=10, label=reference_name)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
           title="Samples in PR space against the first annotator")
    ax.legend(loc="lower left", fontsize=8)
    save(fig, path)


def capillaries(scores, path):
    fig, ax = pyplot().subplots(figsize=(5, 5))
    for name, colour in zip(scores, ("C0", "C1"), strict=False):
        presence, frequency = scores[name]["_capillary"].T
        ax.scatter(presence, frequency, s=14, alpha=0.7, color=colour,
                   label=f"{name} (mean |error| {scores[name]['capillary_calibration_error']:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set(xlabel="true probability that the capillary is present", ylabel="fraction of samples holding it",
           xlim=(0, 1), ylim=(-0.02, 1.02), title="Faint capillaries: segment-level calibration")
    ax.legend(loc="upper left", fontsize=8)
    save(fig, path)


def samples(test, flow_samples, baseline_samples, path, images=3, per_model=4):
    rows = []
    for row in range(min(images, test["value"].shape[0])):
        panels = [(test["image"][row], "image"), (test["value"][row, ..., 0], "truth")]
        panels += [(flow_samples[s, row, ..., 0], f"CNF {s}") for s in range(per_model)]
        panels += [(baseline_samples[s, row, ..., 0], f"factorized {s}") for s in range(per_model)]
        rows.append(panels)
    image_grid(rows, path, fontsize=7)


def soft(test, soft_by_model, path, images=4):
    rows = []
    for row in range(min(images, test["value"].shape[0])):
        panels = [(test["image"][row], "image"), (test["value"][row, ..., 0], "truth")]
        panels += [(soft[row, ..., 0], f"{name} soft") for name, soft in soft_by_model.items()]
        rows.append(panels)
    image_grid(rows, path, cmap="magma", panel_size=(1.75, 1.8))


def retina(image, flow_soft, flow_sample, baseline_soft, path):
    image_grid([[(image, "skimage.data.retina()"), (flow_soft, "CNF soft image"), (flow_sample, "one CNF sample"),
                 (baseline_soft, "factorized soft image")]], path, cmap="magma", panel_size=(3.25, 3.6), fontsize=12)
