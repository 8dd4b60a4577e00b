"""jcnf.sharding: 1 device vs 8 fake devices, two processes, batch-size errors.

Multi-device runs need a fresh JAX runtime (device count and jax.distributed
are fixed at backend start), so they run `_train_worker.py` in subprocesses
with bounded timeouts. Params are compared at 1e-5 absolute: float32 values of
order 1 after two SGD steps whose gradients are summed in a different order
on 8 devices (observed differences ~1e-7).
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jcnf
from jcnf import sharding, train
from tests._xla import free_port, subprocess_env

WORKER = os.path.join(os.path.dirname(__file__), "_train_worker.py")


def _assert_same_params(a: dict, b: dict, atol: float) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=atol, err_msg=key)


def test_one_and_eight_devices_agree(tmp_path):
    out = str(tmp_path / "devices8.json")
    subprocess.run([sys.executable, WORKER, "devices8", "--out", out], check=True, timeout=120,
                   env=subprocess_env(8))
    with open(out) as f:
        record = json.load(f)
    assert record["devices_one"] == 1 and record["devices_eight"] == 8
    np.testing.assert_allclose(record["loss_eight"], record["loss_one"], rtol=1e-6)
    _assert_same_params(dict(np.load(out + ".one.npz")), dict(np.load(out + ".eight.npz")), atol=1e-5)
    # A global batch of 12 on 8 devices: a ValueError naming both numbers.
    for key in ("step_error", "create_error"):
        assert "global batch size (12)" in record[key] and "(8)" in record[key], record[key]
    assert "`num_samples` (12)" in record["reverse_kl_error"]


def test_two_processes_agree(tmp_path):
    port = free_port()
    checkpoint_dir = str(tmp_path / "checkpoints")
    procs = [subprocess.Popen([sys.executable, WORKER, "distributed", "--out", str(tmp_path / f"p{i}.npz"),
                               "--port", str(port), "--process-id", str(i), "--checkpoint-dir", checkpoint_dir],
                              env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(2)]
    try:
        logs = [proc.communicate(timeout=150)[0].decode() for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, log in zip(procs, logs, strict=False):
        assert proc.returncode == 0, log[-3000:]
    first, second = (dict(np.load(tmp_path / f"p{i}.npz")) for i in range(2))
    _assert_same_params(first, second, atol=0.0)

    # The same global batches on one process give the same params, and the
    # checkpoint written by two processes restores onto one device.
    import _train_worker as worker

    model = jcnf.ConditionalRealNVP(**worker.MODEL_KWARGS)
    data = worker.tiny_problem(64)
    single = train.fit(model, data, steps=4, batch_size=16, optimizer=optax.sgd(1e-2), progress=False)
    _assert_same_params(worker.flat_params(single.state), first, atol=1e-5)
    template = train.create_state(model, optax.sgd(1e-2), jax.random.PRNGKey(1),
                                  {key: x[:16] for key, x in data.items()})
    restored, position = train.Checkpointer(checkpoint_dir).restore(template)
    assert int(restored.step) == 4 and position["iterator"] == {"seed": 0, "epoch": 0, "index": 4}
    _assert_same_params(worker.flat_params(restored), first, atol=0.0)


def test_shard_batch_checks():
    mesh = sharding.make_mesh()
    batch = sharding.shard_batch({"value": np.zeros((4, 2), np.float32), "context": jnp.ones((4, 3))}, mesh)
    assert batch["value"].sharding == sharding.batch_sharding(mesh)
    with pytest.raises(ValueError, match="share the leading"):
        sharding.shard_batch({"value": np.zeros((4, 2)), "context": np.zeros((3, 3))}, mesh)
    with pytest.raises(ValueError, match="scalar"):
        sharding.shard_batch({"value": np.zeros((4, 2)), "weight": 1.0}, mesh)
    with pytest.raises(ValueError, match="at least one device"):
        sharding.make_mesh([])


def test_initialize_distributed_needs_the_whole_job(monkeypatch):
    monkeypatch.delenv("JCNF_DISTRIBUTED", raising=False)
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    assert not sharding.initialize_distributed()
    with pytest.raises(ValueError, match="num_processes"):
        sharding.initialize_distributed(coordinator_address="localhost:1234")
