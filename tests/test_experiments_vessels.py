"""The vessels experiment's smoke configuration, run as 1 process x 4 devices and as 2 processes x 2 devices.

The single run's outputs are checked for content; the two-process run must
write one results.json (process 0 only) with the same figures. The runs
differ only by the all-reduce order, a float32 rounding (~1e-7 relative)
that thirty Adam steps of a tiny flow carry into the bits per pixel and the
soft-image scores at the same order (measured: at most 6e-8 apart); the
binarized samples, and so every precision, recall, component count and
capillary frequency, came out identical. rtol 1e-4 / atol 1e-6 leave three
orders of magnitude for that rounding and would catch any sample pixel that
flips.
"""

import json

from tests._multihost import assert_same_results, run_single_and_pair


def test_vessels_smoke_one_and_two_processes(tmp_path):
    single, pair = run_single_and_pair("vessels", tmp_path)
    results = json.loads((single / "results.json").read_text())
    assert json.loads((single / "config.json").read_text())["data"]["source"] == "structured"
    for name in ("pr_curves", "pr_scatter", "samples", "soft_images", "capillaries", "retina"):
        assert (single / f"{name}.png").stat().st_size > 1000, name
    assert (single / "model" / "model.json").is_file() and (pair / "model" / "model.json").is_file()
    for model in ("CNF", "factorized"):
        scores = results["scores"][model]
        for key in ("max_f1", "auc_pr", "roc_auc", "ece", "sample_precision_mean", "sample_recall_mean",
                    "reference_precision_mean", "reference_recall_mean", "capillary_calibration_error"):
            assert 0.0 <= scores[key] <= 1.0, (model, key, scores[key])
        # Annotations of the same image agree on the trees: the second annotator is close to the first.
        assert scores["reference_precision_mean"] > 0.7 and scores["reference_recall_mean"] > 0.7
        assert scores["capillaries_scored"] >= 1
        assert scores["truth_components_per_image"] >= 1
    # The true capillary probabilities are the same whoever is scored.
    assert results["scores"]["CNF"]["capillary_presence_mean"] == results["scores"]["factorized"][
        "capillary_presence_mean"]
    # 30 steps of a tiny model: the CNF's bound must at least be a finite,
    # positive number of bits per pixel, below the 1 bit of a coin flip plus
    # the slack a fresh dequantizer adds (a loose sanity range, not a target).
    assert 0.0 < results["test_bits_per_pixel"]["CNF_negative_elbo"] < 3.0
    claims = results["claims"]
    assert set(claims) == {"cnf_samples_closer_to_second_annotator_in_pr", "cnf_better_bits_per_pixel",
                           "cnf_components_closer_to_truth", "cnf_segment_calibration_better"}
    assert all(isinstance(c["holds"], bool) and c["claim"] and c["evidence"] for c in claims.values())
    assert_same_results(single, pair, rtol=1e-4, atol=1e-6)
