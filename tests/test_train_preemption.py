"""jcnf.train.preemption: SIGTERM makes `fit` save at one agreed step and raise `Preempted`; a rerun resumes.

Resumed runs are compared with uninterrupted ones exactly: the same compiled
step on the same CPU is deterministic and a checkpoint is an exact copy, so
any difference would mean lost state (optimizer moments, rng, data position).
"""

import json
import os
import signal
import time

import _train_worker as worker
import numpy as np
import optax
import pytest

import jcnf
from jcnf import train

MODEL = jcnf.ConditionalRealNVP(**worker.MODEL_KWARGS)


def test_sigterm_saves_a_checkpoint_raises_and_the_rerun_resumes_exactly(tmp_path):
    data = worker.tiny_problem(128)
    options = {"batch_size": 32, "optimizer": optax.adam(1e-2), "log_every": 4, "progress": False,
               "step_fn": train.mle_step(MODEL)}

    def terminate_at_5(state, step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(train.Preempted, match=r"at step 5: saved a checkpoint in .*rerun the same command") as err:
        train.fit(MODEL, data, 12, checkpoint_dir=tmp_path, checkpoint_every=100, sample_fn=terminate_at_5,
                  sample_every=1, **options)
    assert err.value.step == 5 and err.value.checkpoint_dir == str(tmp_path)
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is fit's only while it runs
    checkpointer = train.Checkpointer(tmp_path)
    assert checkpointer.all_steps() == [5]
    checkpointer.close()

    resumed = train.fit(MODEL, data, 12, checkpoint_dir=tmp_path, checkpoint_every=100, **options)
    straight = train.fit(MODEL, data, 12, **options)
    assert resumed.history[0]["step"] == 8  # the first log point after step 5
    expected, got = worker.flat_params(straight.state), worker.flat_params(resumed.state)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_sigterm_to_one_of_two_processes_stops_both_at_one_step(tmp_path):
    def terminate_process_1_after_the_first_checkpoint(procs):
        deadline = time.monotonic() + 120
        while not (tmp_path / "preempt.ckpt" / "10").is_dir() and time.monotonic() < deadline:
            assert all(proc.poll() is None for proc in procs), "a process ended before the signal"
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGTERM)

    outputs = worker.run_two_processes("preempt", str(tmp_path / "p"),
                                       started=terminate_process_1_after_the_first_checkpoint)
    records = []
    for output in outputs:
        with open(output) as f:
            records.append(json.load(f))
    # Both processes stopped after the same dispatch, mid-run, and said how to resume.
    assert records[0]["preempted"] == records[1]["preempted"], records
    assert 10 <= records[0]["preempted"] < 60, records
    assert "rerun the same command" in records[0]["message"]
    assert [record["latest"] for record in records] == [records[0]["preempted"]] * 2, records  # saved there
    for output in outputs:
        resumed, straight = (dict(np.load(f"{output}.{name}.npz")) for name in ("resumed", "straight"))
        for key in straight:
            np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)


def test_a_preempted_experiment_script_exits_with_status_0(capsys):
    from experiments import _hosts

    def preempted_main():
        raise train.Preempted(7, "runs/ckpt")

    with pytest.raises(SystemExit) as exited:
        _hosts.run_script(preempted_main)
    assert exited.value.code == 0
    assert "at step 7: saved a checkpoint in runs/ckpt; rerun the same command" in capsys.readouterr().err
