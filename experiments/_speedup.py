"""Speed-up of preconditioning from two objective histories recorded at a constant learning rate.

`fit_reverse_kl(..., eval_samples=n)` records the objective on fixed
evaluation latents, a deterministic function of the parameters, so two runs
compare step by step: `speedup` asks when the from-scratch run first reaches
the preconditioned run's final objective. `experiments._budgets` asks the same
question of runs annealed over several budgets.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from jcnf._checks import describe


def steps_to_reach(objective_history: np.ndarray, target: float) -> Optional[int]:
    """The first step whose objective is <= target, or None if no step reached it.

    Args:
      objective_history: [n, 2] rows (step, objective), steps increasing.
      target: the objective to reach.
    """
    history = np.asarray(objective_history)
    if history.ndim != 2 or history.shape[1] != 2 or not len(history):
        raise ValueError(f"`objective_history` must have shape [n, 2] (step, objective) with n >= 1 (pass "
                         f"`eval_samples` > 0 to `fit_reverse_kl` to record one); got {describe(history)}.")
    reached = np.nonzero(history[:, 1] <= target)[0]
    return int(history[reached[0], 0]) if reached.size else None


def smooth_history(objective_history: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average of the objective over `window` evaluations (the first rows average fewer).

    Args:
      objective_history: [n, 2] rows (step, objective).
      window: evaluations averaged, >= 1 (1 returns the history unchanged).

    Returns:
      [n, 2] rows (step, mean objective of this and the window - 1 previous evaluations).
    """
    history = np.asarray(objective_history, np.float64)
    if history.ndim != 2 or history.shape[1] != 2 or not len(history):
        raise ValueError(f"`objective_history` must have shape [n, 2] (step, objective) with n >= 1 (pass "
                         f"`eval_samples` > 0 to `fit_reverse_kl` to record one); got {describe(history)}.")
    if window < 1:
        raise ValueError(f"`window` must be >= 1; got {window}.")
    sums = np.cumsum(np.concatenate([[0.0], history[:, 1]]))
    index = np.arange(1, len(history) + 1)
    first = np.maximum(index - window, 0)
    return np.stack([history[:, 0], (sums[index] - sums[first]) / (index - first)], axis=1)


def speedup(preconditioned_history: np.ndarray, scratch_history: np.ndarray, window: int = 1) -> dict[str, Any]:
    """Speed-up of preconditioning: scratch steps to reach the preconditioned final objective / its steps.

    With `window` > 1 both histories are first smoothed by `smooth_history`,
    so the target is the preconditioned run's final plateau rather than its
    last noisy value, and a single lucky evaluation of the scratch run does
    not count as reaching it.

    Returns:
      {"target": the preconditioned run's final (smoothed) objective, "preconditioned_steps",
       "scratch_steps" (None if never reached), "speedup" (None if never
       reached), "speedup_lower_bound" (scratch's last step / preconditioned
       steps, a bound when the target was not reached), "window"}.
    """
    preconditioned_history = smooth_history(preconditioned_history, window)
    scratch_history = smooth_history(scratch_history, window)
    target = float(preconditioned_history[-1, 1])
    preconditioned_steps = int(preconditioned_history[-1, 0])
    scratch_steps = steps_to_reach(scratch_history, target)
    return {"target": target, "preconditioned_steps": preconditioned_steps, "scratch_steps": scratch_steps,
            "speedup": None if scratch_steps is None else scratch_steps / preconditioned_steps,
            "speedup_lower_bound": float(scratch_history[-1, 0]) / preconditioned_steps, "window": window}
