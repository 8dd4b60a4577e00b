"""Tests for jcnf.metrics.segmentation: agreement with scikit-learn, the mask, argument order, bad input."""

import numpy as np
import pytest
from sklearn import metrics as skl

from jcnf import metrics

pytestmark = pytest.mark.strict_dtypes

# The metrics hand their selected entries to scikit-learn, so they agree with
# a direct call exactly (measured 0); 1e-12 only allows for a future change
# of summation order inside scikit-learn between the two calls' code paths.
RANKING_ATOL = 1e-12


def _segmentation_case(seed, with_mask):
    """Scores with ties (rounded to 2 decimals) correlated with labels, and an optional field of view."""
    rng = np.random.default_rng(seed)
    labels = rng.random((2, 24, 24)) < 0.3
    scores = np.round(np.clip(0.3 * labels + 0.7 * rng.random(labels.shape), 0.0, 1.0), 2)
    mask = rng.random(labels.shape) < 0.6 if with_mask else None
    selected = (labels[mask], scores[mask]) if with_mask else (labels.ravel(), scores.ravel())
    return labels, scores, mask, selected


def _random_case(seed, with_mask):
    """Continuous float32 scores (no ties), 0/1 integer labels and an optional field of view."""
    rng = np.random.default_rng(100 + seed)
    labels = (rng.random((3, 11, 13)) < 0.4).astype(np.int32)
    scores = (labels + rng.standard_normal(labels.shape)).astype(np.float32)
    mask = rng.random(labels.shape) < 0.7 if with_mask else None
    selected = (labels[mask], scores[mask]) if with_mask else (labels.ravel(), scores.ravel())
    return labels, scores, mask, selected


CASES = [(seed, with_mask) for seed in (0, 1) for with_mask in (False, True)]


@pytest.mark.parametrize("seed, with_mask", CASES)
def test_precision_recall_curve_matches_sklearn(seed, with_mask):
    labels, scores, mask, (sel_labels, sel_scores) = _segmentation_case(seed, with_mask)
    precision, recall, thresholds = metrics.precision_recall_curve(labels, scores, mask)
    sk_precision, sk_recall, sk_thresholds = skl.precision_recall_curve(sel_labels, sel_scores)
    np.testing.assert_allclose(thresholds, sk_thresholds, atol=0)  # Both are the observed scores.
    np.testing.assert_allclose(precision, sk_precision, atol=RANKING_ATOL)
    np.testing.assert_allclose(recall, sk_recall, atol=RANKING_ATOL)


@pytest.mark.parametrize("seed, with_mask", CASES)
def test_average_precision_and_roc_auc_match_sklearn(seed, with_mask):
    labels, scores, mask, (sel_labels, sel_scores) = _segmentation_case(seed, with_mask)
    assert metrics.average_precision(labels, scores, mask) == pytest.approx(
        skl.average_precision_score(sel_labels, sel_scores), abs=RANKING_ATOL)
    assert metrics.roc_auc(labels, scores, mask) == pytest.approx(
        skl.roc_auc_score(sel_labels, sel_scores), abs=RANKING_ATOL)


@pytest.mark.parametrize("case", [_segmentation_case, _random_case], ids=["ties", "continuous"])
@pytest.mark.parametrize("seed, with_mask", CASES)
def test_max_f1_matches_brute_force_sklearn(case, seed, with_mask):
    labels, scores, mask, (sel_labels, sel_scores) = case(seed, with_mask)
    candidates = np.unique(sel_scores)[::-1]  # Highest first, so argmax picks the highest on ties.
    f1s = [skl.f1_score(sel_labels, sel_scores >= t) for t in candidates]
    best_f1, threshold = metrics.max_f1(labels, scores, mask)
    assert best_f1 == pytest.approx(max(f1s), abs=RANKING_ATOL)
    assert threshold == candidates[int(np.argmax(f1s))]  # An observed score, compared exactly.


@pytest.mark.parametrize("seed, with_mask", CASES)
def test_precision_recall_f1_matches_sklearn(seed, with_mask):
    labels, scores, mask, (sel_labels, sel_scores) = _segmentation_case(seed, with_mask)
    ours = metrics.precision_recall_f1(labels.astype(np.int32), (scores >= 0.5).astype(np.int32), mask)
    predicted = sel_scores >= 0.5
    expected = (skl.precision_score(sel_labels, predicted), skl.recall_score(sel_labels, predicted),
                skl.f1_score(sel_labels, predicted))
    np.testing.assert_allclose(ours, expected, atol=RANKING_ATOL)


@pytest.mark.parametrize("seed, with_mask", CASES)
def test_every_ranking_metric_equals_a_direct_sklearn_call_on_random_data(seed, with_mask):
    labels, scores, mask, (sel_labels, sel_scores) = _random_case(seed, with_mask)
    for ours, theirs in zip(metrics.precision_recall_curve(labels, scores, mask),
                            skl.precision_recall_curve(sel_labels, sel_scores), strict=False):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=RANKING_ATOL)
    assert metrics.average_precision(labels, scores, mask) == pytest.approx(
        skl.average_precision_score(sel_labels, sel_scores), abs=RANKING_ATOL)
    assert metrics.roc_auc(labels, scores, mask) == pytest.approx(
        skl.roc_auc_score(sel_labels, sel_scores), abs=RANKING_ATOL)
    predicted = (scores > 0.5).astype(np.int32)
    expected = skl.precision_recall_fscore_support(sel_labels, sel_scores > 0.5, average="binary")[:3]
    np.testing.assert_allclose(metrics.precision_recall_f1(labels, predicted, mask), expected,
                               rtol=0, atol=RANKING_ATOL)


def test_precision_recall_f1_with_no_predicted_positives_is_zero():
    # Precision is 0/0 here; the documented convention (and sklearn's zero_division=0) reports 0.
    labels = np.array([1, 0, 1, 0])
    assert metrics.precision_recall_f1(labels, np.zeros(4, bool)) == (0.0, 0.0, 0.0)
    assert metrics.precision_recall_f1(labels, np.array([1, 0, 0, 0])) == pytest.approx((1.0, 0.5, 2 / 3), abs=1e-15)


def test_roc_auc_with_ties_counts_half():
    # One positive and one negative with equal scores: P(pos > neg) + 0.5 P(tie) = 0.5 exactly.
    assert metrics.roc_auc(np.array([1, 0]), np.array([0.4, 0.4])) == pytest.approx(0.5, abs=1e-15)


# --------------------------------------------------------------------------
# Argument order and input validation.
# --------------------------------------------------------------------------

_SCORES = np.linspace(0.0, 1.0, 8)
_LABELS = np.array([0, 1] * 4)


@pytest.mark.parametrize("metric", [metrics.precision_recall_curve, metrics.max_f1, metrics.average_precision,
                                    metrics.roc_auc], ids=lambda f: f.__name__)
def test_scores_passed_first_are_caught_as_non_binary_y_true(metric):
    # The order before scikit-learn's was (scores, labels); such a call must
    # not run silently on swapped arrays.
    with pytest.raises(ValueError, match="`y_true` must hold only 0 and 1"):
        metric(_SCORES, _LABELS)


def test_swapped_hard_predictions_exchange_precision_and_recall():
    # Two binary arrays cannot be told apart, so a swapped call runs; it
    # exchanges precision and recall (TP / predicted vs TP / positives) and
    # keeps F1, which is symmetric. Exact: ratios of small integers.
    labels, predicted = np.array([1, 1, 1, 0, 0]), np.array([1, 0, 0, 1, 0])
    precision, recall, f1 = metrics.precision_recall_f1(labels, predicted)
    assert (precision, recall) == pytest.approx((1 / 2, 1 / 3), abs=1e-15)
    assert metrics.precision_recall_f1(predicted, labels) == pytest.approx((recall, precision, f1), abs=1e-15)


BAD_INPUTS = [
    ("y_true", lambda: metrics.precision_recall_curve(_LABELS[:4], _SCORES)),
    ("y_score", lambda: metrics.precision_recall_curve(_LABELS[:4], _SCORES)),
    ("y_true", lambda: metrics.average_precision(2 * _LABELS, _SCORES)),
    ("y_true", lambda: metrics.max_f1(np.zeros(8), _SCORES)),
    ("y_true", lambda: metrics.roc_auc(np.ones(8), _SCORES)),
    ("y_true", lambda: metrics.roc_auc(np.array(["a", "b"] * 4), _SCORES)),
    ("y_score", lambda: metrics.roc_auc(_LABELS, np.append(_SCORES[:7], np.nan))),
    ("y_score", lambda: metrics.average_precision(_LABELS, np.array(["a", "b"] * 4))),
    ("mask", lambda: metrics.roc_auc(_LABELS, _SCORES, mask=np.ones(8, np.int32))),
    ("mask", lambda: metrics.roc_auc(_LABELS, _SCORES, mask=np.zeros(8, bool))),
    ("mask", lambda: metrics.max_f1(_LABELS, _SCORES, mask=np.ones(4, bool))),
    ("y_pred", lambda: metrics.precision_recall_f1(_LABELS, _SCORES)),
    ("y_pred", lambda: metrics.precision_recall_f1(_LABELS, _LABELS[:4])),
]


@pytest.mark.parametrize("argument, call", BAD_INPUTS, ids=[f"{i}-{arg}" for i, (arg, _) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_naming_the_argument(argument, call):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        call()
