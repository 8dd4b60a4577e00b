"""The annealed budget sweep of the inverse-problem experiments: speed-up at matched quality, flags, figure.

`experiments._speedup.speedup` compares one preconditioned and one
from-scratch run at a constant learning rate: it asks when the scratch run's
objective history first crosses the preconditioned run's final value. At a constant rate both
histories end on a plateau set by the optimizer's noise, so that crossing
time moves with the noise. Here each run instead anneals its learning rate
to zero over its own budget (`default_optimizer(..., total_steps=budget)`), so
its final value is what that budget buys, and the question becomes: how many
iterations does training from scratch need to do as well as preconditioned
training with b iterations?

    pre = {10: 0.60, 20: 0.18, 40: 0.04}          # budget -> final KL (mean over seeds)
    scratch = {20: 5.2, 40: 0.08, 80: 0.009}
    matched_budget_speedup(pre, scratch)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from etils import epath

from experiments._figures import pyplot, save
from jcnf._checks import check_int


def _curve(name: str, values: Mapping[int, float]) -> tuple[np.ndarray, np.ndarray]:
    if not values:
        raise ValueError(f"`{name}` must map at least one budget (iterations) to a final objective; got none.")
    budgets = np.asarray(sorted(values), np.float64)
    finals = np.asarray([values[b] for b in sorted(values)], np.float64)
    if np.any(budgets < 1) or not np.all(np.isfinite(finals)):
        raise ValueError(f"`{name}` must map positive budgets to finite objectives; got {dict(values)}.")
    return budgets, finals


def _first_reaching(scratch: Mapping[int, float], target: float) -> tuple[np.ndarray, np.ndarray, Optional[int]]:
    """The scratch curve (budgets, finals) and the index of its first budget at or below `target` (None if none)."""
    budgets, finals = _curve("scratch", scratch)
    reached = np.nonzero(finals <= target)[0]
    return budgets, finals, (int(reached[0]) if reached.size else None)


def scratch_budget_to_reach(scratch: Mapping[int, float], target: float) -> tuple[Optional[float], str]:
    """Iterations from scratch whose final objective is `target`, interpolated between measured budgets.

    Between the last budget above the target and the first at or below it,
    the objective is taken as linear in log(budget).

    Args:
      scratch: budget (iterations) -> final objective of a run annealed over that budget.
      target: the objective to match.

    Returns:
      (budget, kind): kind "interpolated"; "at_most" when the smallest
      budget already reaches the target (budget is that smallest budget);
      "not_reached" when no budget does (budget is None).
    """
    budgets, finals, i = _first_reaching(scratch, target)
    if i is None:
        return None, "not_reached"
    if i == 0:
        return float(budgets[0]), "at_most"
    above, below = finals[i - 1], finals[i]
    t = (above - target) / (above - below)
    return float(np.exp(np.log(budgets[i - 1]) + t * (np.log(budgets[i]) - np.log(budgets[i - 1])))), "interpolated"


def matched_budget_speedup(preconditioned: Mapping[int, float], scratch: Mapping[int, float]) -> list[dict[str, Any]]:
    """For each preconditioned budget b: scratch iterations to match its final objective, divided by b.

    Args:
      preconditioned: budget -> final objective (e.g. the mean over seeds of
        the exact reverse KL) of preconditioned runs annealed over that budget.
      scratch: the same for runs from scratch.

    Returns:
      One dict per preconditioned budget, ascending: {"preconditioned_budget",
      "target", "scratch_budget" (None if not reached), "kind" (see
      `scratch_budget_to_reach`), "speedup" (scratch_budget / b; an upper
      bound when kind is "at_most"; when "not_reached", None and
      "speedup_lower_bound" = largest scratch budget / b), "scratch_bracket"
      [a, c] and "speedup_bracket" [a / b, c / b]: the measured scratch
      budgets around the match, a < needed <= c, without interpolation
      (None where no budget lies on that side)}.
    """
    budgets, finals = _curve("preconditioned", preconditioned)
    rows = []
    for budget, target in zip(budgets, finals, strict=False):
        needed, kind = scratch_budget_to_reach(scratch, float(target))
        scratch_budgets, _, i = _first_reaching(scratch, float(target))
        above = None if i == 0 else int(scratch_budgets[-1 if i is None else i - 1])
        reached = None if i is None else int(scratch_budgets[i])
        row = {"preconditioned_budget": int(budget), "target": float(target), "scratch_budget": needed,
               "kind": kind, "speedup": None if needed is None else needed / budget,
               # What was measured, without interpolation: above < needed <= reached.
               "scratch_bracket": [above, reached],
               "speedup_bracket": [None if above is None else above / budget,
                                   None if reached is None else reached / budget]}
        if needed is None:
            row["speedup_lower_bound"] = float(scratch_budgets[-1]) / budget
        rows.append(row)
    return rows


def budget_sweep(train: Callable[[str, int, int], Any], evaluate: Callable[[Any], float],
                 budgets: Mapping[str, Sequence[int]], seeds: int = 1,
                 report: Optional[Callable[[str], None]] = print) -> dict[str, Any]:
    """Trains each method at each budget and seed, evaluates the final parameters, and compares.

    Args:
      train: train(method, budget, seed) -> the parameters after a run whose
        learning rate anneals to 0 over `budget` iterations, e.g.
        `fit_reverse_kl(..., steps=budget, step=steps[budget]).params`, with one
        `posterior_step(..., optimizer=default_optimizer(lr, total_steps=budget))`
        built per budget before the sweep (so each compiles once).
      evaluate: params -> the final objective (lower is better), e.g. an exact
        KL or the objective on a large fixed set of latents.
      budgets: method -> iteration budgets; the keys "preconditioned" and
        "scratch" also give the matched speed-up.
      seeds: runs per (method, budget), seeds 0..seeds-1; their mean is compared.
      report: called with one line per finished run (None: silent).

    Returns:
      {"runs": [{"method", "budget", "seed", "objective"}], "mean": {method:
      {budget: mean objective}}, "matched_speedup": `matched_budget_speedup`
      rows (only with both "preconditioned" and "scratch")}.
    """
    check_int("seeds", seeds)
    budgets = {method: tuple(int(b) for b in method_budgets) for method, method_budgets in budgets.items()}
    runs = []
    for seed in range(int(seeds)):
        for method, method_budgets in budgets.items():
            for budget in method_budgets:
                value = float(evaluate(train(method, budget, seed)))
                runs.append({"method": method, "budget": budget, "seed": seed, "objective": value})
                if report is not None:
                    report(f"annealed {method:>14} budget {budget:5d} seed {seed}: {value:.4f}")
    mean = {method: {b: float(np.mean([r["objective"] for r in runs if r["method"] == method and r["budget"] == b]))
                     for b in method_budgets}
            for method, method_budgets in budgets.items()}
    result = {"runs": runs, "mean": mean}
    if "preconditioned" in mean and "scratch" in mean:
        result["matched_speedup"] = matched_budget_speedup(mean["preconditioned"], mean["scratch"])
    return result


def check_sweep(sweep) -> None:
    """A ValueError unless `sweep` (config.sweep) has positive budgets for both methods, or none, and seeds >= 1."""
    for name in ("preconditioned", "scratch"):
        budgets = tuple(sweep[name])
        if not all(isinstance(b, int) and b >= 1 for b in budgets):
            raise ValueError(f"`sweep.{name}` must be positive iteration counts; got {budgets}.")
    if bool(sweep.preconditioned) != bool(sweep.scratch) or sweep.seeds < 1:
        raise ValueError("`sweep.preconditioned` and `sweep.scratch` must both be given (or both empty) and "
                         f"`sweep.seeds` >= 1; got {sweep.preconditioned}, {sweep.scratch}, {sweep.seeds}.")


def plot_budgets(out: str, sweep: dict, ylabel: str, log_y: bool = True) -> None:
    """Final objective against the iteration budget of annealed runs: every seed, and the means."""
    plt = pyplot()
    floor = 1e-4  # with log_y, a value at or below 0 (Monte-Carlo error of a KL) is drawn at the floor
    show = (lambda v: max(v, floor)) if log_y else (lambda v: v)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, color in (("preconditioned", "tab:blue"), ("scratch", "tab:orange")):
        runs = [r for r in sweep["runs"] if r["method"] == name]
        ax.scatter([r["budget"] for r in runs], [show(r["objective"]) for r in runs], s=12, color=color, alpha=0.5)
        means = sweep["mean"][name]
        ax.plot(list(means), [show(v) for v in means.values()], "-o", color=color, label=f"{name} (mean)")
    budgets = sorted({r["budget"] for r in sweep["runs"]})
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("iterations (lr annealed to 0 over the budget)")
    ax.set_ylabel(ylabel)
    ax.set_title("what each budget buys")
    ax.legend()
    save(fig, epath.Path(out) / "budget_sweep.png", dpi=120)
