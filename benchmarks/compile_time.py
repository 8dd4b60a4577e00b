"""Compile and initialization time of a deep ConditionalGlow against its depth, and its steady step time.

For each depth K (levels L=3, hidden 128, 32x32x3 values, batch 4) and each
mode, a fresh Python process measures, on the current default devices:
  * `create_state_s`: `jcnf.train.create_state` (tracing, compiling and
    running the data-dependent init);
  * `first_step_s`: the first `mle_step` call (compilation dominates);
  * `sample_compile_s`: the first `sample_step` call;
  * `step_ms`: the median steady step time after warm-up.

Modes are the flows' schedules: "scan" (each level's K blocks scanned over
stacked parameters), "reversible" (the scan with an inverting backward pass)
and "unrolled" (the same parameters as a Python loop, the
program XLA compiled before blocks were scanned; measured at the smaller
depths only, its compile time grows with K). One process per measurement,
so no compilation is shared between them.

The summary holds `compile_ratio_k32_vs_k4` (first step and create_state,
per mode), `reversible_step_ratio` (reversible over scan
steady step time at K=8 and K=32) and `scan_step_ratio` (scan over
unrolled steady step time where both were measured).

    python -m benchmarks.compile_time --json benchmarks/results/compile_time_cpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

DEPTHS = (4, 8, 16, 32)
UNROLLED_DEPTHS = (4, 8)
CONFIG = {"levels": 3, "hidden": 128, "context_features": 64, "encoder_blocks": 2}
SHAPE, BATCH = (32, 32, 3), 4


def measure(depth: int, mode: str, repeats: int, config: dict, shape: tuple, batch_size: int) -> dict:
    """One measurement, in this process (the parent runs each in a fresh one)."""
    import jax
    import numpy as np

    import jcnf
    from jcnf import train

    model = jcnf.ConditionalGlow(blocks=depth, schedule=mode, **config)
    rng = np.random.default_rng(0)
    height, width, _ = shape
    batch = {"value": (rng.integers(0, 256, (batch_size,) + tuple(shape)) / 256).astype(np.float32),
             "context": rng.normal(size=(batch_size, height // 2, width // 2, 3)).astype(np.float32)}
    dequantizer = jcnf.dequantize.uniform_dequantization(256)

    start = time.perf_counter()
    state = train.create_state(model, train.default_optimizer(1e-3), jax.random.PRNGKey(0), batch,
                               dequantizer=dequantizer)
    jax.block_until_ready(state.params)
    create_state_s = time.perf_counter() - start

    step = train.mle_step(model, dequantizer=dequantizer)
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    first_step_s = time.perf_counter() - start

    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    step_ms = 1e3 * float(np.median(times[2:]))  # two warm-up calls excluded

    sample = train.sample_step(model)
    start = time.perf_counter()
    jax.block_until_ready(sample(state, jax.random.PRNGKey(1), batch["context"]))
    sample_compile_s = time.perf_counter() - start
    return {"depth": depth, "mode": mode, "create_state_s": round(create_state_s, 2),
            "first_step_s": round(first_step_s, 2), "sample_compile_s": round(sample_compile_s, 2),
            "step_ms": round(step_ms, 2), "loss": float(metrics["loss"]),
            "num_params": train.count_params(state.params)}


def _ratio(results: list[dict], numerator: tuple, denominator: tuple, key: str):
    def find(depth, mode):
        return next((r for r in results if r["depth"] == depth and r["mode"] == mode and key in r), None)
    top, bottom = find(*numerator), find(*denominator)
    return None if top is None or bottom is None else round(top[key] / bottom[key], 3)


def summarize(results: list[dict], depths: tuple) -> dict:
    low, high = min(depths), max(depths)
    summary = {}
    for mode in ("scan", "reversible"):
        summary[f"compile_ratio_k{high}_vs_k{low}"] = summary.get(f"compile_ratio_k{high}_vs_k{low}", {})
        summary[f"compile_ratio_k{high}_vs_k{low}"][mode] = {
            "first_step": _ratio(results, (high, mode), (low, mode), "first_step_s"),
            "create_state": _ratio(results, (high, mode), (low, mode), "create_state_s")}
    summary["reversible_step_ratio"] = {
        f"k{depth}": _ratio(results, (depth, "reversible"), (depth, "scan"), "step_ms")
        for depth in depths if depth in (8, 32, low, high)}
    summary["scan_step_ratio"] = {f"k{depth}": _ratio(results, (depth, "scan"), (depth, "unrolled"), "step_ms")
                                  for depth in depths}
    summary["scan_first_step_ratio"] = {
        f"k{depth}": _ratio(results, (depth, "scan"), (depth, "unrolled"), "first_step_s") for depth in depths}
    return summary


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--depths", default=",".join(map(str, DEPTHS)), help="comma-separated K values")
    parser.add_argument("--unrolled-depths", default=",".join(map(str, UNROLLED_DEPTHS)),
                        help="K values at which the unrolled mode is also measured ('' for none)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steady steps per measurement")
    parser.add_argument("--quick", action="store_true", help="a tiny Glow (L=2, hidden 8, 16x16): a smoke run")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per measurement")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config, shape = (dict(CONFIG), SHAPE)
    if args.quick:
        config, shape = {"levels": 2, "hidden": 8, "context_features": 4, "encoder_blocks": 1}, (16, 16, 3)
    if args.worker:
        depth, mode = args.worker.split(":")
        print(json.dumps(measure(int(depth), mode, args.repeats, config, shape, BATCH)))
        return

    from benchmarks._common import environment, write_json

    depths = tuple(int(k) for k in args.depths.split(","))
    unrolled = tuple(int(k) for k in args.unrolled_depths.split(",") if k)
    runs = [(k, mode) for k in depths for mode in ("scan", "reversible")]
    runs += [(k, "unrolled") for k in unrolled]
    began = time.perf_counter()
    results = []
    record = {"benchmark": "compile_time", "glow": config, "value_shape": list(shape), "batch_size": BATCH,
              "environment": environment(), "results": results}
    print(f"{record['environment']['device']}: L={config['levels']} hidden {config['hidden']}, "
          f"{shape[0]}x{shape[1]}, batch {BATCH}")
    print(f"{'K':>3} {'mode':17} {'create_state s':>14} {'first step s':>12} {'sample s':>9} {'step ms':>9}")
    for depth, mode in runs:
        command = [sys.executable, "-m", "benchmarks.compile_time", "--worker", f"{depth}:{mode}",
                   "--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
        except (subprocess.SubprocessError, json.JSONDecodeError, IndexError) as error:
            result = {"depth": depth, "mode": mode, "error": type(error).__name__}
        results.append(result)
        if "error" in result:
            print(f"{depth:>3} {mode:17} failed: {result['error']}")
        else:
            print(f"{depth:>3} {mode:17} {result['create_state_s']:>14.1f} {result['first_step_s']:>12.1f} "
                  f"{result['sample_compile_s']:>9.1f} {result['step_ms']:>9.1f}")
        record["summary"] = summarize(results, depths)
        record["wall_s"] = round(time.perf_counter() - began, 1)
        write_json(args.json, record)  # after every measurement, so a run cut short keeps what it measured
    print(json.dumps(record["summary"], indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
