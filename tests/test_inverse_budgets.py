"""Matched-quality speed-up from runs annealed over several budgets."""

import numpy as np
import pytest

from jcnf import inverse


def test_interpolates_in_log_budget_between_bracketing_runs():
    scratch = {20: 5.0, 40: 1.0, 80: 0.5}
    # Halfway in value between 40 and 80 is halfway in log(budget): sqrt(40 * 80).
    budget, kind = inverse.scratch_budget_to_reach(scratch, 0.75)
    assert kind == "interpolated" and budget == pytest.approx(np.sqrt(40 * 80))
    assert inverse.scratch_budget_to_reach(scratch, 1.0) == (40.0, "interpolated")


def test_bounds_when_the_target_is_outside_the_measured_budgets():
    scratch = {20: 5.0, 40: 1.0}
    assert inverse.scratch_budget_to_reach(scratch, 9.0) == (20.0, "at_most")
    assert inverse.scratch_budget_to_reach(scratch, 0.1) == (None, "not_reached")
    rows = inverse.matched_budget_speedup({10: 9.0, 20: 3.0, 40: 0.1}, scratch)
    assert [r["preconditioned_budget"] for r in rows] == [10, 20, 40]
    assert rows[0]["kind"] == "at_most" and rows[0]["speedup"] == 2.0
    assert rows[1]["kind"] == "interpolated" and 20 < rows[1]["scratch_budget"] < 40
    assert rows[1]["speedup"] == pytest.approx(rows[1]["scratch_budget"] / 20)
    assert rows[2]["speedup"] is None and rows[2]["speedup_lower_bound"] == 1.0


def test_rejects_empty_or_non_finite_curves():
    with pytest.raises(ValueError, match="`scratch`"):
        inverse.matched_budget_speedup({10: 1.0}, {})
    with pytest.raises(ValueError, match="`preconditioned`"):
        inverse.matched_budget_speedup({10: float("nan")}, {10: 1.0})
