"""experiments._budgets: matched-quality speed-up from runs annealed over several budgets."""

import numpy as np
import pytest

from experiments._budgets import budget_sweep, matched_budget_speedup, scratch_budget_to_reach


def test_interpolates_in_log_budget_between_bracketing_runs():
    scratch = {20: 5.0, 40: 1.0, 80: 0.5}
    # Halfway in value between 40 and 80 is halfway in log(budget): sqrt(40 * 80).
    budget, kind = scratch_budget_to_reach(scratch, 0.75)
    assert kind == "interpolated" and budget == pytest.approx(np.sqrt(40 * 80))
    assert scratch_budget_to_reach(scratch, 1.0) == (40.0, "interpolated")


def test_bounds_when_the_target_is_outside_the_measured_budgets():
    scratch = {20: 5.0, 40: 1.0}
    assert scratch_budget_to_reach(scratch, 9.0) == (20.0, "at_most")
    assert scratch_budget_to_reach(scratch, 0.1) == (None, "not_reached")
    rows = matched_budget_speedup({10: 9.0, 20: 3.0, 40: 0.1}, scratch)
    assert [r["preconditioned_budget"] for r in rows] == [10, 20, 40]
    assert rows[0]["kind"] == "at_most" and rows[0]["speedup"] == 2.0
    assert rows[1]["kind"] == "interpolated" and 20 < rows[1]["scratch_budget"] < 40
    assert rows[1]["speedup"] == pytest.approx(rows[1]["scratch_budget"] / 20)
    assert rows[2]["speedup"] is None and rows[2]["speedup_lower_bound"] == 1.0
    # The measured budgets around each match, without interpolation.
    assert [r["scratch_bracket"] for r in rows] == [[None, 20], [20, 40], [40, None]]
    assert rows[1]["speedup_bracket"] == [1.0, 2.0]


def test_rejects_empty_or_non_finite_curves():
    with pytest.raises(ValueError, match="`scratch`"):
        matched_budget_speedup({10: 1.0}, {})
    with pytest.raises(ValueError, match="`preconditioned`"):
        matched_budget_speedup({10: float("nan")}, {10: 1.0})


def test_budget_sweep_trains_every_method_budget_and_seed_and_averages_seeds():
    calls = []

    def train(method, budget, seed):
        calls.append((method, budget, seed))
        return {"preconditioned": 1.0, "scratch": 4.0}[method] / budget + 0.01 * seed

    # Budgets may be any iterables, generators included: each seed trains all of them.
    sweep = budget_sweep(train, lambda value: value,
                                 {"preconditioned": (b for b in [10, 20]), "scratch": [20, 40, 80]},
                                 seeds=np.int64(2), report=None)
    assert sorted(calls) == sorted((m, b, s) for s in range(2) for m, bs in
                                   (("preconditioned", [10, 20]), ("scratch", [20, 40, 80])) for b in bs)
    assert sweep["mean"]["scratch"][40] == pytest.approx(0.1 + 0.005)
    # scratch needs 4x the iterations for the same value: 4 / (4b) = 1 / b, up to the seed offset.
    assert [row["speedup"] for row in sweep["matched_speedup"]] == pytest.approx([4.0, 4.0], rel=0.05)
    with pytest.raises(ValueError, match="`seeds`"):
        budget_sweep(train, lambda v: v, {"scratch": [10]}, seeds=0)
    with pytest.raises(ValueError, match="`seeds`"):
        budget_sweep(train, lambda v: v, {"scratch": [10]}, seeds=2.0)
