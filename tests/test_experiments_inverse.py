"""The inverse-problem experiments' smoke configurations run end to end and write their results."""

import json

import numpy as np

from experiments import rosenbrock, seismic

SMOKE = "experiments/configs/{}.py:smoke"


def test_rosenbrock_smoke_writes_results_and_figures(tmp_path):
    results = rosenbrock.main(["--config", SMOKE.format("rosenbrock"), "--out", str(tmp_path)])
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["speedup"] == results["speedup"]
    assert json.loads((tmp_path / "config.json").read_text())["vi"]["preconditioned_steps"] == 10
    for name in ("loss_curves.png", "posterior_samples.png", "preconditioned_metrics.jsonl"):
        assert (tmp_path / name).stat().st_size > 0
    metrics = on_disk["posterior_metrics"]
    # Exact samples of the grid reference are close to it (histogram KL of 2000 samples on 30x30
    # bins is biased up by about bins/(2n) ~ 0.2 nats); the smoke flows are far from trained.
    assert metrics["reference_grid"]["kl_reference_to_samples"] < 0.3
    assert all(np.isfinite(m["kl_reference_to_samples"]) for m in metrics.values())
    assert on_disk["speedup"]["preconditioned_steps"] == 10
    sweep = on_disk["annealed_budgets"]
    assert [(r["method"], r["budget"]) for r in sweep["runs"]] == [("preconditioned", 5), ("scratch", 5),
                                                                    ("scratch", 10)]
    assert all(np.isfinite(r["objective"]) and r["objective"] > -0.05 for r in sweep["runs"])  # a KL, up to MC error
    assert [row["preconditioned_budget"] for row in sweep["matched_speedup"]] == [5]
    assert (tmp_path / "budget_sweep.png").stat().st_size > 0


def test_seismic_smoke_writes_results_and_figures(tmp_path):
    results = seismic.main(["--config", SMOKE.format("seismic"), "--out", str(tmp_path)])
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
