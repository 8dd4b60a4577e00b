"""The main job: every landed experiment's default run, in sequence, on a CPU.

    python -m experiments.main --out out

Each experiment writes results.json and its figures under OUT/<name>/; a
summary of all of them goes to OUT/summary.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time

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
    args = parser.parse_args(argv)
    summary = {}
    for name, module_name in EXPERIMENTS:
        if args.only and name not in args.only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue  # that experiment has not landed yet
        print(f"\n=== {name} ===", flush=True)
        start = time.time()
        results = module.main(["--out", os.path.join(args.out, name)])
        summary[name] = {"seconds": round(time.time() - start, 1), "results": results}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    print(f"\nwrote {os.path.join(args.out, 'summary.json')}: " + ", ".join(
        f"{name} ({entry['seconds']} s)" for name, entry in summary.items()))
    return summary


if __name__ == "__main__":
    main()
