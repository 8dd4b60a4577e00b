"""Smoke test of the throughput benchmark: its smallest configuration runs and writes a well-formed JSON.

Timings themselves are not asserted (they depend on the machine and its
load); the structure is, and every ratio must be a positive finite number.
"""

import json
import math

import numpy as np
import pytest

from benchmarks import logdet_throughput, memory_depth, npe, scaling


def _ratios(node, path=""):
    """Every (path, value) whose key names a ratio, anywhere in the record."""
    if isinstance(node, dict):
        for key, value in node.items():
            if "ratio" in key and not isinstance(value, (dict, list)):
                yield f"{path}.{key}", value
            yield from _ratios(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _ratios(value, f"{path}[{i}]")


def test_logdet_throughput_smallest_configuration_writes_valid_json(tmp_path):
    path = tmp_path / "logdet.json"
    record = logdet_throughput.run("tiny", str(path), torch_compile=False, calls=1, repeats=1,
                                   bijector_names=["lu_conv1x1"], bf16=False, peers=False)
    written = json.loads(path.read_text())
    assert written["complete"] and written["summary"] == json.loads(json.dumps(record["summary"]))
    assert written["environment"]["device"] and written["environment"]["jax"]
    assert set(written["naive_differences"]) >= {"conv1x1_log_det", "conv1x1_inverse"}
    [bijector] = written["bijectors"]
    assert bijector["bijector"] == "lu_conv1x1" and bijector["shape"] == [2, 4, 4, 4]
    [glow] = written["glows"]
    assert glow["default"] and glow["value_shape"] == [2, 8, 8, 3]
    # The naive baseline computes the same map as jcnf (float32 rounding of a ~1e2 log-det).
    assert glow["float32"]["naive_max_abs_diff"]["z"] < 1e-4
    assert glow["float32"]["naive_max_abs_diff"]["log_det"] < 1e-3
    for key in ("glow_forward_ratio_vs_naive", "glow_inverse_ratio_vs_naive"):
        assert key in written["summary"]
    ratios = dict(_ratios(written))
    assert len(ratios) >= 8
    for where, value in ratios.items():
        assert isinstance(value, float) and math.isfinite(value) and value > 0, where
    for entry in [bijector, written["realnvp"]] + [glow["float32"]]:
        for label in ("ours", "naive"):
            for direction in ("forward", "inverse"):
                rate = entry[label][direction]["samples_per_s"]
                assert math.isfinite(rate) and rate > 0


def test_scaling_tiny_sweeps_every_axis_and_fits_finite_slopes(tmp_path):
    record = scaling.main(["--tiny", "--json", str(tmp_path / "scaling.json"), "--png", str(tmp_path / "s.png")])
    assert record["complete"] and json.loads((tmp_path / "scaling.json").read_text())["slopes"] == record["slopes"]
    assert {name: len(rows) for name, rows in record["sweeps"].items()} == {"blocks": 2, "pixels": 2, "batch": 2}
    assert all(math.isfinite(p) for slope in record["slopes"].values() for p in slope.values())
    assert (tmp_path / "s.png").stat().st_size > 0


def test_memory_depth_tiny_measures_both_modes_at_every_depth(tmp_path):
    record = memory_depth.main(["--tiny", "--json", str(tmp_path / "memory.json")])
    assert record["complete"]
    modes = {(row["blocks"], row["reversible"]) for row in record["results"]}
    assert modes == {(k, mode) for k in record["summary"]["ks"] for mode in (True, False)}
    # The same parameters in both modes: the parameter count does not depend on the gradient method.
    for k in record["summary"]["ks"]:
        assert len({row["num_params"] for row in record["results"] if row["blocks"] == k}) == 1
    assert all(row["total_bytes"] > 0 for row in record["results"])


@pytest.mark.allow_rank_promotion("flowjax's sampling broadcasts a condition against the sample shape internally")
def test_npe_tiny_run_scores_both_estimators_and_writes_the_record(tmp_path, capsys):
    path = tmp_path / "npe.json"
    # One task with an exact reference, 200 simulations, tiny flows, two epochs, one observation.
    record = npe.main(["--tasks", "gaussian_mixture", "--budgets", "200", "--observations", "1",
                       "--posterior-samples", "300", "--max-epochs", "2", "--batch-size", "64", "--blocks", "2",
                       "--hidden", "8", "--bins", "4", "--jcnf-options", '{"max_epochs": 2}', "--json", str(path)])
    written = json.loads(path.read_text())
    assert written["complete"] and written["results"] == json.loads(json.dumps(record["results"]))
    assert written["environment"]["device"] and written["environment"]["flowjax"]
    assert written["settings"]["max_epochs"] == 2 and written["observation_set"] == "evaluation"
    assert written["jcnf_estimator"] and written["git_commit"]
    [reference] = written["references"]["gaussian_mixture"]
    assert reference["exact"] and 0 < reference["acceptance"] <= 1
    rows = {row["estimator"]: row for row in written["results"]}
    assert set(rows) == {"jcnf", "flowjax", "sbi"} and "skipped" in rows["sbi"]
    for name in ("jcnf", "flowjax"):
        row = rows[name]
        assert row["task"] == "gaussian_mixture" and row["budget"] == 200 and 1 <= row["epochs"] <= 2
        assert row["train_s"] > 0 and len(row["c2st"]) == 1 and 0 <= row["c2st_mean"] <= 1
        assert 0 <= row["leakage"][0] < 1
    table = capsys.readouterr().out
    assert "| gaussian_mixture | 200 |" in table and "jcnf C2ST" in table and "flowjax C2ST" in table
    npe.main(["--table", "--json", str(path)])
    assert "| gaussian_mixture | 200 |" in capsys.readouterr().out


def test_npe_trains_jcnf_by_fit_amortized_when_the_library_has_it(tmp_path, monkeypatch):
    import jax

    import jcnf

    calls = []

    class StandardNormal:
        def sample(self, rng, context, num_samples):
            return jax.random.normal(rng, (num_samples, context.shape[0], 2))

    def fit_amortized(**kwargs):
        calls.append(kwargs)
        return StandardNormal()

    events = []
    clear_caches = jax.clear_caches
    monkeypatch.setattr(jax, "clear_caches", lambda: (events.append("clear"), clear_caches())[1])
    monkeypatch.setattr(jcnf.inverse, "fit_amortized", lambda **kwargs: (events.append("fit"),
                                                                        fit_amortized(**kwargs))[1], raising=False)
    record = npe.main(["--tasks", "gaussian_mixture", "--budgets", "200", "--observations", "1",
                       "--posterior-samples", "100", "--estimators", "jcnf", "--jcnf-options", '{"patience": 3}',
                       "--json", str(tmp_path / "npe.json")])
    [call] = calls
    # Every fit starts from cleared caches, so its time includes its compilation.
    assert events == ["clear", "fit"]
    assert call["value"].shape == (200, 2) and call["context"].shape == (200, 2) and call["patience"] == 3
    # The data arrive z-scored, and the prior's box [-10, 10]^2 in the same units.
    np.testing.assert_allclose(np.mean(call["value"], 0), 0, atol=1e-5)
    lower, upper = call["bounds"]
    assert np.all(lower < np.min(call["value"], 0)) and np.all(upper > np.max(call["value"], 0))
    assert record["jcnf_estimator"] == "jcnf.inverse.fit_amortized" and record["jcnf_options"] == {"patience": 3}
    [row] = record["results"]
    assert row["estimator"] == "jcnf" and 0 <= row["c2st_mean"] <= 1
