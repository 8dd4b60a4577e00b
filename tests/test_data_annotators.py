"""Structured synthetic annotations: shapes, checks, draws, and a label distribution that does not factorize.

Draws follow the exact distribution, and no product of per-pixel marginals matches it.
"""

import numpy as np
import pytest

from jcnf.data.annotators import annotate, exact_label_distribution, structured_fundus, vessel_scene


def test_structured_fundus_shapes_and_annotators_that_disagree():
    data = structured_fundus(np.random.default_rng(0), 3, 48, annotators=4, capillaries=5)
    assert data["image"].shape == (3, 48, 48, 3) and data["fov"].shape == (3, 48, 48, 1)
    assert data["vessels"].shape == (3, 4, 48, 48, 1) and set(np.unique(data["vessels"])) == {0.0, 1.0}
    assert data["capillary_presence"].shape == (3, 5) and data["capillary_cores"].shape == (3, 5, 48, 48)
    assert np.all((data["capillary_presence"] >= 0.15) & (data["capillary_presence"] <= 0.85))
    assert not np.any(data["vessels"][..., 0] * ~data["fov"][:, None, ..., 0])  # nothing outside the FOV
    # Annotations of one image differ (widths are drawn per segment), but far less than they agree.
    vessels = data["vessels"][..., 0]
    disagreement = (vessels[:, 0] != vessels[:, 1]).mean()
    assert 0.0 < disagreement < 0.5 * vessels.mean()
    # A capillary's core is all marked or all unmarked in every annotation: segments appear as wholes.
    for i in range(3):
        for k in range(5):
            core = data["capillary_cores"][i, k]
            for a in range(4):
                assert np.unique(vessels[i, a][core]).size <= 1
    again = structured_fundus(np.random.default_rng(0), 3, 48, annotators=4, capillaries=5)
    np.testing.assert_array_equal(again["vessels"], data["vessels"])


@pytest.mark.parametrize("kwargs, name", [({"annotators": 1}, "annotators"),
                                          ({"presence_range": (-0.1, 0.5)}, "presence_range"),
                                          ({"presence_range": (0.5, 1.2)}, "presence_range"),
                                          ({"capillaries": -1}, "capillaries")])
def test_structured_fundus_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        structured_fundus(np.random.default_rng(0), 1, 32, **kwargs)


def test_annotate_and_exact_distribution_reject_probabilities_outside_the_unit_interval():
    masks = np.zeros((2, 3, 4, 4), bool)
    for function in (lambda p: annotate(np.random.default_rng(0), masks, p, 2),
                     lambda p: exact_label_distribution(masks, p)):
        with pytest.raises(ValueError, match="presence"):
            function(np.array([0.5, 1.5]))


def _crop_crossed_by_capillary(scene, half=6, max_parts=4):
    """A (rows, cols) window around a capillary's middle that 2..max_parts parts cross (a capillary among them)."""
    masks = scene["part_masks"]
    for j in np.flatnonzero(scene["capillary"]):
        rows, cols = np.nonzero(masks[j, 1])
        if rows.size == 0:
            continue
        r, c = int(np.median(rows)), int(np.median(cols))
        window = (slice(max(r - half, 0), r + half), slice(max(c - half, 0), c + half))
        crossing = np.flatnonzero(masks[(slice(None), slice(None)) + window].any(axis=(1, 2, 3)))
        if 2 <= crossing.size <= max_parts:
            return window, crossing
    raise AssertionError("no capillary crop with few parts in this scene")


def test_draws_follow_the_exact_distribution_on_a_crop():
    scene = vessel_scene(np.random.default_rng(3), 48, capillaries=6)
    window, parts = _crop_crossed_by_capillary(scene)
    masks, presence = scene["part_masks"][parts][(slice(None), slice(None)) + window], scene["presence"][parts]
    labels, probability = exact_label_distribution(masks, presence)
    np.testing.assert_allclose(probability.sum(), 1.0, rtol=1e-12)
    draws = annotate(np.random.default_rng(4), masks, presence, 4000)
    empirical = draws.mean(axis=0)
    exact = np.tensordot(probability, labels.astype(float), axes=1)
    # 4000 Bernoulli draws: a standard error of at most 0.008 per pixel; 5 of them bound every pixel.
    np.testing.assert_allclose(empirical, exact, atol=0.04)


def test_true_joint_likelihood_beats_the_best_factorized_one():
    """The true joint's expected negative log-likelihood is below the best factorized model's.

    On crops a capillary and a few tree segments cross, the label's entropy is below the cross-entropy of
    the product of its exact per-pixel marginals, the best any factorized model can do; the gap is their
    total correlation.
    """
    gaps = []
    for seed in range(10):
        scene = vessel_scene(np.random.default_rng(seed), 48, capillaries=6)
        try:
            window, parts = _crop_crossed_by_capillary(scene)
        except AssertionError:  # every capillary of this scene lies in a busy neighbourhood
            continue
        masks = scene["part_masks"][parts][(slice(None), slice(None)) + window]
        labels, probability = exact_label_distribution(masks, scene["presence"][parts])
        marginal = np.clip(np.tensordot(probability, labels.astype(float), axes=1), 1e-12, 1 - 1e-12)
        joint_bits = -np.sum(probability * np.log2(probability))
        per_label = np.where(labels, np.log2(marginal), np.log2(1 - marginal)).sum(axis=(1, 2))
        factorized_bits = -np.sum(probability * per_label)
        gaps.append(factorized_bits - joint_bits)
        # Each capillary is one Bernoulli choice and each segment one of three widths, so the joint has at
        # most 1 + log2(3) = 2.6 bits per crossing part, while the factorized model pays per pixel.
        assert joint_bits <= len(parts) * (1 + np.log2(3)) + 1e-9
    # A capillary's n pixels share one coin of probability p in [0.15, 0.85]: a product of marginals
    # pays about (n - 1) H(p) >= 0.6 (n - 1) bits more, over 1 bit for the 3 or more pixels a crop holds
    # (exact figures, no sampling).
    assert len(gaps) >= 3 and min(gaps) > 1.0, gaps
