"""Rewrites the README's result tables from the committed result files.

Each table sits between `<!-- table:NAME -->` and `<!-- /table:NAME -->` in
README.md and is built from experiments/results/*.json (the figures of each
experiment's default run) and benchmarks/results/*.json (benchmark output), so
a table never drifts from the files it reports.

    python -m experiments.readme_tables           # rewrite README.md in place
    python -m experiments.readme_tables --check   # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 2**20


def _load(*parts: str) -> dict:
    with open(os.path.join(ROOT, *parts)) as f:
        return json.load(f)


def _row(*cells: object) -> str:
    return "|" + "|".join(f" {cell} " if cell != "" else " " for cell in cells) + "|"


def _table(header: list[str], rows: list[list[object]]) -> str:
    return "\n".join([_row(*header), "|" + "---|" * len(header)] + [_row(*row) for row in rows])


def _seismic_size(seismic: dict) -> str:
    size = seismic["config"]["data"]["size"]
    return f"{size}x{size}"


def _speedup(row: dict) -> str:
    """A matched or constant-lr speed-up row of a results file as "2.4x", "<=1.0x" or ">=4.0x"."""
    if row["speedup"] is None:
        return f">={row['speedup_lower_bound']:.1f}x"
    return f"{'<=' if row.get('kind') == 'at_most' else ''}{row['speedup']:.1f}x"


def inverse_constant_lr() -> str:
    """Preconditioned vs from scratch at a constant learning rate, Rosenbrock and seismic; seismic coverage."""
    rosen, seismic = _load("experiments", "results", "rosenbrock.json"), _load("experiments", "results", "seismic.json")
    kl, rvi = rosen["reverse_kl_nats"], rosen["config"]["vi"]
    # "0.023 after 400 it, 0.12 after 2000": the unit once, on the first run.
    scratch = f"{kl['scratch']['end']:.2g} after {rvi['scratch_steps']} it"
    if rvi["scratch_max_steps"] > rvi["scratch_steps"]:
        scratch += f", {kl['scratch_long']['end']:.2g} after {rvi['scratch_max_steps']}"
    posterior, vi = seismic["posterior"], seismic["config"]["vi"]
    constant = _table(
        ["experiment", "preconditioned", "from scratch", "speed-up (constant lr)"],
        [["Rosenbrock 2D, reverse KL to the exact (grid) posterior",
          f"{kl['preconditioned']['end']:.2g} nats after {rvi['preconditioned_steps']} it", scratch,
          _speedup(rosen["speedup"])],
         [f"Seismic {_seismic_size(seismic)}, SNR of the posterior mean",
          f"{posterior['preconditioned']['snr_db_of_mean']:.1f} dB after {vi['preconditioned_steps']} it "
          f"(2-std coverage {posterior['preconditioned']['coverage']['2']:.2f})",
          f"{posterior['scratch']['snr_db_of_mean']:.1f} dB after {vi['scratch_max_steps']} it "
          f"({posterior['scratch']['coverage']['2']:.2f})",
          _speedup(seismic["speedup"])]])
    labels = {"amortized_low_fidelity": "amortized (low fidelity, no fine-tuning)",
              "preconditioned": f"preconditioned, reverse KL ({vi['preconditioned_steps']} it)",
              "scratch": f"from scratch, reverse KL ({vi['scratch_max_steps']} it)",
              "latent_correction": f"latent correction ({vi['preconditioned_steps']} it)",
              "forward_kl_anchor": f"preconditioned + forward-KL anchor, weight {vi['anchor_weight']:g} "
                                   f"({vi['preconditioned_steps']} it)"}
    gaussian = seismic["gaussian_coverage"]
    coverage = _table(
        [f"seismic {_seismic_size(seismic)} posterior", "SNR of mean (dB)", "mean std",
         "within 1 / 2 / 3 std"],
        [[label, f"{posterior[name]['snr_db_of_mean']:.1f}", f"{posterior[name]['mean_std']:.3f}",
          " / ".join(f"{posterior[name]['coverage'][k]:.2f}" for k in ("1", "2", "3"))]
         for name, label in labels.items()]
        + [["calibrated Gaussian", "", "", " / ".join(f"{gaussian[k]:.3f}" for k in ("1", "2", "3"))]])
    return constant + "\n\n" + coverage


def _budget_rows(label: str, results: dict, objective: Callable[[float], str]) -> list[list[object]]:
    """The rows of `inverse_budgets` for one problem, from the annealed budget sweep of its results file."""
    rows = []
    for run in results["annealed_budgets"]["matched_speedup"]:
        bracket = [b if b is not None else "?" for b in run["scratch_bracket"]]
        needed = "not reached" if run["scratch_budget"] is None else f"{run['scratch_budget']:.0f}"
        speed_bracket = [f"{b:g}" if b is not None else "?" for b in run["speedup_bracket"]]
        rows.append([label, run["preconditioned_budget"], objective(run["target"]),
                     f"{needed} ({bracket[0]}-{bracket[1]})",
                     f"{_speedup(run)} ({'-'.join(speed_bracket)}x)"])
    return rows


def inverse_budgets() -> str:
    """Scratch iterations that match each preconditioned budget, both runs annealed."""
    seismic = _load("experiments", "results", "seismic.json")
    rows = (_budget_rows("Rosenbrock", _load("experiments", "results", "rosenbrock.json"), lambda v: f"KL {v:.2g}")
            + _budget_rows(f"seismic {_seismic_size(seismic)}", seismic, lambda v: f"{v:,.0f}"))
    rosen_scratch = _load("experiments", "results", "rosenbrock.json")["annealed_budgets"]["mean"]["scratch"]
    seismic_scratch = seismic["annealed_budgets"]["mean"]["scratch"]
    measured = (f"Scratch budgets measured: Rosenbrock {', '.join(rosen_scratch)} iterations (mean KL "
                f"{', '.join(f'{v:.2g}' for v in rosen_scratch.values())} nats); seismic "
                f"{', '.join(seismic_scratch)} (objective {', '.join(f'{v:,.0f}' for v in seismic_scratch.values())}).")
    return _table(["problem", "preconditioned budget (it)", "its final objective",
                   "scratch it to match (measured bracket)", "speed-up (bracket)"], rows) + "\n\n" + measured


def superres() -> str:
    """CNF vs the factorized logistic baseline vs bicubic on held-out tiles, then the claims' verdicts."""
    results = _load("experiments", "results", "superres.json")
    cnf, baseline, bicubic = results["cnf"], results["baseline"], results["bicubic"]
    temperatures = list(cnf["samples"])
    joined = lambda key, spec: " / ".join(format(cnf["samples"][t][key], spec) for t in temperatures)  # noqa: E731
    table = _table(
        [f"model ({round(cnf['params'] / 1000)}k params each)", "test bits/dim", "PSNR dB", "SSIM"],
        [["CNF, T = " + " / ".join(temperatures), f"**{cnf['test_bits_per_dim']:.2f}** (bound)",
          joined("psnr", ".1f"), joined("ssim", ".2f")],
         ["factorized logistic (mode)", f"{baseline['test_bits_per_dim']:.2f}", f"{baseline['mode']['psnr']:.1f}",
          f"{baseline['mode']['ssim']:.2f}"],
         ["bicubic", "—", f"{bicubic['psnr']:.1f}", f"{bicubic['ssim']:.2f}"]])
    verdicts = [f"- {'holds' if c['holds'] else 'does not hold'}: {c['claim']} ({c['evidence']})"
                for c in results["claims"].values()]
    return table + "\n\n" + "\n".join(verdicts)


def vessels() -> str:
    """The CNF against a factorized Bernoulli on structured annotations, then the paper's claims' verdicts."""
    results = _load("experiments", "results", "vessels.json")
    scores, bits = results["scores"], results["test_bits_per_pixel"]
    cnf, fac = scores["CNF"], scores["factorized"]

    def metric(label: str, cell: Callable[[dict], str]) -> list[str]:
        return [label, cell(cnf), cell(fac)]

    params = results["parameters"]
    table = _table(
        ["", f"CNF ({params['CNF_flow'] / 1000:.0f}k)", f"factorized ({params['factorized'] / 1000:.0f}k)"],
        [["test bits/pixel", f"{bits['CNF_negative_elbo']:.4f} (neg. ELBO)", f"{bits['factorized_nll']:.4f} (NLL)"],
         metric(f"sample precision / recall (second annotator {cnf['reference_precision_mean']:.3f} / "
                f"{cnf['reference_recall_mean']:.3f})",
                lambda m: f"{m['sample_precision_mean']:.3f} / {m['sample_recall_mean']:.3f}"),
         metric("PR distance of a sample to the second annotator",
                lambda m: f"{m['sample_distance_to_reference']:.3f}"),
         metric(f"connected components per sample (truth {cnf['truth_components_per_image']:.1f})",
                lambda m: f"{m['sample_components_per_image']:.1f}"),
         metric(f"faint capillaries: mean fraction of samples holding one (truth {cnf['capillary_presence_mean']:.2f})",
                lambda m: f"{m['capillary_sample_frequency_mean']:.2f}"),
         metric(f"capillary calibration error, mean over {cnf['capillaries_scored']}",
                lambda m: f"{m['capillary_calibration_error']:.3f}"),
         metric("soft image: max F1 / AUC-PR / ECE",
                lambda m: f"{m['max_f1']:.3f} / {m['auc_pr']:.3f} / {m['ece']:.4f}")])
    verdicts = [f"- {'**holds**' if claim['holds'] else '**does not hold**'}: {claim['claim']} ({claim['evidence']})"
                for claim in results["claims"].values()]
    return table + "\n\n" + "\n".join(verdicts)


EXPERIMENTS = (("rosenbrock", "2D Rosenbrock (Siahkoohi et al.)"), ("seismic", "seismic (Siahkoohi et al.)"),
               ("superres", "super-resolution (Winkler et al.)"), ("vessels", "retinal vessels (Winkler et al.)"))


def claims() -> str:
    """One verdict line per paper claim, from `claims` in every experiment's committed results."""
    rows = []
    for name, label in EXPERIMENTS:
        results = _load("experiments", "results", f"{name}.json")
        for claim in results.get("claims", {}).values():
            rows.append([label, claim["claim"].replace("|", "\\|"),  # a literal bar inside a table cell
                         "**holds**" if claim["holds"] else "**does not hold**", claim["evidence"].replace("|", "\\|")])
    return _table(["experiment", "claim", "verdict", "figures"], rows)


def glow_throughput() -> str:
    """Whole-Glow throughput on the GPU against naive distrax and the PyTorch peers."""
    summary = _load("benchmarks", "results", "logdet_throughput_h100.json")["summary"]
    ratio = lambda key: [f"{summary[f'glow_{way}_{key}']:.2f}x" for way in ("forward", "inverse")]  # noqa: E731
    peak = summary["glow_coupling_fraction_of_peak_forward"]
    return _table(
        ["", "density (forward + log-det)", "sampling (inverse)"],
        [["jcnf", f"{summary['glow_forward_samples_per_s']:,.0f}", f"{summary['glow_inverse_samples_per_s']:,.0f}"],
         ["ours / naive distrax", *ratio("ratio_vs_naive")],
         ["ours / PyTorch same architecture, eager", *ratio("ratio_vs_torch_eager")],
         ["ours / PyTorch same architecture, `torch.compile`", *ratio("ratio_vs_torch_compiled")],
         ["ours / normflows Glow, eager", *ratio("ratio_vs_normflows_eager")],
         ["bfloat16: ours / PyTorch bf16 autocast, eager",
          *[f"{summary[f'glow_bf16_{way}_ratio_vs_torch_eager_bf16']:.2f}x" for way in ("forward", "inverse")]],
         ["coupling networks' achieved FLOP/s, fraction of peak",
          f"{100 * peak['tf32']:.1f}% of TF32 dense peak ({100 * peak['fp32']:.1f}% of non-tensor-core FP32)", ""]])


def memory_depth() -> str:
    """Device peak memory of a training step against depth, both modes."""
    reversible = _load("benchmarks", "results", "memory_depth_h100.json")["results"]
    scan = _load("benchmarks", "results", "memory_depth_h100_default_mode.json")["results"]
    depths = sorted({run["blocks"] for run in reversible + scan})

    def peaks(runs: list[dict]) -> list[str]:
        by_depth = {run["blocks"]: run.get("device_peak_bytes_in_use") for run in runs}
        return [f"{by_depth[k] / MIB:,.0f}" if by_depth.get(k) else "not finished in the time limit" for k in depths]

    return _table(["K", *depths], [["scan (MiB)", *peaks(scan)], ["reversible (MiB)", *peaks(reversible)]])


def compile_time() -> str:
    """Create-state, first-step (compile) and steady step time of ConditionalGlow against depth, both modes."""
    record = _load("benchmarks", "results", "compile_time_cpu.json")
    runs = {(run["depth"], run["mode"]): run for run in record["results"] if "error" not in run}
    depths = sorted({depth for depth, mode in runs if mode == "scan"})
    rows = []
    for mode, label in (("scan", "scan (default)"), ("reversible", "reversible"), ("unrolled", "unrolled")):
        for key, unit in (("create_state_s", "create_state s"), ("first_step_s", "first mle_step s"),
                          ("step_ms", "steady step ms")):
            cells = [f"{runs[depth, mode][key]:.1f}" if (depth, mode) in runs else "" for depth in depths]
            rows.append([f"{label}: {unit}", *cells])
    return _table(["K", *depths], rows)


def dispatch() -> str:
    """Training steps/s of small problems against the number of steps per dispatch."""
    record = _load("benchmarks", "results", "dispatch_cpu.json")
    names = {"tiny_realnvp_mle": "tiny RealNVP, maximum likelihood",
             "rosenbrock_reverse_kl": "Rosenbrock, reverse KL (`fit_reverse_kl`)"}
    counts = sorted({int(n) for result in record["results"].values() for n in result["steps_per_s"]})
    rows = []
    for name, result in record["results"].items():
        rows.append([names.get(name, name)] + [
            f"{result['steps_per_s'][str(n)]:,.0f} ({result['speedup_vs_1'][str(n)]:.1f}x)" for n in counts])
    return _table(["steps/s (speed-up)", *[f"steps_per_dispatch={n}" for n in counts]], rows)


def npe_table(*records: dict) -> str:
    """The NPE benchmark, jcnf against flowjax per task and budget: mean C2ST (0.5 is best) and training time.

    Several records (runs of `benchmarks.npe`) may be given; each task's rows
    come from the first record that has them, and one note per record names
    its observations, estimator, machine and load.
    """
    rows: dict[tuple[str, int], dict] = {}
    notes = []
    for record in records:
        scored = {row["task"] for row in record["results"] if "skipped" not in row}
        tasks = [task for task in record["tasks"] if task in scored and not any(key[0] == task for key in rows)]
        for row in record["results"]:
            if row["task"] in tasks and "skipped" not in row:
                rows.setdefault((row["task"], row["budget"]), {})[row["estimator"]] = row
        environment = record["environment"]
        if tasks:
            notes.append(f"{', '.join(tasks)}: C2ST mean over {record['observations']} "
                         f"{record.get('observation_set', 'evaluation')} observations, "
                         f"{record['settings']['posterior_samples']:,} samples each; jcnf is "
                         f"{record['jcnf_estimator']}; flowjax {environment['flowjax']}; "
                         f"{environment['device']} ({environment['cpu_count']} cores, load average "
                         f"{environment['load_average_1min']:.1f} at the start)"
                         + ("." if record["complete"] else "; the run was stopped after these tasks."))
    estimators = [name for name in ("jcnf", "flowjax") if any(name in cell for cell in rows.values())]

    def c2st_cell(row: dict | None) -> str:
        return "" if row is None or row["c2st_mean"] is None else f"{row['c2st_mean']:.3f}"

    table = _table(["task", "simulations", *[f"{name} C2ST" for name in estimators],
                    *[f"{name} train s" for name in estimators]],
                   [[task, f"{budget:,}", *[c2st_cell(cell.get(name)) for name in estimators],
                     *[f"{cell[name]['train_s']:.0f}" if name in cell else "" for name in estimators]]
                    for (task, budget), cell in rows.items()])
    return table + "\n\nTraining time includes compilation. " + " ".join(notes)


def npe() -> str:
    """Posterior estimation on the CPU: the 2-D tasks and SLCP, then the 10-D Gaussian tasks (fewer C2ST samples)."""
    return npe_table(_load("benchmarks", "results", "npe_cpu.json"),
                     _load("benchmarks", "results", "npe_cpu_10d.json"))


def npe_small_budget() -> str:
    """Posterior estimation on the CPU at 1,000 simulations, every task, 1,000 C2ST samples."""
    return npe_table(_load("benchmarks", "results", "npe_cpu_1k.json"))


TABLES: dict[str, Callable[[], str]] = {
    "claims": claims,
    "inverse_constant_lr": inverse_constant_lr, "inverse_budgets": inverse_budgets, "superres": superres,
    "vessels": vessels, "glow_throughput": glow_throughput, "memory_depth": memory_depth,
    "compile_time": compile_time, "dispatch": dispatch, "npe": npe,
    "npe_1k": npe_small_budget}


def render(readme: str) -> str:
    """`readme` with every marked table rebuilt from the result files.

    Raises:
      ValueError: a table of TABLES has no marker pair in `readme`.
    """
    for name, build in TABLES.items():
        pattern = re.compile(rf"(<!-- table:{name} -->\n).*?(\n<!-- /table:{name} -->)", re.S)
        match = pattern.search(readme)
        if match is None:
            raise ValueError(f"README has no `<!-- table:{name} -->` ... `<!-- /table:{name} -->` block.")
        readme = readme[:match.end(1)] + build() + readme[match.start(2):]
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md differs from the result files")
    parser.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    args = parser.parse_args(argv)
    with open(args.readme, encoding="utf-8") as f:
        current = f.read()
    updated = render(current)
    if args.check:
        if updated != current:
            print(f"{args.readme} is out of date: run `python -m experiments.readme_tables`.", file=sys.stderr)
            return 1
        return 0
    if updated != current:
        with open(args.readme, "w", encoding="utf-8") as f:
            f.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
