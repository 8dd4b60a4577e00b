"""Evaluation metrics: likelihood in bits per dimension, image quality, segmentation, calibration, C2ST.

Two kinds of function live here, and each docstring says which it is:

- jax.numpy metrics (`nats_to_bits_per_dim`, `bits_per_dim`, `psnr`, `ssim`,
  `snr_db`, `mean_image_scores`, `calibration_within_k_std`, `posterior_coverage`) are pure array maps with static
  shapes: they run on device and under `jax.jit`, so training and sampling
  loops can log them without a host round-trip.
- numpy metrics (`precision_recall_curve`, `max_f1`, `average_precision`,
  `roc_auc`, `precision_recall_f1`, `expected_calibration_error`, `c2st`) sort
  scores, select masked entries or fit a classifier, so their sizes depend on
  the data. They are for
  evaluation on the host, take scikit-learn's order (ground truth first:
  `y_true, y_score` or `y_true, y_pred` or `y_true, y_prob`), and return
  Python floats or numpy arrays; the ranking metrics are scikit-learn's, and `c2st`
  (reference first) trains scikit-learn's MLP classifier.

Every function validates its inputs and raises `ValueError` naming the
argument, the expected and the received shape or range. Checks on values
(ranges, signs) run only on concrete inputs; under `jax.jit` only the static
shape and dtype checks run.
"""

from jcnf.metrics.c2st import c2st
from jcnf.metrics.calibration import calibration_within_k_std, expected_calibration_error, posterior_coverage
from jcnf.metrics.images import mean_image_scores, psnr, snr_db, ssim
from jcnf.metrics.likelihood import bits_per_dim, dequantization_offset, nats_to_bits_per_dim
from jcnf.metrics.segmentation import average_precision, max_f1, precision_recall_curve, precision_recall_f1, roc_auc

__all__ = [
    "average_precision",
    "bits_per_dim",
    "c2st",
    "calibration_within_k_std",
    "dequantization_offset",
    "expected_calibration_error",
    "max_f1",
    "mean_image_scores",
    "nats_to_bits_per_dim",
    "posterior_coverage",
    "precision_recall_curve",
    "precision_recall_f1",
    "psnr",
    "roc_auc",
    "snr_db",
    "ssim",
]
