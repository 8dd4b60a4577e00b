"""jcnf.train.loop: fit on arrays, hooks, metrics file, in-process resume, the skip limit."""

import json

import _train_worker as worker
import jax
import numpy as np
import optax
import pytest

import jcnf
from jcnf import train

MODEL = jcnf.ConditionalRealNVP(**worker.MODEL_KWARGS)


def test_fit_on_arrays_logs_evaluates_and_samples(tmp_path):
    data = worker.tiny_problem(128)
    evaluate = train.mle_eval_step(MODEL)
    sample = train.sample_step(MODEL)
    samples = {}

    def sample_fn(state, step):
        samples[step] = np.asarray(sample(state, jax.random.PRNGKey(step), data["context"][:4]))

    result = train.fit(MODEL, data, 12, batch_size=32, optimizer=optax.adam(1e-2), log_every=5,
                       eval_fn=lambda state: evaluate(state, data), eval_every=6, sample_fn=sample_fn,
                       sample_every=10, metrics_path=tmp_path / "metrics.jsonl", progress=False,
                       model_dir=tmp_path / "model")
    state, history = result
    assert int(state.step) == 12 and result.params is state.params["flow"]
    train_steps = [r["step"] for r in history if "loss" in r]
    eval_steps = [r["step"] for r in history if "eval_loss" in r]
    assert train_steps == [5, 10, 12] and eval_steps == [6, 12]
    assert all(np.isfinite(r["loss"]) and r["skipped"] == 0 for r in history if "loss" in r)
    assert sorted(samples) == [10, 12] and samples[12].shape == (4, 2)
    with open(tmp_path / "metrics.jsonl") as f:
        assert [json.loads(line) for line in f] == history
    # The trained flow was saved with the batches' shapes; loaded, it is the same density (float32 rounding).
    trained = jcnf.load_model(tmp_path / "model")
    assert trained.value_shape == (2,) and trained.context_shape == data["context"].shape[1:]
    np.testing.assert_allclose(trained.log_prob(data["value"][:4], data["context"][:4]),
                               MODEL.apply({"params": result.params}, data["value"][:4], data["context"][:4]),
                               rtol=1e-5, atol=1e-5)


def test_resume_fast_forwards_a_plain_iterator(tmp_path):
    # A generator has no get_state: on resume fit draws and discards the batches
    # it had already used, exact for a deterministic iterator.
    data = worker.tiny_problem(256)

    def batches():
        for i in range(1000):
            yield {key: np.roll(x, -16 * i, axis=0)[:16] for key, x in data.items()}

    # One optimizer and step for the three runs: they share one compilation.
    options = {"optimizer": optax.adam(1e-2), "step_fn": train.mle_step(MODEL), "progress": False, "log_every": 5}
    # The straight run logs only steps 15 and 20 into the file the resumed run
    # uses: every line is newer than the step-10 checkpoint, so all are dropped.
    metrics_path = tmp_path / "metrics.jsonl"
    straight = train.fit(MODEL, batches(), 20, metrics_path=metrics_path, **dict(options, log_every=15))
    train.fit(MODEL, batches(), 10, checkpoint_dir=tmp_path, checkpoint_every=5, **options)
    resumed = train.fit(MODEL, batches(), 20, checkpoint_dir=tmp_path, checkpoint_every=5,
                        metrics_path=metrics_path, **options)
    assert [r["step"] for r in resumed.history] == [15, 20]
    with open(metrics_path) as f:
        assert [json.loads(line)["step"] for line in f] == [15, 20]
    for a, b in zip(jax.tree.leaves(straight.state.params), jax.tree.leaves(resumed.state.params), strict=False):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_stops_after_too_many_consecutive_skips():
    data = worker.tiny_problem(64)
    state = train.create_state(MODEL, optax.adam(1e-2), jax.random.PRNGKey(0), {k: x[:16] for k, x in data.items()})
    poisoned = dict(data, value=np.full_like(data["value"], np.nan))
    with pytest.raises(train.TooManySkippedSteps, match="3 consecutive steps up to step 3"):
        train.fit(MODEL, poisoned, 10, state=state, batch_size=16, log_every=1, max_consecutive_skips=3,
                  progress=False)


def test_bad_arguments():
    data = worker.tiny_problem(64)
    with pytest.raises(ValueError, match="batch_size"):
        train.fit(MODEL, data, 10)
    with pytest.raises(ValueError, match="every"):
        train.fit(MODEL, data, 10, batch_size=16, log_every=0)
    with pytest.raises(ValueError, match="max_consecutive_skips"):
        train.fit(MODEL, data, 10, batch_size=16, max_consecutive_skips=0)
    with pytest.raises(ValueError, match="`steps`"):
        train.fit(MODEL, data, 10.0, batch_size=16)
    with pytest.raises(ValueError, match="`eval_every`"):
        train.fit(MODEL, data, 10, batch_size=16, eval_every=2.5)
    with pytest.raises(ValueError, match="ran out"):
        train.fit(MODEL, iter([{k: x[:16] for k, x in data.items()}]), 3, progress=False)


def test_several_steps_per_dispatch_equal_single_steps_and_keep_every_metric(tmp_path):
    data = worker.tiny_problem(128)
    runs = {}
    for per_dispatch in (1, 4):
        runs[per_dispatch] = train.fit(MODEL, data, 11, batch_size=32, optimizer=optax.adam(1e-2), log_every=8,
                                       checkpoint_dir=tmp_path / f"ckpt{per_dispatch}", checkpoint_every=4,
                                       steps_per_dispatch=per_dispatch, progress=False)
    single, chunked = runs[1], runs[4]
    # One scan of the same step function: the same arithmetic, so the same parameters bit for bit
    # up to XLA fusing the scanned program differently (float32 rounding, 1e-6 on params of order 1).
    for a, b in zip(jax.tree.leaves(single.state.params), jax.tree.leaves(chunked.state.params), strict=False):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
    # Log and checkpoint points stay at their exact steps (8 and 11; 4 and 8 and 11), and the logged
    # window means cover every step's metrics.
    assert [r["step"] for r in chunked.history] == [r["step"] for r in single.history] == [8, 11]
    for a, b in zip(single.history, chunked.history, strict=False):
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
    assert train.Checkpointer(tmp_path / "ckpt4").all_steps() == [4, 8, 11]


def test_steps_per_dispatch_is_checked():
    data = worker.tiny_problem(64)
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="`steps_per_dispatch`"):
            train.fit(MODEL, data, 4, batch_size=32, steps_per_dispatch=bad, progress=False)
    with pytest.raises(ValueError, match="`steps_per_dispatch`=2 needs a `step_fn` with a `run"):
        train.fit(MODEL, data, 4, batch_size=32, steps_per_dispatch=2, step_fn=lambda state, batch: (state, {}),
                  progress=False)
