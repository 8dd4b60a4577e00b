"""The annealed budget sweep shared by the inverse-problem experiments: flags, parsing and its figure."""

from __future__ import annotations

import argparse
import os

from experiments._figures import pyplot


def add_budget_args(parser: argparse.ArgumentParser, preconditioned: str, scratch: str, seeds: int) -> None:
    """--sweep-preconditioned, --sweep-scratch (comma-separated budgets) and --sweep-seeds."""
    parser.add_argument("--sweep-preconditioned", default=preconditioned,
                        help="budgets (iterations) of preconditioned runs annealed to lr 0 (matched-quality "
                             "speed-up); an empty string skips the sweep")
    parser.add_argument("--sweep-scratch", default=scratch, help="budgets of annealed runs from scratch")
    parser.add_argument("--sweep-seeds", type=int, default=seeds,
                        help="seeds per budget (--smoke and --paper set their own budgets and seeds)")


def parse_budget_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Turns the two budget flags into sorted lists of ints in place; a parser error naming a bad flag."""
    for name in ("sweep_preconditioned", "sweep_scratch"):
        text = getattr(args, name)
        try:
            budgets = sorted({int(part) for part in text.split(",")}) if text.strip() else []
        except ValueError:
            budgets = [0]
        if budgets and budgets[0] < 1:
            parser.error(f"--{name.replace('_', '-')} must be comma-separated positive iteration counts; got {text!r}")
        setattr(args, name, budgets)
    if bool(args.sweep_preconditioned) != bool(args.sweep_scratch) or args.sweep_seeds < 1:
        parser.error("--sweep-preconditioned and --sweep-scratch must both be given (or both empty) and "
                     f"--sweep-seeds >= 1; got {args.sweep_preconditioned}, {args.sweep_scratch}, {args.sweep_seeds}")


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
    fig.tight_layout()
    fig.savefig(os.path.join(out, "budget_sweep.png"), dpi=120)
    plt.close(fig)
