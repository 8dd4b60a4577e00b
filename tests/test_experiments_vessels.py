"""The vessels experiment's smoke configuration runs end to end and writes its results and figures."""

import json

from experiments import vessels


def test_vessels_smoke_writes_results_and_figures(tmp_path):
    results = vessels.main(["--config", "experiments/configs/vessels.py:smoke", "--out", str(tmp_path)])
    on_disk = json.loads((tmp_path / "results.json").read_text())
    for name in ("pr_curves", "pr_scatter", "samples", "soft_images", "retina"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000, name
    for model in ("CNF", "factorized"):
        scores = on_disk["scores"][model]
        for key in ("max_f1", "auc_pr", "roc_auc", "ece", "sample_precision_mean", "sample_recall_mean"):
            assert 0.0 <= scores[key] <= 1.0, (model, key, scores[key])
    # 30 steps of a tiny model: the CNF's bound must at least be a finite,
    # positive number of bits per pixel, below the 1 bit of a coin flip plus
    # the slack a fresh dequantizer adds (a loose sanity range, not a target).
    assert 0.0 < results["test_bits_per_pixel"]["CNF_negative_elbo"] < 3.0
    assert set(results["claims"]) == {"cnf_samples_closer_to_truth_in_pr", "cnf_ece_lower",
                                      "cnf_sample_components_closer_to_truth"}
