"""Training throughput of a ConditionalGlow: jcnf's `mle_step` against a bare step and normflows' Glow.

For one Glow size it times, on the current default devices, in float32 and
with bfloat16 coupling and encoder networks (the flow's log-dets stay
float32):
  * `mle_step` (uniform dequantization, non-finite guard, sharded jit):
    train steps/s, and the achieved fraction of the device's dense peak
    (FLOPs of one step from XLA's cost analysis of the unrolled program,
    which has the scanned program's arithmetic);
  * a bare `jax.jit` step of the same loss and optimizer (no guard, no
    shardings): what the engine's extras cost;
  * `mle_step` of the reversible schedule: its price over the scan;
  * `sample_step`: samples/s at temperature 1;
  * normflows 1.7.3's own Glow (unconditional, same L, K, width, image size
    and batch), a PyTorch Adam step on `forward_kld`, when normflows is
    importable: the peer users compare against.

Compilation and two warm-up calls are excluded; each repeat times a run of
calls ending in `block_until_ready` (or `torch.cuda.synchronize`); the median
over repeats is reported. The JSON is rewritten after every measurement.

    python -m benchmarks.train_throughput --json benchmarks/results/train_throughput_gpu.json
    python -m benchmarks.train_throughput --quick --json /tmp/train_cpu.json     # seconds-sized, CPU
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jcnf
from benchmarks._common import compiled_flops, environment, median_rate, peak_flops, ratio, write_json
from jcnf import train

# The Glow of Winkler et al.'s scale (L=3) with Glow's width, at ImageNet32 size.
FULL = {"glow": {"levels": 3, "blocks": 16, "hidden": 512, "context_features": 64, "encoder_blocks": 2},
        "shape": (32, 32, 3), "batch": 64, "calls": 10, "repeats": 5}
QUICK = {"glow": {"levels": 2, "blocks": 2, "hidden": 16, "context_features": 8, "encoder_blocks": 1},
         "shape": (16, 16, 3), "batch": 8, "calls": 5, "repeats": 3}


def _batch(shape: tuple[int, int, int], batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    height, width, _ = shape
    return {"value": (rng.integers(0, 256, (batch_size,) + shape) / 256).astype(np.float32),
            "context": rng.normal(size=(batch_size, height // 2, width // 2, 3)).astype(np.float32)}


def _loss_fn(model: jcnf.ConditionalGlow) -> Callable:
    dequantize = jcnf.dequantize.uniform_dequantization(256)

    def loss_fn(params, rng, batch):
        value, correction = dequantize(rng, batch["value"], batch)
        return -jnp.mean(model.apply({"params": params}, value, batch["context"], method="log_prob") + correction)

    return loss_fn


def _bare_step(model: jcnf.ConditionalGlow, optimizer: optax.GradientTransformation) -> Callable:
    """The same objective as `mle_step` as a bare jitted step: no guard, no shardings, the loss only."""
    loss_fn = _loss_fn(model)

    @jax.jit
    def step(params, opt_state, rng, batch):
        rng, step_rng = jax.random.split(rng)
        loss, grads = jax.value_and_grad(loss_fn)(params, step_rng, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, rng, loss

    return step


def step_flops(kwargs: dict, params: Any, batch: dict) -> Optional[float]:
    """FLOPs of one loss-and-gradient evaluation, counted on the unrolled program.

    XLA's cost analysis counts a loop body once, whatever its trip count, so
    the scanned program would be undercounted K-fold; `schedule="unrolled"`
    computes the same arithmetic without loops. Lowering only, no compile.
    """
    model = jcnf.ConditionalGlow(schedule="unrolled", **kwargs)
    grad = jax.jit(jax.value_and_grad(_loss_fn(model)))
    return compiled_flops(grad.lower(params, jax.random.PRNGKey(0), batch))


def _fraction_of_peak(flops: Optional[float], steps_per_s: float, precision: str) -> Any:
    peaks = peak_flops()
    if flops is None or peaks is None:
        return "unknown (no FLOP count or no peak figure for this device)"
    names = ("tf32", "fp32") if precision == "float32" else ("bf16",)
    return {name: flops * steps_per_s / peaks[name] for name in names if name in peaks}


def bench_ours(kwargs: dict, shape: tuple, batch_size: int, calls: int, repeats: int, dtype_name: str,
               reversible: bool = False, bare: bool = True) -> dict:
    dtype = jnp.bfloat16 if dtype_name == "bfloat16" else None
    model = jcnf.ConditionalGlow(dtype=dtype, schedule="reversible" if reversible else "scan", **kwargs)
    batch = _batch(shape, batch_size)
    optimizer = train.default_optimizer(1e-3)
    dequantizer = jcnf.dequantize.uniform_dequantization(256)
    state = train.create_state(model, optimizer, jax.random.PRNGKey(0), batch, dequantizer=dequantizer)
    step = train.mle_step(model, dequantizer=dequantizer)
    sharded = jcnf.sharding.shard_batch(batch, jcnf.sharding.make_mesh())
    holder = {"state": state}

    def train_call():
        holder["state"], metrics = step(holder["state"], sharded)
        return metrics["loss"]

    start = time.perf_counter()
    jax.block_until_ready(train_call())
    compile_s = time.perf_counter() - start
    steps_per_s = median_rate(train_call, calls, repeats)
    result = {"dtype": dtype_name, "reversible": reversible,
              "num_params": train.count_params(holder["state"].params), "compile_s": round(compile_s, 2),
              "train_steps_per_s": steps_per_s, "train_examples_per_s": steps_per_s * batch_size}
    if reversible:
        return result
    flops = step_flops({**kwargs, "dtype": dtype}, jax.device_get(holder["state"].params["flow"]), batch)
    result["flops_per_step"] = flops
    result["fraction_of_dense_peak"] = _fraction_of_peak(flops, steps_per_s, dtype_name)
    if bare:
        plain = _bare_step(model, optimizer)
        params = jax.device_get(holder["state"].params["flow"])
        carry = {"params": params, "opt_state": optimizer.init(params), "rng": jax.random.PRNGKey(1)}
        device_batch = jax.device_put(batch)

        def bare_call():
            carry["params"], carry["opt_state"], carry["rng"], loss = plain(carry["params"], carry["opt_state"],
                                                                            carry["rng"], device_batch)
            return loss

        result["bare_train_steps_per_s"] = median_rate(bare_call, calls, repeats)
    sample = train.sample_step(model)
    rng = jax.random.PRNGKey(2)
    result["samples_per_s"] = batch_size * median_rate(lambda: sample(holder["state"], rng, sharded["context"]),
                                                       calls, repeats)
    return result


def bench_normflows(kwargs: dict, shape: tuple, batch_size: int, calls: int, repeats: int) -> dict:
    """Normflows' Glow training step (Adam on forward_kld) in float32 and bf16 autocast, steps/s."""
    try:
        import normflows
        import torch
    except ImportError as error:
        return {"skipped": f"{error}"}
    from benchmarks._normflows_glow import build_normflows_glow

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    height, _, channels = shape
    model = build_normflows_glow(kwargs["levels"], kwargs["blocks"], kwargs["hidden"], height, channels).to(device)
    x = torch.rand(batch_size, channels, height, height, device=device)
    with torch.no_grad():
        model.log_prob(x, None)  # ActNorm's data-dependent initialization on the first batch
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    result = {"implementation": "normflows.MultiscaleFlow of GlowBlock (unconditional, LU 1x1 conv), "
                                "torch.optim.Adam on forward_kld",
              "normflows": getattr(normflows, "__version__", "unknown"), "torch": torch.__version__,
              "num_params": sum(p.numel() for p in model.parameters())}

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def make_step(autocast: bool):
        def step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
                loss = model.forward_kld(x)
            loss.backward()
            optimizer.step()
        return step

    for label, autocast in (("float32", False), ("bf16_autocast", True)):
        step = make_step(autocast)
        try:
            for _ in range(2):
                step()
            sync()
            rates = []
            for _ in range(repeats):
                start = time.perf_counter()
                for _ in range(calls):
                    step()
                sync()
                rates.append(calls / (time.perf_counter() - start))
            result[label] = {"train_steps_per_s": float(np.median(rates))}
        except Exception as error:  # a peer failing must not lose our figures
            result[label] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        print(f"  normflows {label}: {result[label]}", flush=True)
    return result


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--quick", action="store_true", help="a tiny Glow, few repeats (seconds on a CPU)")
    parser.add_argument("--no-peer", action="store_true", help="skip normflows")
    parser.add_argument("--no-reversible", action="store_true", help="skip the reversible schedule")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    kwargs, shape, batch_size = config["glow"], config["shape"], config["batch"]
    calls, repeats = config["calls"], config["repeats"]
    began = time.perf_counter()
    record = {"benchmark": "train_throughput", "quick": args.quick, "glow": kwargs, "value_shape": list(shape),
              "batch_size": batch_size, "repeats": repeats, "calls_per_repeat": calls,
              "environment": environment(), "ours": {}}
    print(f"{record['environment']['device']} x{record['environment']['device_count']}: Glow {kwargs}, "
          f"{shape}, batch {batch_size}", flush=True)

    runs = [("float32", False), ("bfloat16", False)]
    if not args.no_reversible:
        runs.append(("float32", True))
    for dtype_name, reversible in runs:
        label = dtype_name + ("_reversible" if reversible else "")
        record["ours"][label] = bench_ours(kwargs, shape, batch_size, calls, repeats, dtype_name, reversible)
        print(f"  ours {label}: {record['ours'][label]}", flush=True)
        write_json(args.json, record)
    if not args.no_peer:
        record["normflows"] = bench_normflows(kwargs, shape, batch_size, calls, repeats)

    ours, peer = record["ours"], record.get("normflows", {})
    summary = {"steps_per_s": {label: r["train_steps_per_s"] for label, r in ours.items()},
               "fraction_of_dense_peak": {label: r.get("fraction_of_dense_peak") for label, r in ours.items()
                                          if "fraction_of_dense_peak" in r},
               "engine_over_bare_ratio": {label: ratio(r["train_steps_per_s"], r.get("bare_train_steps_per_s"))
                                          for label, r in ours.items() if "bare_train_steps_per_s" in r}}
    if "float32_reversible" in ours:
        summary["reversible_step_ratio"] = ratio(ours["float32"]["train_steps_per_s"],
                                                       ours["float32_reversible"]["train_steps_per_s"])
    for ours_label, peer_label in (("float32", "float32"), ("bfloat16", "bf16_autocast")):
        peer_rate = peer.get(peer_label, {}).get("train_steps_per_s") if isinstance(peer, dict) else None
        summary[f"{ours_label}_over_normflows_{peer_label}_ratio"] = ratio(ours[ours_label]["train_steps_per_s"],
                                                                           peer_rate)
    record["summary"] = summary
    record["wall_s"] = round(time.perf_counter() - began, 1)
    record["complete"] = True
    print(summary, flush=True)
    write_json(args.json, record)
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
