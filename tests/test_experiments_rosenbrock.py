"""Tests of experiments.rosenbrock: the 2D toy operator, and the smoke config run end to end.

The smoke config runs as 1 process x 4 devices and as 2 processes x 2 devices.
The single run's outputs are checked for content; the two-process run must
write one results.json (process 0 only) with the same figures. A few dozen
Adam steps of a tiny flow amplify float32 rounding (~1e-7, from the
different all-reduce order) by a few orders of magnitude at most, hence
rtol 1e-3.
"""

import json

import jax
import numpy as np

from experiments.rosenbrock import paper_toy_operator, rosenbrock_operator
from tests._multihost import assert_same_results, run_single_and_pair


def test_rosenbrock_operator_has_unit_spectral_norm_and_is_well_conditioned():
    operator = rosenbrock_operator(jax.random.PRNGKey(16))
    matrix = np.asarray(operator.params["matrix"], np.float64)
    assert operator.input_shape == operator.output_shape == (2,)
    np.testing.assert_allclose(np.linalg.norm(matrix, 2), 1.0, rtol=1e-6)  # float32 division.
    # 3 I dominates randn(2, 2) for this key: the matrix is well conditioned.
    assert np.linalg.cond(matrix) < 3.0


def test_paper_toy_operator_is_fixed():
    first, second = paper_toy_operator(), paper_toy_operator()
    np.testing.assert_array_equal(first.params["matrix"], second.params["matrix"])
    np.testing.assert_array_equal(first.params["matrix"],
                                  rosenbrock_operator(jax.random.PRNGKey(2021)).params["matrix"])
    np.testing.assert_allclose(np.linalg.norm(np.asarray(first.params["matrix"], np.float64), 2), 1.0, rtol=1e-6)


def test_rosenbrock_smoke_one_and_two_processes(tmp_path):
    single, pair = run_single_and_pair("rosenbrock", tmp_path)
    on_disk = json.loads((single / "results.json").read_text())
    assert json.loads((single / "config.json").read_text())["vi"]["preconditioned_steps"] == 10
    for name in ("loss_curves.png", "posterior_samples.png", "preconditioned_metrics.jsonl", "y_obs.npy",
                 "model/model.json", "refined_model/model.json"):
        assert (single / name).stat().st_size > 0
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
    assert (single / "budget_sweep.png").stat().st_size > 0
    assert set(on_disk["claims"]) == {"preconditioning_5x_faster", "preconditioned_posterior_no_worse",
                                      "preconditioning_5x_faster_annealed"}
    assert all(isinstance(c["holds"], bool) and c["evidence"] for c in on_disk["claims"].values())
    # The amortized flow comes from fit_amortized (no checkpoints; its per-epoch losses in low_fidelity_metrics.jsonl).
    assert (single / "low_fidelity_metrics.jsonl").stat().st_size > 0
    assert (single / "checkpoints" / "preconditioned").is_dir()
    assert_same_results(single, pair, rtol=1e-3, atol=1e-4)
