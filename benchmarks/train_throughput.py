"""Train and sample throughput of jcnf.train's step functions for a small and a medium Glow.

For each model it times, on the current default devices:
  * `mle_step` (uniform dequantization, non-finite guard, sharded jit): train steps/s;
  * a baseline: the same loss and optimizer as a bare `jax.jit` step, with
    no guard and no shardings, to show what the engine's extras cost;
  * `sample_step`: samples/s at temperature 1.

Compilation and two warm-up calls are excluded; each repeat times a run of
calls ending in `block_until_ready`; the median over repeats is reported.

    python -m benchmarks.train_throughput --json benchmarks/results/train_throughput_cpu.json --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jcnf
from benchmarks._common import environment, median_rate, write_json
from jcnf import train

# name -> (Glow kwargs, value shape [H, W, C], batch size)
FULL = {
    "small": ({"levels": 2, "steps": 4, "hidden": 32, "context_features": 16, "encoder_blocks": 1}, (16, 16, 3), 32),
    "medium": ({"levels": 3, "steps": 8, "hidden": 128, "context_features": 32, "encoder_blocks": 2},
               (32, 32, 3), 32),
}
# Quick mode keeps CPU compile time (~10 s per Glow program) inside a minute.
QUICK = {
    "small": ({"levels": 1, "steps": 2, "hidden": 16, "context_features": 8, "encoder_blocks": 1}, (8, 8, 3), 8),
    "medium": ({"levels": 2, "steps": 2, "hidden": 32, "context_features": 8, "encoder_blocks": 1}, (16, 16, 3), 8),
}


def _batch(shape: tuple[int, int, int], batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    height, width, _ = shape
    return {"value": (rng.integers(0, 256, (batch_size,) + shape) / 256).astype(np.float32),
            "context": rng.normal(size=(batch_size, height // 2, width // 2, 1)).astype(np.float32)}


def _baseline_step(model: jcnf.ConditionalGlow, optimizer: optax.GradientTransformation) -> Callable:
    """The same objective as `mle_step` as a bare jitted step: no guard, no shardings, no metrics beyond the loss."""
    dequantize = train.uniform_dequantization(256)

    def loss_fn(params, rng, batch):
        value, correction = dequantize(rng, batch["value"], batch)
        return -jnp.mean(model.apply({"params": params}, value, batch["context"], method="log_prob") + correction)

    @jax.jit
    def step(params, opt_state, rng, batch):
        rng, step_rng = jax.random.split(rng)
        loss, grads = jax.value_and_grad(loss_fn)(params, step_rng, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, rng, loss

    return step


def benchmark(name: str, config: tuple, calls: int, repeats: int, baseline: bool) -> dict:
    kwargs, shape, batch_size = config
    model = jcnf.ConditionalGlow(**kwargs)
    batch = _batch(shape, batch_size)
    optimizer = train.default_optimizer(1e-3)
    dequantizer = train.uniform_dequantization(256)
    state = train.create_state(model, optimizer, jax.random.PRNGKey(0), batch, dequantizer=dequantizer)
    num_params = train.count_params(state.params)
    step = train.mle_step(model, dequantizer=dequantizer)
    sharded = train.shard_batch(batch, train.make_mesh())
    holder = {"state": state}

    def train_call():
        holder["state"], metrics = step(holder["state"], sharded)
        return metrics["loss"]

    start = time.perf_counter()
    jax.block_until_ready(train_call())
    compile_s = time.perf_counter() - start
    steps_per_s = median_rate(train_call, calls, repeats)
    result = {"model": name, "glow": kwargs, "value_shape": list(shape), "batch_size": batch_size,
              "num_params": int(num_params), "compile_s": round(compile_s, 2),
              "train_steps_per_s": steps_per_s, "train_examples_per_s": steps_per_s * batch_size}

    if baseline:
        plain = _baseline_step(model, optimizer)
        params = jax.device_get(holder["state"].params["flow"])
        carry = {"params": params, "opt_state": optimizer.init(params), "rng": jax.random.PRNGKey(1)}
        device_batch = jax.device_put(batch)

        def baseline_call():
            carry["params"], carry["opt_state"], carry["rng"], loss = plain(carry["params"], carry["opt_state"],
                                                                            carry["rng"], device_batch)
            return loss

        result["baseline_train_steps_per_s"] = median_rate(baseline_call, calls, repeats)

    sample = train.sample_step(model)
    context = sharded["context"]
    rng = jax.random.PRNGKey(2)
    result["samples_per_s"] = batch_size * median_rate(lambda: sample(holder["state"], rng, context), calls, repeats)
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--quick", action="store_true", help="tiny models and few repeats (< 60 s on a CPU)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None, help="calls per timed repeat")
    args = parser.parse_args(argv)
    configs = QUICK if args.quick else FULL
    repeats = args.repeats or 5
    calls = args.calls or (10 if args.quick else 20)

    began = time.perf_counter()
    results = []
    for name, config in configs.items():
        # The baseline doubles compile time; quick mode runs it for the small model only.
        results.append(benchmark(name, config, calls, repeats, baseline=not args.quick or name == "small"))
    record = {"benchmark": "train_throughput", "quick": args.quick, "repeats": repeats, "calls_per_repeat": calls,
              "environment": environment(), "results": results,
              "wall_s": round(time.perf_counter() - began, 1)}

    print(f"{record['environment']['device']} x{record['environment']['device_count']}, jax "
          f"{jax.__version__}, {'quick' if args.quick else 'full'} mode")
    print(f"{'model':8} {'params':>9} {'batch':>5} {'steps/s':>9} {'baseline':>9} {'examples/s':>11} "
          f"{'samples/s':>10} {'compile s':>9}")
    for r in results:
        baseline = r.get("baseline_train_steps_per_s")
        print(f"{r['model']:8} {r['num_params']:>9} {r['batch_size']:>5} {r['train_steps_per_s']:>9.2f} "
              f"{baseline if baseline is None else round(baseline, 2)!s:>9} {r['train_examples_per_s']:>11.1f} "
              f"{r['samples_per_s']:>10.1f} {r['compile_s']:>9.1f}")
    write_json(args.json, record)


if __name__ == "__main__":
    main(sys.argv[1:])
