"""Training speed of small problems against the number of optimizer steps per dispatch.

Small models spend most of a training step in Python and in the round trip
to the device, not in arithmetic. `fit(..., steps_per_dispatch=N)` runs N
steps in one jitted `lax.scan`; this measures its effect, in one run, on:
  * a tiny `ConditionalRealNVP` (2 layers, hidden 16) trained by maximum
    likelihood on 2-D pairs, batch 32;
  * the Rosenbrock reverse-KL problem of Siahkoohi et al. (a RealNVP of 8
    layers, hidden 64, 64 latents per step from a fixed set of 1000, a fixed
    near-identity 2x2 operator, noise 0.4) with `fit_reverse_kl`.
Throughput is `fit`'s own logged steps/s, median over the log windows after
the first (which holds the compilation).

    python -m benchmarks.dispatch --json benchmarks/results/dispatch_cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jcnf
from benchmarks._common import environment, ratio, write_json
from jcnf import inverse, train

DISPATCH = (1, 10, 50)


def _steady_rate(history: list[dict]) -> float:
    rates = [record["steps_per_s"] for record in history if "steps_per_s" in record][1:]
    return statistics.median(rates)


def tiny_realnvp(per_dispatch: int, steps: int, log_every: int) -> float:
    rng = np.random.default_rng(0)
    context = rng.normal(size=(1024, 2)).astype(np.float32)
    value = (np.stack([context[:, 0], context[:, 0] - context[:, 1]], 1)
             + 0.2 * rng.normal(size=(1024, 2))).astype(np.float32)
    result = train.fit(jcnf.ConditionalRealNVP(blocks=2, hidden=16), {"value": value, "context": context}, steps,
                       batch_size=32, log_every=log_every, steps_per_dispatch=per_dispatch, progress=False)
    return _steady_rate(result.history)


def rosenbrock_reverse_kl(per_dispatch: int, steps: int, log_every: int) -> float:
    model = jcnf.ConditionalRealNVP(blocks=8, hidden=64)
    matrix = jnp.array([[3.2, 0.4], [-0.5, 2.9]]) / 3.3  # close to the identity, as in the paper's toy
    operator = inverse.dense(matrix)
    y_obs = operator.apply(jnp.array([[2.0, 4.0]]))[0]
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((64, 2)), jnp.zeros((64, 2)))["params"]
    result = inverse.fit_reverse_kl(model, params, y_obs, operator, 0.4, inverse.rosenbrock_log_prob, steps=steps,
                                    num_samples=64, num_latents=1000, log_every=log_every,
                                    steps_per_dispatch=per_dispatch, progress=False)
    return _steady_rate(result.history)


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--steps", type=int, default=3000, help="steps per run (log windows of steps / 6)")
    args = parser.parse_args(argv)
    log_every = max(args.steps // 6, max(DISPATCH))
    log_every -= log_every % max(DISPATCH)  # windows aligned with every dispatch size
    began = time.perf_counter()
    record = {"benchmark": "dispatch", "steps": args.steps, "log_every": log_every, "environment": environment(),
              "results": {}}
    for name, run in (("tiny_realnvp_mle", tiny_realnvp), ("rosenbrock_reverse_kl", rosenbrock_reverse_kl)):
        rates = {}
        for per_dispatch in DISPATCH:
            rates[per_dispatch] = run(per_dispatch, args.steps, log_every)
            print(f"{name:24} steps_per_dispatch={per_dispatch:<3} {rates[per_dispatch]:9.0f} steps/s", flush=True)
        record["results"][name] = {"steps_per_s": {str(n): rate for n, rate in rates.items()},
                                   "speedup_vs_1": {str(n): ratio(rate, rates[1]) for n, rate in rates.items()}}
        write_json(args.json, record)
    record["wall_s"] = round(time.perf_counter() - began, 1)
    write_json(args.json, record)
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
