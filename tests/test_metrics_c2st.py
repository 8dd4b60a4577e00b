import numpy as np
import pytest

from jcnf.metrics import c2st

ROWS = 500  # per sample: 1,000 held-out predictions over the folds, a few seconds of classifier training


def test_same_distribution_scores_chance():
    rng = np.random.default_rng(0)
    accuracy = c2st(rng.normal(size=(ROWS, 2)), rng.normal(size=(ROWS, 2)))
    # Under the null every one of the 2 * ROWS held-out predictions is a fair coin: the accuracy's
    # standard deviation is sqrt(0.25 / 1000) = 0.016, and 0.07 is more than 4 of them.
    assert abs(accuracy - 0.5) < 0.07


def test_separated_distributions_score_near_one():
    rng = np.random.default_rng(1)
    accuracy = c2st(rng.normal(size=(ROWS, 2)), rng.normal(size=(ROWS, 2)) + 4.0)
    # The Bayes accuracy of two unit Gaussians 4 * sqrt(2) apart is Phi(2.83) = 0.998; the held-out
    # accuracy's binomial noise at that rate is 0.0015, so a classifier near Bayes clears 0.98.
    assert accuracy > 0.98


def test_accuracy_is_a_fraction_and_seeded():
    rng = np.random.default_rng(2)
    reference, samples = rng.normal(size=(60, 3)), rng.normal(size=(60, 3)) * 1.5
    first = c2st(reference, samples, seed=3, folds=3)
    assert 0.0 <= first <= 1.0
    assert c2st(reference, samples, seed=3, folds=3) == first


@pytest.mark.parametrize("reference, samples, kwargs, match", [
    (np.zeros(20), np.zeros((20, 2)), {}, "`reference` must have shape"),
    (np.zeros((20, 2)), np.zeros((20, 2, 1)), {}, "`samples` must have shape"),
    (np.zeros((20, 2)), np.zeros((20, 3)), {}, "`samples` must have the dim of `reference`"),
    (np.zeros((5, 2)), np.zeros((20, 2)), {}, "`reference` needs at least 10 rows"),
    (np.zeros((20, 2)), np.full((20, 2), np.nan), {}, "`samples` holds non-finite"),
    (np.zeros((20, 2)), np.array([["a", "b"]] * 20), {}, "`samples` must be a numeric array"),
    (np.zeros((20, 2)), np.zeros((20, 2)), {"folds": 1}, "`folds` must be an integer >= 2"),
])
def test_bad_input_names_the_argument(reference, samples, kwargs, match):
    with pytest.raises(ValueError, match=match):
        c2st(reference, samples, **kwargs)
