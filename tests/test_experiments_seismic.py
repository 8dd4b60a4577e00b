"""The seismic experiment's smoke configuration runs end to end and writes its results and figures."""

import json

import numpy as np

from experiments import seismic

SMOKE = "experiments/configs/seismic.py:smoke"


def test_seismic_smoke_writes_results_and_figures(tmp_path):
    results = seismic.main(["--config", SMOKE, "--out", str(tmp_path)])
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["speedup"] == results["speedup"]
    for name in ("loss_curves.png", "posterior.png", "scratch_metrics.jsonl"):
        assert (tmp_path / name).stat().st_size > 0
    for name in ("amortized_low_fidelity", "preconditioned", "scratch", "latent_correction"):
        summary = on_disk["posterior"][name]
        assert 0.0 <= summary["fraction_within_2_std"] <= 1.0 and np.isfinite(summary["snr_db_of_mean"])
        assert summary["mean_std"] > 0  # the posterior samples differ from one another
    sweep = on_disk["annealed_budgets"]
    assert [(r["method"], r["budget"]) for r in sweep["runs"]] == [("preconditioned", 2), ("scratch", 2),
                                                                    ("scratch", 4)]
    assert all(np.isfinite(r["objective"]) for r in sweep["runs"])
    assert (tmp_path / "budget_sweep.png").stat().st_size > 0
