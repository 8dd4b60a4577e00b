"""experiments._speedup: steps to reach a target objective and the speed-up of preconditioning."""

import numpy as np
import pytest

from experiments._speedup import smooth_history, speedup, steps_to_reach


def test_speedup_and_steps_to_reach():
    preconditioned = np.array([[0, 5.0], [10, 2.0], [20, 1.5]])
    scratch = np.array([[0, 50.0], [50, 3.0], [100, 1.6], [150, 1.4], [200, 1.2]])
    assert steps_to_reach(scratch, 1.5) == 150
    assert steps_to_reach(scratch, 1.0) is None
    speed = speedup(preconditioned, scratch)
    assert speed["scratch_steps"] == 150 and speed["speedup"] == pytest.approx(7.5)
    assert speedup(preconditioned, scratch[:3])["speedup"] is None
    # Smoothed over 2 evaluations: target (2.0 + 1.5) / 2 = 1.75, first reached by (1.6 + 1.4) / 2 at 150.
    np.testing.assert_allclose(smooth_history(scratch, 2)[:, 1], [50.0, 26.5, 2.3, 1.5, 1.3])
    smoothed = speedup(preconditioned, scratch, window=2)
    assert smoothed["target"] == pytest.approx(1.75) and smoothed["scratch_steps"] == 150


def test_bad_histories_raise_clear_errors():
    with pytest.raises(ValueError, match="objective_history"):
        steps_to_reach(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="`window` must be >= 1"):
        smooth_history(np.zeros((3, 2)), 0)
    # fit_reverse_kl's default (eval_samples=0) records no objective history.
    with pytest.raises(ValueError, match="eval_samples"):
        speedup(np.zeros((0, 2)), np.zeros((3, 2)))
