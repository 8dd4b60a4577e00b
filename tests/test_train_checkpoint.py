"""jcnf.train.checkpoint: round trips, keep-last-N, SIGKILL resume, unreadable and foreign checkpoints.

Exact round trips (zero-size leaf included), keep-last-N, SIGKILL resume,
fallback past an unreadable checkpoint, refusal of another model's checkpoint, remote paths.

Resumed runs are compared with uninterrupted ones at atol 1e-6: the same
compiled step on the same CPU is deterministic, so any difference beyond
rounding would mean lost state (optimizer moments, rng or data position).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import _train_worker as worker
import jax
import numpy as np
import optax
import pytest

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
    for a, b in zip(original_leaves, restored_leaves, strict=False):
        np.testing.assert_array_equal(a, b)
    # Restored and original states continue identically (rng and Adam moments restored).
    continued, _ = step(state, batch)
    resumed, _ = step(restored, batch)
    for a, b in zip(jax.tree.leaves(continued.params), jax.tree.leaves(resumed.params), strict=False):
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
        killed.wait(timeout=30)
        killed.stdout.close()  # the pipe is ours to close (warnings are errors in this suite)
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


def test_paths_go_through_epath_and_keep_remote_urls(tmp_path, monkeypatch):
    from jcnf.train.checkpoint import checkpoint_path

    # A bucket URL must reach orbax untouched (os.path.abspath would make it "<cwd>/gs:/bucket/run").
    assert str(checkpoint_path("gs://bucket/run")) == "gs://bucket/run"
    assert str(checkpoint_path("gs://bucket/run") / "10") == "gs://bucket/run/10"
    monkeypatch.chdir(tmp_path)
    assert str(checkpoint_path("run")) == str(tmp_path / "run")
    checkpointer = train.Checkpointer("run")
    assert str(checkpointer.directory) == str(tmp_path / "run") and (tmp_path / "run").is_dir()
    checkpointer.close()


def _overwrite_with_garbage(directory) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"not a checkpoint\x00\xff" * 4)


def test_a_run_whose_newest_checkpoint_is_corrupt_resumes_from_the_one_before(tmp_path):
    checkpoint_dir = tmp_path / "run"
    options = {**worker.fit_options(), "checkpoint_dir": str(checkpoint_dir), "checkpoint_every": 10}
    train.fit(_model(), worker.tiny_problem(), 20, **options)
    assert _complete_steps(checkpoint_dir) == [10, 20]
    _overwrite_with_garbage(checkpoint_dir / "20")
    garbage = sorted(os.listdir(checkpoint_dir / "20"))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = train.fit(_model(), worker.tiny_problem(), 30, **options)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    # One warning, naming the step, the path and the reason; step 10 is read without one.
    unreadable = [m for m in messages if "cannot be read" in m]
    assert len(unreadable) == 1, messages
    assert re.search(r"step 20 \(.*run/20\) cannot be read \(\w+Error: ", unreadable[0]), messages
    assert any(re.search(r"step 20 at .*run/20 was moved to .*run/20\.unreadable", m) for m in messages), messages
    assert resumed.history[0]["step"] == 15  # the first log point after step 10
    # The unreadable checkpoint was moved aside before step 20 was written again, not deleted.
    assert sorted(os.listdir(checkpoint_dir / "20.unreadable")) == garbage
    assert _complete_steps(checkpoint_dir) == [10, 20, 30]

    # Resuming at step 10 with the data position of step 10 gives the uninterrupted run's params.
    reference = train.fit(_model(), worker.tiny_problem(), 30, **worker.fit_options())
    expected, got = worker.flat_params(reference.state), worker.flat_params(resumed.state)
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-6, err_msg=key)


def test_no_readable_checkpoint_is_an_error_naming_each(tmp_path):
    state = train.create_state(_model(), optax.sgd(1e-2), jax.random.PRNGKey(0), _first_batch())
    checkpointer = train.Checkpointer(tmp_path)
    for step in (1, 2):
        checkpointer.save(step, state)
    checkpointer.close()
    for step in (1, 2):
        _overwrite_with_garbage(tmp_path / str(step))
    checkpointer = train.Checkpointer(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(FileNotFoundError, match="step 2 .* step 1"):
            checkpointer.restore(state)
    assert [re.search(r"step (\d) \(", str(w.message)).group(1) for w in caught] == ["2", "1"]
    # A checkpoint asked for by step is not replaced by another one.
    with pytest.raises(FileNotFoundError, match="step 2"):
        checkpointer.restore(state, step=2)
    checkpointer.close()
    assert _complete_steps(tmp_path) == [1, 2]


def test_a_checkpoint_of_another_model_is_refused_before_training(tmp_path):
    checkpoint_dir = str(tmp_path / "run")
    train.fit(_model(), worker.tiny_problem(), 2, **worker.fit_options(), checkpoint_dir=checkpoint_dir)
    wider = jcnf.ConditionalRealNVP(**{**worker.MODEL_KWARGS, "hidden": 8})
    steps_run = []
    with pytest.raises(ValueError, match="does not match") as raised:
        train.fit(wider, worker.tiny_problem(), 4, **worker.fit_options(), checkpoint_dir=checkpoint_dir,
                  sample_fn=lambda state, step: steps_run.append(step), sample_every=1)
    assert steps_run == []
    message = str(raised.value)
    assert "Shapes differ" in message and "(1, 3, 16) in the checkpoint vs (1, 3, 8)" in message, message
    # At most five differences are listed, then a count of the rest.
    listed = message.split("Shapes differ")[1]
    assert listed.count(" in the checkpoint vs ") == 5 and "more)" in listed, message
