"""The classifier two-sample test (C2ST) that scores approximate posteriors against reference samples.

A classifier is trained to tell `samples` from `reference`; its
cross-validated accuracy is 0.5 when the two sets come from the same
distribution and approaches 1.0 as they separate. The classifier and
protocol are those of the simulation-based-inference benchmark (sbibm,
Lueckmann et al. 2021), so figures are comparable with published ones:

- both sets are z-scored with the reference's mean and standard deviation;
- an sklearn `MLPClassifier`, two hidden layers of 10 * dim ReLU units,
  adam, `max_iter` 1000, early stopping off;
- accuracy averaged over shuffled stratified k-fold cross-validation.

A numpy metric for evaluation on the host: it returns a Python float.
"""

from __future__ import annotations

import warnings

import numpy as np
from jax.typing import ArrayLike

from jcnf._checks import describe

MIN_ROWS_PER_FOLD = 2  # every class must reach every fold's test and training split


def _check_samples(name: str, x: np.ndarray, folds: int) -> None:
    if x.ndim != 2:
        raise ValueError(f"`{name}` must have shape [num_samples, dim]; got {describe(x)}.")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"`{name}` must be a numeric array; got {describe(x)}.")
    if x.shape[0] < MIN_ROWS_PER_FOLD * folds:
        raise ValueError(f"`{name}` needs at least {MIN_ROWS_PER_FOLD * folds} rows for {folds}-fold "
                         f"cross-validation; got {describe(x)}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{name}` holds non-finite values ({describe(x)}).")


def c2st(reference: ArrayLike, samples: ArrayLike, *, seed: int = 0, folds: int = 5, max_iter: int = 1000) -> float:
    """Classifier two-sample test accuracy of `samples` against `reference`.

    Args:
      reference: samples of the reference distribution, shape [n, dim].
      samples: samples to score, shape [m, dim] (same dim; m need not equal n,
        but the accuracy's chance level is then max(n, m) / (n + m), not 0.5).
      seed: seeds the classifier's initialization and the fold split.
      folds: number of stratified cross-validation folds (>= 2).
      max_iter: the classifier's epoch limit (sbibm's 1000).

    Returns:
      The mean held-out accuracy over the folds, in [0, 1].

    Raises:
      ValueError: an input is not a finite 2-D numeric array, the dims differ,
        there are too few rows for the folds, or `folds` < 2.
    """
    # sklearn is imported here: it is needed only by the evaluation metrics, not by training code.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neural_network import MLPClassifier

    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"`folds` must be an integer >= 2; got {folds!r}.")
    reference, samples = np.asarray(reference), np.asarray(samples)
    _check_samples("reference", reference, folds)
    _check_samples("samples", samples, folds)
    if samples.shape[1] != reference.shape[1]:
        raise ValueError(f"`samples` must have the dim of `reference` ({reference.shape[1]}); got {describe(samples)}.")
    dim = reference.shape[1]
    mean = reference.mean(axis=0)
    # A constant reference coordinate would divide by zero; it then stays unscaled.
    std = np.where(reference.std(axis=0) > 0, reference.std(axis=0), 1.0)
    data = np.concatenate([(reference - mean) / std, (samples - mean) / std]).astype(np.float64)
    target = np.concatenate([np.zeros(len(reference)), np.ones(len(samples))])
    classifier = MLPClassifier(hidden_layer_sizes=(10 * dim, 10 * dim), activation="relu", solver="adam",
                               max_iter=max_iter, early_stopping=False, random_state=seed)
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # The epoch cap is part of the protocol: sbibm's published accuracies include classifiers stopped
        # by it (on near-identical samples the loss keeps creeping down), so reaching it is not an error.
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(classifier, data, target, cv=split, scoring="accuracy")
    return float(np.mean(scores))
