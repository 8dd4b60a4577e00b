"""Ranking and detection metrics of binary segmentations, computed by scikit-learn on the host.

numpy, host only: these metrics sort scores and select masked entries, so
their sizes depend on the data; they return Python floats or numpy arrays.
Each function takes scikit-learn's argument order, ground truth first,
`(y_true, y_score, mask=None)` or `(y_true, y_pred, mask=None)`, validates
its inputs (`ValueError` naming the argument), keeps the entries inside the
optional boolean field of view `mask`, and hands them to `sklearn.metrics`.
"""

from __future__ import annotations

import numpy as np
from jax.typing import ArrayLike
from sklearn import metrics as skl

from jcnf.metrics._validation import binary_labels, select_masked


def _require_positives(y_true: np.ndarray) -> None:
    if not y_true.any():
        raise ValueError("`y_true` has no positive entries (inside `mask`); recall is undefined.")


def precision_recall_curve(y_true: ArrayLike, y_score: ArrayLike, mask: ArrayLike | None = None,
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall of `y_score >= t` for every distinct score t.

    numpy, host only; `sklearn.metrics.precision_recall_curve`, which keeps
    every threshold: thresholds increase, and a final point (precision 1,
    recall 0) with no threshold closes the curve.

    Args:
      y_true: ground truth, any shape, bool or in {0, 1}; needs a positive entry.
      y_score: predicted scores or probabilities of the positive class, same shape.
      mask: optional boolean field of view, same shape; only True entries count.

    Returns:
      (precision, recall, thresholds) with shapes [t + 1], [t + 1] and [t],
      where t is the number of distinct scores.
    """
    y_true, y_score = select_masked(y_true, "y_score", y_score, mask)
    _require_positives(y_true)
    return skl.precision_recall_curve(y_true, y_score)


def max_f1(y_true: ArrayLike, y_score: ArrayLike, mask: ArrayLike | None = None) -> tuple[float, float]:
    """The best F1 score over all thresholds, and the threshold that reaches it.

    numpy, host only; F1 = 2 P R / (P + R) along
    `sklearn.metrics.precision_recall_curve`. Thresholds are the distinct
    scores and predict positive where `y_score >= threshold`; among
    thresholds with equal F1 the highest (fewest positives) is returned.

    Args:
      y_true: ground truth, any shape, bool or in {0, 1}; needs a positive entry.
      y_score: predicted scores of the positive class, same shape.
      mask: optional boolean field of view, same shape.

    Returns:
      (f1, threshold) as Python floats.
    """
    precision, recall, thresholds = precision_recall_curve(y_true, y_score, mask)
    # The closing point (1, 0) has no threshold. Where no true positive is
    # predicted both ratios are 0, and so is F1 (sklearn's zero_division=0).
    precision, recall = precision[:-1], recall[:-1]
    total = precision + recall
    f1 = np.divide(2.0 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    # Thresholds increase, so the last maximum is the highest threshold.
    best = f1.size - 1 - int(np.argmax(f1[::-1]))
    return float(f1[best]), float(thresholds[best])


def average_precision(y_true: ArrayLike, y_score: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Area under the precision-recall curve as the step sum AP = sum_n (R_n - R_{n-1}) P_n.

    numpy, host only; `sklearn.metrics.average_precision_score`: no
    interpolation between points, which would be optimistic for PR curves.

    Args:
      y_true: ground truth, any shape, bool or in {0, 1}; needs a positive entry.
      y_score: predicted scores of the positive class, same shape.
      mask: optional boolean field of view, same shape.

    Returns:
      Average precision in [0, 1], a Python float.
    """
    y_true, y_score = select_masked(y_true, "y_score", y_score, mask)
    _require_positives(y_true)
    return float(skl.average_precision_score(y_true, y_score))


def roc_auc(y_true: ArrayLike, y_score: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Area under the ROC curve (true- against false-positive rate), by the trapezoidal rule.

    numpy, host only; `sklearn.metrics.roc_auc_score`. Equal to the
    probability that a random positive scores above a random negative, with
    ties counted as one half.

    Args:
      y_true: ground truth, any shape, bool or in {0, 1}; needs both classes.
      y_score: predicted scores of the positive class, same shape.
      mask: optional boolean field of view, same shape.

    Returns:
      ROC AUC in [0, 1], a Python float.
    """
    y_true, y_score = select_masked(y_true, "y_score", y_score, mask)
    num_positives = int(np.count_nonzero(y_true))
    num_negatives = y_true.size - num_positives
    if num_positives == 0 or num_negatives == 0:
        raise ValueError(f"`y_true` must contain both classes (inside `mask`) for ROC AUC; got "
                         f"{num_positives} positive and {num_negatives} negative entries.")
    return float(skl.roc_auc_score(y_true, y_score))


def precision_recall_f1(y_true: ArrayLike, y_pred: ArrayLike, mask: ArrayLike | None = None,
                        ) -> tuple[float, float, float]:
    """Precision, recall and F1 of a hard (0/1) prediction, e.g. one thresholded sample.

    numpy, host only; `sklearn.metrics.precision_recall_fscore_support` of
    the positive class. A ratio with a zero denominator (no predicted or no
    true positives) is reported as 0 (`zero_division=0`).

    Args:
      y_true: ground truth, any shape, bool or in {0, 1}.
      y_pred: the prediction, same shape, bool or in {0, 1}.
      mask: optional boolean field of view, same shape.

    Returns:
      (precision, recall, f1) as Python floats.
    """
    binary_labels("y_pred", np.asarray(y_pred))
    y_true, y_pred = select_masked(y_true, "y_pred", y_pred, mask)
    precision, recall, f1, _ = skl.precision_recall_fscore_support(y_true, y_pred == 1.0, average="binary",
                                                                   zero_division=0.0)
    return float(precision), float(recall), float(f1)
