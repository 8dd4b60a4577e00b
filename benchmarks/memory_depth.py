"""Peak memory of a Glow training step against depth K, schedule "scan" vs "reversible".

The train step is a jitted negative-log-likelihood gradient and an Adam
update. For each K it records XLA's memory analysis of the compiled step
(temporary buffers, i.e. activations and workspace, and the arguments and
outputs: parameters, optimizer state, batch). On a GPU it also runs the step
and reads the device's peak bytes in use, each mode in its own process (the
peak counter cannot be reset). The target is a memory-efficient peak flat in
depth: within 1.5x from K=8 to K=64.

    python -m benchmarks.memory_depth --json benchmarks/results/memory_depth_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Optional

import jax
import jax.numpy as jnp
import optax

import jcnf
from benchmarks._common import environment, glow_inputs, synthetic_params, write_json

SIZES = {
    "tiny": {"levels": 1, "hidden": 4, "context_features": 2, "size": 8, "batch": 2, "ks": [2, 4]},
    # Sizes where activations, not parameters, dominate a step's memory (as in image-flow training):
    # parameters, their gradients and Adam's moments grow with K in either mode, and that floor is
    # reported separately (parameter_state_bytes).
    # A few minutes of compilation on a 2-core CPU (the step is compiled, not run).
    "default": {"levels": 2, "hidden": 16, "context_features": 4, "size": 32, "batch": 64, "ks": [8, 16, 32, 64]},
    "full": {"levels": 2, "hidden": 128, "context_features": 16, "size": 64, "batch": 32, "ks": [8, 16, 32, 64]},
}


def _step_and_args(config: dict, blocks: int, reversible: bool):
    """A jitted train step of a Glow with K = `blocks`, and its example arguments (synthetic parameters)."""
    model = jcnf.ConditionalGlow(levels=config["levels"], blocks=blocks, hidden=config["hidden"],
                                 context_features=config["context_features"], encoder_blocks=1,
                                 schedule="reversible" if reversible else "scan")
    value, context = glow_inputs(config["size"], config["batch"])
    params = synthetic_params(model.init, jax.random.PRNGKey(0), value, context)["params"]
    optimizer = optax.adam(1e-4)

    def loss_fn(params):
        return -jnp.mean(model.apply({"params": params}, value, context, method="log_prob"))

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    num_params = jcnf.train.count_params(params)
    return step, (params, optimizer.init(params)), num_params


def measure(config: dict, blocks: int, reversible: bool, run_step: bool) -> dict:
    """Compiles (and on request runs) one train step; returns its memory figures in bytes."""
    step, args, num_params = _step_and_args(config, blocks, reversible)
    start = time.perf_counter()
    compiled = step.lower(*args).compile()
    compile_s = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    result = {"blocks": blocks, "reversible": reversible, "num_params": int(num_params),
              # Parameters, gradients and Adam's two moments: the floor that grows with K in any mode.
              "parameter_state_bytes": int(16 * num_params), "compile_s": round(compile_s, 2)}
    if analysis is not None:
        temp = int(analysis.temp_size_in_bytes)
        arguments = int(analysis.argument_size_in_bytes)
        outputs = int(analysis.output_size_in_bytes)
        aliased = int(analysis.alias_size_in_bytes)
        result.update({"temp_bytes": temp, "argument_bytes": arguments, "output_bytes": outputs,
                       "alias_bytes": aliased,
                       # Live at once in the worst case: inputs, outputs not written in place, and temporaries.
                       "total_bytes": temp + arguments + outputs - aliased})
    if run_step:
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        result["step_s"] = round(time.perf_counter() - start, 4)
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            # The counter is a running maximum over this process; K only grows within a process.
            result["device_peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])
    print(f"  K={blocks:3} {'reversible' if reversible else 'scan      '} temp "
          f"{result.get('temp_bytes', 0) / 2**20:9.1f} MiB total {result.get('total_bytes', 0) / 2**20:9.1f} MiB "
          f"peak {result.get('device_peak_bytes_in_use', 0) / 2**20:9.1f} MiB  (compile {compile_s:.1f} s)", flush=True)
    return result


def _growth(results: list[dict], key: str, reversible: bool) -> Optional[float]:
    rows = sorted((r for r in results if r["reversible"] == reversible and key in r),
                  key=lambda r: r["blocks"])
    if len(rows) < 2 or not rows[0][key]:
        return None
    return rows[-1][key] / rows[0][key]


def summarize(record: dict) -> dict:
    """Adds the growth from the first to the last K of each memory figure, per mode, and the target check.

    Two figures answer two questions: `temp` (activations and workspace) is
    what the memory-efficient gradient removes; `total` and the device peak
    also hold the parameters, gradients and Adam moments, which grow with K in
    every mode.
    """
    results = record["results"]
    growth = {mode: {key: _growth(results, key, mode == "reversible")
                     for key in ("temp_bytes", "total_bytes", "device_peak_bytes_in_use", "parameter_state_bytes")}
              for mode in ("reversible", "scan")}
    record["growth_k_first_to_last"] = growth
    ks = sorted({r["blocks"] for r in results})
    summary = {"ks": ks}
    for mode in ("reversible", "scan"):
        summary[f"{mode}_temp_growth"] = growth[mode]["temp_bytes"]
        summary[f"{mode}_peak_growth"] = growth[mode]["device_peak_bytes_in_use"] or growth[mode]["total_bytes"]
    summary["peak_source"] = ("device_peak_bytes_in_use" if growth["reversible"]["device_peak_bytes_in_use"]
                              else "XLA memory analysis total (arguments + outputs + temporaries)")
    summary["parameter_state_growth"] = growth["reversible"]["parameter_state_bytes"]
    for name in ("temp", "peak"):
        value = summary[f"reversible_{name}_growth"]
        summary[f"reversible_{name}_flat_within_1.5x"] = None if value is None else value <= 1.5
    record["summary"] = summary
    return record


def _worker(size: str, reversible: bool, json_path: str) -> None:
    """One mode, in its own process, so the device's peak counter belongs to that mode alone."""
    config = SIZES[size]
    results = []
    for blocks in config["ks"]:
        results.append(measure(config, blocks, reversible, run_step=True))
        write_json(json_path, {"results": results})


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--full", action="store_true", help="GPU sizes (hidden 256, 32x32, batch 32)")
    parser.add_argument("--tiny", action="store_true", help="seconds (also chosen by JCNF_BENCH_TINY=1)")
    parser.add_argument("--processes", action="store_true",
                        help="run each mode in its own process and read device memory stats (default on GPU)")
    parser.add_argument("--worker-timeout", type=float, default=None,
                        help="seconds allowed to each mode's process; what it measured before is kept")
    parser.add_argument("--worker", choices=("scan", "reversible"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = "tiny" if args.tiny or os.environ.get("JCNF_BENCH_TINY") == "1" else "full" if args.full else "default"
    if args.worker:
        _worker(size, args.worker == "reversible", args.worker_json)
        return {}

    config = SIZES[size]
    platform = jax.devices()[0].platform
    record = {"benchmark": "memory_depth", "size": size, "glow": {k: v for k, v in config.items() if k != "ks"},
              "environment": environment(), "results": [], "complete": False,
              "note": ("temp_bytes/total_bytes: XLA memory analysis of the compiled train step; "
                       "device_peak_bytes_in_use: measured on the device (GPU only), one process per mode")}
    began = time.perf_counter()
    print(f"{record['environment']['device']} ({platform}), size {size}", flush=True)
    if platform == "cpu" and not args.processes:
        # Compile only: the analysis is what XLA will allocate; interleaving modes keeps pairs if cut short.
        for blocks in config["ks"]:
            for reversible in (True, False):
                record["results"].append(measure(config, blocks, reversible, run_step=False))
                write_json(args.json, record)
    else:
        for mode in ("reversible", "scan"):
            worker_json = f"{args.json or 'memory_depth'}.{mode}.part"
            command = [sys.executable, "-m", "benchmarks.memory_depth", "--worker", mode, "--worker-json",
                       worker_json] + (["--full"] if size == "full" else ["--tiny"] if size == "tiny" else [])
            try:
                returncode = subprocess.run(command, check=False, timeout=args.worker_timeout).returncode
            except subprocess.TimeoutExpired:
                returncode = f"timeout after {args.worker_timeout} s"
            if os.path.exists(worker_json):
                with open(worker_json) as f:
                    record["results"].extend(json.load(f)["results"])
                os.remove(worker_json)
            if returncode:
                record.setdefault("errors", []).append(f"{mode} worker stopped: {returncode}")
            write_json(args.json, record)

    summarize(record)
    record["complete"] = True
    record["wall_s"] = round(time.perf_counter() - began, 1)
    write_json(args.json, record)
    print("summary:", record["summary"], f"wall {record['wall_s']} s")
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
