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


def _bracket(pair: list[float]) -> str:
    return "-".join(f"{value:g}" for value in pair)


def inverse_constant_lr() -> str:
    """Preconditioned vs from scratch at a constant learning rate, Rosenbrock and seismic."""
    rosen, seismic = _load("experiments", "results", "rosenbrock.json"), _load("experiments", "results", "seismic.json")
    r, s = rosen["constant_lr"], seismic["constant_lr"]
    # "0.023 after 400 it, 0.12 after 2000": the unit once, on the first run.
    scratch = ", ".join(f"{run['kl_nats']:.2g} after {run['iterations']}" + (" it" if i == 0 else "")
                        for i, run in enumerate(r["scratch"]))
    seismic_scratch = s["scratch"][0]
    return _table(
        ["experiment", "preconditioned", "from scratch", "speed-up (constant lr)"],
        [["Rosenbrock 2D, reverse KL to the exact (grid) posterior",
          f"{r['preconditioned']['kl_nats']:.2g} nats after {r['preconditioned']['iterations']} it", scratch,
          f"{r['speedup']:.1f}x"],
         ["Seismic 32x32, SNR of the posterior mean",
          f"{s['preconditioned']['snr_db']:.1f} dB after {s['preconditioned']['iterations']} it "
          f"(2-std coverage {s['preconditioned']['coverage_2std']:.2f})",
          f"{seismic_scratch['snr_db']:.1f} dB after {seismic_scratch['iterations']} it "
          f"({seismic_scratch['coverage_2std']:.2f})",
          f"{s['speedup']:.1f}x"]])


def inverse_budgets() -> str:
    """Scratch iterations that match each preconditioned budget, both runs annealed."""
    rows = []
    for name, file, objective in (("Rosenbrock", "rosenbrock.json", lambda v: f"KL {v:.2g}"),
                                  ("seismic 32x32", "seismic.json", lambda v: f"{v:,.0f}")):
        for run in _load("experiments", "results", file)["budget_sweep"]:
            rows.append([name, run["budget"], objective(run["objective"]),
                         f"{run['scratch_to_match']} ({_bracket(run['measured_bracket'])})",
                         f"{run['speedup']:.1f}x ({_bracket(run['speedup_bracket'])}x)"])
    return _table(["problem", "preconditioned budget (it)", "its final objective",
                   "scratch it to match (measured bracket)", "speed-up (bracket)"], rows)


def superres() -> str:
    """CNF vs the factorized logistic baseline vs bicubic on held-out tiles."""
    results = _load("experiments", "results", "superres.json")
    cnf, logistic, bicubic = results["cnf"], results["factorized_logistic_mode"], results["bicubic"]
    joined = lambda values, spec: " / ".join(format(value, spec) for value in values)  # noqa: E731
    return _table(
        [f"model ({results['params_per_model_thousands']}k params each)", "test bits/dim", "PSNR dB", "SSIM"],
        [["CNF, T = " + " / ".join(str(t) for t in cnf["temperatures"]),
          f"**{cnf['test_bits_per_dim_bound']:.2f}** (bound)",
          joined(cnf["psnr_db"], ".1f"), joined(cnf["ssim"], ".2f")],
         ["factorized logistic (mode)", f"{logistic['test_bits_per_dim']:.2f}", f"{logistic['psnr_db']:.1f}",
          f"{logistic['ssim']:.2f}"],
         ["bicubic", "—", f"{bicubic['psnr_db']:.1f}", f"{bicubic['ssim']:.2f}"]])


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
    efficient = _load("benchmarks", "results", "memory_depth_h100.json")["results"]
    default = _load("benchmarks", "results", "memory_depth_h100_default_mode.json")["results"]
    depths = sorted({run["steps"] for run in efficient + default})

    def peaks(runs: list[dict]) -> list[str]:
        by_depth = {run["steps"]: run.get("device_peak_bytes_in_use") for run in runs}
        return [f"{by_depth[k] / MIB:,.0f}" if by_depth.get(k) else "not finished in the time limit" for k in depths]

    return _table(["K", *depths], [["default (MiB)", *peaks(default)], ["memory_efficient (MiB)", *peaks(efficient)]])


def compile_time() -> str:
    """Create-state, first-step (compile) and steady step time of ConditionalGlow against depth, both modes."""
    record = _load("benchmarks", "results", "compile_time_cpu.json")
    runs = {(run["depth"], run["mode"]): run for run in record["results"] if "error" not in run}
    depths = sorted({depth for depth, mode in runs if mode == "default"})
    rows = []
    for mode, label in (("default", "scanned (default)"), ("memory_efficient", "memory_efficient"),
                        ("unrolled", "unrolled (`scan_steps=False`)")):
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


TABLES: dict[str, Callable[[], str]] = {
    "inverse_constant_lr": inverse_constant_lr, "inverse_budgets": inverse_budgets, "superres": superres,
    "vessels": vessels, "glow_throughput": glow_throughput, "memory_depth": memory_depth,
    "compile_time": compile_time, "dispatch": dispatch}


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
