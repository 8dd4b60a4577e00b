"""Subprocess helper for the jcnf.train tests that need a fresh JAX runtime.

Modes (each writes its result to --out):
  devices8     two steps on a 1-device and on an 8-device mesh (run with
               XLA_FLAGS=--xla_force_host_platform_device_count=8): JSON with
               the losses and the errors for bad batch sizes, and an .npz of
               the params for each mesh.
  distributed  one process of a two-process `jax.distributed` job on
               localhost, checkpointing; .npz of the final flow params.
  train        `fit` with checkpoints, optionally slowed down per step so the
               test can kill it mid-run; .npz of the final flow params.
  reverse_kl   one process of a two-process job running `fit_reverse_kl` on a
               fixed set of latents: .npz of the final params, JSON with the
               error for a number of samples the processes cannot split.

`run_two_processes` starts the two processes of a job on localhost.

The problem (`tiny_problem`) is shared with the in-process tests, so a
subprocess run and an in-process run train the same model on the same data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

MODEL_KWARGS = {"blocks": 2, "hidden": 16}


def tiny_problem(num_examples: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    """Value [N, 2] whose mean and spread depend on context [N, 2]."""
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(num_examples, 2)).astype(np.float32)
    mean = np.stack([context[:, 0], context[:, 0] - context[:, 1]], axis=1)
    scale = 0.2 + 0.1 * np.abs(context[:, 1:])
    value = mean + scale * rng.normal(size=(num_examples, 2))
    return {"value": value.astype(np.float32), "context": context}


def flat_params(state) -> dict[str, np.ndarray]:
    """The flow params as {path: array}, host side, for comparisons and .npz files."""
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state.params))
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def _error(fn) -> str:
    try:
        fn()
    except ValueError as err:
        return str(err)
    return ""


def run_devices8(out: str) -> None:
    import optax

    import jcnf
    from jcnf import train

    assert jax.device_count() == 8, jax.devices()
    model = jcnf.ConditionalRealNVP(**MODEL_KWARGS)
    data = tiny_problem(32)
    batch = {key: x[:16] for key, x in data.items()}
    # Values on a grid of 1/256 bins, so uniform dequantization draws noise: the
    # noise must not depend on how the batch is split either.
    batch["value"] = np.floor((batch["value"] - batch["value"].min()) * 40) / 256
    dequantizer = jcnf.dequantize.uniform_dequantization(256)
    record = {}
    for name, devices in (("one", jax.devices()[:1]), ("eight", jax.devices())):
        mesh = jcnf.sharding.make_mesh(devices)
        # Plain SGD: Adam divides by |g|, which turns reduction-order rounding in
        # near-zero gradients into lr-sized differences; SGD keeps them at rounding.
        state = train.create_state(model, optax.sgd(1e-2), jax.random.PRNGKey(0), batch,
                                   dequantizer=dequantizer, mesh=mesh)
        step = train.mle_step(model, mesh, dequantizer)
        losses = []
        for _ in range(2):
            state, metrics = step(state, batch)
            losses.append(float(metrics["loss"]))
        record[f"loss_{name}"] = losses
        record[f"devices_{name}"] = len(state.params["flow"]["base"]["head"]["kernel"].sharding.device_set)
        np.savez(f"{out}.{name}.npz", **flat_params(state))

    mesh8 = jcnf.sharding.make_mesh()
    state8 = train.create_state(model, optax.sgd(1e-2), jax.random.PRNGKey(0), batch, mesh=mesh8)
    odd = {key: x[:12] for key, x in data.items()}
    record["step_error"] = _error(lambda: train.mle_step(model, mesh8)(state8, odd))
    record["create_error"] = _error(lambda: train.create_state(model, optax.sgd(1e-2), jax.random.PRNGKey(0), odd,
                                                               mesh=mesh8))
    record["reverse_kl_error"] = _error(lambda: train.reverse_kl_step(
        model, lambda v: -0.5 * (v ** 2).sum(-1), 12, mesh8))
    with open(out, "w") as f:
        json.dump(record, f)


def run_distributed(out: str, port: int, process_id: int, checkpoint_dir: str) -> None:
    import os

    from jcnf import train

    # The library's entry point reads the job from these variables.
    os.environ.update({"JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JCNF_NUM_PROCESSES": "2",
                       "JCNF_PROCESS_ID": str(process_id)})
    from jcnf import sharding

    assert sharding.initialize_distributed()
    assert jax.process_count() == 2 and jax.device_count() == 2, jax.devices()
    import optax

    import jcnf

    model = jcnf.ConditionalRealNVP(**MODEL_KWARGS)
    # Each process holds all examples; ArrayBatches hands each its half of every
    # global batch. SGD for the reason given in run_devices8.
    result = train.fit(model, tiny_problem(64), steps=4, batch_size=16, optimizer=optax.sgd(1e-2),
                       progress=False, log_every=2, checkpoint_dir=checkpoint_dir, checkpoint_every=2)
    np.savez(out, **flat_params(result.state))


def _join_two_processes(port: int, process_id: int) -> None:
    from jcnf import sharding

    assert sharding.initialize_distributed(f"localhost:{port}", 2, process_id)
    assert jax.process_count() == 2 and jax.device_count() == 2, jax.devices()


def reverse_kl_problem() -> dict:
    """A 2-D linear-Gaussian inverse problem and the `fit_reverse_kl` arguments of `run_reverse_kl`."""
    import jax.numpy as jnp
    import optax

    import jcnf
    from jcnf import inverse

    model = jcnf.ConditionalRealNVP(**MODEL_KWARGS)
    y_obs = np.array([1.0, -0.5], np.float32)
    params = model.init(jax.random.PRNGKey(3), jnp.zeros((4, 2)), jnp.broadcast_to(y_obs, (4, 2)))["params"]
    prior_mean, prior_cov = np.array([0.5, -1.0], np.float32), np.array([[1.0, 0.6], [0.6, 1.5]], np.float32)
    # SGD for the reason given in run_devices8.
    return {"model": model, "params": params, "y_obs": y_obs,
            "forward_op": inverse.dense(np.array([[1.0, 0.4], [-0.3, 0.8]], np.float32)), "noise_std": 0.5,
            "log_prior": lambda x: inverse.gaussian_log_prob(x, prior_mean, prior_cov), "steps": 4,
            "num_latents": 16, "optimizer": optax.sgd(1e-2), "seed": 1, "log_every": 2, "progress": False}


def run_reverse_kl(out: str, port: int, process_id: int) -> None:
    _join_two_processes(port, process_id)
    from jcnf import inverse

    problem = reverse_kl_problem()
    result = inverse.fit_reverse_kl(num_samples=8, **problem)
    np.savez(f"{out}.npz", **{jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in
                              jax.tree_util.tree_leaves_with_path(jax.device_get(result.params))})
    with open(out, "w") as f:
        json.dump({"odd_error": _error(lambda: inverse.fit_reverse_kl(num_samples=3, **problem))}, f)


def run_two_processes(mode: str, out_prefix: str, timeout: float = 150.0) -> list[str]:
    """Runs `mode` as the two processes of a `jax.distributed` job on localhost; returns their outputs.

    Process i writes to `{out_prefix}{i}`; a process that fails fails the call with its log.
    """
    from tests._xla import free_port, subprocess_env  # only the test process calls this, not the worker script

    port, env = free_port(), subprocess_env()
    procs = [subprocess.Popen([sys.executable, __file__, mode, "--out", f"{out_prefix}{i}", "--port", str(port),
                               "--process-id", str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(2)]
    try:
        logs = [proc.communicate(timeout=timeout)[0].decode() for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, log in zip(procs, logs, strict=True):
        assert proc.returncode == 0, log[-3000:]
    return [f"{out_prefix}{i}" for i in range(2)]


def fit_options() -> dict:
    """The `fit` arguments of `run_train`, for the test's uninterrupted reference run."""
    import optax

    return {"batch_size": 32, "optimizer": optax.adam(1e-2), "log_every": 5, "progress": False}


def run_train(out: str, checkpoint_dir: str, steps: int, sleep: float) -> None:
    import jcnf
    from jcnf import train

    # Tells the test where this run starts: the newest complete checkpoint.
    print(f"start {train.Checkpointer(checkpoint_dir).latest_step() or 0}", flush=True)
    model = jcnf.ConditionalRealNVP(**MODEL_KWARGS)
    # Slows the loop down (the hook runs after every step) so the test can kill it mid-run.
    hook = (lambda state, step: time.sleep(sleep)) if sleep else None
    result = train.fit(model, tiny_problem(), steps, checkpoint_dir=checkpoint_dir, checkpoint_every=10, keep=2,
                       metrics_path=f"{checkpoint_dir}.metrics.jsonl", sample_fn=hook, sample_every=1,
                       **fit_options())
    np.savez(out, **flat_params(result.state))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("devices8", "distributed", "train", "reverse_kl"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--checkpoint-dir", default="")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.mode == "devices8":
        run_devices8(args.out)
    elif args.mode == "distributed":
        run_distributed(args.out, args.port, args.process_id, args.checkpoint_dir)
    elif args.mode == "reverse_kl":
        run_reverse_kl(args.out, args.port, args.process_id)
    else:
        run_train(args.out, args.checkpoint_dir, args.steps, args.sleep)


if __name__ == "__main__":
    # The jcnf of this checkout, as in the test that started the worker (not another installed copy).
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main(sys.argv[1:])
