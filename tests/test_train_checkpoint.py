"""jcnf.train.checkpoint: exact round trips (zero-size leaf included), keep-last-N, SIGKILL resume.

Resumed runs are compared with uninterrupted ones at atol 1e-6: the same
compiled step on the same CPU is deterministic, so any difference beyond
rounding would mean lost state (optimizer moments, rng or data position).
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest

import _train_worker as worker
import jcnf
from jcnf import train

WORKER = os.path.join(os.path.dirname(__file__), "_train_worker.py")


def _first_batch(size=32):
    return {key: x[:size] for key, x in worker.tiny_problem().items()}


def _model():
    return jcnf.ConditionalRealNVP(**worker.MODEL_KWARGS)


def _complete_steps(directory) -> list[int]:
    # Orbax writes into "<step>.orbax-checkpoint-tmp-*" and renames to "<step>" when complete.
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def test_round_trip_is_exact_and_keeps_the_shape_marker(tmp_path):
    model = _model()
    batch = _first_batch()
    optimizer = optax.adam(1e-2)
    state = train.create_state(model, optimizer, jax.random.PRNGKey(0), batch, ema_decay=0.9)
    step = train.mle_step(model, donate=False)
    for _ in range(2):
        state, _ = step(state, batch)
    checkpointer = train.Checkpointer(tmp_path / "ckpt", keep=2)
    checkpointer.save(2, state, {"consumed": 2})
    checkpointer.wait()
    # A template from another key: everything must come from the checkpoint.
    template = train.create_state(model, optimizer, jax.random.PRNGKey(7), batch, ema_decay=0.9)
    restored, position = checkpointer.restore(template)
    checkpointer.close()
    assert position == {"consumed": 2}
    assert restored.params["flow"]["shape_marker"]["value_shape"].shape == (0, 2)
    original_leaves, original_tree = jax.tree.flatten(jax.device_get(state))
    restored_leaves, restored_tree = jax.tree.flatten(jax.device_get(restored))
    assert original_tree == restored_tree
    for a, b in zip(original_leaves, restored_leaves):
        np.testing.assert_array_equal(a, b)
    # Restored and original states continue identically (rng and Adam moments restored).
    continued, _ = step(state, batch)
    resumed, _ = step(restored, batch)
    for a, b in zip(jax.tree.leaves(continued.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)


def test_keeps_the_last_n(tmp_path):
    model = _model()
    state = train.create_state(model, optax.sgd(1e-2), jax.random.PRNGKey(0), _first_batch())
    checkpointer = train.Checkpointer(tmp_path, keep=2)
    for step in (1, 2, 3, 4):
        checkpointer.save(step, state)
    checkpointer.wait()
    assert checkpointer.all_steps() == [3, 4] and checkpointer.latest_step() == 4
    checkpointer.close()
    assert _complete_steps(tmp_path) == [3, 4]


@pytest.mark.parametrize("keep", [0, 2.0, True])
def test_keep_must_be_a_positive_integer(tmp_path, keep):
    with pytest.raises(ValueError, match="`keep`"):
        train.Checkpointer(tmp_path, keep=keep)


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    steps = 60
    checkpoint_dir = str(tmp_path / "run")
    command = [sys.executable, WORKER, "train", "--checkpoint-dir", checkpoint_dir, "--steps", str(steps)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    killed = subprocess.Popen(command + ["--out", str(tmp_path / "killed.npz"), "--sleep", "0.1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not _complete_steps(checkpoint_dir) and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert killed.poll() is None, "the run ended before it could be killed:\n" + killed.stdout.read().decode()
        assert _complete_steps(checkpoint_dir), "no checkpoint appeared within the timeout"
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        killed.kill()
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed.npz").exists()
    at_kill = _complete_steps(checkpoint_dir)[-1]
    assert 10 <= at_kill < steps

    resumed = subprocess.run(command + ["--out", str(tmp_path / "resumed.npz")], env=env, timeout=120,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    start = int(resumed.stdout.split("start ")[1].split()[0])
    assert start >= at_kill

    reference = train.fit(_model(), worker.tiny_problem(), steps, **worker.fit_options())
    expected = worker.flat_params(reference.state)
    got = dict(np.load(tmp_path / "resumed.npz"))
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-6, err_msg=key)
    # The metrics file holds each logged step once: the killed run's records
    # after the restored checkpoint were replaced by the resumed run's.
    with open(checkpoint_dir + ".metrics.jsonl") as f:
        logged = [json.loads(line)["step"] for line in f]
    assert logged == list(range(5, steps + 1, 5))
