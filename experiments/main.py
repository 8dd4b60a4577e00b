"""The main job: every experiment's default run, in sequence, on a CPU.

    python -m experiments.main --out out

Each experiment runs its default config (experiments/configs/<name>.py:default)
and writes results.json, config.json and its figures under OUT/<name>/; a
summary of all of them goes to OUT/summary.json (process 0 writes it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import time

from etils import epath

from experiments import _hosts

# (name, module): each module has main(argv) -> results dict and a default
# configuration small enough for a CPU in minutes.
EXPERIMENTS = [
    ("demo", "experiments.demo"),
    ("rosenbrock", "experiments.rosenbrock"),
    ("seismic", "experiments.seismic"),
    ("superres", "experiments.superres"),
    ("vessels", "experiments.vessels"),
]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out")
    parser.add_argument("--only", nargs="*", help="run only these experiments")
    parser.add_argument("--distributed", choices=("auto", "on", "off"), default="auto",
                        help="join a multi-process job (see each experiment's --distributed)")
    args = parser.parse_args(argv)
    _hosts.start(args.distributed)  # once, before any JAX call; the experiments then find the job joined
    summary = {}
    for name, module_name in EXPERIMENTS:
        if args.only and name not in args.only:
            continue
        module = importlib.import_module(module_name)
        print(f"\n=== {name} ===", flush=True)
        start = time.time()
        results = module.main(["--out", str(epath.Path(args.out) / name), "--distributed", args.distributed])
        summary[name] = {"seconds": round(time.time() - start, 1), "results": results}
    if _hosts.is_writer():
        out = _hosts.output_dir(args.out)
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        print(f"\nwrote {out / 'summary.json'}: " + ", ".join(
            f"{name} ({entry['seconds']} s)" for name, entry in summary.items()))
    return summary


if __name__ == "__main__":
    _hosts.run_script(main)
